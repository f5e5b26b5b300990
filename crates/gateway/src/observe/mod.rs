//! The access log, and the gateway's one call-end observer: one `tracing` event (target
//! `access`) per call, recorded when the call ends — for a stream, when its trailers pass or its
//! body is dropped — with caller, beamline, method, capability, task id, instance, gRPC code,
//! duration and start time as structured fields (`--log-format json` is the subscriber's
//! choice). The line is emitted there, or handed to a [`LineQueue`] that emits it off the
//! call's path (the gateway server's choice). The same observer feeds [`GatewayMetrics`], at
//! the call's end, so a response body is wrapped once.
//!
//! Place it outermost, in front of authentication: it then sees every call, the refused ones
//! included. The caller comes from the response's extensions (the auth layer puts it there) or
//! the request's (if this layer runs after authentication); with neither it is "anonymous".

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::Code;
use tower::{Layer, Service};

use super::access_line::{AccessLine, LineQueue};
use super::caller::{method_of, Caller};
use super::metrics::{CallEnd, GatewayMetrics};
use beamline_mesh_client::{CallFacts, ServedBy};

/// The `tracing` target of access log lines.
pub const TARGET: &str = "access";

/// Where a call's line goes: emitted where the call ends, or queued for the queue's thread.
#[derive(Clone)]
enum LogTo {
    Inline,
    Queue(Arc<LineQueue>),
}

/// Writes the access log line of every call (and, `with_metrics`, records its metrics).
#[derive(Clone)]
pub struct AccessLogLayer {
    metrics: Option<Arc<GatewayMetrics>>,
    log: Option<LogTo>,
}

impl Default for AccessLogLayer {
    fn default() -> Self {
        AccessLogLayer::new()
    }
}

impl AccessLogLayer {
    pub fn new() -> AccessLogLayer {
        AccessLogLayer {
            metrics: None,
            log: Some(LogTo::Inline),
        }
    }

    /// Also records each call in `metrics`, from the same observer.
    pub fn with_metrics(mut self, metrics: Arc<GatewayMetrics>) -> AccessLogLayer {
        self.metrics = Some(metrics);
        self
    }

    /// Turns the log line off or on (metrics alone, as `MetricsLayer` uses it).
    pub fn with_log(mut self, log: bool) -> AccessLogLayer {
        self.log = log.then_some(LogTo::Inline);
        self
    }

    /// Writes the lines through `queue`, off the calls' path (the gateway server's choice).
    pub fn with_queue(mut self, queue: Arc<LineQueue>) -> AccessLogLayer {
        self.log = Some(LogTo::Queue(queue));
        self
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = Observed<S>;
    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            metrics: self.metrics.clone(),
            log: self.log.clone(),
        }
    }
}

/// The service of [`AccessLogLayer`] and `MetricsLayer`.
#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    metrics: Option<Arc<GatewayMetrics>>,
    log: Option<LogTo>,
}

impl<S> Service<http::Request<Body>> for Observed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let beamline = super::beamline_of(&mut request).ok();
        let beamline_label = self
            .metrics
            .as_ref()
            .map(|m| m.call_started(beamline.as_ref().map(|b| b.as_str())))
            .unwrap_or_default();
        // Until a response says otherwise, a call that goes away was cancelled by its caller.
        let mut record = CallRecord {
            start: Instant::now(),
            started: SystemTime::now(),
            metrics: self.metrics.clone(),
            log: self.log.clone(),
            beamline: beamline.map(|b| b.to_string()).unwrap_or_default(),
            beamline_label,
            method: method_of(request.uri().path()).to_string(),
            caller: request.extensions().get::<Caller>().map(|c| c.name.clone()),
            facts: CallFacts::default(),
            instance: None,
            code: Code::Cancelled,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let extensions = response.extensions();
            if let Some(caller) = extensions.get::<Caller>() {
                record.caller = Some(caller.name.clone());
            }
            if let Some(facts) = extensions.get::<CallFacts>() {
                record.facts = facts.clone();
            }
            record.instance = extensions.get::<ServedBy>().map(|s| s.0.clone());
            if let Some(code) = grpc_status(response.headers()) {
                // Trailers-only: the call ends here (dropping the record reports it).
                record.code = code;
                drop(record);
                return Ok(response);
            }
            Ok(response.map(|inner| {
                Body::new(ObservedBody {
                    inner,
                    record: Some(record),
                })
            }))
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// One call in progress; reports itself (metrics, log line) when dropped.
struct CallRecord {
    start: Instant,
    started: SystemTime,
    metrics: Option<Arc<GatewayMetrics>>,
    log: Option<LogTo>,
    beamline: String,
    beamline_label: String,
    method: String,
    caller: Option<String>,
    facts: CallFacts,
    instance: Option<Arc<str>>,
    code: Code,
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let duration = self.start.elapsed();
        if let Some(metrics) = &self.metrics {
            metrics.call_ended(&CallEnd {
                beamline_label: &self.beamline_label,
                method: &self.method,
                capability: self.facts.capability.as_deref(),
                code: self.code,
                duration,
                reached_agent: self.instance.is_some(),
            });
        }
        let Some(log) = &self.log else {
            return;
        };
        let line = AccessLine {
            started: self.started,
            caller: self.caller.take(),
            beamline: std::mem::take(&mut self.beamline),
            method: std::mem::take(&mut self.method),
            capability: self.facts.capability.take(),
            task_id: self.facts.task_id.take(),
            instance: self.instance.take(),
            code: self.code,
            duration,
        };
        match log {
            LogTo::Inline => line.emit(),
            LogTo::Queue(queue) => queue.push(line),
        }
    }
}

/// A response body that ends its call's record at the trailers, the end of the stream, or
/// when dropped (the caller went away mid-stream: CANCELLED).
struct ObservedBody {
    inner: Body,
    record: Option<CallRecord>,
}

impl ObservedBody {
    /// An Execute's task id is only known from its first event: read it from the first
    /// message of the stream (when that frame holds a whole, uncompressed message).
    fn learn_task_id(&mut self, data: &Bytes) {
        let Some(record) = self.record.as_mut() else {
            return;
        };
        if record.method != "Execute" || record.facts.task_id.is_some() {
            return;
        }
        let Some((&[0, a, b, c, d], rest)) = data.split_first_chunk::<5>() else {
            return;
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if let Some(message) = rest.get(..len) {
            if let Ok(event) =
                <beamline_contract::proto::TaskEvent as prost::Message>::decode(message)
            {
                record.facts.task_id = event.task.map(|t| t.task_id);
            }
        }
    }

    /// Ends the call with `code` (dropping its record reports it), once.
    fn end(&mut self, code: Code) {
        if let Some(mut record) = self.record.take() {
            record.code = code;
            drop(record);
        }
    }
}

impl HttpBody for ObservedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        // `Body` is Unpin, so no pin projection is needed.
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.end(grpc_status(trailers).unwrap_or(Code::Unknown));
                } else if let Some(data) = frame.data_ref() {
                    this.learn_task_id(data);
                }
            }
            Poll::Ready(Some(Err(_))) => this.end(Code::Internal),
            // The stream ended without trailers: no status was sent.
            Poll::Ready(None) => this.end(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
