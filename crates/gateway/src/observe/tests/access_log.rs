//! The observer writing the access log, around a stand-in inner service, with the log captured:
//! one line per call when it ends (streams included), refusals at once, CANCELLED for an
//! abandoned call, lines through the queue in order.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service, ServiceExt};

use crate::caller::{Beamlines, Caller, Role};
use crate::limits::ANONYMOUS;
use crate::observe::{GatewayMetrics, LineQueue, ObserveLayer, TARGET};
use beamline_contract::wire::{header, Rpc};
use beamline_mesh_client::{CallFacts, ServedBy};

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
pub(super) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The JSON lines written so far.
    pub(super) fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

pub(super) fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

pub(super) fn request(path: &str, beamline: &str) -> http::Request<Body> {
    http::Request::builder()
        .uri(path)
        .header(header::BEAMLINE, beamline)
        .body(Body::empty())
        .unwrap()
}

fn operator(name: &str) -> Caller {
    Caller {
        name: name.into(),
        role: Role::Operator,
        beamlines: Beamlines::All.into(),
    }
}

#[tokio::test]
async fn a_stream_is_logged_once_when_it_ends_with_every_field() {
    let (captured, _guard) = capture();
    let agent = tower::service_fn(|_| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames = vec![
            Ok::<_, Status>(Frame::data(Bytes::from_static(b"progress"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut response = http::Response::new(Body::new(StreamBody::new(stream::iter(frames))));
        let extensions = response.extensions_mut();
        extensions.insert(ServedBy("5-3-1-a".into()));
        extensions.insert(CallFacts {
            capability: None,
            task_id: Some("5-3-1-a/42".into()),
        });
        extensions.insert(operator("ops-console"));
        Ok::<_, Infallible>(response)
    });
    let service = ObserveLayer::new().with_access_log().layer(agent);
    let response = service
        .oneshot(request(Rpc::Subscribe.path(), "5.3.1"))
        .await
        .unwrap();
    assert!(
        captured.lines().is_empty(),
        "logged before the stream ended"
    );
    response.into_body().collect().await.unwrap();
    let lines = captured.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["target"], TARGET);
    assert!(line["timestamp"].is_string());
    let fields = &line["fields"];
    assert_eq!(fields["caller"], "ops-console");
    assert_eq!(fields["beamline"], "5.3.1");
    assert_eq!(fields["method"], "Subscribe");
    assert_eq!(fields["capability"], "");
    assert_eq!(fields["task_id"], "5-3-1-a/42");
    assert_eq!(fields["instance"], "5-3-1-a");
    assert_eq!(fields["code"], "OK");
    assert!(fields["duration_ms"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn a_refused_call_is_logged_at_once_and_an_unnamed_caller_is_anonymous() {
    let (captured, _guard) = capture();
    let door = tower::service_fn(|_| async {
        Ok::<_, Infallible>(Status::resource_exhausted("rate limit").into_http())
    });
    let service = ObserveLayer::new().with_access_log().layer(door);
    service
        .oneshot(request(Rpc::Execute.path(), "7.0.1"))
        .await
        .unwrap();
    let lines = captured.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields = &lines[0]["fields"];
    assert_eq!(fields["caller"], ANONYMOUS);
    assert_eq!(fields["code"], "RESOURCE_EXHAUSTED");
    assert_eq!(fields["instance"], "");
}

#[tokio::test]
async fn a_caller_in_the_request_is_used_when_the_layer_runs_after_auth() {
    let (captured, _guard) = capture();
    let agent = tower::service_fn(|_| async { Ok::<_, Infallible>(Status::ok("").into_http()) });
    let mut request = request(Rpc::Describe.path(), "5.3.1");
    request.extensions_mut().insert(operator("planner"));
    ObserveLayer::new()
        .with_access_log()
        .layer(agent)
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(captured.lines()[0]["fields"]["caller"], "planner");
}

#[tokio::test]
async fn a_call_abandoned_before_its_response_is_cancelled() {
    let (captured, _guard) = capture();
    let agent = tower::service_fn(|_| futures::future::pending::<Result<_, Infallible>>());
    let mut service = ObserveLayer::new().with_access_log().layer(agent);
    let future = service.call(request(Rpc::Execute.path(), "5.3.1"));
    drop(future);
    assert_eq!(captured.lines()[0]["fields"]["code"], "CANCELLED");
}

#[tokio::test]
async fn without_the_log_nothing_is_written() {
    let (captured, _guard) = capture();
    let agent = tower::service_fn(|_| async { Ok::<_, Infallible>(Status::ok("").into_http()) });
    let metrics = Arc::new(GatewayMetrics::new());
    ObserveLayer::new()
        .with_metrics(metrics)
        .layer(agent)
        .oneshot(request(Rpc::Describe.path(), "5.3.1"))
        .await
        .unwrap();
    assert!(captured.lines().is_empty());
}

#[tokio::test]
async fn queued_lines_keep_their_order_and_all_are_written_when_the_queue_goes() {
    let (captured, _guard) = capture();
    let queue = Arc::new(LineQueue::start().unwrap());
    let door = tower::service_fn(|_| async {
        Ok::<_, Infallible>(Status::resource_exhausted("rate limit").into_http())
    });
    let service = ObserveLayer::new()
        .with_queued_access_log(queue.clone())
        .layer(door);
    let beamlines = ["5.3.1", "7.0.1", "12.3.1"];
    for beamline in beamlines {
        service
            .clone()
            .oneshot(request(Rpc::Execute.path(), beamline))
            .await
            .unwrap();
    }
    // The last handle on the queue emits what its thread has not yet.
    drop(service);
    drop(queue);
    let lines = captured.lines();
    let logged: Vec<_> = lines
        .iter()
        .map(|l| l["fields"]["beamline"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged, beamlines, "{lines:?}");
    for line in &lines {
        let started = line["fields"]["started"].as_str().unwrap();
        assert!(
            started.parse::<prost_types::Timestamp>().is_ok(),
            "started is not RFC 3339: {started:?}"
        );
    }
}
