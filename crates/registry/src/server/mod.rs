//! The registry's HTTP listener, plain or HTTPS: accepting connections, at most `max_connections` of them (one
//! past the cap is answered 503 and closed at once, with a log line, rather than queued), a
//! header-read timeout (a client that sends part of a request and stops — slowloris — is closed)
//! and an idle timeout (a keep-alive connection with no bytes and no request in flight is
//! closed; a pending blocking query is a request in flight). Accept errors (the descriptor limit
//! among them) are logged with their OS error and retried after a pause. With TLS, each
//! connection's handshake takes the configuration current when it was accepted (certificates
//! renewed in place serve new connections), and must finish within the header-read timeout; a
//! failed one is logged (rate-limited: a misconfigured client retries) and closed.
//!
//! Owns connections only; routing and answering requests are `http`'s. Defaults are in
//! [`Limits::default`]; `beamline-mesh registry` has a flag for each.

mod idle;

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use self::idle::Idle;
use crate::logs::chain;
use crate::Registry;

/// What one refused connection reads before it is closed.
const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// Pause after a failed accept (out of descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The listener's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's head (request line and headers) must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection with no bytes either way and no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; past it new ones are refused.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_connections: 4096,
        }
    }
}

/// The HTTPS configuration: rebuilt when its certificate, key or client CA files change.
pub type ServerTls = Arc<beamline_tls::Reloading<rustls::ServerConfig>>;

/// The HTTPS configuration of `--tls-cert`, `--tls-key` and `--client-ca` (with it, clients
/// must present a certificate chaining to it), built now: a bad file is a start-up error naming
/// its flag. Call [`beamline_tls::Reloading::watch`] to follow renewals.
pub fn https(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTls, beamline_tls::TlsError> {
    let files = beamline_tls::ServerFiles {
        cert: beamline_tls::PemFile::new("--tls-cert", cert),
        key: beamline_tls::PemFile::new("--tls-key", key),
        client_ca: client_ca.map(|ca| beamline_tls::PemFile::new("--client-ca", ca)),
    };
    beamline_tls::Reloading::new("registry TLS", files.paths(), move || {
        // HTTP/1.1 only: the listener serves nothing else.
        beamline_tls::server_config(&files, &[b"http/1.1"])
    })
}

/// Serves `app` on `listener` within `limits`, over TLS with `tls`, until the process ends.
pub async fn serve(
    registry: Arc<Registry>,
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<ServerTls>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if let Some(held_back) = registry.admit_log(false, "accept") {
                    let nofile = crate::rlimit::nofile_limit().map_or(0, |(soft, _)| soft);
                    tracing::error!(error = %chain(&e), nofile, held_back, "cannot accept a connection");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Best effort: the client may have sent nothing yet, or may be gone.
            let _ = tcp.try_write(REFUSED);
            if let Some(held_back) = registry.admit_log(false, "connection cap") {
                let max = limits.max_connections;
                tracing::warn!(%peer, max, held_back, "connection refused: --max-connections open");
            }
            continue;
        };
        // Blocking-query answers are single small writes; Nagle would hold them back.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        match &tls {
            None => {
                tokio::spawn(connection(tcp, app, limits, slot));
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
                let registry = Arc::clone(&registry);
                tokio::spawn(async move {
                    // The handshake holds the slot and is bounded like a request's head: a
                    // client that opens a connection and says nothing is closed as soon.
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp));
                    match handshake.await {
                        Ok(Ok(stream)) => connection(stream, app, limits, slot).await,
                        Ok(Err(e)) => {
                            if let Some(held_back) = registry.admit_log(false, "tls handshake") {
                                tracing::warn!(%peer, error = %chain(&e), held_back, "TLS handshake failed");
                            }
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
}

/// One connection, until the client closes it or a timeout does; `_slot` is its place under
/// the cap.
async fn connection<S>(stream: S, app: Router, limits: Limits, _slot: OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle = Arc::new(Mutex::new(Idle::new(Instant::now())));
    let io = Tracked {
        inner: stream,
        idle: Arc::clone(&idle),
    };
    let requests = Arc::clone(&idle);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(Arc::clone(&requests));
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(in_flight);
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let wake = if closing {
            None
        } else {
            let next = lock(&idle).next_check(Instant::now(), limits.idle_timeout);
            if next.is_none() {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            next
        };
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %chain(&e), "connection closed");
                }
                return;
            }
            _ = timer => {}
        }
    }
}

fn lock(idle: &Mutex<Idle>) -> std::sync::MutexGuard<'_, Idle> {
    idle.lock().unwrap_or_else(|e| e.into_inner())
}

/// A request being handled on a connection, from its head to its answer (or its cancellation).
struct InFlight(Arc<Mutex<Idle>>);

impl InFlight {
    fn start(idle: Arc<Mutex<Idle>>) -> InFlight {
        lock(&idle).request_started(Instant::now());
        InFlight(idle)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).request_ended(Instant::now());
    }
}

/// The connection's stream, noting each read or write that moved bytes.
struct Tracked<S> {
    inner: S,
    idle: Arc<Mutex<Idle>>,
}

impl<S> Tracked<S> {
    fn moved(&self, n: usize) {
        if n > 0 {
            lock(&self.idle).touch(Instant::now());
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.moved(buf.filled().len() - before);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            self.moved(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.moved(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
