//! Blocking queries: ?index=N&wait=D on health/service (and catalog, health/checks), per-result
//! indexes, wake-up latency, timeouts, bad parameters, output-only changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;

/// A blocking GET run on its own task, so the test can write while it waits.
fn spawn_get(
    reg: &Arc<Registry>,
    path: String,
    timeout: Duration,
) -> tokio::task::JoinHandle<Resp> {
    let reg = Arc::clone(reg);
    tokio::spawn(async move { reg.get_blocking(&path, timeout).await })
}

/// Lets a just-spawned blocking request reach the server and park there. This is the scenario's
/// timing (Consul's own test writes 200 ms after the blocked call), not a wait for a condition;
/// the test asserts the call is still blocked afterwards.
async fn let_request_park() {
    tokio::time::sleep(ms(200)).await;
}

/// 21: a blocked watcher is woken by a registration within 100 ms of the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_wakes_blocked_watcher_within_100ms() {
    let reg = Arc::new(Registry::start());
    let first = reg.health_service("web", "").await.expect_read_headers();
    let idx = first.index();
    assert_eq!(first.json(), json!([]));

    let started = Instant::now();
    let waiter = spawn_get(
        &reg,
        format!("/v1/health/service/web?index={idx}&wait=10s"),
        secs(20),
    );
    let_request_park().await;
    assert!(
        !waiter.is_finished(),
        "the watcher returned before any change"
    );

    let write = reg
        .put(
            "/v1/agent/service/register",
            &json!({"Name": "web", "ID": "web1", "Port": 8080}),
        )
        .await
        .expect_status(200);
    let woken = waiter.await.unwrap().expect_status(200);

    let lag = woken
        .received_at
        .saturating_duration_since(write.received_at);
    assert!(
        lag < ms(100),
        "blocked query returned {lag:?} after the write completed (must be < 100 ms)"
    );
    assert!(
        woken.received_at - started < secs(2),
        "returned well before wait=10s"
    );
    let new_idx = woken.index();
    assert!(new_idx > idx, "index grew: {idx} -> {new_idx}");
    assert_eq!(service_ids(&woken.json()), vec!["web1"]);
}

/// 21 (second half): no change → returns after >= wait, same index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_expires_with_same_index() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "web", "Port": 8080})).await;
    let idx = reg.health_service("web", "").await.index();
    let r = reg
        .get_blocking(
            &format!("/v1/health/service/web?index={idx}&wait=300ms"),
            secs(10),
        )
        .await
        .expect_status(200)
        .expect_read_headers();
    assert!(
        r.elapsed() >= ms(300),
        "returned after {:?} < wait",
        r.elapsed()
    );
    // wait + jitter (wait/16) + generous scheduling slack.
    assert!(
        r.elapsed() < ms(300 + 19 + 1500),
        "returned after {:?}",
        r.elapsed()
    );
    assert_eq!(r.index(), idx);
    assert_eq!(service_ids(&r.json()), vec!["web"]);

    // Same with the other duration spellings clients use.
    let r = reg
        .get_blocking(
            &format!("/v1/health/service/web?index={idx}&wait=1s"),
            secs(10),
        )
        .await
        .expect_status(200);
    assert!(
        r.elapsed() >= secs(1),
        "wait=1s returned after {:?}",
        r.elapsed()
    );
    assert_eq!(r.index(), idx);
}

/// index=0 (or absent) never blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_zero_does_not_block() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "web"})).await;
    let r = reg
        .get_blocking("/v1/health/service/web?index=0&wait=5s", secs(10))
        .await
        .expect_status(200);
    assert!(
        r.elapsed() < secs(2),
        "index=0 blocked for {:?}",
        r.elapsed()
    );
    let r = reg
        .get_blocking("/v1/health/service/web?wait=5s", secs(10))
        .await
        .expect_status(200);
    assert!(
        r.elapsed() < secs(2),
        "no index blocked for {:?}",
        r.elapsed()
    );
}

/// Per-result indexes: a watcher of A sleeps through a registration of B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_not_woken_by_other_service() {
    let reg = Arc::new(Registry::start());
    reg.register(&json!({"Name": "a", "Check": {"TTL": "30s"}}))
        .await;
    let idx = reg.health_service("a", "").await.index();

    let waiter = spawn_get(
        &reg,
        format!("/v1/health/service/a?index={idx}&wait=1s"),
        secs(10),
    );
    let_request_park().await;
    reg.register(&json!({"Name": "b", "Check": {"TTL": "30s"}}))
        .await;
    reg.ttl("pass", "service:b", None).await;
    reg.put_bytes("/v1/kv/unrelated", "x")
        .await
        .expect_status(200);

    let r = waiter.await.unwrap().expect_status(200);
    assert!(
        r.elapsed() >= secs(1),
        "watcher of a was woken after {:?} by changes to b",
        r.elapsed()
    );
    assert_eq!(r.index(), idx, "a's index unchanged by b");
    assert_eq!(service_ids(&r.json()), vec!["a"]);
}

