//! What load must not grow in the registry process: the answer cache under query parameters no
//! endpoint reads, and check runners (and their DNS lookups) under repeated registrations —
//! measured on the real process (`/proc/<pid>/status`, `/v1/agent/self` Stats).

use crate::support::*;
use serde_json::{json, Value};

/// The registry's own bookkeeping from `/v1/agent/self` (`Stats.registry`), as numbers.
async fn stat(reg: &Registry, name: &str) -> u64 {
    let r = reg.get("/v1/agent/self").await.expect_status(200);
    let v = r.json();
    v["Stats"]["registry"][name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no Stats.registry.{name} in {v}"))
}

/// Registers `instances` of `name`, each with 64 meta values of 500 bytes (≈ 32 KB a service).
async fn register_large(reg: &Registry, name: &str, instances: usize) {
    let value = "v".repeat(500);
    for i in 0..instances {
        let meta: serde_json::Map<String, Value> = (0..64)
            .map(|k| (format!("k{k}"), Value::String(value.clone())))
            .collect();
        let id = format!("{name}-{i}");
        reg.register(&json!({"Name": name, "ID": id, "Port": 80, "Meta": meta}))
            .await;
    }
}

/// Each distinct unknown parameter used to keep a full copy of the answer (1,000 × 1 MB here).
/// Now the cache is keyed on what the endpoint reads: one entry, and RSS stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_query_parameters_do_not_grow_the_answer_cache() {
    let reg = Registry::start();
    register_large(&reg, "big", 32).await;
    let path = "/v1/health/service/big";
    let first = reg.get(path).await.expect_status(200);
    assert!(
        first.body.len() > 1_000_000,
        "answer is {} bytes",
        first.body.len()
    );
    // Warm the process (allocator, buffers) on the same answer before the baseline.
    for i in 0..50 {
        reg.get(&format!("{path}?warm={i}"))
            .await
            .expect_status(200);
    }
    let rss_before = reg.rss_kb();
    let started = std::time::Instant::now();
    for i in 0..1000 {
        let r = reg.get(&format!("{path}?junk={i}&stale&dc=dc1")).await;
        assert_eq!(r.expect_status(200).body.len(), first.body.len());
    }
    let elapsed = started.elapsed();
    let rss_after = reg.rss_kb();
    eprintln!("1,000 junk requests in {elapsed:?}: RSS {rss_before} → {rss_after} kB");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew {rss_before} → {rss_after} kB over 1,000 junk-parameter requests"
    );
    assert_eq!(
        stat(&reg, "answer_cache_entries").await,
        1,
        "one answer for every ?junk="
    );
    let bytes = stat(&reg, "answer_cache_bytes").await;
    assert!(
        bytes > 1_000_000 && bytes < 1_100_000,
        "cache holds {bytes} bytes"
    );
    // Parameters the endpoint reads still tell answers apart.
    let tagged = reg
        .get(&format!("{path}?tag=none"))
        .await
        .expect_status(200);
    assert_eq!(tagged.body, b"[]", "no instance has the tag");
    assert_eq!(stat(&reg, "answer_cache_entries").await, 2);
}

/// The same answer budget holds when callers vary parameters that do change the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_cache_stays_within_its_byte_budget() {
    let reg = Registry::builder()
        .arg("--answer-cache-mib")
        .arg("1")
        .start();
    register_large(&reg, "big", 8).await;
    for i in 0..40 {
        let r = reg
            .get(&format!("/v1/health/service/big?tag=t{i}&tag=x"))
            .await;
        r.expect_status(200);
        let r = reg
            .get(&format!(
                "/v1/catalog/service/big?filter=ID%20!%3D%20%22{i}%22"
            ))
            .await;
        r.expect_status(200);
    }
    let bytes = stat(&reg, "answer_cache_bytes").await;
    assert!(bytes <= 1024 * 1024, "cache holds {bytes} bytes");
}

/// The check kinds a fuzzer registers, on the registry's own port or on a name no DNS answers
/// (here getaddrinfo waits 20 s for the unreachable nameserver; elsewhere it fails at once).
fn check_body(i: usize, target: &str, pass: usize) -> Value {
    let host = if (i / 4) % 2 == 0 {
        target.to_string()
    } else {
        target.replace("127.0.0.1", "unresolvable.invalid")
    };
    let mut check = match i % 4 {
        0 => json!({"HTTP": format!("http://{host}/v1/status/leader"), "Interval": "100ms"}),
        1 => json!({"TCP": host, "Interval": "100ms"}),
        2 => json!({"GRPC": format!("{host}/svc"), "Interval": "100ms"}),
        _ => json!({"TTL": "30s"}),
    };
    check["CheckID"] = json!(format!("c{i}"));
    check["Name"] = json!("fuzzed");
    check["ServiceID"] = json!("svc1");
    check["Timeout"] = json!("50ms");
    // Every other pass redefines each check (a new runner); the others repeat it exactly.
    check["Notes"] = json!(format!("{}", pass / 2 % 2));
    check
}

/// 8 passes of 500 check registrations (20 IDs, every kind, identical repeats and changed
/// fields, targets that answer and names that never resolve) leave one runner per check, a
/// bounded number of threads and lookups, and a registry that still answers writes. Each run of
/// a check on an unresolvable name used to leave a getaddrinfo thread behind: 516 threads and
/// 132 MB, and writes (which need a blocking thread) stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_check_registrations_leave_runners_threads_and_lookups_bounded() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "svc", "ID": "svc1", "Port": 1}))
        .await;
    let target = reg.addr.to_string();
    let mut rss = Vec::new();
    for pass in 0..8 {
        for n in 0..500 {
            let body = check_body(n % 20, &target, pass);
            let r = reg.put("/v1/agent/check/register", &body).await;
            r.expect_status(200);
        }
        rss.push(reg.rss_kb());
        eprintln!(
            "pass {pass}: RSS {} kB, {} threads, {} fds, {} runners, {} lookups in flight",
            rss[pass],
            reg.proc_status("Threads"),
            reg.open_fds(),
            stat(&reg, "check_runners").await,
            stat(&reg, "dns_lookups_in_flight").await,
        );
    }
    // Probes keep running on their 100 ms interval meanwhile; let them pile up if they would.
    let started = std::time::Instant::now();
    poll_until(
        secs(2),
        "2 s of probing",
        async || started.elapsed(),
        |e| *e >= secs(2),
    )
    .await;
    let threads = reg.proc_status("Threads");
    assert!(threads < 64, "{threads} threads");
    assert_eq!(
        stat(&reg, "check_runners").await,
        20,
        "one runner per check"
    );
    assert!(
        stat(&reg, "dns_lookups_in_flight").await <= 1,
        "one lookup per name"
    );
    let checks = reg.get("/v1/agent/checks").await.expect_status(200).json();
    assert_eq!(checks.as_object().map(|m| m.len()), Some(20));
    // Writes still get their blocking thread promptly.
    let sent = std::time::Instant::now();
    reg.register(&json!({"Name": "svc", "ID": "svc2", "Port": 2}))
        .await;
    assert!(
        sent.elapsed() < secs(2),
        "a write took {:?}",
        sent.elapsed()
    );
    assert!(
        rss[7] < rss[1] + 16 * 1024,
        "RSS kept growing across identical passes: {rss:?} kB"
    );
}
