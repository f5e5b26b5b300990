//! Agent endpoints: service registration and its defaults, agent/services, agent/service/:id,
//! agent/checks, agent/self, agent/health/service/{name,id}, maintenance, re-registration.
//! Numbers in comments refer to "Behaviours from Consul's own API tests" in docs/consul-api.md.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_on_port_zero_and_prints_exactly_one_line() {
    let reg = Registry::start();
    assert_ne!(reg.addr.port(), 0);
    assert!(
        reg.addr.ip().is_loopback(),
        "listens where asked: {}",
        reg.addr
    );
    let leader = reg.get("/v1/status/leader").await.expect_status(200);
    assert!(leader.json().is_string(), "leader is a JSON string");
    assert!(
        reg.extra_stdout().is_empty(),
        "stdout must carry only the listening line (logs go to stderr), got {:?}",
        reg.extra_stdout()
    );
}

/// 1, 2, 17: register with a TTL check, read it back through the agent endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_ttl_check_defaults() {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "foo", "ID": "foo", "Tags": ["bar", "baz"], "Port": 8000,
        "Check": {"TTL": "15s"}
    }))
    .await;

    let services = reg.services().await;
    assert_eq!(keys(&services), vec!["foo"]);
    let foo = &services["foo"];
    assert_eq!(foo["ID"], "foo");
    assert_eq!(foo["Service"], "foo");
    assert_eq!(foo["Tags"], json!(["bar", "baz"]));
    assert_eq!(foo["Port"], 8000);
    assert_eq!(foo["Weights"], json!({"Passing": 1, "Warning": 1}));

    let checks = reg.checks().await;
    assert_eq!(keys(&checks), vec!["service:foo"]);
    let c = &checks["service:foo"];
    assert_eq!(c["CheckID"], "service:foo");
    assert_eq!(c["Name"], "Service 'foo' check");
    assert_eq!(c["Status"], "critical", "initial status is critical");
    assert_eq!(c["ServiceID"], "foo");
    assert_eq!(c["ServiceName"], "foo");
    assert_eq!(c["Type"], "ttl");

    // 2: aggregated health by ID.
    let h = reg
        .get("/v1/agent/health/service/id/foo")
        .await
        .expect_status(503);
    let body = h.json();
    assert_eq!(body["AggregatedStatus"], "critical");
    assert_eq!(body["Service"]["Port"], 8000);
    assert_eq!(body["Service"]["ID"], "foo");
    assert!(body["Checks"].is_array(), "Checks is an array: {body}");
    reg.get("/v1/agent/health/service/id/foo2")
        .await
        .expect_status(404);

    // By name: a list.
    let h = reg
        .get("/v1/agent/health/service/name/foo")
        .await
        .expect_status(503);
    let list = h.json();
    assert_eq!(arr(&list).len(), 1);
    assert_eq!(list[0]["AggregatedStatus"], "critical");
    assert_eq!(list[0]["Service"]["ID"], "foo");
    reg.get("/v1/agent/health/service/name/nope")
        .await
        .expect_status(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_defaults_to_name_and_no_checks_is_passing() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "web", "Port": 80})).await;
    let services = reg.services().await;
    assert_eq!(keys(&services), vec!["web"]);
    assert_eq!(services["web"]["ID"], "web");
    assert_eq!(services["web"]["Tags"], json!([]), "Tags is [] not null");
    assert_eq!(reg.checks().await, json!({}));

    let h = reg
        .get("/v1/agent/health/service/id/web")
        .await
        .expect_status(200);
    assert_eq!(h.json()["AggregatedStatus"], "passing");
    let h = reg
        .get("/v1/agent/health/service/name/web")
        .await
        .expect_status(200);
    assert_eq!(h.json()[0]["AggregatedStatus"], "passing");
}

/// 3: an initial Status is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_status_passing() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "Check": {"TTL": "15s", "Status": "passing"}}))
        .await;
    assert_eq!(
        reg.check_status("service:foo").await.as_deref(),
        Some("passing")
    );
    reg.get("/v1/agent/health/service/id/foo")
        .await
        .expect_status(200);
}

