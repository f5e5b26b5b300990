//! What operators see of the gateway, end to end (registry, demo agents, `beamline-mesh
//! --log-format json gateway --auth-file … --metrics-listen 127.0.0.1:0`): `/metrics` counts the
//! calls just made (parsed here minimally; .ci/run parses it with Python's prometheus_client),
//! `GET /` is a self-contained HTML status page listing the running beamlines and instances,
//! and the JSON access log on stderr has one line per call with its fields.

use std::collections::BTreeMap;

use crate::support::gateway::*;
use crate::support::policy::*;
use crate::support::*;
use beamline_mesh::proto::{ExecuteRequest, GetTaskRequest};
use tonic::Code;

const CALLS: usize = 7;
const DENIED: usize = 3;

fn label_is(s: &Sample, key: &str, want: &str) -> bool {
    s.labels.get(key).is_some_and(|v| v == want)
}

/// A `method` label that names Describe (`Describe`, `/beamline.v1.BeamlineAgent/Describe`, …).
fn is_describe(s: &Sample) -> bool {
    s.labels
        .get("method")
        .is_some_and(|m| m.ends_with("Describe"))
}

/// A gRPC code label meaning OK (`OK`, `Ok`, `0`).
fn code_is(s: &Sample, names: &[&str]) -> bool {
    ["code", "grpc_code", "status"].iter().any(|k| {
        s.labels
            .get(*k)
            .is_some_and(|v| names.contains(&v.as_str()))
    })
}

async fn scrape(base: &str) -> Vec<Sample> {
    let (status, content_type, body) = http_get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200, "GET /metrics: {body:?}");
    assert!(
        content_type.starts_with("text/plain") || content_type.contains("openmetrics"),
        "GET /metrics content type {content_type:?}"
    );
    parse_prometheus(&body)
}

/// Counters (`*_total`) of Describe calls on `beamline` answered OK, per metric name.
fn ok_describes(samples: &[Sample], beamline: &str) -> BTreeMap<String, f64> {
    sums_by_name(samples, |s| {
        s.name.ends_with("_total")
            && label_is(s, "beamline", beamline)
            && is_describe(s)
            && code_is(s, &["OK", "Ok", "0"])
    })
}