/// Scaled-down version of "1,000 watchers of 1,000 services: one change wakes one watcher".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_wakes_only_its_watcher() {
    const N: usize = 100;
    let reg = Arc::new(Registry::start());
    let mut indexes = Vec::new();
    for i in 0..N {
        reg.register(&json!({"Name": format!("svc-{i}"), "Port": 1000 + i}))
            .await;
    }
    for i in 0..N {
        indexes.push(reg.health_service(&format!("svc-{i}"), "").await.index());
    }
    let waiters: Vec<_> = (0..N)
        .map(|i| {
            spawn_get(
                &reg,
                format!(
                    "/v1/health/service/svc-{i}?index={}&wait=1500ms",
                    indexes[i]
                ),
                secs(10),
            )
        })
        .collect();
    let_request_park().await;
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "no watcher returned early"
    );

    let write = reg
        .put(
            "/v1/agent/service/register",
            &json!({"Name": "svc-7", "Port": 2007}),
        )
        .await
        .expect_status(200);
    let mut results = Vec::new();
    for w in waiters {
        results.push(w.await.unwrap().expect_status(200));
    }
    for (i, r) in results.iter().enumerate() {
        if i == 7 {
            let lag = r.received_at.saturating_duration_since(write.received_at);
            assert!(lag < ms(100), "svc-7 watcher woke {lag:?} after the write");
            assert!(r.index() > indexes[7]);
            assert_eq!(r.json()[0]["Service"]["Port"], 2007);
        } else {
            assert!(
                r.received_at.saturating_duration_since(write.received_at) > ms(500),
                "watcher of svc-{i} was woken by the change to svc-7"
            );
            assert_eq!(r.index(), indexes[i], "svc-{i} index unchanged");
        }
    }
}

/// A check status change wakes the watcher of its service, with the new status in the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_status_change_wakes_watcher() {
    let reg = Arc::new(Registry::start());
    reg.register(&json!({"Name": "web", "Check": {"TTL": "30s"}}))
        .await;
    let idx = reg.health_service("web", "").await.index();
    // A ?passing watcher sees the service appear when its check passes.
    let pidx = reg.health_service("web", "passing").await.index();

    let waiter = spawn_get(
        &reg,
        format!("/v1/health/service/web?index={idx}&wait=10s"),
        secs(20),
    );
    let pwaiter = spawn_get(
        &reg,
        format!("/v1/health/service/web?passing&index={pidx}&wait=10s"),
        secs(20),
    );
    let_request_park().await;
    assert!(!waiter.is_finished());

    let write = reg
        .put_empty("/v1/agent/check/pass/service:web")
        .await
        .expect_status(200);
    let r = waiter.await.unwrap().expect_status(200);
    let lag = r.received_at.saturating_duration_since(write.received_at);
    assert!(lag < ms(100), "woken {lag:?} after the check passed");
    assert!(r.index() > idx);
    assert_eq!(find_check(&r.json()[0], "service:web")["Status"], "passing");

    let p = pwaiter.await.unwrap().expect_status(200);
    assert!(p.received_at - write.received_at < secs(1));
    assert_eq!(service_ids(&p.json()), vec!["web"]);
}

/// Output-only changes (pass with a new note while already passing) do not bump the index that
/// wakes watchers (Consul defers them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_only_change_does_not_bump_index() {
    let reg = Arc::new(Registry::start());
    reg.register(&json!({"Name": "web", "Check": {"TTL": "30s"}}))
        .await;
    reg.ttl("pass", "service:web", Some("first")).await;
    let idx = reg.health_service("web", "").await.index();

    let waiter = spawn_get(
        &reg,
        format!("/v1/health/service/web?index={idx}&wait=1s"),
        secs(10),
    );
    let_request_park().await;
    reg.ttl("pass", "service:web", Some("second")).await;
    reg.ttl("pass", "service:web", Some("third")).await;

    // The agent's own view has the new output at once.
    let c = reg.check("service:web").await.unwrap();
    assert_eq!(c["Status"], "passing");
    assert_eq!(c["Output"], "third");

    let after = reg.health_service("web", "").await;
    assert_eq!(
        after.index(),
        idx,
        "X-Consul-Index changed on an output-only update"
    );

    let r = waiter.await.unwrap().expect_status(200);
    assert!(
        r.elapsed() >= secs(1),
        "watcher woken after {:?} by an output-only change",
        r.elapsed()
    );
    assert_eq!(r.index(), idx);

    // A status change does bump it.
    reg.ttl("warn", "service:web", Some("third")).await;
    assert!(reg.health_service("web", "").await.index() > idx);
}

