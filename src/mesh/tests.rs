//! The balancing logic without I/O: tower's p2c over gated, load-measured services, driven with
//! paused time — as tower's and linkerd2-proxy's pools are tested.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::sync::watch;
use tower::balance::p2c::Balance;
use tower::discover::Change;
use tower::{BoxError, Service, ServiceExt};

use super::endpoint::Gated;
use super::failfast::FailFast;
use super::load::PeakEwma;

type Named = tower::util::BoxService<(), &'static str, BoxError>;

fn instance(name: &'static str, gate: watch::Receiver<bool>) -> Gated<PeakEwma<Named>> {
    let service = tower::service_fn(move |()| async move { Ok::<_, BoxError>(name) });
    let load = PeakEwma::new(
        tower::util::BoxService::new(service),
        Duration::from_micros(100),
        Duration::from_secs(5),
        Duration::ZERO,
    );
    Gated::new(load, gate)
}

async fn call<S>(svc: &mut S) -> Result<&'static str, BoxError>
where
    S: Service<(), Response = &'static str, Error = BoxError>,
{
    svc.ready().await?.call(()).await
}

#[tokio::test(start_paused = true)]
async fn p2c_never_picks_a_closed_gate_and_fails_fast_when_every_gate_is_closed() {
    let (open_a, gate_a) = watch::channel(true);
    let (open_b, gate_b) = watch::channel(false);
    let changes = vec![
        Ok::<_, Infallible>(Change::Insert("a", instance("a", gate_a))),
        Ok(Change::Insert("b", instance("b", gate_b))),
    ];
    // Discovery never ends: it is a watch, not a list.
    let discover = stream::iter(changes).chain(stream::pending());
    let balance: Balance<_, ()> = Balance::new(discover);
    let why = Arc::new(|| tonic::Status::unavailable("no healthy instance of beamline 5.3.1"));
    let mut svc = FailFast::new(balance, Duration::from_secs(1), why);

    for _ in 0..50 {
        assert_eq!(call(&mut svc).await.unwrap(), "a", "b's gate is closed");
    }
    open_a.send_replace(false);
    open_b.send_replace(true);
    for _ in 0..50 {
        assert_eq!(
            call(&mut svc).await.unwrap(),
            "b",
            "a's gate closed, b's opened"
        );
    }

    open_b.send_replace(false);
    let started = tokio::time::Instant::now();
    let err = call(&mut svc).await.unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "fails at the failfast bound"
    );
    let status = err.downcast::<tonic::Status>().expect("a tonic Status");
    assert_eq!(status.code(), tonic::Code::Unavailable);

    // A gate that opens again ends failfast at once.
    open_a.send_replace(true);
    assert_eq!(call(&mut svc).await.unwrap(), "a");
}

#[tokio::test(start_paused = true)]
async fn both_open_instances_get_calls() {
    let (_a, gate_a) = watch::channel(true);
    let (_b, gate_b) = watch::channel(true);
    let changes = vec![
        Ok::<_, Infallible>(Change::Insert("a", instance("a", gate_a))),
        Ok(Change::Insert("b", instance("b", gate_b))),
    ];
    let discover = stream::iter(changes).chain(stream::pending());
    let mut balance: Balance<_, ()> = Balance::new(discover);
    let mut seen = std::collections::HashMap::new();
    for _ in 0..200 {
        let name = balance.ready().await.unwrap().call(()).await.unwrap();
        *seen.entry(name).or_insert(0) += 1;
    }
    assert!(seen.get("a").copied().unwrap_or(0) > 20, "{seen:?}");
    assert!(seen.get("b").copied().unwrap_or(0) > 20, "{seen:?}");
}
