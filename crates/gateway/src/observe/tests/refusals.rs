//! What the observer records of the facility's control: a call the enforcement layer refused
//! (its reason in the access log's last field and in the refusal metric), and the Fleet RPCs by
//! their names.

use std::convert::Infallible;
use std::sync::Arc;

use tonic::body::Body;
use tonic::Status;
use tower::{Layer, ServiceExt};

use super::access_log::{capture, request};
use crate::fleet::enforce::{Refused, RefusedBy};
use crate::observe::{GatewayMetrics, ObserveLayer};
use crate::tests::{mesh, value};
use beamline_contract::wire::{FleetRpc, Rpc};
use beamline_mesh_client::CallFacts;

fn refused(by: RefusedBy) -> http::Response<Body> {
    let mut response = Status::failed_precondition("beamline 5.3.1 is halted").into_http();
    response.extensions_mut().insert(Refused { by });
    response.extensions_mut().insert(CallFacts {
        capability: Some("move_motor".into()),
        task_id: None,
    });
    response
}

#[tokio::test]
async fn a_refusal_is_logged_with_its_reason_last_and_counted_by_reason() {
    let (captured, _guard) = capture();
    let metrics = Arc::new(GatewayMetrics::new());
    for by in [RefusedBy::Halt, RefusedBy::Lock, RefusedBy::Halt] {
        let door = tower::service_fn(move |_| async move { Ok::<_, Infallible>(refused(by)) });
        ObserveLayer::new()
            .with_metrics(metrics.clone())
            .with_access_log()
            .layer(door)
            .oneshot(request(Rpc::Execute.path(), "5.3.1"))
            .await
            .unwrap();
    }
    let lines = captured.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let fields = &lines[0]["fields"];
    assert_eq!(fields["code"], "FAILED_PRECONDITION");
    assert_eq!(fields["capability"], "move_motor");
    assert_eq!(fields["refused"], "halt");
    assert_eq!(lines[1]["fields"]["refused"], "lock");
    let text = metrics.render(&mesh());
    let halt = r#"beamline_gateway_refusals_total{beamline="5.3.1",reason="halt"}"#;
    let lock = r#"beamline_gateway_refusals_total{beamline="5.3.1",reason="lock"}"#;
    assert_eq!(value(&text, halt), Some(2.0), "{text}");
    assert_eq!(value(&text, lock), Some(1.0), "{text}");
}

#[tokio::test]
async fn a_call_nobody_refused_has_an_empty_refused_field() {
    let (captured, _guard) = capture();
    let agent = tower::service_fn(|_| async { Ok::<_, Infallible>(Status::ok("").into_http()) });
    ObserveLayer::new()
        .with_access_log()
        .layer(agent)
        .oneshot(request(Rpc::Execute.path(), "5.3.1"))
        .await
        .unwrap();
    assert_eq!(captured.lines()[0]["fields"]["refused"], "");
}

#[tokio::test]
async fn fleet_rpcs_are_logged_and_counted_by_their_names() {
    let (captured, _guard) = capture();
    let metrics = Arc::new(GatewayMetrics::new());
    let fleet = tower::service_fn(|_| async { Ok::<_, Infallible>(Status::ok("").into_http()) });
    let service = ObserveLayer::new()
        .with_metrics(metrics.clone())
        .with_access_log()
        .layer(fleet);
    for rpc in FleetRpc::ALL {
        let path = format!("{}{}", FleetRpc::PATH_PREFIX, rpc.name());
        let request = http::Request::builder()
            .uri(path)
            .body(Body::empty())
            .unwrap();
        service.clone().oneshot(request).await.unwrap();
    }
    let methods: Vec<_> = captured
        .lines()
        .iter()
        .map(|l| l["fields"]["method"].as_str().unwrap().to_string())
        .collect();
    let names: Vec<_> = FleetRpc::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(methods, names);
    let text = metrics.render(&mesh());
    let halts =
        r#"beamline_gateway_calls_total{beamline="",method="Halt",capability="",code="OK"}"#;
    assert_eq!(value(&text, halts), Some(1.0), "{text}");
}

#[tokio::test]
async fn a_halt_is_logged_with_the_beamline_its_message_names() {
    use http_body_util::BodyExt;
    use prost::Message;

    let (captured, _guard) = capture();
    // The Fleet service reads the message before it answers.
    let fleet = tower::service_fn(|request: http::Request<Body>| async move {
        request.into_body().collect().await.unwrap();
        Ok::<_, Infallible>(Status::ok("").into_http())
    });
    let message = beamline_contract::proto::HaltRequest {
        beamline: "5.3.1".into(),
        reason: "vacuum".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = http::Request::builder()
        .uri("/beamline.v1.Fleet/Halt")
        .body(Body::new(http_body_util::Full::new(bytes::Bytes::from(
            frame,
        ))))
        .unwrap();
    ObserveLayer::new()
        .with_access_log()
        .layer(fleet)
        .oneshot(request)
        .await
        .unwrap();
    let fields = &captured.lines()[0]["fields"];
    assert_eq!(fields["method"], "Halt");
    assert_eq!(fields["beamline"], "5.3.1");
}
