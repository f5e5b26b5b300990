//! Health and catalog reads: health/service (passing, tag, filter), health/checks, health/state,
//! catalog/*, status/*. Numbers refer to docs/consul-api.md, "Behaviours from Consul's own API tests".

use crate::support::*;
use serde_json::{json, Value};

/// Registers foo1 (passing), foo2 (critical), foo3 (warning), each with one TTL check.
async fn three_instances(reg: &Registry) {
    for (id, status, tags) in [
        ("foo1", "passing", json!(["bar"])),
        ("foo2", "critical", json!(["bar", "v2"])),
        ("foo3", "warning", json!(["v2"])),
    ] {
        reg.register(&json!({
            "Name": "foo", "ID": id, "Port": 8000, "Tags": tags,
            "Check": {"TTL": "30s", "Status": status}
        }))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_entry_shape() {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "foo", "ID": "foo1", "Port": 8000, "Tags": ["bar"],
        "Address": "127.0.0.1", "Meta": {"version": "1"},
        "Check": {"TTL": "30s", "Notes": "n"}
    }))
    .await;
    reg.register(&json!({"Name": "foo", "ID": "foo2", "Port": 8001}))
        .await;

    let resp = reg.health_service("foo", "").await.expect_read_headers();
    let entries = resp.json();
    assert_eq!(service_ids(&entries), vec!["foo1", "foo2"]);
    let e1 = arr(&entries)
        .iter()
        .find(|e| e["Service"]["ID"] == "foo1")
        .unwrap();
    let node = &e1["Node"];
    assert!(node.is_object(), "Node is an object: {e1}");
    assert!(
        node["Node"].as_str().is_some_and(|n| !n.is_empty()),
        "{node}"
    );
    assert_eq!(node["Datacenter"], "dc1");
    assert!(node["Address"].is_string(), "{node}");

    let svc = &e1["Service"];
    assert_eq!(svc["Service"], "foo");
    assert_eq!(svc["Port"], 8000);
    assert_eq!(svc["Tags"], json!(["bar"]));
    assert_eq!(svc["Address"], "127.0.0.1");
    assert_eq!(svc["Meta"], json!({"version": "1"}));
    assert_eq!(svc["Weights"], json!({"Passing": 1, "Warning": 1}));
    // Raft indexes: present, > 0, and never above the result's X-Consul-Index.
    let create = svc["CreateIndex"].as_u64().expect("Service.CreateIndex");
    let modify = svc["ModifyIndex"].as_u64().expect("Service.ModifyIndex");
    assert!(create > 0 && modify >= create, "{svc}");
    assert!(
        resp.index() >= modify,
        "X-Consul-Index {} < ModifyIndex {modify}",
        resp.index()
    );

    assert!(e1["Checks"].is_array(), "{e1}");
    // Node-level checks (Consul's serfHealth) may be there too; they have ServiceID "".
    for c in arr(&e1["Checks"]) {
        assert!(c["ServiceID"].is_string(), "{c}");
    }
    let checks = service_checks(e1);
    assert_eq!(checks.len(), 1, "{e1}");
    let c = &checks[0];
    assert_eq!(c["CheckID"], "service:foo1");
    assert_eq!(c["Name"], "Service 'foo' check");
    assert_eq!(c["Status"], "critical");
    assert_eq!(c["Notes"], "n");
    assert_eq!(c["ServiceID"], "foo1");
    assert_eq!(c["ServiceName"], "foo");
    assert_eq!(c["ServiceTags"], json!(["bar"]));
    assert_eq!(c["Type"], "ttl");
    assert_eq!(c["Node"], node["Node"]);

    // 24: an instance without checks has "Checks": [] (not null, not missing).
    let e2 = arr(&entries)
        .iter()
        .find(|e| e["Service"]["ID"] == "foo2")
        .unwrap();
    assert!(e2["Checks"].is_array(), "Checks is an array: {e2}");
    assert!(service_checks(e2).is_empty(), "{e2}");
    assert_eq!(e2["Service"]["Tags"], json!([]), "Tags [] not null: {e2}");
}