/// 5: an explicit CheckID is used as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_check_id_and_name() {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "foo",
        "Check": {"CheckID": "foo-ttl", "Name": "my check", "TTL": "15s", "Notes": "hello"}
    }))
    .await;
    let checks = reg.checks().await;
    assert_eq!(keys(&checks), vec!["foo-ttl"]);
    assert_eq!(checks["foo-ttl"]["Name"], "my check");
    assert_eq!(checks["foo-ttl"]["Notes"], "hello");
    assert_eq!(checks["foo-ttl"]["ServiceID"], "foo");
}

/// 6: two or more checks are numbered service:<ID>:1..n; one in Checks is service:<ID>.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_checks_are_numbered() {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "foo",
        "Checks": [{"TTL": "15s"}, {"TTL": "30s"}, {"TTL": "30s", "Name": "third"}]
    }))
    .await;
    let checks = reg.checks().await;
    assert_eq!(
        keys(&checks),
        vec!["service:foo:1", "service:foo:2", "service:foo:3"]
    );
    assert_eq!(checks["service:foo:1"]["Name"], "Service 'foo' check");
    assert_eq!(checks["service:foo:2"]["Name"], "Service 'foo' check");
    assert_eq!(checks["service:foo:3"]["Name"], "third");
    for id in ["service:foo:1", "service:foo:2", "service:foo:3"] {
        assert_eq!(checks[id]["Status"], "critical");
        assert_eq!(checks[id]["ServiceID"], "foo");
    }

    reg.register(&json!({"Name": "bar", "ID": "bar1", "Checks": [{"TTL": "15s"}]}))
        .await;
    let checks = reg.checks().await;
    assert!(
        checks.get("service:bar1").is_some(),
        "a one-element Checks gets service:<ID>: {checks}"
    );
    assert_eq!(checks["service:bar1"]["Name"], "Service 'bar' check");
}

/// 7: ?replace-existing-checks drops checks missing from the new definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_existing_checks() {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "foo", "ID": "foo", "Tags": ["bar", "baz"], "Port": 8000,
        "Check": {"TTL": "15s"}
    }))
    .await;
    assert_eq!(keys(&reg.checks().await), vec!["service:foo"]);

    reg.put(
        "/v1/agent/service/register?replace-existing-checks",
        &json!({"Name": "foo", "ID": "foo", "Tags": ["bar", "baz"], "Port": 9000}),
    )
    .await
    .expect_status(200);
    assert_eq!(reg.checks().await, json!({}), "checks replaced by none");
    let h = reg
        .get("/v1/agent/health/service/id/foo")
        .await
        .expect_status(200);
    let body = h.json();
    assert_eq!(body["AggregatedStatus"], "passing");
    assert_eq!(body["Service"]["Port"], 9000);
}

/// Without ?replace-existing-checks, checks not named in the new definition stay (Consul).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregistration_without_replace_keeps_other_checks() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "Check": {"CheckID": "a", "TTL": "15s"}}))
        .await;
    reg.register(&json!({"Name": "foo", "Check": {"CheckID": "b", "TTL": "15s"}}))
        .await;
    assert_eq!(keys(&reg.checks().await), vec!["a", "b"]);

    reg.put(
        "/v1/agent/service/register?replace-existing-checks=true",
        &json!({"Name": "foo", "Check": {"CheckID": "b", "TTL": "15s"}}),
    )
    .await
    .expect_status(200);
    assert_eq!(keys(&reg.checks().await), vec!["b"]);
}

