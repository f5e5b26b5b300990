//! One run of an HTTP, TCP or gRPC health check against its target, turned into a Consul check
//! status and an Output text shaped like the one a Consul agent writes.
//!
//! Owns the network side of a check only: scheduling, thresholds (SuccessBeforePassing,
//! FailuresBeforeCritical) and state changes belong to the check runner, not here.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, HOST, USER_AGENT};
use reqwest::{Method, Url};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::registry::model::CheckStatus::{self, Critical, Passing, Warning};

/// Consul's OutputMaxSize default; like Consul's ring buffer, the *last* bytes of a body are kept.
const OUTPUT_MAX_SIZE: usize = 4096;
/// grpc-go's text for a check that ran out of time, which is what Consul shows.
const DEADLINE_EXCEEDED: &str =
    "rpc error: code = DeadlineExceeded desc = context deadline exceeded";
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

/// What a gRPC check calls: `host:port` or `host:port/service` (Consul's `GRPC` field).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrpcProbe {
    pub target: String,
    pub use_tls: bool,
    pub tls_server_name: String,
    pub tls_skip_verify: bool,
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub status: CheckStatus,
    pub output: String,
}

fn done(status: CheckStatus, output: String) -> ProbeResult {
    ProbeResult { status, output }
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
    let dial_addr = format!("{}:{port}", url.host_str().unwrap_or_default());
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
            let os_error = std::iter::successors(std::error::Error::source(&err), |&e| e.source())
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .find(|e| e.raw_os_error().is_some());
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

/// Passing when a TCP connection to `addr` (`host:port`) opens within `timeout`.
pub async fn tcp(addr: &str, timeout: Duration) -> ProbeResult {
    match timeout_at(deadline_after(timeout), dial(addr)).await {
        Ok(Ok(_stream)) => done(Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(err)) => done(Critical, err),
        Err(_) => done(Critical, format!("dial tcp {addr}: i/o timeout")),
    }
}

/// grpc.health.v1 Check; SERVING is passing, any other status or error critical.
pub async fn grpc(probe: &GrpcProbe, timeout: Duration) -> ProbeResult {
    let deadline = deadline_after(timeout);
    let target = probe.target.as_str();
    let (server, service) = target.split_once('/').unwrap_or((target, ""));
    match timeout_at(deadline, grpc_check(probe, server, service, deadline)).await {
        Ok(Ok(status)) if status == ServingStatus::Serving as i32 => {
            done(Passing, format!("gRPC check {target}: success"))
        }
        Ok(Ok(status)) => {
            let name = ServingStatus::try_from(status)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_else(|_| status.to_string());
            done(Critical, format!("gRPC {target} serving status: {name}"))
        }
        Ok(Err(err)) => done(Critical, err),
        Err(_) => done(Critical, DEADLINE_EXCEEDED.into()),
    }
}

/// `Instant + Duration` panics on overflow, and a check's timeout is user input.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or(now + Duration::from_secs(365 * 24 * 3600))
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
        Some(port) => format!("{host}:{port}"),
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
        // Consul disables keep-alives: each run must open a connection, so a dead listener shows.
        .pool_max_idle_per_host(0)
        // A health check probes its target directly, whatever proxy the registry's env names.
        .no_proxy()
}

/// Resolves the TLSServerName that a URL was renamed to back to the real host; other names
/// (redirect targets) resolve normally.
struct AliasResolver {
    alias: String,
    real_host: String,
}

impl Resolve for AliasResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = if name.as_str().eq_ignore_ascii_case(&self.alias) {
            self.real_host.clone()
        } else {
            name.as_str().to_owned()
        };
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| format!("lookup {host}: {}", io_text(&e)))?
                .collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// `head` (if any) and the error's causes on one line, without the wrapper layers' repeats of