/// 24: an unknown service is [] (the body, not null) with an index > 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_service_is_empty_list_with_index() {
    let reg = Registry::start();
    let r = reg.health_service("nope", "").await.expect_read_headers();
    assert_eq!(r.json(), json!([]));
    assert_eq!(r.text().trim(), "[]");
    let r = reg
        .get("/v1/catalog/service/nope")
        .await
        .expect_status(200)
        .expect_read_headers();
    assert_eq!(r.json(), json!([]));
    let r = reg
        .get("/v1/health/checks/nope")
        .await
        .expect_status(200)
        .expect_read_headers();
    assert_eq!(r.json(), json!([]));
    let r = reg
        .get("/v1/health/state/critical")
        .await
        .expect_status(200)
        .expect_read_headers();
    assert_eq!(r.json(), json!([]));

    // Still [] (not 404) after something else exists.
    reg.register(&json!({"Name": "other"})).await;
    let r = reg
        .health_service("nope", "passing")
        .await
        .expect_read_headers();
    assert_eq!(r.json(), json!([]));
}

/// 23 and Consul's filterNonPassing: warning is dropped too; bare, 1 and true all filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_filter_variants() {
    let reg = Registry::start();
    three_instances(&reg).await;

    let all = reg.health_service("foo", "").await.json();
    assert_eq!(service_ids(&all), vec!["foo1", "foo2", "foo3"]);
    for q in ["passing", "passing=1", "passing=true", "passing="] {
        let only = reg.health_service("foo", q).await.json();
        assert_eq!(service_ids(&only), vec!["foo1"], "?{q}");
    }
    let unfiltered = reg.health_service("foo", "passing=false").await.json();
    assert_eq!(
        service_ids(&unfiltered),
        vec!["foo1", "foo2", "foo3"],
        "?passing=false"
    );

    reg.get("/v1/health/service/foo?passing=garbage")
        .await
        .expect_status(400)
        .expect_body_contains("Invalid value for ?passing");
}

/// Consul: a node-level check (one with no ServiceID) appears in every entry's Checks, and a
/// failing node check takes every service on the node out of ?passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_level_check_affects_all_services() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await;
    reg.put(
        "/v1/agent/check/register",
        &json!({"Name": "node-check", "TTL": "30s"}),
    )
    .await
    .expect_status(200);
    let checks = reg.checks().await;
    assert_eq!(checks["node-check"]["Status"], "critical");
    assert_eq!(checks["node-check"]["ServiceID"], "");

    let entries = reg.health_service("foo", "").await.json();
    let ids: Vec<&str> = arr(&entries[0]["Checks"])
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"node-check"), "node check in Checks: {ids:?}");
    assert!(ids.contains(&"service:foo"), "{ids:?}");
    assert_eq!(reg.health_service("foo", "passing").await.json(), json!([]));

    reg.ttl("pass", "node-check", None).await;
    assert_eq!(
        service_ids(&reg.health_service("foo", "passing").await.json()),
        vec!["foo"]
    );
}

/// 18, 19: tag is repeatable and ANDed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_anded() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "ID": "foo1", "Tags": ["bar"], "Check": {"TTL": "30s", "Status": "passing"}}))
        .await;
    reg.register(
        &json!({"Name": "foo", "ID": "foo2", "Tags": ["bar", "v2"], "Check": {"TTL": "30s"}}),
    )
    .await;

    let e = reg.health_service("foo", "tag=bar&passing=1").await.json();
    assert_eq!(service_ids(&e), vec!["foo1"]);
    let e = reg.health_service("foo", "tag=bar").await.json();
    assert_eq!(service_ids(&e), vec!["foo1", "foo2"]);
    let e = reg.health_service("foo", "tag=bar&tag=v2").await.json();
    assert_eq!(service_ids(&e), vec!["foo2"]);
    let e = reg.health_service("foo", "tag=v2&tag=nope").await.json();
    assert_eq!(e, json!([]));

    // catalog/service honours tag too.
    let c = reg
        .get("/v1/catalog/service/foo?tag=v2")
        .await
        .expect_status(200)
        .json();
    assert_eq!(arr(&c).len(), 1);
    assert_eq!(c[0]["ServiceID"], "foo2");
}

