//! The observer feeding the metrics: a stream counted when its trailers pass, with their code;
//! a stream dropped midway as CANCELLED; auth rejections read from trailers-only responses.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, ServiceExt};

use crate::observe::{GatewayMetrics, ObserveLayer};
use crate::tests::{mesh, value};
use beamline_contract::wire::{header, Rpc};
use beamline_mesh_client::{CallFacts, ServedBy};

fn streamed(code: u8) -> http::Response<Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", code.to_string().parse().unwrap());
    let frames = vec![
        Ok::<_, Status>(Frame::data(Bytes::from_static(b"event"))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut response = http::Response::new(Body::new(StreamBody::new(stream::iter(frames))));
    response.extensions_mut().insert(ServedBy("i-1".into()));
    response.extensions_mut().insert(CallFacts {
        capability: Some("scan".into()),
        task_id: None,
    });
    response
}

fn request() -> http::Request<Body> {
    http::Request::builder()
        .uri(Rpc::Execute.path())
        .header(header::BEAMLINE, "5.3.1")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_stream_counts_when_its_trailers_pass_with_their_code() {
    let metrics = Arc::new(GatewayMetrics::new());
    let agent = tower::service_fn(|_| async { Ok::<_, Infallible>(streamed(4)) });
    let service = ObserveLayer::new()
        .with_metrics(metrics.clone())
        .layer(agent);
    let response = service.oneshot(request()).await.unwrap();
    let in_flight = r#"beamline_gateway_in_flight_calls{beamline="5.3.1"}"#;
    let text = metrics.render(&mesh());
    assert_eq!(value(&text, in_flight), Some(1.0), "{text}");
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "4");
    let text = metrics.render(&mesh());
    assert_eq!(value(&text, in_flight), Some(0.0));
    let line = r#"beamline_gateway_calls_total{beamline="5.3.1",method="Execute",capability="scan",code="DEADLINE_EXCEEDED"}"#;
    assert_eq!(value(&text, line), Some(1.0), "{text}");
}

#[tokio::test]
async fn a_stream_dropped_midway_counts_as_cancelled() {
    let metrics = Arc::new(GatewayMetrics::new());
    let agent = tower::service_fn(|_| async { Ok::<_, Infallible>(streamed(0)) });
    let service = ObserveLayer::new()
        .with_metrics(metrics.clone())
        .layer(agent);
    let mut body = service.oneshot(request()).await.unwrap().into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    let text = metrics.render(&mesh());
    let line = r#"beamline_gateway_calls_total{beamline="5.3.1",method="Execute",capability="scan",code="CANCELLED"}"#;
    assert_eq!(value(&text, line), Some(1.0), "{text}");
}

#[tokio::test]
async fn auth_rejections_are_read_from_trailers_only_responses() {
    let metrics = Arc::new(GatewayMetrics::new());
    let door = tower::service_fn(|_| async {
        Ok::<_, Infallible>(Status::unauthenticated("no credential").into_http())
    });
    let service = ObserveLayer::new()
        .with_metrics(metrics.clone())
        .layer(door);
    service.clone().oneshot(request()).await.unwrap();
    service.oneshot(request()).await.unwrap();
    let text = metrics.render(&mesh());
    assert_eq!(
        value(
            &text,
            r#"beamline_gateway_auth_rejections_total{code="UNAUTHENTICATED"}"#
        ),
        Some(2.0),
        "{text}"
    );
}
