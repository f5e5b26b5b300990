//! The rate-limit layer around a stand-in inner service: per-beamline and per-caller buckets,
//! overrides, and refusals counted by scope.

use std::collections::BTreeMap;

use tower::ServiceExt;

use super::*;
use crate::caller::{Beamlines, Role};
use beamline_contract::wire::{header, Rpc};

/// Rates slow enough that no bucket refills during a test.
const SLOW: f64 = 0.01;

fn limit(burst: u32) -> Option<Limit> {
    Some(Limit { rate: SLOW, burst })
}

fn request(beamline: Option<&str>, caller: Option<&str>) -> http::Request<Body> {
    let mut request = http::Request::builder().uri(Rpc::Describe.path());
    if let Some(beamline) = beamline {
        request = request.header(header::BEAMLINE, beamline);
    }
    let mut request = request.body(Body::empty()).unwrap();
    if let Some(name) = caller {
        request.extensions_mut().insert(Caller {
            name: name.into(),
            role: Role::Operator,
            beamlines: Beamlines::All.into(),
        });
    }
    request
}

/// Calls the layer over a stand-in agent that answers every call with OK; returns the status
/// of refused calls.
async fn call(layer: &RateLimitLayer, beamline: Option<&str>, caller: Option<&str>) -> Status {
    let agent = tower::service_fn(|_: http::Request<Body>| async {
        Ok::<_, Infallible>(Status::ok("agent").into_http())
    });
    let response = layer
        .layer(agent)
        .oneshot(request(beamline, caller))
        .await
        .unwrap();
    Status::from_header_map(response.headers()).expect("a trailers-only status")
}

fn admitted(status: &Status) -> bool {
    status.code() == tonic::Code::Ok && status.message() == "agent"
}

#[tokio::test]
async fn a_hammered_beamline_is_refused_while_another_is_served() {
    let layer = RateLimitLayer::new(&LimitsConfig {
        per_beamline: limit(3),
        ..Default::default()
    });
    for _ in 0..3 {
        assert!(admitted(&call(&layer, Some("5.3.1"), None).await));
    }
    let refused = call(&layer, Some("5.3.1"), None).await;
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "rate limit of beamline 5.3.1 exceeded (0.01/s)"
    );
    for _ in 0..3 {
        assert!(admitted(&call(&layer, Some("7.0.1"), None).await));
    }
}

#[tokio::test]
async fn overrides_replace_the_default_for_their_beamline() {
    let layer = RateLimitLayer::new(&LimitsConfig {
        per_beamline: limit(100),
        beamline: BTreeMap::from([(
            "8.3.2".to_string(),
            Limit {
                rate: 5.0,
                burst: 1,
            },
        )]),
        ..Default::default()
    });
    assert!(admitted(&call(&layer, Some("8.3.2"), None).await));
    let refused = call(&layer, Some("8.3.2"), None).await;
    assert_eq!(
        refused.message(),
        "rate limit of beamline 8.3.2 exceeded (5/s)"
    );
    for _ in 0..10 {
        assert!(admitted(&call(&layer, Some("5.3.1"), None).await));
    }
}