async fn filtered(reg: &Registry, expr: &str) -> Vec<String> {
    let r = reg
        .get(&format!("/v1/health/service/foo?filter={}", encode(expr)))
        .await
        .expect_status(200)
        .expect_read_headers();
    service_ids(&r.json())
}

/// 20, and the filter subset the mesh and agents use: ==, !=, in, and over Service.Tags/Meta/ID and Node.Meta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_expressions() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "ID": "foo1", "Tags": ["bar"], "Meta": {"version": "1"}}))
        .await;
    reg.register(
        &json!({"Name": "foo", "ID": "foo2", "Tags": ["bar", "v2"], "Meta": {"version": "2"}}),
    )
    .await;
    reg.register(&json!({"Name": "foo", "ID": "foo3", "Meta": {"version": "2", "env": "prod"}}))
        .await;

    assert_eq!(
        filtered(&reg, r#"Service.Meta.version == "2""#).await,
        ["foo2", "foo3"]
    );
    assert_eq!(
        filtered(&reg, r#"Service.Meta.version != "2""#).await,
        ["foo1"]
    );
    assert_eq!(filtered(&reg, r#""v2" in Service.Tags"#).await, ["foo2"]);
    assert_eq!(
        filtered(&reg, r#""bar" in Service.Tags"#).await,
        ["foo1", "foo2"]
    );
    assert_eq!(filtered(&reg, r#"Service.ID == "foo3""#).await, ["foo3"]);
    assert_eq!(
        filtered(&reg, r#"Service.ID != "foo3""#).await,
        ["foo1", "foo2"]
    );
    assert_eq!(
        filtered(
            &reg,
            r#""bar" in Service.Tags and Service.Meta.version == "2""#
        )
        .await,
        ["foo2"]
    );
    assert_eq!(
        filtered(
            &reg,
            r#"Service.Meta.version == "2" and Service.ID != "foo2""#
        )
        .await,
        ["foo3"]
    );
    assert_eq!(
        filtered(&reg, r#"Service.Meta.env == "prod""#).await,
        ["foo3"]
    );
    // The node has no meta "os": nothing matches.
    assert!(filtered(&reg, r#"Node.Meta.os == "linux""#)
        .await
        .is_empty());
    assert!(
        filtered(&reg, r#"Node.Meta.os == "linux" and Service.ID == "foo1""#)
            .await
            .is_empty()
    );

    // filter combines with tag.
    let r = reg
        .get(&format!(
            "/v1/health/service/foo?tag=bar&filter={}",
            encode(r#"Service.Meta.version == "1""#)
        ))
        .await
        .expect_status(200);
    assert_eq!(service_ids(&r.json()), vec!["foo1"]);

    // A filter that does not parse is a 400, not an empty list.
    reg.get(&format!(
        "/v1/health/service/foo?filter={}",
        encode("Service.ID ==")
    ))
    .await
    .expect_status(400);
}

/// 20 as written in Consul's test: an unquoted number on the right-hand side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_unquoted_value() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "ID": "foo1", "Meta": {"version": "1"}}))
        .await;
    reg.register(&json!({"Name": "foo", "ID": "foo2", "Meta": {"version": "2"}}))
        .await;
    assert_eq!(filtered(&reg, "Service.Meta.version == 2").await, ["foo2"]);
}

/// 17: health/checks/:service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_by_service() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "Tags": ["bar"], "Check": {"TTL": "15s"}}))
        .await;
    reg.register(&json!({"Name": "other", "Check": {"TTL": "15s"}}))
        .await;
    let r = reg
        .get("/v1/health/checks/foo")
        .await
        .expect_status(200)
        .expect_read_headers();
    let checks = r.json();
    assert_eq!(arr(&checks).len(), 1, "{checks}");
    let c = &checks[0];
    assert!(c["Node"].as_str().is_some_and(|n| !n.is_empty()), "{c}");
    assert_eq!(c["CheckID"], "service:foo");
    assert_eq!(c["Name"], "Service 'foo' check");
    assert_eq!(c["Status"], "critical");
    assert_eq!(c["ServiceID"], "foo");
    assert_eq!(c["ServiceName"], "foo");
    assert_eq!(c["ServiceTags"], json!(["bar"]));
    assert_eq!(c["Type"], "ttl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_state() {
    let reg = Registry::start();
    three_instances(&reg).await;
    // Service checks only: a node-level serfHealth may be listed too, as in Consul.
    let ids = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> = service_checks(v)
            .iter()
            .map(|c| c["CheckID"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    for (state, expect) in [
        ("passing", vec!["service:foo1"]),
        ("critical", vec!["service:foo2"]),
        ("warning", vec!["service:foo3"]),
        ("any", vec!["service:foo1", "service:foo2", "service:foo3"]),
    ] {
        let r = reg
            .get(&format!("/v1/health/state/{state}"))
            .await
            .expect_status(200)
            .expect_read_headers();
        assert_eq!(ids(&r.json()), expect, "state {state}");
    }
    reg.get("/v1/health/state/fluffy").await.expect_status(400);
}

/// 25: catalog endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_endpoints() {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "foo", "ID": "foo1", "Tags": ["a", "b"], "Port": 8000,
        "Address": "10.1.2.3", "Meta": {"k": "v"}, "Check": {"TTL": "30s"}
    }))
    .await;
    reg.register(&json!({"Name": "foo", "ID": "foo2", "Tags": ["b", "c"], "Port": 8001}))
        .await;
    reg.register(&json!({"Name": "bar", "Port": 9000})).await;

    let r = reg
        .get("/v1/catalog/services")
        .await
        .expect_status(200)
        .expect_read_headers();
    let services = r.json();
    assert_eq!(keys(&services), vec!["bar", "foo"]);
    assert_eq!(services["bar"], json!([]));
    let mut foo_tags: Vec<String> = arr(&services["foo"])
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    foo_tags.sort();
    assert_eq!(
        foo_tags,
        ["a", "b", "c"],
        "tags of all instances, once each"
    );

    let r = reg
        .get("/v1/catalog/service/foo")
        .await
        .expect_status(200)
        .expect_read_headers();
    let list = r.json();
    assert_eq!(
        arr(&list).len(),
        2,
        "critical instances are listed too: {list}"
    );
    let e = arr(&list)
        .iter()
        .find(|e| e["ServiceID"] == "foo1")
        .unwrap();
    assert_eq!(e["Datacenter"], "dc1");
    assert_eq!(e["ServiceName"], "foo");
    assert_eq!(e["ServicePort"], 8000);
    assert_eq!(e["ServiceAddress"], "10.1.2.3");
    assert_eq!(e["ServiceTags"], json!(["a", "b"]));
    assert_eq!(e["ServiceMeta"], json!({"k": "v"}));
    assert_eq!(e["ServiceEnableTagOverride"], false);
    assert_eq!(e["ServiceWeights"], json!({"Passing": 1, "Warning": 1}));
    assert!(e["Node"].as_str().is_some_and(|n| !n.is_empty()), "{e}");
    assert!(e["Address"].is_string(), "node Address: {e}");
    assert_eq!(
        e["ServiceTaggedAddresses"]["lan_ipv4"],
        json!({"Address": "10.1.2.3", "Port": 8000})
    );

    let nodes = reg
        .get("/v1/catalog/nodes")
        .await
        .expect_status(200)
        .expect_read_headers()
        .json();
    assert_eq!(arr(&nodes).len(), 1);
    assert_eq!(nodes[0]["Node"], e["Node"]);
    assert_eq!(nodes[0]["Datacenter"], "dc1");

    // Lists are [] never null, also for a service without tags.
    let bar = reg
        .get("/v1/catalog/service/bar")
        .await
        .expect_status(200)
        .json();
    assert_eq!(bar[0]["ServiceTags"], json!([]), "{bar}");
    let dcs = reg
        .get("/v1/catalog/datacenters")
        .await
        .expect_status(200)
        .json();
    assert_eq!(dcs, json!(["dc1"]));

    // Deregistering the last instance of a name removes it from catalog/services.
    reg.deregister("bar").await;
    let services = reg
        .get("/v1/catalog/services")
        .await
        .expect_status(200)
        .json();
    assert_eq!(keys(&services), vec!["foo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_leader_and_peers() {
    let reg = Registry::start();
    let leader = reg.get("/v1/status/leader").await.expect_status(200).json();
    let leader = leader
        .as_str()
        .unwrap_or_else(|| panic!("leader is a JSON string: {leader}"))
        .to_string();
    assert!(!leader.is_empty(), "a leader is known");
    assert!(leader.contains(':'), "host:port form, got {leader:?}");
    let peers = reg.get("/v1/status/peers").await.expect_status(200).json();
    let peers: Vec<&str> = arr(&peers).iter().map(|p| p.as_str().unwrap()).collect();
    assert!(
        peers.contains(&leader.as_str()),
        "peers {peers:?} include the leader"
    );
}

/// Every blocking read carries X-Consul-Index (> 0), X-Consul-KnownLeader: true and
/// X-Consul-LastContact: 0 — also on a fresh registry with nothing registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_headers_on_every_read() {
    let reg = Registry::start();
    let paths = [
        "/v1/health/service/foo",
        "/v1/health/service/foo?passing",
        "/v1/health/checks/foo",
        "/v1/health/state/any",
        "/v1/catalog/services",
        "/v1/catalog/service/foo",
        "/v1/catalog/nodes",
    ];
    let check_all = async |reg: &Registry| {
        for p in paths {
            let r = reg.get(p).await.expect_status(200).expect_read_headers();
            assert_eq!(
                r.header("X-Consul-LastContact").as_deref(),
                Some("0"),
                "{p}"
            );
        }
    };
    check_all(&reg).await;
    reg.register(&json!({"Name": "foo", "Check": {"TTL": "30s"}}))
        .await;
    check_all(&reg).await;
    reg.put_bytes("/v1/kv/some/key", "v")
        .await
        .expect_status(200);
    let r = reg
        .get("/v1/kv/some/key")
        .await
        .expect_status(200)
        .expect_read_headers();
    assert_eq!(r.header("X-Consul-LastContact").as_deref(), Some("0"));
}

/// Query parameters that common clients send (consistency modes, cached, dc, ns, near, node-meta
/// with no match semantics needed here) are accepted, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_client_parameters_accepted() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "web", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await;
    for q in [
        "stale",
        "consistent",
        "cached",
        "dc=dc1",
        "ns=default",
        "passing&dc=dc1&stale",
        "index=1&wait=10ms&dc=dc1",
    ] {
        let r = reg.get(&format!("/v1/health/service/web?{q}")).await;
        assert_eq!(r.code(), 200, "?{q}: {} {:?}", r.status, r.text());
        assert_eq!(service_ids(&r.json()), vec!["web"], "?{q}");
    }
    for path in [
        "/v1/catalog/services?dc=dc1&stale",
        "/v1/catalog/service/web?dc=dc1&cached",
        "/v1/agent/services?ns=default",
        "/v1/kv/?recurse&dc=dc1",
        "/v1/health/checks/web?dc=dc1",
    ] {
        let r = reg.get(path).await;
        assert!(
            r.code() == 200 || (path.starts_with("/v1/kv/") && r.code() == 404),
            "{path}: {} {:?}",
            r.status,
            r.text()
        );
    }
}
