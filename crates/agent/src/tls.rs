//! Serving an agent over TLS (`--tls-cert`, `--tls-key`) and mutual TLS (`--client-ca`): the
//! rustls configuration, rebuilt when its files change (cert-manager renews them in place; the
//! next connection takes the new ones, open connections keep theirs), and the TLS handshake of
//! each connection the listener accepted, done concurrently and within the handshake timeout,
//! so a slow or refused client never delays another. A client whose certificate does not chain
//! to `--client-ca` (or that has none) fails the handshake and never reaches tonic.
//!
//! Owns the handshake between the bounded listener (`beamline-listen`) and tonic; reading and
//! checking key material is `beamline-tls`'s, who may call what is `identity`'s.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::StreamExt;

use beamline_listen::Conn;
use beamline_tls::{Reloading, ServerFiles, TlsError};

/// The ALPN an agent offers: gRPC is HTTP/2 only.
const ALPN: &[&[u8]] = &[b"h2"];
/// Handshaken connections waiting for tonic to take them.
const HANDOFF_QUEUE: usize = 64;

/// The agent's TLS configuration from `files`, following them; an error (a missing file, a key
/// that does not match the certificate) names the flag, for a start-up error.
pub fn server_tls(files: &ServerFiles) -> Result<Arc<Reloading<ServerConfig>>, TlsError> {
    let built_from = files.clone();
    Reloading::new("agent TLS", files.paths(), move || {
        beamline_tls::server_config(&built_from, ALPN)
    })
}

/// TLS connections over the listener's `accepted` ones, each handshaken with the configuration
/// current when it was accepted, within `timeout`; for tonic's `serve_with_incoming_shutdown`.
/// Dropping it stops the handshakes in progress and the listener.
pub fn incoming(
    accepted: beamline_listen::Incoming,
    config: Arc<Reloading<ServerConfig>>,
    timeout: Duration,
) -> TlsIncoming {
    let (handoff, taken) = mpsc::channel(HANDOFF_QUEUE);
    let task = tokio::spawn(handshakes(accepted, config, timeout, handoff));
    TlsIncoming {
        taken,
        task: task.abort_handle(),
    }
}

/// Handshaken TLS connections, for tonic.
#[derive(Debug)]
pub struct TlsIncoming {
    taken: mpsc::Receiver<TlsStream<Conn>>,
    task: AbortHandle,
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = Result<TlsStream<Conn>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.taken.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handshakes(
    mut accepted: beamline_listen::Incoming,
    config: Arc<Reloading<ServerConfig>>,
    timeout: Duration,
    handoff: mpsc::Sender<TlsStream<Conn>>,
) {
    // Aborted with this task: a connection still handshaking when serving stops is closed.
    let mut handshaking = JoinSet::new();
    loop {
        let conn = tokio::select! {
            conn = accepted.next() => match conn {
                Some(Ok(conn)) => conn,
                Some(Err(never)) => match never {},
                None => return,
            },
            Some(_) = handshaking.join_next(), if !handshaking.is_empty() => continue,
            () = handoff.closed() => return,
        };
        // Per connection: a renewed certificate is used from the next one on.
        let acceptor = TlsAcceptor::from(config.current());
        let handoff = handoff.clone();
        handshaking.spawn(async move {
            let peer = conn.peer();
            match tokio::time::timeout(timeout, acceptor.accept(conn)).await {
                Ok(Ok(tls)) => {
                    // Fails only when tonic has stopped taking connections: then it closes.
                    let _ = handoff.send(tls).await;
                }
                // A client without an acceptable certificate ends here, before any gRPC.
                Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(?peer, ?timeout, "no TLS handshake in time: closed"),
            }
        });
    }
}

#[cfg(test)]
mod tests;