#[tokio::test]
async fn callers_have_their_own_buckets_and_anonymous_is_one_caller() {
    let layer = RateLimitLayer::new(&LimitsConfig {
        per_caller: limit(2),
        ..Default::default()
    });
    for _ in 0..2 {
        assert!(admitted(&call(&layer, Some("5.3.1"), Some("alice")).await));
    }
    let refused = call(&layer, Some("7.0.1"), Some("alice")).await;
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "rate limit of caller alice exceeded (0.01/s)"
    );
    assert!(admitted(&call(&layer, Some("5.3.1"), Some("bob")).await));
    assert!(admitted(&call(&layer, Some("5.3.1"), None).await));
    assert!(admitted(&call(&layer, Some("5.3.1"), None).await));
    let refused = call(&layer, Some("5.3.1"), None).await;
    assert!(
        refused.message().contains("caller anonymous"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_caller_over_its_limit_takes_no_token_from_the_beamline() {
    let layer = RateLimitLayer::new(&LimitsConfig {
        per_beamline: limit(2),
        per_caller: limit(1),
        ..Default::default()
    });
    assert!(admitted(&call(&layer, Some("5.3.1"), Some("alice")).await));
    // Refused by alice's bucket: the beamline's second token stays for bob.
    let refused = call(&layer, Some("5.3.1"), Some("alice")).await;
    assert!(refused.message().contains("caller alice"), "{refused:?}");
    assert!(admitted(&call(&layer, Some("5.3.1"), Some("bob")).await));
    let refused = call(&layer, Some("5.3.1"), Some("carol")).await;
    assert!(refused.message().contains("beamline 5.3.1"), "{refused:?}");
}

#[tokio::test]
async fn calls_without_a_valid_beamline_reach_the_inner_service() {
    let layer = RateLimitLayer::new(&LimitsConfig {
        per_beamline: limit(1),
        per_caller: limit(1),
        ..Default::default()
    });
    for beamline in [None, Some("not a beamline"), None] {
        assert!(admitted(&call(&layer, beamline, None).await));
    }
}

#[tokio::test]
async fn without_limits_every_call_passes() {
    let layer = RateLimitLayer::new(&LimitsConfig::default());
    for _ in 0..50 {
        assert!(admitted(&call(&layer, Some("5.3.1"), Some("alice")).await));
    }
}

#[tokio::test]
async fn refusals_are_counted_by_beamline_and_scope() {
    let metrics = Arc::new(GatewayMetrics::new());
    let layer = RateLimitLayer::new(&LimitsConfig {
        per_beamline: limit(1),
        per_caller: limit(2),
        ..Default::default()
    })
    .with_metrics(metrics.clone());
    call(&layer, Some("5.3.1"), Some("alice")).await;
    call(&layer, Some("5.3.1"), Some("alice")).await; // beamline
    call(&layer, Some("7.0.1"), Some("alice")).await; // caller
    let mesh = crate::tests::mesh();
    let text = metrics.render(&mesh);
    assert!(
        text.contains(
            r#"beamline_gateway_rate_limited_total{beamline="5.3.1",scope="beamline"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"beamline_gateway_rate_limited_total{beamline="7.0.1",scope="caller"} 1"#),
        "{text}"
    );
}

/// A Fleet call (no `x-beamline`) as `caller`.
async fn call_fleet(layer: &RateLimitLayer, caller: &str) -> Status {
    let agent = tower::service_fn(|_: http::Request<Body>| async {
        Ok::<_, Infallible>(Status::ok("agent").into_http())
    });
    let mut request = http::Request::builder()
        .uri(format!("{}WatchFleet", FleetRpc::PATH_PREFIX))
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(Caller {
        name: caller.into(),
        role: Role::Observer,
        beamlines: Beamlines::All.into(),
    });
    let response = layer.layer(agent).oneshot(request).await.unwrap();
    Status::from_header_map(response.headers()).expect("a trailers-only status")
}

#[tokio::test]
async fn fleet_calls_count_against_their_callers_limit_only() {
    let layer = RateLimitLayer::new(&LimitsConfig {
        per_beamline: limit(1),
        per_caller: limit(2),
        ..Default::default()
    });
    assert!(admitted(&call_fleet(&layer, "watcher").await));
    assert!(admitted(&call_fleet(&layer, "watcher").await));
    let refused = call_fleet(&layer, "watcher").await;
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(refused.message().contains("caller watcher"), "{refused:?}");
    // Another caller's bucket is its own; no beamline bucket is taken by Fleet calls.
    assert!(admitted(&call_fleet(&layer, "desk").await));
    assert!(admitted(&call(&layer, Some("5.3.1"), Some("ops")).await));
}