/// Agents re-register periodically: checks that still exist keep their Status and Output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregistration_keeps_status_and_output() {
    let reg = Registry::start();
    let def = json!({
        "Name": "foo", "ID": "foo1", "Port": 8000,
        "Checks": [{"CheckID": "alive", "TTL": "30s"}, {"CheckID": "ready", "TTL": "30s"}]
    });
    reg.register(&def).await;
    reg.ttl("pass", "alive", Some("all good")).await;
    reg.ttl("warn", "ready", Some("slow")).await;

    // Same definition again.
    reg.register(&def).await;
    let checks = reg.checks().await;
    assert_eq!(checks["alive"]["Status"], "passing");
    assert_eq!(checks["alive"]["Output"], "all good");
    assert_eq!(checks["ready"]["Status"], "warning");
    assert_eq!(checks["ready"]["Output"], "slow");

    // A changed definition (new tags, new port, a new check): existing checks keep their state,
    // the new one starts critical.
    reg.register(&json!({
        "Name": "foo", "ID": "foo1", "Port": 8001, "Tags": ["v2"],
        "Checks": [
            {"CheckID": "alive", "TTL": "30s"},
            {"CheckID": "ready", "TTL": "30s"},
            {"CheckID": "new", "TTL": "30s"}
        ]
    }))
    .await;
    let checks = reg.checks().await;
    assert_eq!(checks["alive"]["Status"], "passing");
    assert_eq!(checks["alive"]["Output"], "all good");
    assert_eq!(checks["ready"]["Status"], "warning");
    assert_eq!(checks["new"]["Status"], "critical");
    let svc = reg
        .get("/v1/agent/service/foo1")
        .await
        .expect_status(200)
        .json();
    assert_eq!(svc["Port"], 8001);
    assert_eq!(svc["Tags"], json!(["v2"]));

    // The health endpoint agrees.
    let entries = reg.health_service("foo", "").await.json();
    let statuses: Vec<(String, String)> = arr(&entries[0]["Checks"])
        .iter()
        .map(|c| {
            (
                c["CheckID"].as_str().unwrap().to_string(),
                c["Status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("alive".into(), "passing".into())),
        "{statuses:?}"
    );
}

/// 8: GET agent/service/:id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_service_by_id() {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "foo", "ID": "foo", "Tags": ["bar", "baz"], "Port": 8000,
        "Check": {"TTL": "15s"}
    }))
    .await;
    let resp = reg.get("/v1/agent/service/foo").await.expect_status(200);
    let svc = resp.json();
    assert_eq!(svc["ID"], "foo");
    assert_eq!(svc["Service"], "foo");
    assert_eq!(svc["Tags"], json!(["bar", "baz"]));
    assert_eq!(svc["Port"], 8000);
    assert_eq!(svc["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(svc["Meta"], json!({}), "Meta is {{}} not null");
    assert_eq!(svc["Datacenter"], "dc1");
    assert_eq!(svc["Address"], "", "Address is \"\" when omitted");

    reg.get("/v1/agent/service/nope").await.expect_status(404);
}

/// 8 (second half): agent/service/:id carries a ContentHash and blocks on ?hash=.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_service_content_hash_blocking() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "Port": 8000})).await;
    let resp = reg.get("/v1/agent/service/foo").await.expect_status(200);
    let hash = resp.json()["ContentHash"]
        .as_str()
        .unwrap_or_else(|| panic!("ContentHash missing: {}", resp.text()))
        .to_string();
    assert!(!hash.is_empty());
    assert_eq!(
        resp.header("X-Consul-ContentHash").as_deref(),
        Some(hash.as_str())
    );

    let blocked = reg
        .get_blocking(
            &format!("/v1/agent/service/foo?hash={hash}&wait=100ms"),
            secs(5),
        )
        .await
        .expect_status(200);
    assert!(
        blocked.elapsed() >= ms(100),
        "?hash=<current>&wait=100ms must block >= 100ms, took {:?}",
        blocked.elapsed()
    );
    assert_eq!(blocked.json()["ContentHash"], hash.as_str());

    // A change gives a new hash.
    reg.register(&json!({"Name": "foo", "Port": 8001})).await;
    let changed = reg
        .get("/v1/agent/service/foo")
        .await
        .expect_status(200)
        .json();
    assert_ne!(changed["ContentHash"], hash.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_meta_and_tag_override_round_trip() {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "foo", "ID": "foo1",
        "Weights": {"Passing": 10, "Warning": 3},
        "Meta": {"version": "1.2", "team_x-y": "bl"},
        "EnableTagOverride": true
    }))
    .await;
    // 13
    reg.register(&json!({"Name": "foo", "ID": "foo2", "EnableTagOverride": false}))
        .await;
    let services = reg.services().await;
    assert_eq!(
        services["foo1"]["Weights"],
        json!({"Passing": 10, "Warning": 3})
    );
    assert_eq!(
        services["foo1"]["Meta"],
        json!({"version": "1.2", "team_x-y": "bl"})
    );
    assert_eq!(services["foo1"]["EnableTagOverride"], true);
    assert_eq!(services["foo2"]["EnableTagOverride"], false);

    let catalog = reg
        .get("/v1/catalog/service/foo")
        .await
        .expect_status(200)
        .json();
    let by_id = |id: &str| -> Value {
        arr(&catalog)
            .iter()
            .find(|e| e["ServiceID"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {catalog}"))
    };
    assert_eq!(by_id("foo1")["ServiceEnableTagOverride"], true);
    assert_eq!(by_id("foo2")["ServiceEnableTagOverride"], false);
    assert_eq!(
        by_id("foo1")["ServiceWeights"],
        json!({"Passing": 10, "Warning": 3})
    );
    assert_eq!(by_id("foo1")["ServiceMeta"]["version"], "1.2");
}

/// 12: Address round-trips; an IP address adds lan_ipv4/wan_ipv4 {Address, Port}.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_and_tagged_addresses() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "ip", "Address": "192.168.0.42", "Port": 8000}))
        .await;
    reg.register(&json!({
        "Name": "custom", "Address": "10.0.0.1", "Port": 9000,
        "TaggedAddresses": {
            "lan": {"Address": "10.0.0.2", "Port": 9001},
            "wan": {"Address": "198.51.100.1", "Port": 80}
        }
    }))
    .await;
    reg.register(&json!({"Name": "host", "Address": "agent.example.internal", "Port": 7000}))
        .await;
    reg.register(&json!({"Name": "none", "Port": 6000})).await;

    let services = reg.services().await;
    let ip = &services["ip"];
    assert_eq!(ip["Address"], "192.168.0.42");
    let expected = json!({"Address": "192.168.0.42", "Port": 8000});
    assert_eq!(ip["TaggedAddresses"]["lan_ipv4"], expected, "{ip}");
    assert_eq!(ip["TaggedAddresses"]["wan_ipv4"], expected, "{ip}");

    let custom = &services["custom"];
    assert_eq!(
        custom["TaggedAddresses"]["lan"],
        json!({"Address": "10.0.0.2", "Port": 9001})
    );
    assert_eq!(
        custom["TaggedAddresses"]["wan"],
        json!({"Address": "198.51.100.1", "Port": 80})
    );
    assert_eq!(
        custom["TaggedAddresses"]["lan_ipv4"],
        json!({"Address": "10.0.0.1", "Port": 9000})
    );

    let host = &services["host"];
    assert_eq!(host["Address"], "agent.example.internal");
    assert!(
        host["TaggedAddresses"].get("lan_ipv4").is_none(),
        "a hostname adds no lan_ipv4: {host}"
    );
    assert_eq!(services["none"]["Address"], "");
    assert!(services["none"]["TaggedAddresses"]
        .get("lan_ipv4")
        .is_none());

    // The same shape where clients read it: agent/service/:id and health/service.
    let one = reg
        .get("/v1/agent/service/ip")
        .await
        .expect_status(200)
        .json();
    assert_eq!(one["TaggedAddresses"]["lan_ipv4"], expected);
    let entries = reg.health_service("ip", "").await.json();
    assert_eq!(entries[0]["Service"]["Address"], "192.168.0.42");
    assert_eq!(
        entries[0]["Service"]["TaggedAddresses"]["lan_ipv4"],
        expected
    );
    assert_eq!(
        entries[0]["Service"]["TaggedAddresses"]["wan_ipv4"],
        expected
    );
}

