//! The metrics listener's connections (`--metrics-listen`), within [`ConnectionLimits`]: at
//! most `max_connections` open at once (one more is answered `503 Service Unavailable` and
//! closed at once, with a rate-limited WARN naming the cap, rather than queued); a header-read
//! timeout (a request's head must arrive in time — a client that sends nothing, or part of a
//! request and stops, slowloris, is closed; hyper starts this timer whenever it waits for a
//! request, so a keep-alive connection waiting for its next one is closed after it too); and an
//! idle timeout (no bytes either way — a response its client does not read — and it is closed).
//! Accept errors (out of descriptors, say) are logged, rate-limited, and retried after a pause.
//! HTTP/1.1 only, as axum served it before.
//!
//! Owns connections from accept() to close; what is served on them is the router's (`status`).
//! The cap and the descriptor limit it is logged with come from `beamline-listen`, which bounds
//! the gRPC listeners the same way; it must not route or answer requests itself.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What a connection past the cap reads before it is closed.
pub(super) const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// Pause after a failed accept, so the loop does not spin while descriptors are short.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one WARN line per period about refused connections, and one about accept errors.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The bounds of the metrics listener. The gateway's own descriptor reserve counts this
/// listener's connections, so the cap is small: scrapers and operators' pages, not callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's head (request line and headers) must arrive within this, from the moment
    /// the connection waits for it.
    pub header_read_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; one more is refused with a 503.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 64,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`; then stops accepting, lets
/// each connection finish the request it is answering, and returns when all have closed.
pub async fn serve_within(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    let refused = log_limit();
    let failed = log_limit();
    let mut held_back = (0u64, 0u64);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if failed.check().is_ok() {
                    let nofile = beamline_listen::nofile_limit().map_or(0, |(soft, _)| soft);
                    let held_back = std::mem::take(&mut held_back.1);
                    tracing::error!(error = %e, nofile, held_back, "metrics listener: cannot accept a connection");
                } else {
                    held_back.1 += 1;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            // Best effort: the client may have sent nothing yet, or be gone already.
            let _ = tcp.try_write(REFUSED);
            if refused.check().is_ok() {
                let max_connections = limits.max_connections;
                let held_back = std::mem::take(&mut held_back.0);
                tracing::warn!(
                    %peer,
                    max_connections,
                    held_back,
                    "metrics listener: connection refused: {max_connections} connections open (the cap)"
                );
            } else {
                held_back.0 += 1;
            }
            continue;
        };
        connections.spawn(connection(tcp, router.clone(), limits, stop.clone(), place));
    }
    drop(listener);
    stop.cancel();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One WARN line per [`WARN_EVERY`].
fn log_limit() -> DefaultDirectRateLimiter {
    let quota = Quota::with_period(WARN_EVERY)
        .expect("a positive period")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

/// One connection, until its client closes it, a timeout does, or the listener stops;
/// `_place` is its place under the cap.
async fn connection(
    tcp: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
    _place: OwnedSemaphorePermit,
) {
    let start = Instant::now();
    let moved = Arc::new(AtomicU64::new(0));
    let io = Watched {
        inner: tcp,
        start,
        moved: Arc::clone(&moved),
    };
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        router.clone().oneshot(request)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = async {
        loop {
            let last = start + Duration::from_millis(moved.load(Ordering::Relaxed));
            let due = last + limits.idle_timeout;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    };
    tokio::pin!(idle);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "metrics listener: connection closed");
            }
            return;
        }
        () = &mut idle => {
            tracing::debug!(timeout = ?limits.idle_timeout, "metrics listener: idle connection closed");
            return;
        }
        () = stop.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    // Stopping: the request being answered finishes, within the idle timeout.
    tokio::select! {
        _ = conn.as_mut() => {}
        () = &mut idle => {}
    }
}

/// A connection's socket that notes when bytes last moved, either way (milliseconds since
/// `start`).
struct Watched {
    inner: TcpStream,
    start: Instant,
    moved: Arc<AtomicU64>,
}

impl Watched {
    fn note(&self, n: usize) {
        if n > 0 {
            let since = self.start.elapsed().as_millis();
            self.moved
                .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(buf.filled().len() - before);
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            self.note(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.note(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
