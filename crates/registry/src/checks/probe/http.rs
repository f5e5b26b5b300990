//! The HTTP check (Consul's `HTTP`, with its method, headers, body and TLS fields): one request,
//! its status code mapped to a check status, and the tail of the body as the Output.
//!
//! Owns HTTP requests and the clients behind them (including the TLSServerName rename): one
//! keep-alive client per TLS setting, so consecutive runs against a target reuse a connection.
//! It must not schedule checks or apply thresholds.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, HOST, USER_AGENT};
use reqwest::{Method, Url};
use tokio::time::{timeout_at, Instant};

use super::resolve::Resolver;
use super::{deadline_after, describe_error, done, io_text, ProbeResult};
use crate::model::CheckStatus::{Critical, Passing, Warning};
use beamline_contract::address::host_port;
use beamline_contract::causes::io_cause;

/// Consul's OutputMaxSize default; like Consul's ring buffer, the *last* bytes of a body are kept.
const OUTPUT_MAX_SIZE: usize = 4096;
/// How long an HTTP check's connection stays pooled between runs: longer than common intervals.
const HTTP_IDLE: Duration = Duration::from_secs(90);
/// Consul's value, so that services which filter health-check traffic by agent keep doing so.
const CHECK_USER_AGENT: &str = "Consul Health Check";

/// What an HTTP check calls (Consul's `HTTP`, `Method`, `Header`, `Body`, TLS fields).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HttpProbe {
    pub url: String,
    /// Empty means GET.
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub body: String,
    pub tls_server_name: String,
    pub tls_skip_verify: bool,
}

/// 2xx passing, 429 warning, anything else (or no answer within `timeout`) critical.
pub async fn http(probe: &HttpProbe, timeout: Duration) -> ProbeResult {
    let method = Some(probe.method.as_str())
        .filter(|m| !m.is_empty())
        .unwrap_or("GET");
    let Ok(verb) = Method::from_bytes(method.as_bytes()) else {
        return done(Critical, format!("net/http: invalid method {method:?}"));
    };
    let url = match Url::parse(&probe.url) {
        Ok(url) => url,
        Err(err) => return done(Critical, format!("parse {:?}: {err}", probe.url)),
    };
    match http_send(probe, verb, url, deadline_after(timeout)).await {
        Ok((code, body)) => {
            let status = match code.as_u16() {
                200..=299 => Passing,
                429 => Warning,
                _ => Critical,
            };
            let (url, reason) = (&probe.url, code.canonical_reason().unwrap_or(""));
            let code = code.as_u16();
            done(
                status,
                format!("HTTP {method} {url}: {code} {reason} Output: {body}"),
            )
        }
        // Go's url.Error spelling ("Get", "Post"), which is what Consul's outputs start with; a
        // valid method is a non-empty ASCII token, so splitting after one byte is safe.
        Err(err) => {
            let (first, rest) = method.split_at(1);
            let op = format!("{first}{}", rest.to_ascii_lowercase());
            done(Critical, format!("{op} {:?}: {err}", probe.url))
        }
    }
}

/// Sends the request; the status code and the tail of the body, or the error text.
async fn http_send(
    probe: &HttpProbe,
    verb: Method,
    url: Url,
    deadline: Instant,
) -> Result<(reqwest::StatusCode, String), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("unsupported protocol scheme {:?}", url.scheme()));
    }
    let port = url.port_or_known_default().unwrap_or_default();
    let dial_addr = host_port(url.host_str().unwrap_or_default(), port);
    let (client, url, host) = http_client(probe, url)?;
    let mut headers = HeaderMap::new();
    for (name, values) in &probe.header {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
        for value in values {
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
            headers.append(&name, value);
        }
    }
    let user_agent = HeaderValue::from_static(CHECK_USER_AGENT);
    headers.entry(USER_AGENT).or_insert(user_agent);
    let accept = HeaderValue::from_static("text/plain, text/*, */*");
    headers.entry(ACCEPT).or_insert(accept);
    if let Some(host) = host {
        headers.entry(HOST).or_insert(host);
    }
    let mut request = client.request(verb, url).headers(headers);
    if !probe.body.is_empty() {
        request = request.body(probe.body.clone());
    }

    let mut response = match timeout_at(deadline, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => {
            // A refused or unreachable socket reads as Go's dial error; anything else (DNS, TLS)
            // as the chain of causes.
            let os_error = io_cause(&err).filter(|e| e.raw_os_error().is_some());
            return Err(match os_error {
                Some(os) if err.is_connect() => {
                    format!("dial tcp {dial_addr}: connect: {}", io_text(os))
                }
                _ => describe_error("", &err),
            });
        }
        Err(_) => {
            let text = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)";
            return Err(text.into());
        }
    };
    // A body cut short by the deadline still yields a result from the status code, as in Consul.
    let (mut tail, mut truncated) = (Vec::new(), false);
    while let Ok(Ok(Some(chunk))) = timeout_at(deadline, response.chunk()).await {
        tail.extend_from_slice(&chunk);
        if tail.len() > OUTPUT_MAX_SIZE {
            tail.drain(..tail.len() - OUTPUT_MAX_SIZE);
            truncated = true;
        }
    }
    if truncated {
        // Do not start the kept tail in the middle of a UTF-8 character.
        let partial = tail.iter().take(3).take_while(|b| (**b & 0xC0) == 0x80);
        tail.drain(..partial.count());
    }
    let body = String::from_utf8_lossy(&tail).into_owned();
    Ok((response.status(), body))
}

