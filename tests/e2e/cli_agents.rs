//! `beamline-mesh agents` end to end: the real binary against the real registry and real agents.
//! Checks the exact `--json` shape (beamline from Meta.beamline, sorted by beamline then id, each
//! instance's worst check as its status), the table, and an empty registry.

use crate::support::agent::*;
use crate::support::*;
use serde_json::{json, Value};

/// `beamline-mesh agents --consul <registry> <extra…>`, which must exit 0; its stdout.
async fn agents(registry: &Registry, extra: &[&str]) -> String {
    let consul = registry.addr.to_string();
    let mut args = vec!["agents".to_string(), "--consul".to_string(), consul];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_exit(&args, secs(30))
    })
    .await
    .expect("agents thread");
    assert!(
        out.status.success(),
        "agents {extra:?} exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

async fn agents_json(registry: &Registry) -> Value {
    let stdout = agents(registry, &["--json"]).await;
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// The instance id the agent reports (its Consul service ID).
async fn instance_id(agent: &AgentProc) -> String {
    let card = agent
        .client()
        .await
        .describe(beamline_mesh::proto::DescribeRequest {})
        .await
        .expect("Describe")
        .into_inner();
    card.instance_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_registry_lists_no_beamlines() {
    let reg = Registry::start();
    assert_eq!(agents_json(&reg).await, json!([]));
    let table = agents(&reg, &[]).await;
    assert!(table.contains("no beamline agents"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lists_every_beamline_with_its_instances() {
    let reg = Registry::start();
    // A service that is not an agent (no beamline-agent tag) is not listed.
    reg.register(&json!({"ID": "web-1", "Name": "web", "Port": 80, "Tags": ["http"]}))
        .await;
    // 12.3.1 sorts after 5.3.1 (numerically, not as text).
    let mut a = AgentProc::start("12.3.1", &reg);
    let b = AgentProc::start("5.3.1", &reg);
    let (id_a, id_b) = (instance_id(&a).await, instance_id(&b).await);
    let (addr_a, addr_b) = (a.addr.to_string(), b.addr.to_string());
    wait_passing(&reg, "beamline-12-3-1", &id_a, secs(15)).await;
    wait_passing(&reg, "beamline-5-3-1", &id_b, secs(15)).await;

    let expected = |status_a: &str| {
        json!([
            {
                "beamline": "5.3.1",
                "service": "beamline-5-3-1",
                "instances": [{"id": id_b, "address": addr_b, "status": "passing"}],
            },
            {
                "beamline": "12.3.1",
                "service": "beamline-12-3-1",
                "instances": [{"id": id_a, "address": addr_a, "status": status_a}],
            },
        ])
    };
    assert_eq!(agents_json(&reg).await, expected("passing"));

    let table = agents(&reg, &[]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "a header and one line per instance:\n{table}"
    );
    assert!(lines[0].starts_with("BEAMLINE"), "{table}");
    assert!(
        lines[1].starts_with("5.3.1") && lines[1].contains("1/1") && lines[1].contains(&id_b),
        "{table}"
    );
    assert!(
        lines[2].starts_with("12.3.1") && lines[2].contains(&addr_a),
        "{table}"
    );

    // Killed: still registered (until DeregisterCriticalServiceAfter), its check critical.
    a.kill9();
    poll_until(
        secs(15),
        "12.3.1 listed as critical",
        async || agents_json(&reg).await,
        |v| *v == expected("critical"),
    )
    .await;
    let table = agents(&reg, &[]).await;
    assert!(
        table.contains("0/1") && table.contains("critical"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_of_one_beamline_are_sorted_by_id() {
    let reg = Registry::start();
    let first = AgentProc::start("7.0.1", &reg);
    let second = AgentProc::start("7.0.1", &reg);
    let mut ids = vec![instance_id(&first).await, instance_id(&second).await];
    for id in &ids {
        wait_passing(&reg, "beamline-7-0-1", id, secs(15)).await;
    }
    ids.sort();
    let listed = agents_json(&reg).await;
    let beamlines = arr(&listed);
    assert_eq!(beamlines.len(), 1, "{listed}");
    let got: Vec<&str> = arr(&beamlines[0]["instances"])
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    assert_eq!(got, ids, "{listed}");
}