/// Deregistration wakes the watcher; so does a change that makes a filtered result empty (22).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistration_and_filtered_emptying_wake_watchers() {
    let reg = Arc::new(Registry::start());
    reg.register(&json!({"Name": "web", "ID": "web1", "Tags": ["bar"]}))
        .await;
    reg.register(&json!({"Name": "api", "ID": "api1"})).await;

    let filter = encode(r#""bar" in Service.Tags"#);
    let fresp = reg
        .get(&format!("/v1/health/service/web?filter={filter}"))
        .await
        .expect_status(200);
    assert_eq!(service_ids(&fresp.json()), vec!["web1"]);
    let fwaiter = spawn_get(
        &reg,
        format!(
            "/v1/health/service/web?filter={filter}&index={}&wait=10s",
            fresp.index()
        ),
        secs(20),
    );
    let aidx = reg.health_service("api", "").await.index();
    let awaiter = spawn_get(
        &reg,
        format!("/v1/health/service/api?index={aidx}&wait=10s"),
        secs(20),
    );
    let_request_park().await;
    assert!(!fwaiter.is_finished() && !awaiter.is_finished());

    // Re-register web1 without the tag: the filtered result becomes [].
    let t0 = Instant::now();
    reg.register(&json!({"Name": "web", "ID": "web1", "Tags": []}))
        .await;
    let f = fwaiter.await.unwrap().expect_status(200);
    assert!(f.received_at - t0 < secs(2), "filtered watcher woken");
    assert_eq!(f.json(), json!([]));
    assert!(f.index() > fresp.index());

    let t0 = Instant::now();
    reg.deregister("api1").await;
    let a = awaiter.await.unwrap().expect_status(200);
    assert!(
        a.received_at - t0 < secs(2),
        "deregistration wakes the watcher"
    );
    assert_eq!(a.json(), json!([]));
    assert!(a.index() > aidx);
}

/// catalog/services and catalog/service and health/checks block too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_and_checks_reads_block() {
    let reg = Arc::new(Registry::start());
    reg.register(&json!({"Name": "web", "Check": {"TTL": "30s"}}))
        .await;
    let sidx = reg
        .get("/v1/catalog/services")
        .await
        .expect_status(200)
        .index();
    let cidx = reg
        .get("/v1/catalog/service/web")
        .await
        .expect_status(200)
        .index();
    let hidx = reg
        .get("/v1/health/checks/web")
        .await
        .expect_status(200)
        .index();

    let services = spawn_get(
        &reg,
        format!("/v1/catalog/services?index={sidx}&wait=10s"),
        secs(20),
    );
    let catalog_web = spawn_get(
        &reg,
        format!("/v1/catalog/service/web?index={cidx}&wait=1s"),
        secs(20),
    );
    let checks_web = spawn_get(
        &reg,
        format!("/v1/health/checks/web?index={hidx}&wait=10s"),
        secs(20),
    );
    let_request_park().await;

    let t0 = Instant::now();
    reg.register(&json!({"Name": "db"})).await;
    let s = services.await.unwrap().expect_status(200);
    assert!(
        s.received_at - t0 < secs(1),
        "catalog/services woken by a new service"
    );
    assert!(s.index() > sidx);
    assert_eq!(keys(&s.json()), vec!["db", "web"]);

    // catalog/service/web is not woken by another service's registration.
    let c = catalog_web.await.unwrap().expect_status(200);
    assert!(
        c.elapsed() >= secs(1),
        "catalog/service/web woken after {:?}",
        c.elapsed()
    );
    assert_eq!(c.index(), cidx);

    assert!(!checks_web.is_finished(), "health/checks/web woken by db");
    let t0 = Instant::now();
    reg.ttl("pass", "service:web", None).await;
    let h = checks_web.await.unwrap().expect_status(200);
    assert!(
        h.received_at - t0 < secs(1),
        "health/checks woken by a status change"
    );
    assert!(h.index() > hidx);
    assert_eq!(h.json()[0]["Status"], "passing");
}

/// Bad index or wait values are 400s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_index_and_wait_are_400() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "web"})).await;
    for q in ["index=abc", "index=-1", "index=1.5"] {
        reg.get(&format!("/v1/health/service/web?{q}"))
            .await
            .expect_status(400)
            .expect_body_contains("Invalid index");
    }
    for q in [
        "index=1&wait=abc",
        "index=1&wait=10parsecs",
        "index=1&wait=-",
    ] {
        reg.get(&format!("/v1/health/service/web?{q}"))
            .await
            .expect_status(400)
            .expect_body_contains("Invalid wait time");
    }
    reg.get("/v1/catalog/services?index=zz")
        .await
        .expect_status(400);
    reg.get("/v1/kv/k?index=zz").await.expect_status(400);
}

/// A wait above the 10 min maximum is clamped, not refused; a change still wakes the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_wait_is_accepted_and_woken() {
    let reg = Arc::new(Registry::start());
    reg.register(&json!({"Name": "web", "Port": 1})).await;
    let idx = reg.health_service("web", "").await.index();
    let waiter = spawn_get(
        &reg,
        format!("/v1/health/service/web?index={idx}&wait=20m"),
        secs(20),
    );
    let_request_park().await;
    assert!(!waiter.is_finished(), "wait=20m: {:?}", waiter);
    let t0 = Instant::now();
    reg.register(&json!({"Name": "web", "Port": 2})).await;
    let r = waiter.await.unwrap().expect_status(200);
    assert!(r.received_at - t0 < secs(1));
    assert_eq!(r.json()[0]["Service"]["Port"], 2);
}
