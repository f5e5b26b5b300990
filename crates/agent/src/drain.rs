//! The drain state of an agent, as a tower layer in front of its gRPC services: once draining,
//! a new Execute is refused with UNAVAILABLE in a trailers-only response carrying
//! `x-beamline-not-started: true` (the caller knows the task never started and may send it to
//! another instance), while every other call keeps being served. An Execute that carries an
//! idempotency key is let through, because it may be the retry of a task this instance already
//! runs: the task table answers it with that task, or refuses it as not started if it is new. The layer also counts
//! BeamlineAgent calls in flight — until their response body ends — so shutdown can wait for them.
//!
//! Owns the refusal and the count; when to start draining and how long to wait are the runtime's.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tower::{Layer, Service};

use beamline_contract::wire::Rpc;
pub use beamline_contract::wire::NOT_STARTED_KEY;

/// Shared drain state; clones see the same state.
#[derive(Clone)]
pub struct Drain {
    inner: Arc<Inner>,
}

struct Inner {
    draining: AtomicBool,
    in_flight: watch::Sender<usize>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            inner: Arc::new(Inner {
                draining: AtomicBool::new(false),
                in_flight: watch::channel(0).0,
            }),
        }
    }
}

impl Drain {
    /// From now on, new Execute calls are refused.
    pub fn start(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        *self.inner.in_flight.borrow()
    }

    /// Resolves when no BeamlineAgent call is in flight.
    pub async fn settled(&self) {
        let mut rx = self.inner.in_flight.subscribe();
        // The sender lives in `self`, so wait_for cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    fn track(&self) -> InFlight {
        self.inner.in_flight.send_modify(|n| *n += 1);
        InFlight(self.inner.clone())
    }
}

/// One call in flight; dropping it (when the response body ends) counts it out.
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The refusal a draining agent sends for Execute.
pub fn not_started_status() -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(
        NOT_STARTED_KEY,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    Status::with_metadata(
        Code::Unavailable,
        "agent is draining; the task was not started",
        metadata,
    )
}

impl<S> Layer<S> for Drain {
    type Service = DrainService<S>;
    fn layer(&self, inner: S) -> DrainService<S> {
        DrainService {
            inner,
            drain: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct DrainService<S> {
    inner: S,
    drain: Drain,
}

/// A request body the layer can read and rebuild (tonic's own body type).
pub trait Replayable: HttpBody<Data = Bytes> + Send + 'static {
    fn from_bytes(bytes: Bytes) -> Self;
}

impl Replayable for Body {
    fn from_bytes(bytes: Bytes) -> Self {
        Body::new(http_body_util::Full::new(bytes))
    }
}

/// Whether one gRPC-framed ExecuteRequest has a non-empty idempotency key. A compressed or
/// malformed frame counts as "no key": it is refused like any new work.
fn carries_idempotency_key(frame: &[u8]) -> bool {
    use prost::Message;
    let Some((&[0, ..], message)) = frame.split_at_checked(5) else {
        return false;
    };
    beamline_contract::proto::ExecuteRequest::decode(message)
        .is_ok_and(|r| !r.idempotency_key.is_empty())
}

impl<S, B> Service<http::Request<B>> for DrainService<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Replayable,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        // Every BeamlineAgent call is counted (an unknown method too, until it is answered).
        if !path.starts_with(Rpc::PATH_PREFIX) {
            return Box::pin(self.inner.call(request));
        }
        let guard = self.drain.track();
        if path == Rpc::Execute.path() && self.drain.is_draining() {
            let mut inner = self.inner.clone();
            return Box::pin(async move {
                let (parts, body) = request.into_parts();
                let Ok(collected) = body.collect().await else {
                    return Ok(not_started_status().into_http());
                };
                let bytes = collected.to_bytes();
                if !carries_idempotency_key(&bytes) {
                    return Ok(not_started_status().into_http());
                }
                let request = http::Request::from_parts(parts, B::from_bytes(bytes));
                let response = inner.call(request).await?;
                Ok(response.map(|body| {
                    Body::new(Tracked {
                        inner: body,
                        _guard: guard,
                    })
                }))
            });
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|body| {
                Body::new(Tracked {
                    inner: body,
                    _guard: guard,
                })
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call counted until it ends or is dropped.
    struct Tracked {
        #[pin]
        inner: Body,
        _guard: InFlight,
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
