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

use crate::registry::model::CheckStatus;

/// Consul's OutputMaxSize default; like Consul's ring buffer, the *last* bytes of a body are kept.
const OUTPUT_MAX_SIZE: usize = 4096;
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

impl ProbeResult {
    fn new(status: CheckStatus, output: String) -> Self {
        ProbeResult { status, output }
    }

    fn critical(output: String) -> Self {
        Self::new(CheckStatus::Critical, output)
    }
}

/// 2xx passing, 429 warning, anything else (or no answer within `timeout`) critical.
pub async fn http(probe: &HttpProbe, timeout: Duration) -> ProbeResult {
    let deadline = deadline_after(timeout);
    let method = if probe.method.is_empty() {
        "GET"
    } else {
        probe.method.as_str()
    };
    // Go's url.Error spelling ("Get", "Post"), which is what Consul's outputs start with.
    let op = match method.split_at_checked(1) {
        Some((first, rest)) => format!("{first}{}", rest.to_ascii_lowercase()),
        None => method.to_owned(),
    };
    let fail = |err: String| ProbeResult::critical(format!("{op} {:?}: {err}", probe.url));

    let Ok(verb) = Method::from_bytes(method.as_bytes()) else {
        return ProbeResult::critical(format!("net/http: invalid method {method:?}"));
    };
    let url = match Url::parse(&probe.url) {
        Ok(url) => url,
        Err(err) => return ProbeResult::critical(format!("parse {:?}: {err}", probe.url)),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return fail(format!("unsupported protocol scheme {:?}", url.scheme()));
    }
    let (client, url, host) = match http_client(probe, url) {
        Ok(found) => found,
        Err(err) => return fail(err),
    };

    let mut headers = HeaderMap::new();
    for (name, values) in &probe.header {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            return fail(format!("net/http: invalid header field name {name:?}"));
        };
        for value in values {
            let Ok(value) = HeaderValue::from_str(value) else {
                return fail(format!("net/http: invalid header field value for {name:?}"));
            };
            headers.append(name.clone(), value);
        }
    }
    headers
        .entry(USER_AGENT)
        .or_insert(HeaderValue::from_static(CHECK_USER_AGENT));
    headers
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static("text/plain, text/*, */*"));
    if let Some(host) = host {
        headers.entry(HOST).or_insert(host);
    }

    let mut request = client.request(verb, url).headers(headers);
    if !probe.body.is_empty() {
        request = request.body(probe.body.clone());
    }
    let mut response = match timeout_at(deadline, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => return fail(describe_error(&err)),
        Err(_) => {
            return fail(
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".into(),
            )
        }
    };

    // A body cut short by the deadline still yields a result from the status code, as in Consul.
    let mut tail: Vec<u8> = Vec::new();
    let mut truncated = false;
    while let Ok(Ok(Some(chunk))) = timeout_at(deadline, response.chunk()).await {
        tail.extend_from_slice(&chunk);
        if tail.len() > OUTPUT_MAX_SIZE {
            tail.drain(..tail.len() - OUTPUT_MAX_SIZE);
            truncated = true;
        }
    }
    if truncated {
        // Do not start the kept tail in the middle of a UTF-8 character.
        let skip = tail
            .iter()
            .take(3)
            .take_while(|b| (**b & 0xC0) == 0x80)
            .count();
        tail.drain(..skip);
    }

    let code = response.status();
    let reason = code.canonical_reason().unwrap_or("");
    let status = match code.as_u16() {
        200..=299 => CheckStatus::Passing,
        429 => CheckStatus::Warning,
        _ => CheckStatus::Critical,
    };
    let output = format!(
        "HTTP {method} {}: {} {reason} Output: {}",
        probe.url,
        code.as_u16(),
        String::from_utf8_lossy(&tail)
    );
    ProbeResult::new(status, output)
}

/// Passing when a TCP connection to `addr` (`host:port`) opens within `timeout`.
pub async fn tcp(addr: &str, timeout: Duration) -> ProbeResult {
    match timeout_at(deadline_after(timeout), dial(addr)).await {
        Ok(Ok(_stream)) => {
            ProbeResult::new(CheckStatus::Passing, format!("TCP connect {addr}: Success"))
        }
        Ok(Err(err)) => ProbeResult::critical(err),
        Err(_) => ProbeResult::critical(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// grpc.health.v1 Check; SERVING is passing, any other status or error critical.
pub async fn grpc(probe: &GrpcProbe, timeout: Duration) -> ProbeResult {
    let deadline = deadline_after(timeout);
    let target = probe.target.as_str();
    let (server, service) = target.split_once('/').unwrap_or((target, ""));
    match timeout_at(deadline, grpc_check(probe, server, service, deadline)).await {
        Ok(Ok(status)) if status == ServingStatus::Serving as i32 => ProbeResult::new(
            CheckStatus::Passing,
            format!("gRPC check {target}: success"),
        ),
        Ok(Ok(status)) => {
            let name = ServingStatus::try_from(status)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_else(|_| status.to_string());
            ProbeResult::critical(format!("gRPC {target} serving status: {name}"))
        }
        Ok(Err(err)) => ProbeResult::critical(err),
        Err(_) => ProbeResult::critical(
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded".into(),
        ),
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
    static PLAIN: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    static INSECURE: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    static RENAMED: OnceLock<Mutex<HashMap<(String, String, bool), reqwest::Client>>> =
        OnceLock::new();

    let skip = probe.tls_skip_verify;
    let name = probe.tls_server_name.trim();
    let real_host = url.host_str().unwrap_or("");
    let real_host = real_host
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
        let base = if skip { &INSECURE } else { &PLAIN };
        let client = base.get_or_init(|| http_builder(skip).build().map_err(|e| e.to_string()));
        return client.clone().map(|client| (client, url, None));
    }

    let authority = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
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
    let client = http_builder(skip)
        .dns_resolver(resolver)
        .build()
        .map_err(|e| e.to_string())?;
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

/// An error and its causes on one line, without the wrapper layers' repeats of the same text.
fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = match cause.downcast_ref::<std::io::Error>() {
            Some(io) if io.get_ref().is_none() => io_text(io),
            _ => cause.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

/// "connection refused" rather than "Connection refused (os error 111)", as Go prints it.
fn io_text(err: &std::io::Error) -> String {
    if err.kind() == std::io::ErrorKind::TimedOut {
        return "i/o timeout".into();
    }
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
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
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, rest) = rest.split_once(']').ok_or("missing ']' in address")?;
        (
            host,
            rest.strip_prefix(':').ok_or("missing port in address")?,
        )
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or("missing port in address")?;
        if host.contains(':') {
            return Err("too many colons in address");
        }
        (host, port)
    };
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
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            format!(
                "rpc error: code = Unavailable desc = connection error: desc = {:?}",
                describe_error(&e)
            )
        })?;

    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    // Lets the server give up too, as grpc-go does with the context deadline.
    request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    match HealthClient::new(channel).check(request).await {
        Ok(response) => Ok(response.into_inner().status),
        Err(status) => Err(format!(
            "rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        )),
    }
}

/// One rustls config per skip-verify flag; well-known roots (webpki-roots, as reqwest uses)
/// stand in for the system roots that Consul's Go agent would use.
fn tls_config(skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
    static VERIFY: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    static SKIP: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let cell = if skip_verify { &SKIP } else { &VERIFY };
    cell.get_or_init(|| {
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
            let roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
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
