//! Observing calls: the gateway's one call-end observer, [`ObserveLayer`], which records each
//! call once, when it ends — for a stream, when its trailers pass or its body is dropped — in
//! the metrics ([`GatewayMetrics`]) and as an access-log line ([`AccessLine`], one `tracing`
//! event, target `access`), emitted where the call ends or handed to a [`LineQueue`] that emits
//! it off the call's path (the gateway server's choice). One observer feeds both, so a response
//! body is wrapped once.
//!
//! Place it outermost, in front of authentication: it then sees every call, the refused ones
//! included. The caller comes from the response's extensions (the auth layer puts it there) or
//! the request's (if this layer runs after authentication); with neither it is "anonymous".
//!
//! Owns what is recorded of a call and when; the pieces live beside it: the metric families
//! and their recording (`metrics`), the metric handles kept per beamline label so a call builds
//! no label strings (`series`), a scrape's text (`exposition`), the log line (`access_log`)
//! and its queue (`line_queue`), one call's record and body (`record`), the beamline a Fleet
//! control RPC names in its message (`fleet_scope`). It must not refuse or change a call: it
//! only watches.

mod access_log;
mod exposition;
mod fleet_scope;
mod line_queue;
mod metrics;
mod record;
mod series;

pub use access_log::{AccessLine, TARGET};
pub use exposition::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
pub use line_queue::LineQueue;
pub use metrics::{CallEnd, CallTotals, GatewayMetrics, KnownBeamline, OTHER, UNKNOWN};

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tonic::body::Body;
use tonic::Code;
use tower::{Layer, Service};

use record::{grpc_status, CallRecord, RecordedBody};

/// Where a call's line goes: emitted where the call ends, or queued for the queue's thread.
#[derive(Clone)]
enum LogTo {
    Inline,
    Queue(Arc<LineQueue>),
}

/// Records every call when it ends: its metrics (`with_metrics`) and its access-log line
/// (`with_access_log`, or `with_queued_access_log` off the call's path). Without either it
/// records nothing (and the server adds no layer at all).
#[derive(Clone, Default)]
pub struct ObserveLayer {
    metrics: Option<Arc<GatewayMetrics>>,
    log: Option<LogTo>,
}

impl ObserveLayer {
    /// An observer that records nothing yet.
    pub fn new() -> ObserveLayer {
        ObserveLayer::default()
    }

    /// Records each call in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<GatewayMetrics>) -> ObserveLayer {
        self.metrics = Some(metrics);
        self
    }

    /// Writes the access-log line of each call, where the call ends.
    pub fn with_access_log(mut self) -> ObserveLayer {
        self.log = Some(LogTo::Inline);
        self
    }

    /// Writes the access-log line of each call through `queue`, off the call's path.
    pub fn with_queued_access_log(mut self, queue: Arc<LineQueue>) -> ObserveLayer {
        self.log = Some(LogTo::Queue(queue));
        self
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
            log: self.log.clone(),
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Option<Arc<GatewayMetrics>>,
    log: Option<LogTo>,
}

impl<S> Service<http::Request<Body>> for Observe<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let record = CallRecord::start(&mut request, self.metrics.clone(), self.log.clone());
        Observed {
            inner: self.inner.call(request),
            record: Some(record),
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's response to come, and its record: dropped before the response (the caller went
    /// away), the record reports the call CANCELLED. A concrete future: no allocation of this
    /// layer's own per call but the response body's wrapper.
    pub struct Observed<F> {
        #[pin]
        inner: F,
        record: Option<CallRecord>,
    }
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<http::Response<Body>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let Some(mut record) = this.record.take() else {
            // Polled again after its response: nothing more to record.
            return Poll::Ready(Ok(response));
        };
        record.learn(response.extensions());
        if let Some(code) = grpc_status(response.headers()) {
            // Trailers-only: the call ends here (dropping the record reports it).
            record.end(code);
            return Poll::Ready(Ok(response));
        }
        Poll::Ready(Ok(
            response.map(|inner| Body::new(RecordedBody::new(inner, record)))
        ))
    }
}

/// The canonical name of a gRPC code (`OK`, `RESOURCE_EXHAUSTED`), as in logs and labels.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests;
