//! One call in progress: what is known of it (beamline, method, caller, the mesh's facts, the
//! instance, its code so far), and the response body that ends it — at the trailers, at the end
//! of the stream, or when dropped (the caller went away: CANCELLED). Ending reports the call
//! once, to the metrics and the access log.
//!
//! Owns a call's facts and the moment it ends; it must not decide what the metrics or the log
//! line make of them (`metrics`, `access_log`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::Code;

use super::access_log::{AccessLine, Method};
use super::fleet_scope::{self, Scope};
use super::metrics::{CallEnd, GatewayMetrics};
use super::series::Series;
use super::LogTo;
use crate::caller::Caller;
use crate::fleet::enforce::{Refused, RefusedBy};
use beamline_contract::beamline::BeamlineId;
use beamline_contract::wire::Rpc;
use beamline_mesh_client::{CallFacts, ServedBy};

/// The gRPC status in `headers` (trailers, or a trailers-only response's headers), if any.
pub(super) fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// One call in progress; reports itself (metrics, log line) when dropped.
pub(super) struct CallRecord {
    start: Instant,
    started: SystemTime,
    metrics: Option<Arc<GatewayMetrics>>,
    /// The metric handles of the call's beamline label (with `metrics`).
    series: Option<Arc<Series>>,
    log: Option<LogTo>,
    beamline: Option<BeamlineId>,
    rpc: Option<Rpc>,
    method: Method,
    caller: Option<Arc<str>>,
    facts: CallFacts,
    instance: Option<Arc<str>>,
    code: Code,
    refused: Option<RefusedBy>,
    /// The beamline a Fleet control RPC names in its message (the call has no `x-beamline`).
    scope: Option<Scope>,
}

impl CallRecord {
    /// The record of the call `request` starts (counted in flight from now).
    pub(super) fn start(
        request: &mut http::Request<Body>,
        metrics: Option<Arc<GatewayMetrics>>,
        log: Option<LogTo>,
    ) -> CallRecord {
        let beamline = crate::beamline_of(request).ok();
        let series = (metrics.as_ref()).map(|m| m.started(beamline.as_ref().map(|b| b.as_str())));
        let path = request.uri().path();
        // Until a response says otherwise, a call that goes away was cancelled by its caller.
        CallRecord {
            start: Instant::now(),
            started: SystemTime::now(),
            metrics,
            series,
            log,
            beamline,
            rpc: Rpc::of_path(path),
            method: Method::of_path(path),
            caller: request.extensions().get::<Caller>().map(|c| c.name.clone()),
            facts: CallFacts::default(),
            instance: None,
            code: Code::Cancelled,
            refused: None,
            scope: fleet_scope::watch(request),
        }
    }

    /// What the response's extensions tell: the caller, the mesh's facts, the instance, a
    /// refusal by halt or lock.
    pub(super) fn learn(&mut self, extensions: &http::Extensions) {
        if let Some(caller) = extensions.get::<Caller>() {
            self.caller = Some(caller.name.clone());
        }
        if let Some(facts) = extensions.get::<CallFacts>() {
            self.facts = facts.clone();
        }
        self.instance = extensions.get::<ServedBy>().map(|s| s.0.clone());
        self.refused = extensions.get::<Refused>().map(|r| r.by);
    }

    /// Ends the call with `code` and reports it.
    pub(super) fn end(mut self, code: Code) {
        self.code = code;
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let duration = self.start.elapsed();
        if let (Some(metrics), Some(series)) = (&self.metrics, &self.series) {
            metrics.ended(
                series,
                &CallEnd {
                    beamline_label: &series.label,
                    method: &self.method,
                    capability: self.facts.capability.as_deref(),
                    code: self.code,
                    duration,
                    reached_agent: self.instance.is_some(),
                },
            );
            if let Some(by) = self.refused {
                metrics.refused(&series.label, by);
            }
        }
        let Some(log) = &self.log else {
            return;
        };
        let beamline = match self.scope.as_ref().and_then(|scope| scope.get()) {
            Some(named) => Arc::from(named.as_str()),
            None => self
                .beamline
                .take()
                .map_or_else(|| Arc::from(""), |b| b.shared()),
        };
        let line = AccessLine {
            started: self.started,
            caller: self.caller.take(),
            beamline,
            method: std::mem::replace(&mut self.method, Method::Static("")),
            capability: self.facts.capability.take(),
            task_id: self.facts.task_id.take(),
            instance: self.instance.take(),
            code: self.code,
            duration,
            refused: self.refused,
        };
        match log {
            LogTo::Inline => line.emit(),
            LogTo::Queue(queue) => queue.push(line),
        }
    }
}

/// A response body that ends its call's record at the trailers, the end of the stream, or
/// when dropped (the caller went away mid-stream: CANCELLED).
pub(super) struct RecordedBody {
    inner: Body,
    record: Option<CallRecord>,
}

impl RecordedBody {
    pub(super) fn new(inner: Body, record: CallRecord) -> RecordedBody {
        RecordedBody {
            inner,
            record: Some(record),
        }
    }

    /// An Execute's task id is only known from its first event: read it from the first
    /// message of the stream (when that frame holds a whole, uncompressed message).
    fn learn_task_id(&mut self, data: &Bytes) {
        let Some(record) = self.record.as_mut() else {
            return;
        };
        if record.rpc != Some(Rpc::Execute) || record.facts.task_id.is_some() {
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
        if let Some(record) = self.record.take() {
            record.end(code);
        }
    }
}

impl HttpBody for RecordedBody {
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
