//! The few Consul HTTP API calls beamline-mesh makes, over HTTP or HTTPS, Consul's client
//! configuration (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`, `CONSUL_CACERT`, … in `config`, the
//! TLS client in `tls`) as Consul's own tools read them, and Go durations as Consul writes them
//! ([`duration`], shared with the embedded registry). Errors name the variable to fix: a
//! certificate the server presents that does not chain to `CONSUL_CACERT`, a 403 for the token.
//!
//! This is the one place that knows Consul's JSON. It works against real Consul and against
//! `beamline-mesh registry` alike. Every call has a timeout (a Consul agent that accepts the
//! connection and never answers must not hang an agent's shutdown).
//!
//! Why not consulrs: its 0.1.0 release (the only one) cannot decode `/v1/agent/service/:id` when
//! the service address is an IP (its TaggedAddresses type is wrong), has no `/v1/health/*`
//! endpoints, loses the TTL note, and pulls a second HTTP stack with OpenSSL into every agent.
//! It stays an independent interop check in `.ci/run`; this module is a small typed client on
//! the HTTP stack the crate already has.

pub mod backoff;
mod config;
pub mod control;
pub mod duration;
mod kv;
mod sni;
mod tls;
mod types;

use std::time::Duration;

use beamline_contract::causes::chain;
use reqwest::StatusCode;

pub use config::{normalize_addr, ConsulConfig, ConsulEnv, DEFAULT_ADDR};
pub use kv::KvEntry;
pub use tls::TlsSettings;
pub use types::{
    AgentServiceCheck, CheckEntry, CheckStatus, HealthCheck, Node, ServiceEntry, ServiceInfo,
    ServiceRegistration,
};

#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    #[error("invalid Consul address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: &'static str },
    /// The message carries the whole cause chain: "error sending request" alone hides the
    /// reason an operator needs (connection refused, a TLS failure, too many open files).
    #[error("Consul at {addr} is unreachable: {}", chain(cause))]
    Unreachable { addr: String, cause: reqwest::Error },
    /// A handshake failed in a way a variable can fix; `hint` names it.
    #[error("TLS with Consul at {addr} failed: {} ({hint})", chain(cause))]
    Tls {
        addr: String,
        hint: &'static str,
        cause: reqwest::Error,
    },
    #[error("Consul answered {status} to {what}: {body}{}", status_hint(*status))]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    #[error("cannot decode Consul's answer to {what}: {}", chain(cause))]
    Decode { what: String, cause: reqwest::Error },
    /// A client variable that cannot be used as it is.
    #[error("{var}: {reason}")]
    Env { var: &'static str, reason: String },
    /// A PEM file a client variable names (the message names the variable).
    #[error(transparent)]
    Pem(#[from] beamline_tls::TlsError),
    /// The HTTP client could not be built with the TLS settings given: nothing is sent (a
    /// client without them would send the token where they say it must not go).
    #[error("cannot build the Consul HTTP client with its TLS settings (CONSUL_CACERT, CONSUL_CLIENT_CERT/KEY, CONSUL_TLS_SERVER_NAME): {0}")]
    Client(String),
}

/// What an operator should look at for an answer's status: a 403 from an ACL'd Consul is a
/// token this process sends (or does not).
fn status_hint(status: u16) -> &'static str {
    match status {
        403 => " (permission denied: check CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE)",
        _ => "",
    }
}

impl ConsulError {
    /// True when Consul could not be reached at all (worth retrying quietly). A handshake that
    /// fails on a certificate is not: nothing changes until someone fixes a variable.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ConsulError::Unreachable { .. })
    }
}

/// What a deregistration found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deregistered {
    Removed,
    /// Consul answered 404: the service was already gone (reaped, or a registry restart).
    AlreadyGone,
}

/// One answer of a blocking health query.
#[derive(Debug, Clone)]
pub struct Indexed<T> {
    pub value: T,
    /// `X-Consul-Index`: what to send as `?index=` to block until the answer changes.
    pub index: u64,
    /// Consul hid results the token may not read (`X-Consul-Results-Filtered-By-ACLs`).
    pub filtered_by_acls: bool,
}

