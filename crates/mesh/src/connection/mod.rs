//! The connection to one instance: one HTTP/2 connection (the `h2` crate, under hyper), opened
//! on first use and reopened after it breaks, over TCP or over mutual TLS (`dial`); how a call
//! on it fails is `error`. A call writes its request to the connection itself and awaits its
//! response itself; one task per connection drives the socket and its keepalive PINGs.
//!
//! Why not a tonic `Channel` or hyper's client: each hands a request to other tasks — a
//! `Channel`'s `tower::Buffer` worker; hyper's dispatch task, a task per request body and one
//! per response — and hyper's body task sends a request's headers and its message in two
//! writes. On a loopback call of ~120 µs those hand-offs were most of what the mesh and the
//! gateway added. Here a unary request is one write, and the socket task wakes the caller.
//! Readiness is not this module's business (the connection is always ready; the endpoint's
//! health gate decides), and neither is choosing an instance.

mod activity;
mod body;
mod dial;
mod drive;
mod error;

pub use activity::Sample;
use activity::{Activity, CallInFlight};
pub(crate) use dial::TlsDial;
pub use dial::{UpstreamTls, RELOAD_EVERY};
pub use error::{never_sent, ConnectionError};

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use h2::client::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::body::Body;
use tower::Service;

/// How a connection is opened and kept.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval, and how long an unanswered PING may wait before the connection
    /// is closed (a dead host that sends no RST is noticed within about twice this).
    pub http2_keepalive: Duration,
    /// While calls are in flight (the health watch aside), PINGs go out every quarter of this,
    /// and one unanswered this long closes the connection: a frozen instance (SIGSTOP: the
    /// socket accepts, nothing answers) fails its calls fast, its health watch ends, and its
    /// gate closes until it answers again.
    pub unresponsive_after: Duration,
}

impl ConnectionSettings {
    /// The pause before the next PING, and how long its answer may take, with `calls` calls in
    /// flight.
    fn ping_plan(&self, calls: usize) -> (Duration, Duration) {
        if calls > 0 {
            (self.unresponsive_after / 4, self.unresponsive_after)
        } else {
            (self.http2_keepalive, self.http2_keepalive)
        }
    }
}

/// A cheap-to-clone handle on the connection to one instance; clones share the connection.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

struct Shared {
    /// The instance's `host:port`: what is dialled and named in errors.
    origin: http::uri::Authority,
    settings: ConnectionSettings,
    /// TLS over the socket, or none (plaintext HTTP/2).
    tls: Option<TlsDial>,
    /// The open connection, if any; the fast path only locks this to clone the sender.
    open: Mutex<Option<Open>>,
    /// Serialises connecting; holds the last failed attempt, so that callers who waited on
    /// it share its answer instead of each trying again in turn.
    connecting: tokio::sync::Mutex<Option<Arc<std::io::Error>>>,
    /// Connect attempts finished (read before queueing on `connecting`).
    attempts: AtomicU64,
    /// Distinguishes connections, so a closing one never clears its successor.
    generations: AtomicU64,
    /// Calls started and in flight (the health watch aside), with their wake-ups.
    activity: Arc<Activity>,
}

#[derive(Clone)]
struct Open {
    sender: SendRequest<Bytes>,
    generation: u64,
}

impl Connection {
    /// A connection to `addr` (`host:port`), opened on the first call, over `tls` if given;
    /// `None` when `addr` is not an authority.
    pub fn new(
        addr: &str,
        settings: ConnectionSettings,
        tls: Option<TlsDial>,
    ) -> Option<Connection> {
        let origin = addr.parse::<http::uri::Authority>().ok()?;
        Some(Connection {
            shared: Arc::new(Shared {
                origin,
                settings,
                tls,
                open: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(None),
                attempts: AtomicU64::new(0),
                generations: AtomicU64::new(0),
                activity: Arc::default(),
            }),
        })
    }

    /// The calls started on this connection so far and those in flight now.
    pub fn activity(&self) -> Sample {
        self.shared.activity.sample()
    }

    /// Resolves once a call has started since `since` (a [`Sample::started`]).
    pub async fn resumed(&self, since: u64) {
        self.shared.activity.resumed(since).await
    }

    /// Lets the open connection go: it closes once the streams on it end (h2 sends GOAWAY when
    /// no handle and no stream is left), and the next call opens a new one.
    pub fn release(&self) {
        self.shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Sends `request` and returns its response head (the body streams on). The head is made
    /// ready for the instance before the future starts: the future, allocated per call, then
    /// carries it once (not as the request, its parts and the head, each at full size).
    fn send(
        self,
        request: http::Request<Body>,
    ) -> impl Future<Output = Result<http::Response<Body>, ConnectionError>> + Send + 'static {
        // The health watch is not a call: only calls count as traffic to watch over.
        let call =
            (!parts_is_health(request.uri())).then(|| CallInFlight::start(&self.shared.activity));
        let (mut parts, body) = request.into_parts();
        parts.uri = self.shared.target(&parts.uri);
        parts.version = http::Version::HTTP_2;
        strip_connection_headers(&mut parts.headers);
        let head = http::Request::from_parts(parts, ());
        // Written on the open connection (opened first if there is none), then the response
        // awaited: an `async` block, which uses what it captured in place (an `async fn` would
        // move its arguments into locals and hold both).
        async move {
            let shared = &self.shared;
            // A connection found closed before anything was written is replaced once. Opening
            // one (TCP, TLS, the h2 handshake) is a large future that a call on an open
            // connection never enters: boxed apart, so this future stays small on the hot path.
            let open = match shared.current() {
                Some(open) => open,
                None => Box::pin(shared.sender()).await?,
            };
            let mut sender = match open.sender.ready().await {
                Ok(sender) => sender,
                Err(_) => {
                    shared.forget(open.generation);
                    let open = Box::pin(shared.sender()).await?;
                    open.sender
                        .ready()
                        .await
                        .map_err(|source| shared.unsent(source))?
                }
            };
            let eos = http_body::Body::is_end_stream(&body);
            let (response, stream) = sender
                .send_request(head, eos)
                .map_err(|source| shared.refused(source))?;
            if !eos {
                body::send(body, stream).await;
            }
            let response = response.await.map_err(|source| shared.failed(source))?;
            Ok(response.map(|received| Body::new(body::Received::new(received, call))))
        }
    }
}