/// Counters that count authentication rejections: named for auth, or labelled UNAUTHENTICATED.
fn auth_rejections(samples: &[Sample]) -> BTreeMap<String, f64> {
    sums_by_name(samples, |s| {
        s.name.ends_with("_total")
            && (s.name.contains("auth")
                || code_is(s, &["UNAUTHENTICATED", "Unauthenticated", "16"]))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_calls_and_the_status_page_lists_the_beamlines() {
    let stack = PolicyStack::start(&["5.3.1", "7.0.1"], false, |g| {
        g.arg("--metrics-listen", "127.0.0.1:0")
    })
    .await;
    let base = stack.metrics_base().await;

    let before = scrape(&base).await;
    let mut client = stack.client().await;
    for _ in 0..CALLS {
        describe_as(&mut client, "5.3.1", Some(OPS_KEY))
            .await
            .expect("Describe as the operator");
    }
    for _ in 0..DENIED {
        let status = describe_as(&mut client, "5.3.1", Some(WRONG_KEY))
            .await
            .expect_err("a wrong key must be refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let after = scrape(&base).await;

    let (was, now) = (
        ok_describes(&before, "5.3.1"),
        ok_describes(&after, "5.3.1"),
    );
    let counted: Vec<_> = now
        .iter()
        .filter(|(name, v)| **v - was.get(*name).copied().unwrap_or(0.0) == CALLS as f64)
        .collect();
    assert!(
        !counted.is_empty(),
        "no counter of Describe/5.3.1/OK calls rose by exactly {CALLS}: before {was:?}, after \
         {now:?}\n--- /metrics ---\n{after:#?}"
    );

    let (was, now) = (auth_rejections(&before), auth_rejections(&after));
    let counted: Vec<_> = now
        .iter()
        .filter(|(name, v)| **v - was.get(*name).copied().unwrap_or(0.0) >= DENIED as f64)
        .collect();
    assert!(
        !counted.is_empty(),
        "no auth-rejection counter rose by {DENIED}: before {was:?}, after {now:?}"
    );

    // Histograms and the healthy-instance gauge are there too.
    assert!(
        after.iter().any(|s| s.name.ends_with("_bucket")),
        "no latency histogram in /metrics"
    );

    // The status page.
    let (status, content_type, page) = http_get(&format!("{base}/")).await;
    assert_eq!(status, 200, "GET /: {page:?}");
    assert!(
        content_type.starts_with("text/html"),
        "GET / content type {content_type:?}"
    );
    for (beamline, _, id) in &stack.agents {
        assert!(
            page.contains(beamline.as_str()),
            "the status page does not list {beamline}"
        );
        assert!(
            page.contains(id.as_str()),
            "the status page does not list instance {id}"
        );
    }
    let lower = page.to_lowercase();
    assert!(
        ["http-equiv=\"refresh\"", "setinterval(", "settimeout("]
            .iter()
            .any(|r| lower.contains(r)),
        "the status page does not refresh itself"
    );
    for external in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "@import",
    ] {
        assert!(
            !lower.contains(external),
            "the status page loads an external asset ({external})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_access_log_has_one_line_per_call() {
    let stack =
        PolicyStack::start(&["5.3.1"], false, |g| g.global_arg("--log-format", "json")).await;
    // The gateway writes its log from a thread of its own: wait for the line of the start-up
    // check's successful Describe (the last of its calls) before counting.
    let warmup = poll_until(
        secs(10),
        "the access log line of the start-up Describe",
        async || access_lines(&stack.gateway.stderr()),
        |lines| {
            lines
                .last()
                .is_some_and(|l| log_text(l, "code").as_deref() == Some("OK"))
        },
    )
    .await
    .len();

    let mut client = stack.client().await;
    describe_as(&mut client, "5.3.1", Some(OPS_KEY))
        .await
        .expect("Describe");
    let mut request = with_credential(
        "5.3.1",
        Some(OPS_KEY),
        ExecuteRequest {
            capability: "status".into(),
            params: None,
            idempotency_key: String::new(),
        },
    );
    request.set_timeout(CALL_BOUND);
    let mut stream = client.execute(request).await.expect("Execute").into_inner();
    let mut task_id = String::new();
    while let Some(event) = tokio::time::timeout(CALL_BOUND, stream.message())
        .await
        .expect("Execute stream bounded")
        .expect("Execute stream")
    {
        if let Some(task) = event.task {
            task_id = task.task_id;
        }
    }
    assert!(!task_id.is_empty(), "the Execute stream named no task");
    let request = with_credential(
        "5.3.1",
        Some(OPS_KEY),
        GetTaskRequest {
            task_id: task_id.clone(),
        },
    );
    tokio::time::timeout(CALL_BOUND, client.get_task(request))
        .await
        .expect("GetTask bounded")
        .expect("GetTask");
    describe_as(&mut client, "5.3.1", Some(VIEWER_KEY))
        .await
        .expect("an observer may Describe");
    let denied = describe_as(&mut client, "5.3.1", None)
        .await
        .expect_err("no credential");
    assert_eq!(denied.code(), Code::Unauthenticated);

    let lines = poll_until(
        secs(10),
        "5 more access log lines on the gateway's stderr",
        async || access_lines(&stack.gateway.stderr()),
        |lines| lines.len() >= warmup + 5,
    )
    .await;
    let new = &lines[warmup..];
    assert_eq!(new.len(), 5, "one line per call: {new:#?}");
    for line in new {
        for field in [
            "caller",
            "beamline",
            "method",
            "capability",
            "task_id",
            "instance",
            "code",
            "duration_ms",
        ] {
            assert!(
                log_field(line, field).is_some(),
                "access log line without {field}: {line}"
            );
        }
        assert!(
            line.get("timestamp").is_some() || line.get("time").is_some(),
            "no time: {line}"
        );
    }
    let describe = &new[0];
    assert_eq!(
        log_text(describe, "caller").as_deref(),
        Some("ops-console"),
        "{describe}"
    );
    assert_eq!(
        log_text(describe, "beamline").as_deref(),
        Some("5.3.1"),
        "{describe}"
    );
    assert!(
        log_text(describe, "method").unwrap().ends_with("Describe"),
        "{describe}"
    );
    assert_eq!(
        log_text(describe, "instance").as_deref(),
        Some(stack.instance("5.3.1")),
        "{describe}"
    );

    let get_task = &new[2];
    assert!(
        log_text(get_task, "method").unwrap().ends_with("GetTask"),
        "{get_task}"
    );
    assert_eq!(
        log_text(get_task, "task_id").as_deref(),
        Some(task_id.as_str()),
        "{get_task}"
    );

    let execute = &new[1];
    assert!(
        log_text(execute, "method").unwrap().ends_with("Execute"),
        "{execute}"
    );
    assert_eq!(
        log_text(execute, "capability").as_deref(),
        Some("status"),
        "{execute}"
    );

    assert_eq!(
        log_text(&new[3], "caller").as_deref(),
        Some("viewer"),
        "{}",
        new[3]
    );
    let code = log_text(&new[4], "code").unwrap_or_default();
    assert!(
        code.eq_ignore_ascii_case("unauthenticated") || code == "16",
        "the refused call's code: {}",
        new[4]
    );

    // An Execute's task id is known only from the events the agent streams back; the line
    // must carry it all the same (checked last, so that the rest is reported first).
    assert_eq!(
        log_text(execute, "task_id").as_deref(),
        Some(task_id.as_str()),
        "{execute}"
    );
}
