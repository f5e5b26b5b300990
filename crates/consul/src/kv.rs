//! `/v1/kv/*`: the few key/value calls the facility's control state needs — a prefix read as a
//! blocking query, a read of one key, and writes and deletes with check-and-set on the key's
//! ModifyIndex (no sessions: the embedded registry has none, and a lock's expiry lives in its
//! value). Consul sends values base64-encoded in JSON; callers see bytes.

use std::time::Duration;

use base64::Engine;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::{path_segment, ConsulClient, ConsulError, Indexed};

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    pub value: Vec<u8>,
    pub create_index: u64,
    /// What a check-and-set write of this key names to succeed only if nobody wrote since.
    pub modify_index: u64,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireEntry {
    key: String,
    value: Option<String>,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
}

/// A key's path: each `/`-separated segment percent-encoded, the separators kept.
fn key_path(key: &str) -> String {
    let segments: Vec<String> = key.split('/').map(path_segment).collect();
    format!("/v1/kv/{}", segments.join("/"))
}

fn decode(what: &str, wire: Vec<WireEntry>) -> Result<Vec<KvEntry>, ConsulError> {
    wire.into_iter()
        .map(|e| {
            let value = match e.value {
                Some(text) => base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|err| ConsulError::Status {
                        what: what.to_string(),
                        status: 200,
                        body: format!("the value of {:?} is not base64: {err}", e.key),
                    })?,
                None => Vec::new(),
            };
            Ok(KvEntry {
                key: e.key,
                value,
                create_index: e.create_index,
                modify_index: e.modify_index,
            })
        })
        .collect()
}

/// What a KV read's answer (200 or 404) says in `X-Consul-Index`. Consul (and the embedded
/// registry) always sends it; an answer without it is not Consul's KV API — a proxy or a load
/// balancer answering 404 for the path, say. Taken for "nothing there, index 0" it would make
/// a follower of the prefix ask again at once, forever, and call the state readable.
fn kv_answer_index(what: &str, status: u16, headers: &HeaderMap) -> Result<u64, ConsulError> {
    headers
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ConsulError::Status {
            what: what.to_string(),
            status,
            body: "the answer has no valid X-Consul-Index header: the server at \
                   CONSUL_HTTP_ADDR does not answer as Consul's KV API does (a proxy or load \
                   balancer in front of it?)"
                .to_string(),
        })
}

impl ConsulClient {
    /// `GET /v1/kv/<prefix>?recurse` as a blocking query (`index` 0 answers at once): every entry
    /// under `prefix`, none when there is none (Consul's 404 for an empty prefix).
    pub async fn kv_list(
        &self,
        prefix: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Indexed<Vec<KvEntry>>, ConsulError> {
        let what = format!("read KV {prefix}*");
        let query = [("recurse", String::new())];
        let answer = self
            .blocking_get_or_missing::<Vec<WireEntry>>(
                what.clone(),
                &key_path(prefix),
                &query,
                index,
                wait,
            )
            .await?;
        Ok(Indexed {
            value: decode(&what, answer.value.unwrap_or_default())?,
            index: answer.index,
            filtered_by_acls: answer.filtered_by_acls,
        })
    }

    /// `GET /v1/kv/<key>`: the entry, or None.
    pub async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>, ConsulError> {
        let what = format!("read KV {key}");
        let answer = self
            .blocking_get_or_missing::<Vec<WireEntry>>(
                what.clone(),
                &key_path(key),
                &[],
                0,
                Duration::ZERO,
            )
            .await?;
        Ok(decode(&what, answer.value.unwrap_or_default())?
            .into_iter()
            .find(|e| e.key == key))
    }

    /// `PUT /v1/kv/<key>`, with `?cas=` when given (0: only if the key does not exist). Whether
    /// it was written: false when the check-and-set lost.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u64>,
    ) -> Result<bool, ConsulError> {
        let what = format!("write KV {key}");
        let mut request = self
            .request(reqwest::Method::PUT, &key_path(key))
            .body(value.to_vec());
        if let Some(cas) = cas {
            request = request.query(&[("cas", cas.to_string())]);
        }
        self.applied(&what, request).await
    }

    /// `DELETE /v1/kv/<key>`, with `?cas=` when given. Whether it was applied (a delete of a
    /// missing key without cas is applied).
    pub async fn kv_delete(&self, key: &str, cas: Option<u64>) -> Result<bool, ConsulError> {
        let what = format!("delete KV {key}");
        let mut request = self.request(reqwest::Method::DELETE, &key_path(key));
        if let Some(cas) = cas {
            request = request.query(&[("cas", cas.to_string())]);
        }
        self.applied(&what, request).await
    }

    /// Consul answers a KV write with `true` or `false`.
    async fn applied(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<bool, ConsulError> {
        let response = self.send(what, request).await?;
        let response = Self::expect_ok(what, response).await?;
        let text = response.text().await.map_err(|cause| ConsulError::Decode {
            what: what.to_string(),
            cause,
        })?;
        match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(ConsulError::Status {
                what: what.to_string(),
                status: 200,
                body: format!("expected true or false, got {other:?}"),
            }),
        }
    }

    /// A blocking GET where 404 means "nothing there" (KV), with the index Consul still sends.
    /// A 200 or 404 without `X-Consul-Index` is an error ([`kv_answer_index`]).
    async fn blocking_get_or_missing<T: serde::de::DeserializeOwned>(
        &self,
        what: String,
        path: &str,
        query: &[(&str, String)],
        index: u64,
        wait: Duration,
    ) -> Result<Indexed<Option<T>>, ConsulError> {
        let response = self.blocking_send(&what, path, query, index, wait).await?;
        let status = response.status();
        let (_, filtered_by_acls) = Self::index_headers(&response);
        let index = if status == StatusCode::OK || status == StatusCode::NOT_FOUND {
            kv_answer_index(&what, status.as_u16(), response.headers())?
        } else {
            0
        };
        if status == StatusCode::NOT_FOUND {
            return Ok(Indexed {
                value: None,
                index,
                filtered_by_acls,
            });
        }
        let response = Self::expect_ok(&what, response).await?;
        let value = response
            .json()
            .await
            .map_err(|cause| ConsulError::Decode { what, cause })?;
        Ok(Indexed {
            value: Some(value),
            index,
            filtered_by_acls,
        })
    }
}

/// Its canned-server helper (`answering`) is the crate's, for any test of an answer Consul
/// may or may not give.
#[cfg(test)]
pub(crate) mod tests;
