//! Mutual TLS to agents: the client configuration the mesh dials with (its CA, its own
//! certificate, reloaded when the files change) and the TLS handshake on a connection's socket,
//! verifying the certificate against the name of the beamline the instance belongs to (an
//! agent's certificate names its beamline's Consul service, never a pod address).
//!
//! Owns the handshake and what its failures mean; it must not open sockets (the connection does,
//! under its connect timeout) nor decide which names a certificate must carry (the contract's
//! `wire::tls` does).

use std::sync::Arc;
use std::time::Duration;

use beamline_contract::beamline::BeamlineId;
use beamline_contract::wire;
use beamline_tls::{client_config, ClientFiles, Reloading, TlsError};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How often the files are looked at: a renewed certificate is used by the next connection
/// within this.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// The mesh's TLS towards agents: what it trusts agents by, and the certificate it presents.
/// Cheap to clone; clones share one configuration, reloaded by [`UpstreamTls::watch`].
#[derive(Clone)]
pub struct UpstreamTls {
    config: Arc<Reloading<rustls::ClientConfig>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Reads `files` now (an error names the flag that gave the bad file: a start-up error).
    pub fn from_files(files: ClientFiles) -> Result<UpstreamTls, TlsError> {
        let paths = files.paths();
        let config = Reloading::new("upstream TLS (mesh to agents)", paths, move || {
            client_config(&files, &[b"h2"])
        })?;
        Ok(UpstreamTls { config })
    }

    /// Looks at the files every `every` and rebuilds the configuration when they change, for
    /// as long as a clone of this lives (call inside a Tokio runtime).
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        self.config.watch(every)
    }

    /// Looks at the files once now; `Ok(true)` when new ones are in use.
    pub fn refresh(&self) -> Result<bool, TlsError> {
        self.config.refresh()
    }

    /// How to dial an instance of `beamline`.
    pub(crate) fn dial(&self, beamline: &BeamlineId) -> TlsDial {
        TlsDial {
            config: self.config.clone(),
            name: wire::tls::agent_name(beamline),
        }
    }
}

/// TLS for the connections to the instances of one beamline.
#[derive(Clone)]
pub(crate) struct TlsDial {
    config: Arc<Reloading<rustls::ClientConfig>>,
    /// The name the instance's certificate must carry.
    name: String,
}

/// The handshake failed: the instance cannot have seen a request.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed")]
pub struct HandshakeFailed {
    #[source]
    source: std::io::Error,
}

impl HandshakeFailed {
    /// As an I/O error, the shape the connection keeps its connect failures in.
    pub(super) fn io(source: std::io::Error) -> std::io::Error {
        std::io::Error::other(HandshakeFailed { source })
    }
}

impl TlsDial {
    /// TLS over `tcp`, with the configuration in use now (a renewal is taken by the next call).
    pub(super) async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(self.name.clone()).map_err(|e| {
            HandshakeFailed::io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a DNS name: {e}", self.name),
            ))
        })?;
        TlsConnector::from(self.config.current())
            .connect(name, tcp)
            .await
            .map_err(HandshakeFailed::io)
    }
}

/// Whether `error` is the instance refusing this end's certificate (or its absence). In TLS 1.3
/// the client's half of the handshake ends before the server has checked the client's
/// certificate, so the refusal arrives as an alert on the first read, where HTTP/2 reports it;
/// the instance processed nothing.
pub(super) fn refused_our_certificate(error: &h2::Error) -> bool {
    use rustls::AlertDescription as A;
    const REFUSALS: [A; 9] = [
        A::CertificateRequired,
        A::BadCertificate,
        A::UnsupportedCertificate,
        A::CertificateRevoked,
        A::CertificateExpired,
        A::CertificateUnknown,
        A::UnknownCA,
        A::AccessDenied,
        A::HandshakeFailure,
    ];
    let Some(io) = error.get_io() else {
        return false;
    };
    if let Some(rustls::Error::AlertReceived(alert)) =
        io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return REFUSALS.contains(alert);
    }
    // h2 hands its streams the connection's I/O error as text only: compare with rustls's own
    // rendering of the alert.
    let text = io.to_string();
    REFUSALS
        .iter()
        .any(|alert| text == rustls::Error::AlertReceived(*alert).to_string())
}

#[cfg(test)]
mod tests;