#[derive(Debug, Clone)]
pub struct ConsulClient {
    config: ConsulConfig,
    /// Where requests go: the configured address, or the same with CONSUL_TLS_SERVER_NAME as
    /// its host (`sni`).
    base: String,
    http: reqwest::Client,
    /// Why the client configured could not be built, if it could not: every request fails
    /// with it rather than going out without the TLS settings.
    broken: Option<String>,
}

impl ConsulClient {
    pub fn new(config: ConsulConfig) -> ConsulClient {
        // Keepalive probes end a connection whose peer vanished without a reset within about
        // 10 s + 3 × 5 s, instead of leaving a blocking query (the control state's follower)
        // waiting on it until its timeout. Set here, not left to reqwest's defaults.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .tcp_keepalive(Duration::from_secs(10))
            .tcp_keepalive_interval(Duration::from_secs(5))
            .tcp_keepalive_retries(3);
        if let Some(tls) = &config.tls {
            builder = builder.use_preconfigured_tls(rustls::ClientConfig::clone(tls));
        }
        let mut base = config.addr.clone();
        if let Some((renamed, resolver)) =
            sni::rewrite(&config.addr, config.tls_server_name.as_deref())
        {
            base = renamed;
            builder = builder.dns_resolver(resolver);
        }
        // The builder only fails when the TLS backend cannot initialise (a configuration of
        // the same rustls reqwest uses cannot fail). Then nothing is sent: a default client
        // would drop CONSUL_CACERT and the server name and send the token to whoever answers.
        let (http, broken) = match builder.build() {
            Ok(http) => (http, None),
            Err(e) => {
                let why = chain(&e);
                tracing::error!(error = %why, "cannot build the Consul HTTP client");
                (reqwest::Client::default(), Some(why))
            }
        };
        ConsulClient {
            config,
            base,
            http,
            broken,
        }
    }

    pub fn config(&self) -> &ConsulConfig {
        &self.config
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(self.config.timeout);
        if let Some(token) = &self.config.token {
            request = request.header("X-Consul-Token", token);
        }
        request
    }

    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ConsulError> {
        if let Some(why) = &self.broken {
            return Err(ConsulError::Client(why.clone()));
        }
        request
            .send()
            .await
            .map_err(|cause| {
                let addr = self.config.addr.clone();
                match tls::hint(&cause) {
                    Some(hint) => ConsulError::Tls { addr, hint, cause },
                    None => ConsulError::Unreachable { addr, cause },
                }
            })
            .inspect(|r| tracing::trace!(what, status = %r.status(), "consul"))
    }

    async fn expect_ok(
        what: &str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ConsulError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Err(ConsulError::Status {
            what: what.to_string(),
            status,
            body: body.trim().to_string(),
        })
    }

    /// PUT /v1/agent/service/register.
    pub async fn register(&self, registration: &ServiceRegistration) -> Result<(), ConsulError> {
        let what = format!("register {}", registration.id);
        let request = self
            .request(reqwest::Method::PUT, "/v1/agent/service/register")
            .json(registration);
        let response = self.send(&what, request).await?;
        Self::expect_ok(&what, response).await.map(|_| ())
    }