impl Shared {
    /// The request's path on this instance's origin.
    fn target(&self, uri: &http::Uri) -> http::Uri {
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(self.origin.clone());
        parts.path_and_query = Some(path);
        // Scheme, authority and a path: always a valid URI.
        http::Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
    }

    fn current(&self) -> Option<Open> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The open connection's sender, connecting first if there is none.
    async fn sender(self: &Arc<Self>) -> Result<Open, ConnectionError> {
        if let Some(open) = self.current() {
            return Ok(open);
        }
        let seen = self.attempts.load(Ordering::Acquire);
        let mut last_failure = self.connecting.lock().await;
        if let Some(open) = self.current() {
            return Ok(open);
        }
        if self.attempts.load(Ordering::Acquire) != seen {
            if let Some(source) = last_failure.clone() {
                return Err(self.connect_error(source));
            }
        }
        let result = self.connect().await;
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(open) => {
                *last_failure = None;
                *self.open.lock().unwrap_or_else(PoisonError::into_inner) = Some(open.clone());
                Ok(open)
            }
            Err(source) => {
                let source = Arc::new(source);
                *last_failure = Some(source.clone());
                Err(self.connect_error(source))
            }
        }
    }

    async fn connect(self: &Arc<Self>) -> std::io::Result<Open> {
        let opened = async {
            let tcp = TcpStream::connect(self.origin.as_str()).await?;
            // gRPC writes small frames; Nagle's algorithm would hold them for the peer's ACK.
            tcp.set_nodelay(true)?;
            match &self.tls {
                None => self.handshake(tcp).await,
                Some(tls) => self.handshake(tls.handshake(tcp).await?).await,
            }
        };
        let timeout = self.settings.connect_timeout;
        tokio::time::timeout(timeout, opened).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {timeout:?}"),
            )
        })?
    }

    /// HTTP/2 over `io`, and the task that drives it.
    async fn handshake<T>(self: &Arc<Self>, io: T) -> std::io::Result<Open>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(2 * 1024 * 1024)
            .initial_connection_window_size(5 * 1024 * 1024)
            .max_header_list_size(16 * 1024)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(std::io::Error::other)?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        tokio::spawn(drive::drive(connection, Arc::downgrade(self), generation));
        Ok(Open { sender, generation })
    }

    /// Drops the connection `generation` if it is still the current one.
    fn forget(&self, generation: u64) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.as_ref().is_some_and(|o| o.generation == generation) {
            *open = None;
        }
    }

    fn connect_error(&self, source: Arc<std::io::Error>) -> ConnectionError {
        ConnectionError::Connect {
            addr: self.origin.to_string(),
            source,
        }
    }

    fn unsent(&self, source: h2::Error) -> ConnectionError {
        if dial::refused_our_certificate(&source) {
            return self.refused_certificate(source);
        }
        ConnectionError::Unsent {
            addr: self.origin.to_string(),
            source,
        }
    }

    /// `send_request` failed: the connection's own error means nothing went out; a user error
    /// means this request cannot be written at all.
    fn refused(&self, source: h2::Error) -> ConnectionError {
        // h2's own errors carry a reason or an I/O error; the rest are misuse of the request.
        if dial::refused_our_certificate(&source) {
            self.refused_certificate(source)
        } else if source.reason().is_none() && !source.is_io() {
            ConnectionError::Request {
                addr: self.origin.to_string(),
                source,
            }
        } else {
            self.unsent(source)
        }
    }

    /// The instance refused this end's TLS certificate as the connection opened: nothing was
    /// processed, as if the connect had failed.
    fn refused_certificate(&self, source: h2::Error) -> ConnectionError {
        let io = source
            .into_io()
            .unwrap_or_else(|| std::io::Error::other("the instance refused the certificate"));
        self.connect_error(Arc::new(dial::HandshakeFailed::io(io)))
    }

    fn failed(&self, source: h2::Error) -> ConnectionError {
        if dial::refused_our_certificate(&source) {
            return self.refused_certificate(source);
        }
        ConnectionError::Stream {
            addr: self.origin.to_string(),
            source,
        }
    }
}

/// Whether a request is for the gRPC health service (the endpoint's Watch, held while the
/// endpoint is in use).
fn parts_is_health(uri: &http::Uri) -> bool {
    uri.path().starts_with("/grpc.health.v1.Health/")
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2); h2 refuses a request that carries one.
fn strip_connection_headers(headers: &mut http::HeaderMap) {
    for name in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::HeaderName::from_static("keep-alive"),
        http::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if headers
        .get(http::header::TE)
        .is_some_and(|te| te != "trailers")
    {
        headers.remove(http::header::TE);
    }
}

impl Service<http::Request<Body>> for Connection {
    type Response = http::Response<Body>;
    type Error = ConnectionError;
    type Future = BoxFuture<'static, Result<http::Response<Body>, ConnectionError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectionError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}

#[cfg(test)]
mod tests;