/// 14: maintenance mode adds a critical check and removes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_maintenance() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "redis", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await;
    reg.get("/v1/agent/health/service/id/redis")
        .await
        .expect_status(200);

    reg.put_empty("/v1/agent/service/maintenance/redis?enable=true&reason=broken")
        .await
        .expect_status(200);
    let checks = reg.checks().await;
    let maint: Vec<&Value> = checks
        .as_object()
        .unwrap()
        .iter()
        .filter(|(id, _)| id.contains("maintenance"))
        .map(|(_, c)| c)
        .collect();
    assert_eq!(maint.len(), 1, "one maintenance check: {checks}");
    assert_eq!(maint[0]["Status"], "critical");
    assert_eq!(maint[0]["Notes"], "broken");
    assert_eq!(maint[0]["ServiceID"], "redis");
    reg.get("/v1/agent/health/service/id/redis")
        .await
        .expect_status(503);
    let passing = reg.health_service("redis", "passing").await.json();
    assert_eq!(
        passing,
        json!([]),
        "a service in maintenance is not passing"
    );

    reg.put_empty("/v1/agent/service/maintenance/redis?enable=false")
        .await
        .expect_status(200);
    let checks = reg.checks().await;
    assert!(
        checks
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.contains("maintenance")),
        "maintenance check removed: {checks}"
    );
    assert_eq!(checks["service:redis"]["Status"], "passing");
    reg.get("/v1/agent/health/service/id/redis")
        .await
        .expect_status(200);

    // Unknown service → 404; missing enable → 400.
    reg.put_empty("/v1/agent/service/maintenance/nope?enable=true")
        .await
        .expect_status(404);
    reg.put_empty("/v1/agent/service/maintenance/redis")
        .await
        .expect_status(400);
}

