//! The status page over real HTTP at small scale (registry, three demo agents, one instance
//! registered through the Consul API with a critical TTL check, a halt and a lock written to KV,
//! `beamline-mesh gateway --metrics-listen`): totals at the top, the beamlines that need
//! attention first, natural order of ids in each group, the halt's reason and the lock's holder
//! in their rows as text (a `<script>` in the reason stays text), and `/status.json` with the
//! same facts. The page at 100 beamlines × 2 instances, rendered by headless Chromium, is
//! `.ci/run`'s interop/status_page check.

use serde_json::json;

use crate::support::agent::AgentProc;
use crate::support::gateway::GatewayProc;
use crate::support::policy::http_get;
use crate::support::*;

const HALT_REASON: &str = "<script>alert(1)</script> sample on fire";

/// Where `needle` is in `html` (panics naming it when absent).
fn at(html: &str, needle: &str) -> usize {
    html.find(needle)
        .unwrap_or_else(|| panic!("no {needle:?} in the page:\n{html}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_totals_attention_first_in_natural_order_and_escapes_a_halt_reason() {
    let registry = Registry::start();
    let _agents: Vec<AgentProc> = ["10.1.1", "2.1.1", "3.0.1"]
        .iter()
        .map(|b| AgentProc::start(b, &registry))
        .collect();
    // 5.0.1: registered through the Consul API, its TTL check critical.
    registry
        .register(&json!({
            "ID": "beamline-5-0-1-a", "Name": "beamline-5-0-1", "Address": "127.0.0.1",
            "Port": 9, "Tags": ["beamline-agent"], "Meta": {"beamline": "5.0.1", "instance_id": "beamline-5-0-1-a"},
            "Check": {"TTL": "30m", "Status": "critical"},
        }))
        .await;
    let halt = json!({"by": "ci-safety", "reason": HALT_REASON, "since": "2026-01-01T10:00:00Z"});
    let put = registry
        .put_bytes("/v1/kv/beamline-mesh/halt/10.1.1", halt.to_string())
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    let lock = json!({"holder": "ci-scientist", "note": "aligning", "since":
        "2026-01-01T10:00:00Z", "expires": "2999-01-01T00:00:00Z"});
    let put = registry
        .put_bytes("/v1/kv/beamline-mesh/lock/3.0.1", lock.to_string())
        .await;
    assert_eq!(put.status, 200, "{put:?}");

    let gateway = GatewayProc::builder(&registry)
        .arg("--metrics-listen", "127.0.0.1:0")
        .start();
    let metrics = gateway
        .wait_stdout_line("metrics listening on ", secs(10))
        .await;
    let html = poll_until(
        secs(30),
        "the page with 4 beamlines, 3 of 4 instances healthy, 1 halted, 1 locked",
        async || http_get(&format!("{metrics}/")).await.2,
        |html| {
            html.contains("<b>4</b><span>beamlines</span>")
                && html.contains("<b>3/4</b><span>instances healthy</span>")
                && html.contains("<b>1</b><span>halted</span>")
                && html.contains("<b>1</b><span>locked</span>")
        },
    )
    .await;

    // Attention (5.0.1 unhealthy, 10.1.1 halted, 3.0.1 locked) in natural order, then 2.1.1.
    let row = |id: &str| at(&html, &format!("data-beamline=\"{id}\""));
    assert!(at(&html, "id=\"totals\"") < at(&html, "id=\"group-attention\""));
    assert!(at(&html, "id=\"group-attention\"") < row("3.0.1"));
    assert!(row("3.0.1") < row("5.0.1"));
    assert!(row("5.0.1") < row("10.1.1"));
    assert!(row("10.1.1") < at(&html, "id=\"group-ok\""));
    assert!(at(&html, "id=\"group-ok\"") < row("2.1.1"));
    // The reason is text, the holder is named; the page's own script is the only one.
    assert!(html.contains("by ci-safety at 01-01 10:00 UTC: &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("held by ci-scientist until 01-01 00:00 UTC: aligning"));
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(html.contains("<input type=\"search\" id=\"filter\""));
    // Every instance is listed, in its row's <details>.
    for instance in ["beamline-5-0-1-a", "beamline-2-1-1-"] {
        assert!(
            html.contains(instance),
            "no instance {instance} in the page"
        );
    }

    let (code, _, json) = http_get(&format!("{metrics}/status.json")).await;
    assert_eq!(code, 200, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("status.json is JSON");
    let ids: Vec<&str> = (json["beamlines"].as_array().unwrap().iter())
        .map(|b| b["beamline"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["3.0.1", "5.0.1", "10.1.1", "2.1.1"], "{json}");
    assert_eq!(
        json["beamlines"][2]["halt"]["reason"], HALT_REASON,
        "{json}"
    );
    assert_eq!(
        json["beamlines"][2]["attention"],
        json!(["halted"]),
        "{json}"
    );
    assert_eq!(
        json["beamlines"][0]["lock"]["holder"], "ci-scientist",
        "{json}"
    );
    assert_eq!(json["totals"]["attention"], 3, "{json}");

    // A filter in the query: the other rows are rendered hidden.
    let (_, _, filtered) = http_get(&format!("{metrics}/?filter=halted")).await;
    assert!(filtered.contains("showing 1 of 4"), "{filtered}");
    assert_eq!(filtered.matches(" hidden><td").count(), 3, "{filtered}");
    // The OK group has no row left: its heading goes too.
    assert!(filtered.contains("id=\"group-ok\" hidden>"), "{filtered}");
}