/// The client for one HTTP probe, the URL to request and a Host header to send.
///
/// reqwest takes SNI and the verified name from the URL host, so a TLSServerName is applied by
/// requesting the URL under that name, resolving that name to the real host, and sending the
/// real host as Host (as Go's `tls.Config.ServerName` leaves Host alone).
fn http_client(
    probe: &HttpProbe,
    url: Url,
) -> Result<(reqwest::Client, Url, Option<HeaderValue>), String> {
    static BASE: [OnceLock<Result<reqwest::Client, String>>; 2] =
        [OnceLock::new(), OnceLock::new()];
    type Renamed = HashMap<(String, String, bool), reqwest::Client>;
    static RENAMED: OnceLock<Mutex<Renamed>> = OnceLock::new();

    let skip = probe.tls_skip_verify;
    let name = probe.tls_server_name.trim();
    let host = url.host_str().unwrap_or_default();
    let real_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    // An IP literal cannot be routed through a resolver, so such a TLSServerName is not applied.
    if name.is_empty()
        || url.scheme() != "https"
        || real_host.is_empty()
        || name.eq_ignore_ascii_case(&real_host)
        || name.parse::<IpAddr>().is_ok()
    {
        let base = BASE[usize::from(skip)]
            .get_or_init(|| http_builder(skip).build().map_err(|e| e.to_string()));
        return base.clone().map(|client| (client, url, None));
    }

    let authority = match url.port() {
        Some(port) => host_port(host, port),
        None => host.to_owned(),
    };
    let host = HeaderValue::from_str(&authority).ok();
    let mut renamed = url;
    renamed
        .set_host(Some(name))
        .map_err(|e| format!("invalid TLSServerName {name:?}: {e}"))?;
    let alias = renamed.host_str().unwrap_or(name).to_owned();
    let key = (alias.clone(), real_host.clone(), skip);
    let cache = RENAMED.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(client) = cache.get(&key) {
        return Ok((client.clone(), renamed, host));
    }
    let resolver = Arc::new(AliasResolver { alias, real_host });
    let client = http_builder(skip).dns_resolver(resolver).build();
    let client = client.map_err(|e| e.to_string())?;
    cache.insert(key, client.clone());
    Ok((client, renamed, host))
}

fn http_builder(skip_verify: bool) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(skip_verify)
        // Lookups through the shared resolver: one per name in flight, a few at once.
        .dns_resolver(Arc::new(AliasResolver::default()))
        // Keep-alive, unlike Consul's checker: a connection per run left a socket in TIME_WAIT
        // per run (tens of thousands at a thousand checks). A dead target still shows: its
        // kernel closes the pooled connection, and the run dials again and is refused.
        .pool_idle_timeout(HTTP_IDLE)
        // A health check probes its target directly, whatever proxy the registry's env names.
        .no_proxy()
}

/// Resolves names through the probes' shared [`Resolver`]; with an alias, the TLSServerName that
/// a URL was renamed to resolves to the real host, and other names (redirect targets) normally.
#[derive(Default)]
struct AliasResolver {
    alias: String,
    real_host: String,
}

impl Resolve for AliasResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let renamed = !self.alias.is_empty() && name.as_str().eq_ignore_ascii_case(&self.alias);
        let host = if renamed {
            self.real_host.clone()
        } else {
            name.as_str().to_owned()
        };
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = Resolver::system()
                .resolve(&host, 0)
                .await
                .map_err(|e| format!("lookup {host}: {}", io_text(&e)))?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
