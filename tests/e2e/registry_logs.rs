//! What the registry writes on stderr: check status changes, reaps and refused requests, each
//! subject at most once per period (a flapping check or a looping client cannot flood the log),
//! errors with their cause.

use crate::support::*;
use serde_json::json;

/// The lines of the registry's stderr that contain every one of `needles`.
fn lines_with(reg: &Registry, needles: &[&str]) -> Vec<String> {
    reg.stderr()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Polls the stderr (written by a batching thread) until `count` lines carry `needles`.
async fn wait_lines(reg: &Registry, needles: &[&str], count: usize) -> Vec<String> {
    let what = format!("{count} stderr lines with {needles:?}");
    poll_until(
        secs(10),
        &what,
        async || lines_with(reg, needles),
        |l| l.len() >= count,
    )
    .await
}

/// 100 status flips of one check write one line (the others counted in the next one, 30 s
/// later); a second check has its own line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_check_logs_one_line_per_period() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "web", "Check": {"CheckID": "flappy", "TTL": "30s"}}))
        .await;
    reg.register(&json!({"Name": "db", "Check": {"CheckID": "steady", "TTL": "30s"}}))
        .await;
    for i in 0..100 {
        reg.ttl(if i % 2 == 0 { "pass" } else { "fail" }, "flappy", None)
            .await;
    }
    reg.ttl("pass", "steady", None).await;
    wait_lines(&reg, &["check status changed", "steady", "passing"], 1).await;
    let flappy = lines_with(&reg, &["check status changed", "flappy"]);
    assert_eq!(flappy.len(), 1, "{flappy:#?}");
    assert!(
        flappy[0].contains("INFO") && flappy[0].contains("passing"),
        "{}",
        flappy[0]
    );
}

/// A check turning critical is a WARN line naming the check and its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_turning_critical_is_a_warning() {
    let reg = Registry::start();
    reg.register(
        &json!({"Name": "web", "Check": {"CheckID": "c", "TTL": "30s", "Status": "passing"}}),
    )
    .await;
    reg.ttl("fail", "c", Some("disk full")).await;
    let lines = wait_lines(&reg, &["check status changed", "critical"], 1).await;
    assert!(
        lines[0].contains("WARN") && lines[0].contains("disk full"),
        "{}",
        lines[0]
    );
}

/// A reaped service is a WARN line naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaped_service_is_logged() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "gone", "Check": {"TTL": "30s",
        "DeregisterCriticalServiceAfter": "1s"}}))
        .await;
    let lines = wait_lines(&reg, &["deregistered", "gone"], 1).await;
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
}

/// 50 refused requests of one kind are one line with the reason; another kind has its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_logged_once_per_period_with_the_reason() {
    let reg = Registry::start();
    for _ in 0..50 {
        let r = reg
            .put("/v1/agent/check/register", &json!({"Name": "x"}))
            .await;
        assert_eq!(r.code(), 400);
    }
    let big = vec![b'x'; 2 * 1024 * 1024];
    let r = reg.put_bytes("/v1/agent/service/register", big).await;
    assert_eq!(r.code(), 413);
    wait_lines(&reg, &["request refused", "413"], 1).await;
    let bad = lines_with(&reg, &["request refused", "400", "/v1/agent/check"]);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(bad[0].contains("TTL must be > 0"), "the reason: {}", bad[0]);
}