    /// PUT /v1/agent/service/deregister/:id; a 404 means it is already gone.
    pub async fn deregister(&self, service_id: &str) -> Result<Deregistered, ConsulError> {
        let what = format!("deregister {service_id}");
        let path = format!("/v1/agent/service/deregister/{}", path_segment(service_id));
        let response = self
            .send(&what, self.request(reqwest::Method::PUT, &path))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Deregistered::AlreadyGone);
        }
        Self::expect_ok(&what, response)
            .await
            .map(|_| Deregistered::Removed)
    }

    /// GET /v1/agent/service/:id: is this service registered with the local agent?
    pub async fn is_registered(&self, service_id: &str) -> Result<bool, ConsulError> {
        let what = format!("read service {service_id}");
        let path = format!("/v1/agent/service/{}", path_segment(service_id));
        let response = self
            .send(&what, self.request(reqwest::Method::GET, &path))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        Self::expect_ok(&what, response).await.map(|_| true)
    }

    /// GET /v1/catalog/services: every service name with its tags, and whether Consul hid
    /// some of them from this token (`X-Consul-Results-Filtered-By-ACLs`).
    pub async fn services(
        &self,
    ) -> Result<(std::collections::BTreeMap<String, Vec<String>>, bool), ConsulError> {
        let what = "list services".to_string();
        let response = self
            .send(
                &what,
                self.request(reqwest::Method::GET, "/v1/catalog/services"),
            )
            .await?;
        let response = Self::expect_ok(&what, response).await?;
        let filtered = response
            .headers()
            .get("x-consul-results-filtered-by-acls")
            .is_some_and(|v| v.as_bytes() == b"true");
        let services = response
            .json()
            .await
            .map_err(|cause| ConsulError::Decode { what, cause })?;
        Ok((services, filtered))
    }

    /// GET /v1/health/service/:name as a blocking query (`index` 0 answers at once). All
    /// instances are returned, healthy or not, with their checks.
    pub async fn health_service(
        &self,
        name: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Indexed<Vec<ServiceEntry>>, ConsulError> {
        let what = format!("health of {name}");
        let path = format!("/v1/health/service/{}", path_segment(name));
        self.blocking_get(what, &path, &[], index, wait).await
    }

    /// GET /v1/health/state/:state (`any` for every check, node checks included) as a blocking
    /// query, narrowed by a Consul `filter` expression when given: one query that changes
    /// whenever any check does, across every service.
    pub async fn health_state(
        &self,
        state: &str,
        filter: Option<&str>,
        index: u64,
        wait: Duration,
    ) -> Result<Indexed<Vec<CheckEntry>>, ConsulError> {
        let what = format!("checks in state {state}");
        let path = format!("/v1/health/state/{}", path_segment(state));
        let query: Vec<(&str, String)> = filter
            .map(|f| ("filter", f.to_string()))
            .into_iter()
            .collect();
        self.blocking_get(what, &path, &query, index, wait).await
    }

    /// A GET of `path` with `query`, blocking on `index` when it is not 0 (Consul may hold it
    /// for `wait` + `wait`/16: the request's timeout allows for that and the trip).
    async fn blocking_get<T: serde::de::DeserializeOwned>(
        &self,
        what: String,
        path: &str,
        query: &[(&str, String)],
        index: u64,
        wait: Duration,
    ) -> Result<Indexed<T>, ConsulError> {
        let response = self.blocking_send(&what, path, query, index, wait).await?;
        let response = Self::expect_ok(&what, response).await?;
        let (index, filtered_by_acls) = Self::index_headers(&response);
        let value = response
            .json()
            .await
            .map_err(|cause| ConsulError::Decode { what, cause })?;
        Ok(Indexed {
            value,
            index,
            filtered_by_acls,
        })
    }

    /// Sends a GET of `path` with `query`, blocking on `index` when it is not 0.
    async fn blocking_send(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, String)],
        index: u64,
        wait: Duration,
    ) -> Result<reqwest::Response, ConsulError> {
        let mut request = self.request(reqwest::Method::GET, path).query(query);
        if index > 0 {
            let wait_ms = wait.as_millis().max(1);
            request = request
                .query(&[
                    ("index", index.to_string()),
                    ("wait", format!("{wait_ms}ms")),
                ])
                .timeout(self.config.timeout + wait + wait / 16);
        }
        self.send(what, request).await
    }

    /// `X-Consul-Index` (0 when absent) and whether ACLs filtered the answer.
    fn index_headers(response: &reqwest::Response) -> (u64, bool) {
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
        let index = header("x-consul-index")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (
            index,
            header("x-consul-results-filtered-by-acls") == Some("true"),
        )
    }
}

/// Percent-encodes one path segment (service IDs are free text in Consul).
fn path_segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests;
