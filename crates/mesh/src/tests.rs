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

use super::endpoint::{Endpoint, Gated};
use super::failfast::FailFast;
use super::load::PeakEwma;
use super::pool::{follow, Discover, Endpoints, Published};
use crate::discovery::{RegisteredInstance, Resolution, Snapshot};

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

/// A pool's endpoints map of `endpoints`.
fn pool_of(endpoints: &[&Arc<Endpoint>]) -> Endpoints {
    Arc::new(
        endpoints
            .iter()
            .map(|e| (e.id.clone(), Arc::clone(e)))
            .collect(),
    )
}

/// A p2c balancer over the pool's `endpoints` (and the endpoints it holds), as the mesh builds it.
fn balancer_over(
    endpoints: watch::Receiver<Endpoints>,
) -> (
    Balance<Discover, super::route::Request>,
    watch::Receiver<Endpoints>,
) {
    let (balanced_tx, balanced) = watch::channel(Endpoints::default());
    let discover = Discover::new(
        endpoints,
        balanced_tx,
        Duration::from_micros(100),
        Duration::from_secs(2),
        Duration::from_millis(5),
    );
    (Balance::new(discover), balanced)
}

/// Whether the balancer has a ready service now (one poll).
fn ready_now<S: Service<super::route::Request>>(balance: &mut S) -> bool {
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    balance.poll_ready(&mut cx).is_ready()
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_leaves_and_returns_between_two_calls_is_routed_again() {
    // The blackhole: discovery removed instance `a` and added it back (same id, same address,
    // a new endpoint with a new health watch) while no call polled the balancer. Compared by
    // id and address, the balancer kept the old service, whose gate died with the old endpoint.
    let (gate_1, gate) = watch::channel(true);
    let first = Arc::new(Endpoint::with_gate("a", "127.0.0.1:9", gate));
    let (pool, endpoints) = watch::channel(pool_of(&[&first]));
    let (mut balance, _) = balancer_over(endpoints);
    assert!(ready_now(&mut balance), "a's gate is open");

    pool.send_replace(pool_of(&[]));
    drop(first);
    drop(gate_1);
    let (_gate_2, gate) = watch::channel(true);
    let second = Arc::new(Endpoint::with_gate("a", "127.0.0.1:9", gate));
    pool.send_replace(pool_of(&[&second]));

    assert!(
        ready_now(&mut balance),
        "the returned instance's new endpoint must be ready in the balancer"
    );
}

#[tokio::test(start_paused = true)]
async fn discovery_reaches_the_balancer_with_no_call() {
    let (_gate_1, gate) = watch::channel(true);
    let first = Arc::new(Endpoint::with_gate("a", "127.0.0.1:9", gate));
    let left = Arc::downgrade(&first);
    let (pool, endpoints) = watch::channel(pool_of(&[&first]));
    let (balance, mut balanced) = balancer_over(endpoints.clone());
    let why = Arc::new(|| tonic::Status::unavailable("no healthy instance of beamline 5.3.1"));
    let balancer = Arc::new(tokio::sync::Mutex::new(FailFast::new(
        balance,
        Duration::from_secs(3),
        why,
    )));
    let _worker = tokio::spawn(super::route::apply_discovery(balancer.clone(), endpoints));

    // No call is ever made: the worker alone takes `a` out and a new `b` in.
    let (_gate_2, gate) = watch::channel(true);
    let second = Arc::new(Endpoint::with_gate("b", "127.0.0.1:10", gate));
    pool.send_replace(pool_of(&[&second]));
    drop(first);
    tokio::time::timeout(
        Duration::from_millis(50),
        balanced.wait_for(|b| b.contains_key("b") && !b.contains_key("a")),
    )
    .await
    .expect("the balancer took the change within 50 ms without a call")
    .expect("the balancer lives");
    assert!(
        left.upgrade().is_none(),
        "the endpoint that left (its connection and health watch) is dropped at once"
    );
    assert!(ready_now(&mut *balancer.lock().await), "b is ready");
}

/// A snapshot of instance `a` at `h:1`, passing or not.
fn snapshot_of_a(passing: bool) -> Snapshot {
    Arc::new(Resolution::Instances(vec![RegisteredInstance {
        id: "a".into(),
        addr: "127.0.0.1:9".into(),
        healthy: passing,
        beamline: None,
        ..Default::default()
    }]))
}

/// A pool following `snapshots`, whose endpoints' health streams the test drives: each new
/// endpoint gets the next `alive` receiver of `alive`.
struct PoolUnderTest {
    endpoints: watch::Receiver<Endpoints>,
    departed: watch::Receiver<Endpoints>,
    _task: tokio::task::JoinHandle<()>,
}

fn pool(
    snapshots: watch::Receiver<Snapshot>,
    alive: Vec<watch::Receiver<bool>>,
    drain_bound: Duration,
) -> PoolUnderTest {
    let (endpoints_tx, endpoints) = watch::channel(Endpoints::default());
    let (departed_tx, departed) = watch::channel(Endpoints::default());
    let alive = std::sync::Mutex::new(alive.into_iter());
    let connect = move |id: &str, addr: &str| {
        let alive = alive
            .lock()
            .unwrap()
            .next()
            .expect("an alive signal per endpoint");
        let (_, gate) = watch::channel(true);
        Some(Endpoint::with_signals(id, addr, gate, alive))
    };
    let published = Published {
        endpoints: endpoints_tx,
        departed: departed_tx,
        drain_bound,
    };
    PoolUnderTest {
        endpoints,
        departed,
        _task: tokio::spawn(follow(snapshots, published, connect)),
    }
}

/// Lets the pool's task run until it waits again.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_leaves_but_still_answers_is_kept_for_its_tasks_until_it_stops() {
    let (alive_1, a1) = watch::channel(true);
    let (_alive_2, a2) = watch::channel(true);
    let (snapshots, rx) = watch::channel(snapshot_of_a(true));
    let p = pool(rx, vec![a1, a2], Duration::from_secs(300));
    settle().await;
    assert!(p.endpoints.borrow().contains_key("a"));
    let first = p.endpoints.borrow()["a"].clone();

    // Deregistered (or critical) while its health stream is open: draining.
    snapshots.send_replace(Arc::new(Resolution::NotFound));
    settle().await;
    assert!(!p.endpoints.borrow().contains_key("a"), "no new calls");
    assert!(
        Arc::ptr_eq(&p.departed.borrow()["a"], &first),
        "calls about its tasks still go to it"
    );

    // It stops answering: gone.
    alive_1.send_replace(false);
    settle().await;
    assert!(
        p.departed.borrow().is_empty(),
        "dropped once its Watch ended"
    );

    // Back again: a new endpoint, routed as new; nothing departed.
    snapshots.send_replace(snapshot_of_a(true));
    settle().await;
    assert!(!Arc::ptr_eq(&p.endpoints.borrow()["a"], &first));
    assert!(p.departed.borrow().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_departed_instance_is_followed_at_most_the_drain_bound_and_not_after_it_returns() {
    let (_alive_1, a1) = watch::channel(true);
    let (_alive_2, a2) = watch::channel(true);
    let (_alive_3, a3) = watch::channel(true);
    let (snapshots, rx) = watch::channel(snapshot_of_a(true));
    let p = pool(rx, vec![a1, a2, a3], Duration::from_secs(60));
    settle().await;

    // Critical but answering forever (a wedged agent): dropped at the bound.
    snapshots.send_replace(snapshot_of_a(false));
    settle().await;
    assert!(p.departed.borrow().contains_key("a"));
    tokio::time::sleep(Duration::from_secs(59)).await;
    settle().await;
    assert!(
        p.departed.borrow().contains_key("a"),
        "still within the bound"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert!(p.departed.borrow().is_empty(), "dropped at the bound");

    // Leaves, then passes again before it stopped: the departed entry goes at once, and the
    // old endpoint's end later does not touch the new one.
    snapshots.send_replace(snapshot_of_a(true));
    settle().await;
    snapshots.send_replace(snapshot_of_a(false));
    settle().await;
    assert!(p.departed.borrow().contains_key("a"));
    snapshots.send_replace(snapshot_of_a(true));
    settle().await;
    assert!(p.departed.borrow().is_empty());
    assert!(p.endpoints.borrow().contains_key("a"));
    tokio::time::sleep(Duration::from_secs(61)).await;
    settle().await;
    assert!(
        p.endpoints.borrow().contains_key("a"),
        "the returned endpoint stays"
    );
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_leaves_without_answering_is_not_kept() {
    let (_alive, a1) = watch::channel(false);
    let (snapshots, rx) = watch::channel(snapshot_of_a(true));
    let p = pool(rx, vec![a1], Duration::from_secs(300));
    settle().await;
    snapshots.send_replace(Arc::new(Resolution::NotFound));
    settle().await;
    assert!(p.endpoints.borrow().is_empty());
    assert!(
        p.departed.borrow().is_empty(),
        "a dead instance is not followed"
    );
}