/// 15: health by name aggregates the worst status of all instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_by_name_is_worst_of() {
    let reg = Registry::start();
    for id in ["foo1", "foo2"] {
        reg.register(&json!({
            "Name": "foo", "ID": id,
            "Check": {"CheckID": format!("{id}-ttl"), "TTL": "30s", "Status": "passing"}
        }))
        .await;
    }
    let by_name = "/v1/agent/health/service/name/foo";
    let r = reg.get(by_name).await.expect_status(200);
    let list = r.json();
    assert_eq!(arr(&list).len(), 2);
    assert!(arr(&list)
        .iter()
        .all(|e| e["AggregatedStatus"] == "passing"));

    reg.ttl("warn", "foo1-ttl", None).await;
    reg.get(by_name).await.expect_status(429);
    reg.get("/v1/agent/health/service/id/foo1")
        .await
        .expect_status(429);
    let body = reg.get("/v1/agent/health/service/id/foo1").await.json();
    assert_eq!(body["AggregatedStatus"], "warning");
    reg.get("/v1/agent/health/service/id/foo2")
        .await
        .expect_status(200);

    reg.ttl("fail", "foo2-ttl", None).await;
    reg.get(by_name).await.expect_status(503);

    reg.ttl("pass", "foo2-ttl", None).await;
    reg.get(by_name).await.expect_status(429);
    reg.ttl("pass", "foo1-ttl", None).await;
    reg.get(by_name).await.expect_status(200);
}