/// the same text.
fn describe_error(head: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Some(head.to_owned())
        .filter(|h| !h.is_empty())
        .into_iter()
        .collect();
    for cause in std::iter::successors(err.source(), |&e| e.source()) {
        let text = match cause.downcast_ref::<std::io::Error>() {
            Some(io) if io.get_ref().is_none() => io_text(io),
            _ => cause.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        return err.to_string();
    }
    parts.join(": ")
}

/// "connection refused" rather than "Connection refused (os error 111)", as Go prints it.
fn io_text(err: &std::io::Error) -> String {
    if err.kind() == std::io::ErrorKind::TimedOut {
        return "i/o timeout".into();
    }
    let text = err.to_string();
    text.split(" (os error")
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

/// Go's `net.Dial("tcp", addr)`: each resolved address in turn; the first failure is reported.
async fn dial(addr: &str) -> Result<TcpStream, String> {
    let (host, port) =
        split_host_port(addr).map_err(|e| format!("dial tcp: address {addr}: {e}"))?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("dial tcp: lookup {host}: {}", io_text(&e)))?
        .collect();
    let mut first_err = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                first_err.get_or_insert(format!("dial tcp {addr}: connect: {}", io_text(&e)));
            }
        }
    }
    Err(first_err.unwrap_or_else(|| format!("dial tcp: lookup {host}: no such host")))
}

fn split_host_port(addr: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = match addr.strip_prefix('[') {
        Some(rest) => rest
            .split_once("]:")
            .ok_or("missing ']' or port in address")?,
        None => addr.rsplit_once(':').ok_or("missing port in address")?,
    };
    if !addr.starts_with('[') && host.contains(':') {
        return Err("too many colons in address");
    }
    Ok((host, port.parse().map_err(|_| "invalid port")?))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects, then calls Check; the returned number is the raw ServingStatus.
async fn grpc_check(
    probe: &GrpcProbe,
    server: &str,
    service: &str,
    deadline: Instant,
) -> Result<i32, String> {
    let bad_target = |e: &dyn std::fmt::Display| format!("gRPC target {:?}: {e}", probe.target);
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("http://{server}"))
        .map_err(|e| bad_target(&e))?;
    let tls = if probe.use_tls {
        // TLS is done in the connector below rather than by tonic's ClientTlsConfig, which can
        // neither skip verification nor fall back to well-known roots without more features.
        let origin = format!("https://{server}")
            .parse()
            .map_err(|e| bad_target(&e))?;
        endpoint = endpoint.origin(origin);
        let name = if probe.tls_server_name.is_empty() {
            split_host_port(server)
                .map(|(host, _)| host)
                .unwrap_or(server)
        } else {
            probe.tls_server_name.as_str()
        };
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| format!("gRPC TLSServerName {name:?}: {e}"))?;
        Some((tls_config(probe.tls_skip_verify)?, name))
    } else {
        None
    };

    let server = server.to_owned();
    let connector = tower::service_fn(move |_: http::Uri| {
        let (server, tls) = (server.clone(), tls.clone());
        async move {
            let tcp = dial(&server)
                .await
                .map_err(|e| format!("transport: Error while dialing: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some((config, name)) => Box::new(
                    tokio_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("transport: authentication handshake failed: {e}"))?,
                ),
            };
            Ok::<_, String>(TokioIo::new(io))
        }
    });
    let connected = endpoint.connect_with_connector(connector).await;
    let channel = connected.map_err(|e| {
        let desc = describe_error("", &e);
        format!("rpc error: code = Unavailable desc = connection error: desc = {desc:?}")
    })?;

    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    // Lets the server give up too, as grpc-go does with the context deadline.
    request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    match HealthClient::new(channel).check(request).await {
        Ok(response) => Ok(response.into_inner().status),
        // tonic enforces the grpc-timeout too, as Cancelled; report it as grpc-go does.
        Err(_) if Instant::now() >= deadline => Err(DEADLINE_EXCEEDED.into()),
        // A status made from a transport failure keeps the cause only as its source.
        Err(status) => {
            let (code, desc) = (status.code(), describe_error(status.message(), &status));
            Err(format!("rpc error: code = {code:?} desc = {desc}"))
        }
    }
}

/// One rustls config per skip-verify flag; well-known roots (webpki-roots, as reqwest uses)
/// stand in for the system roots that Consul's Go agent would use.
fn tls_config(skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
    static CONFIGS: [OnceLock<Result<Arc<ClientConfig>, String>>; 2] =
        [OnceLock::new(), OnceLock::new()];
    CONFIGS[usize::from(skip_verify)]
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("gRPC TLS set-up: {e}"))?;
            let mut config = if skip_verify {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                    .with_no_client_auth()
            } else {
                let roots =
                    RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                builder.with_root_certificates(roots).with_no_client_auth()
            };
            // gRPC servers (grpc-go among them) refuse TLS connections that did not offer h2.
            config.alpn_protocols = vec![b"h2".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
}

/// TLSSkipVerify as Go means it: any certificate and name, but the handshake signatures must
/// still be made with the key of the certificate shown.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
