//! Durability with --data-dir: every acknowledged write survives kill -9 right after its 200, and
//! check state restarts as Consul's does (TTL checks keep their last state until they expire).

use std::time::Instant;

use crate::support::*;
use base64::Engine;
use serde_json::{json, Value};

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(
            v.as_str()
                .unwrap_or_else(|| panic!("Value is not a string: {v}")),
        )
        .expect("Value is base64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_checks_and_kv_survive_kill9() {
    let mut reg = Registry::builder().persistent().start();
    reg.register(&json!({
        "Name": "web", "ID": "web1", "Port": 8080, "Address": "10.0.0.5",
        "Tags": ["a", "b"], "Meta": {"beamline": "5.3.1"},
        "Weights": {"Passing": 5, "Warning": 2},
        "Check": {"CheckID": "web1-ttl", "TTL": "60s", "Notes": "n"}
    }))
    .await;
    reg.ttl("pass", "web1-ttl", Some("alive")).await;
    reg.register(&json!({"Name": "db", "ID": "db1", "Checks": [{"TTL": "60s"}, {"TTL": "60s"}]}))
        .await;
    reg.put(
        "/v1/agent/check/register",
        &json!({"Name": "node-ttl", "TTL": "60s", "Status": "warning"}),
    )
    .await
    .expect_status(200);
    reg.put_bytes("/v1/kv/config/app?flags=7", "hello")
        .await
        .expect_status(200);
    reg.put_bytes("/v1/kv/config/other", "x")
        .await
        .expect_status(200);
    let kv_before = reg.get("/v1/kv/config/app").await.expect_status(200).json();
    let services_before = reg.services().await;
    let health_index_before = reg.health_service("web", "").await.index();

    reg.kill9();
    reg.restart();

    let services = reg.services().await;
    assert_eq!(keys(&services), vec!["db1", "web1"]);
    let web = &services["web1"];
    for field in [
        "Service",
        "Port",
        "Address",
        "Tags",
        "Meta",
        "Weights",
        "TaggedAddresses",
    ] {
        assert_eq!(
            web[field], services_before["web1"][field],
            "web1.{field} after restart"
        );
    }

    let checks = reg.checks().await;
    assert_eq!(
        keys(&checks),
        vec!["node-ttl", "service:db1:1", "service:db1:2", "web1-ttl"]
    );
    assert_eq!(
        checks["web1-ttl"]["Status"], "passing",
        "TTL check keeps its state"
    );
    assert_eq!(checks["web1-ttl"]["Output"], "alive");
    assert_eq!(checks["web1-ttl"]["Notes"], "n");
    assert_eq!(checks["web1-ttl"]["ServiceID"], "web1");
    assert_eq!(checks["node-ttl"]["Status"], "warning");
    assert_eq!(checks["service:db1:1"]["Status"], "critical");

    let kv = reg.get("/v1/kv/config/app").await.expect_status(200).json();
    assert_eq!(unb64(&kv[0]["Value"]), b"hello");
    assert_eq!(kv[0]["Flags"], 7);
    assert_eq!(
        kv[0]["ModifyIndex"], kv_before[0]["ModifyIndex"],
        "KV indexes survive (clients CAS on them)"
    );
    assert_eq!(kv[0]["CreateIndex"], kv_before[0]["CreateIndex"]);
    assert_eq!(
        reg.get("/v1/kv/config/other?raw")
            .await
            .expect_status(200)
            .body,
        b"x"
    );

    // A CAS with an index read before the restart still works after it.
    let idx = kv_before[0]["ModifyIndex"].as_u64().unwrap();
    let r = reg
        .put_bytes(&format!("/v1/kv/config/app?cas={idx}"), "after")
        .await
        .expect_status(200);
    assert_eq!(r.json(), json!(true));

    // Indexes do not go backwards across a restart.
    // (Not ?passing: the node-level check is warning, which takes every service out of it.)
    let after = reg.health_service("web", "").await;
    assert!(
        after.index() >= health_index_before,
        "X-Consul-Index went back from {health_index_before} to {}",
        after.index()
    );
    assert_eq!(service_ids(&after.json()), vec!["web1"]);
    // And new writes get higher indexes than anything before.
    reg.register(&json!({"Name": "web", "ID": "web2"})).await;
    assert!(reg.health_service("web", "").await.index() > health_index_before);
}

/// Deletions are durable too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistrations_and_deletes_survive_kill9() {
    let mut reg = Registry::builder().persistent().start();
    reg.register(&json!({"Name": "a", "Check": {"TTL": "60s"}}))
        .await;
    reg.register(&json!({"Name": "b", "Check": {"TTL": "60s"}}))
        .await;
    reg.put_bytes("/v1/kv/k1", "1").await.expect_status(200);
    reg.put_bytes("/v1/kv/dir/k2", "2").await.expect_status(200);
    reg.put_bytes("/v1/kv/dir/k3", "3").await.expect_status(200);
    reg.deregister("a").await;
    reg.put_empty("/v1/agent/check/deregister/service:b")
        .await
        .expect_status(200);
    reg.delete("/v1/kv/k1").await.expect_status(200);
    reg.delete("/v1/kv/dir/?recurse").await.expect_status(200);

    reg.kill9();
    reg.restart();

    assert_eq!(keys(&reg.services().await), vec!["b"]);
    assert_eq!(reg.checks().await, json!({}));
    reg.get("/v1/kv/k1").await.expect_status(404);
    reg.get("/v1/kv/dir/?recurse").await.expect_status(404);
}