/// 16: agent/services?filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_services_filter() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "ID": "foo1", "Tags": ["foo", "x"]}))
        .await;
    reg.register(&json!({"Name": "foo", "ID": "foo2", "Tags": ["y"]}))
        .await;
    let filtered = reg
        .get(&format!(
            "/v1/agent/services?filter={}",
            encode("foo in Tags")
        ))
        .await
        .expect_status(200)
        .json();
    assert_eq!(keys(&filtered), vec!["foo1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_self_defaults() {
    let reg = Registry::start();
    let me = reg.get("/v1/agent/self").await.expect_status(200).json();
    assert_eq!(me["Config"]["Datacenter"], "dc1");
    let node = me["Config"]["NodeName"]
        .as_str()
        .unwrap_or_else(|| panic!("Config.NodeName missing: {me}"));
    assert!(!node.is_empty());

    // The same node name everywhere.
    reg.register(&json!({"Name": "foo", "Check": {"TTL": "30s"}}))
        .await;
    let entries = reg.health_service("foo", "").await.json();
    assert_eq!(entries[0]["Node"]["Node"], node);
    assert_eq!(entries[0]["Node"]["Datacenter"], "dc1");
    let nodes = reg.get("/v1/catalog/nodes").await.expect_status(200).json();
    assert_eq!(arr(&nodes).len(), 1);
    assert_eq!(nodes[0]["Node"], node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datacenter_and_node_name_flags() {
    let reg = Registry::builder()
        .datacenter("dc7")
        .node_name("beamline-node-1")
        .start();
    let me = reg.get("/v1/agent/self").await.expect_status(200).json();
    assert_eq!(me["Config"]["Datacenter"], "dc7");
    assert_eq!(me["Config"]["NodeName"], "beamline-node-1");

    let dcs = reg
        .get("/v1/catalog/datacenters")
        .await
        .expect_status(200)
        .json();
    assert_eq!(dcs, json!(["dc7"]));

    reg.register(&json!({"Name": "foo", "Check": {"TTL": "30s"}}))
        .await;
    let svc = reg
        .get("/v1/agent/service/foo")
        .await
        .expect_status(200)
        .json();
    assert_eq!(svc["Datacenter"], "dc7");
    let entries = reg.health_service("foo", "").await.json();
    assert_eq!(entries[0]["Node"]["Node"], "beamline-node-1");
    assert_eq!(entries[0]["Node"]["Datacenter"], "dc7");
    assert_eq!(entries[0]["Checks"][0]["Node"], "beamline-node-1");
    let catalog = reg
        .get("/v1/catalog/service/foo")
        .await
        .expect_status(200)
        .json();
    assert_eq!(catalog[0]["Node"], "beamline-node-1");
    assert_eq!(catalog[0]["Datacenter"], "dc7");
    let nodes = reg.get("/v1/catalog/nodes").await.expect_status(200).json();
    assert_eq!(nodes[0]["Node"], "beamline-node-1");
    assert_eq!(nodes[0]["Datacenter"], "dc7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_removes_service_and_its_checks() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "ID": "foo1", "Checks": [{"TTL": "30s"}, {"TTL": "30s"}]}))
        .await;
    reg.register(&json!({"Name": "foo", "ID": "foo2", "Check": {"TTL": "30s"}}))
        .await;
    assert_eq!(keys(&reg.checks().await).len(), 3);
    reg.deregister("foo1").await;
    assert_eq!(keys(&reg.services().await), vec!["foo2"]);
    assert_eq!(keys(&reg.checks().await), vec!["service:foo2"]);
    assert_eq!(
        service_ids(&reg.health_service("foo", "").await.json()),
        vec!["foo2"]
    );
    reg.get("/v1/agent/service/foo1").await.expect_status(404);

    reg.deregister("foo2").await;
    assert_eq!(reg.services().await, json!({}));
    assert_eq!(reg.checks().await, json!({}));
    let empty = reg.health_service("foo", "").await;
    assert_eq!(empty.json(), json!([]));
}

/// Endpoints answer a wrong method with 405 (not 404, not a handler run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_are_405() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "Check": {"TTL": "30s"}}))
        .await;
    for (method, path) in [
        (Method::GET, "/v1/agent/service/register"),
        (Method::POST, "/v1/agent/services"),
        (Method::GET, "/v1/agent/service/deregister/foo"),
        (Method::GET, "/v1/agent/check/pass/service:foo"),
        (Method::DELETE, "/v1/health/service/foo"),
    ] {
        reg.request_with(method, path, None, &[])
            .await
            .expect_status(405);
    }
    // Nothing was deregistered or changed by them.
    assert_eq!(keys(&reg.services().await), vec!["foo"]);
    assert_eq!(
        reg.check_status("service:foo").await.as_deref(),
        Some("critical")
    );
}

/// Periodic re-registration by an agent must not take an instance out of maintenance; deregistering
/// removes the maintenance check with the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_survives_reregistration() {
    let reg = Registry::start();
    let def =
        json!({"Name": "redis", "ID": "redis1", "Check": {"TTL": "30s", "Status": "passing"}});
    reg.register(&def).await;
    reg.put_empty("/v1/agent/service/maintenance/redis1?enable=true&reason=upgrade")
        .await
        .expect_status(200);
    reg.register(&def).await;
    let checks = reg.checks().await;
    assert!(
        keys(&checks).iter().any(|k| k.contains("maintenance")),
        "maintenance kept across re-registration: {checks}"
    );
    reg.get("/v1/agent/health/service/id/redis1")
        .await
        .expect_status(503);
    assert_eq!(
        reg.health_service("redis", "passing").await.json(),
        json!([])
    );

    reg.deregister("redis1").await;
    assert_eq!(reg.checks().await, json!({}));
}

/// Many concurrent registrations: every acknowledged one is there, none is lost or mixed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations() {
    const N: usize = 100;
    let reg = std::sync::Arc::new(Registry::builder().persistent().start());
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let reg = std::sync::Arc::clone(&reg);
            tokio::spawn(async move {
                reg.register(&json!({
                    "Name": format!("svc-{}", i % 10), "ID": format!("inst-{i}"), "Port": 1000 + i,
                    "Check": {"TTL": "30s", "Status": "passing"}
                }))
                .await;
                reg.put_bytes(&format!("/v1/kv/conc/{i}"), format!("{i}"))
                    .await
                    .expect_status(200);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let services = reg.services().await;
    assert_eq!(keys(&services).len(), N);
    for i in 0..N {
        assert_eq!(services[format!("inst-{i}")]["Port"], 1000 + i);
    }
    assert_eq!(keys(&reg.checks().await).len(), N);
    let entries = reg.health_service("svc-3", "passing").await.json();
    assert_eq!(arr(&entries).len(), N / 10);
    let k = reg.get("/v1/kv/conc/?keys").await.expect_status(200).json();
    assert_eq!(arr(&k).len(), N);
}
