//! Dialling a gRPC address from the command line: the address as a flag gives it (HOST:PORT or
//! an http(s) URL), TLS with `--ca-cert` or the web roots for https://, the connect timeout, and
//! the `authorization: Bearer …` value of `--token`. Shared by `call` and the control commands
//! (`halt`, `resume`, `lock`, `unlock`), so both reach a gateway the same way.
//!
//! Owns turning those flags into a connected channel; it must not choose a target nor know what
//! is called.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::error_chain;

/// Where gateway commands go when no `--gateway` is given (the architecture's front door).
pub(in crate::cli) const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

/// Why no channel: the flags (exit as a usage-like error) or the peer (UNAVAILABLE).
pub(in crate::cli) enum DialError {
    Flags(anyhow::Error),
    Unreachable(tonic::Status),
}

impl From<anyhow::Error> for DialError {
    fn from(e: anyhow::Error) -> Self {
        DialError::Flags(e)
    }
}

/// `host:port`, `http://host:port` or `https://host:port` → a gRPC URI; `flag` names it in
/// errors.
pub(in crate::cli) fn grpc_uri(addr: &str, flag: &str) -> anyhow::Result<String> {
    let addr = addr.trim().trim_end_matches('/');
    let uri = match addr.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => addr.to_string(),
        Some(_) => anyhow::bail!("{flag} {addr}: expected HOST:PORT or http://HOST:PORT"),
        None if addr.is_empty() => anyhow::bail!("{flag} is empty"),
        None => format!("http://{addr}"),
    };
    // Parse now so a typo is reported as a flag error, not as a connection failure.
    uri.parse::<http::Uri>()
        .ok()
        .filter(|u| u.port_u16().is_some() && u.path() == "/")
        .with_context(|| format!("{flag} {addr}: expected HOST:PORT or http://HOST:PORT"))?;
    Ok(uri)
}

/// The `authorization` value for `--token` (an API key or a JWT).
pub(in crate::cli) fn bearer(token: Option<&str>) -> anyhow::Result<Option<AsciiMetadataValue>> {
    token
        .map(|token| {
            format!("Bearer {}", token.trim())
                .parse()
                .map_err(|_| anyhow::anyhow!("--token is not valid ASCII metadata"))
        })
        .transpose()
}

/// Connects to `uri` within `timeout`, trusting `ca_cert` (or the web roots) for https://.
pub(in crate::cli) async fn dial(
    uri: &str,
    ca_cert: Option<&Path>,
    timeout: Duration,
) -> Result<Channel, DialError> {
    let mut endpoint = Endpoint::from_shared(uri.to_string())
        .with_context(|| format!("{uri} is not a valid address"))?
        .connect_timeout(timeout);
    if uri.starts_with("https://") {
        let tls = match ca_cert {
            Some(path) => {
                let pem =
                    std::fs::read(path).with_context(|| format!("--ca-cert {}", path.display()))?;
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(pem))
            }
            None => tonic::transport::ClientTlsConfig::new().with_webpki_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS settings for {uri}"))?;
    }
    // connect_timeout bounds the TCP connect; the outer timeout bounds connect() as a whole.
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(DialError::Unreachable(tonic::Status::unavailable(format!(
            "cannot connect to {uri}: {}",
            error_chain(&e)
        )))),
        Err(_) => Err(DialError::Unreachable(tonic::Status::unavailable(format!(
            "cannot connect to {uri}: no connection within {timeout:?}"
        )))),
    }
}

/// How much later than the client the server is told to give up (`grpc-timeout`): tonic's
/// channel also enforces it, reporting it as CANCELLED; the margin lets [`bounded`] fire first
/// with the truthful DEADLINE_EXCEEDED.
pub(in crate::cli) const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// `call` with a client-side deadline: `grpc-timeout` only tells the server, and a peer that
/// accepted the TCP connection but never speaks HTTP/2 would otherwise hold us forever.
pub(in crate::cli) async fn bounded<T>(
    deadline: Duration,
    what: &str,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let expired =
        || tonic::Status::deadline_exceeded(format!("no answer to {what} within {deadline:?}"));
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| Err(expired()))
}