/// Many writes in a row, then kill -9 right after the last 200: all of them are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_writes_survives_kill9() {
    let mut reg = Registry::builder().persistent().start();
    for i in 0..40 {
        reg.put_bytes(&format!("/v1/kv/burst/{i:03}"), format!("v{i}"))
            .await
            .expect_status(200);
        if i % 4 == 0 {
            reg.register(&json!({"Name": "burst", "ID": format!("burst-{i}"), "Port": i}))
                .await;
        }
    }
    reg.kill9();
    reg.restart();
    let r = reg.get("/v1/kv/burst/?keys").await.expect_status(200);
    assert_eq!(arr(&r.json()).len(), 40);
    assert_eq!(
        reg.get("/v1/kv/burst/039?raw")
            .await
            .expect_status(200)
            .body,
        b"v39"
    );
    assert_eq!(keys(&reg.services().await).len(), 10);
}

/// A passing TTL check stays passing after a restart until its TTL runs out, then expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_check_keeps_state_until_it_expires() {
    const TTL_SECS: u64 = 4;
    let mut reg = Registry::builder().persistent().start();
    reg.register(&json!({"Name": "web", "Check": {"TTL": format!("{TTL_SECS}s")}}))
        .await;
    reg.ttl("pass", "service:web", Some("ok")).await;
    let passed_at = Instant::now();

    reg.kill9();
    reg.restart();

    let status = reg.check_status("service:web").await;
    if passed_at.elapsed() < secs(TTL_SECS - 1) {
        assert_eq!(
            status.as_deref(),
            Some("passing"),
            "restarted {:?} after the pass, within the TTL",
            passed_at.elapsed()
        );
        assert_eq!(
            service_ids(&reg.health_service("web", "passing").await.json()),
            vec!["web"]
        );
    }
    reg.wait_check_status("service:web", "critical", secs(15))
        .await;
    assert!(
        passed_at.elapsed() >= ms(TTL_SECS * 1000 - 100),
        "expired {:?} after the pass, before its TTL",
        passed_at.elapsed()
    );
}

/// Interval checks re-run after a restart (their state is not frozen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_checks_rerun_after_restart() {
    let mut reg = Registry::builder().persistent().start();
    let target = HttpTarget::start(200).await;
    reg.register(&json!({
        "Name": "web", "Check": {"HTTP": target.url("/"), "Interval": "1s"}
    }))
    .await;
    reg.wait_check_status("service:web", "passing", secs(10))
        .await;
    reg.kill9();
    target.set_status(500);
    reg.restart();
    reg.wait_check_status("service:web", "critical", secs(10))
        .await;
    target.set_status(200);
    reg.wait_check_status("service:web", "passing", secs(10))
        .await;
}

/// A registry started on the data dir of another keeps working normally (new writes, reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_twice_and_keep_writing() {
    let mut reg = Registry::builder().persistent().start();
    reg.put_bytes("/v1/kv/gen", "1").await.expect_status(200);
    reg.kill9();
    reg.restart();
    reg.put_bytes("/v1/kv/gen", "2").await.expect_status(200);
    reg.register(&json!({"Name": "s"})).await;
    reg.kill9();
    reg.restart();
    assert_eq!(
        reg.get("/v1/kv/gen?raw").await.expect_status(200).body,
        b"2"
    );
    assert_eq!(keys(&reg.services().await), vec!["s"]);
    assert!(reg.data_dir().is_some_and(|d| d.exists()));
}

/// Maintenance mode is an ordinary persisted check in Consul: it survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_survives_kill9() {
    let mut reg = Registry::builder().persistent().start();
    reg.register(&json!({"Name": "redis", "Check": {"TTL": "60s", "Status": "passing"}}))
        .await;
    reg.put_empty("/v1/agent/service/maintenance/redis?enable=true&reason=upgrade")
        .await
        .expect_status(200);
    reg.kill9();
    reg.restart();
    let checks = reg.checks().await;
    let maint: Vec<&Value> = checks
        .as_object()
        .unwrap()
        .iter()
        .filter(|(id, _)| id.contains("maintenance"))
        .map(|(_, c)| c)
        .collect();
    assert_eq!(maint.len(), 1, "{checks}");
    assert_eq!(maint[0]["Notes"], "upgrade");
    reg.get("/v1/agent/health/service/id/redis")
        .await
        .expect_status(503);
    reg.put_empty("/v1/agent/service/maintenance/redis?enable=false")
        .await
        .expect_status(200);
    reg.get("/v1/agent/health/service/id/redis")
        .await
        .expect_status(200);
}
