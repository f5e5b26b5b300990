//! The gateway over the mesh, end to end with real processes (registry, demo agents, gateway)
//! and real tonic clients sending `x-beamline: 5.3.1`: calls spread fairly over the instances,
//! a kill -9 during a stream of calls costs no call, a new instance gets traffic within a second
//! of passing its check, a SIGTERM'd instance drains without a failed call and gets nothing
//! after it deregisters, a stopped registry does not stop calls to the known instances, and an
//! instance that fails its check and passes again (maintenance, SIGSTOP) is routed again within a
//! second, with no call in between to wake the balancer; and a frozen instance (SIGSTOP) is taken
//! out of rotation with no failed call.

use crate::support;

use std::collections::BTreeSet;
use std::time::Instant;

use crate::support::gateway::*;
use crate::support::*;
use futures::StreamExt;

/// The fairness scenarios measure how p2c shares calls, which the CPU load of this file's other
/// scenarios (each runs a registry, agents and a gateway on the same cores) skews: a latency
/// peak past the mesh's 5 ms floor moves an instance's estimate up a bucket. They run alone; the
/// others run together.
static CORES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const BEAMLINE: &str = "5.3.1";
/// Pause between two calls of one load worker (keeps 2 cores from saturating).
const PACE: std::time::Duration = std::time::Duration::from_millis(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_describes_are_spread_fairly_over_three_instances() {
    let _alone = CORES.write().await;
    let c = Cluster::start(BEAMLINE, 3, |g| g).await;
    let client = c.gateway.client().await;
    // 300 calls, 16 at a time, over one connection to the gateway.
    let results: Vec<Result<String, tonic::Status>> = futures::stream::iter(0..300)
        .map(|_| {
            let mut client = client.clone();
            async move { describe(&mut client, BEAMLINE).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} calls failed: {failed:?}",
        failed.len()
    );
    let mut counts = std::collections::BTreeMap::new();
    for id in results.iter().flatten() {
        *counts.entry(id.clone()).or_insert(0usize) += 1;
    }
    let ids: BTreeSet<String> = c.ids.iter().cloned().collect();
    assert_eq!(
        counts.keys().cloned().collect::<BTreeSet<_>>(),
        ids,
        "answers came from {counts:?}"
    );
    for (id, n) in &counts {
        assert!(
            *n >= 50,
            "instance {id} got {n} of 300 calls (want ≥ 50 each): {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_describes_are_spread_over_three_instances() {
    let _alone = CORES.write().await;
    // One caller, one call at a time: there are no in-flight counts to go by, so only the
    // round-trip estimates decide; still every instance must get a real share (≥ 10%). Exact
    // estimates would let one small latency peak starve an instance until it decayed; the mesh
    // compares them in powers of two above a floor, so loopback noise ties.
    let c = Cluster::start(BEAMLINE, 3, |g| g).await;
    let mut client = c.gateway.client().await;
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..150 {
        let id = describe(&mut client, BEAMLINE)
            .await
            .unwrap_or_else(|e| panic!("call {i} failed: {e:?}"));
        *counts.entry(id).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 3, "answers came from {counts:?}");
    for (id, n) in &counts {
        assert!(
            *n >= 15,
            "instance {id} got {n} of 150 sequential calls (want ≥ 15 each): {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_one_of_three_instances_fails_no_call() {
    let _shared = CORES.read().await;
    let mut c = Cluster::start(BEAMLINE, 3, |g| g).await;
    let load = Load::start(&c.gateway, BEAMLINE, 8, PACE).await;
    // About a second of calls before the kill.
    load.wait_calls(400, secs(15)).await;
    let victim = c.ids[0].clone();
    c.agents[0].kill9();
    let killed_at = Instant::now();
    // Two more seconds of calls (and at least 400 of them) after the kill.
    let before = load.len();
    load.wait_calls(before + 400, secs(15)).await;
    poll_until(
        secs(10),
        "2 s of calls after the kill",
        async || killed_at.elapsed(),
        |e| *e >= secs(2),
    )
    .await;
    let records = load.stop().await;

    let failed = failures(&records);
    assert!(
        failed.is_empty(),
        "{} of {} calls failed around the kill -9 of {victim} (first: {:?})",
        failed.len(),
        records.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    let before_kill: Vec<_> = records
        .iter()
        .filter(|r| r.finished < killed_at)
        .cloned()
        .collect();
    assert!(
        per_instance(&before_kill)
            .get(&victim)
            .copied()
            .unwrap_or(0)
            > 0,
        "the victim {victim} got no call before the kill: {:?}",
        per_instance(&before_kill)
    );
    let after: Vec<_> = records
        .iter()
        .filter(|r| r.started > killed_at)
        .cloned()
        .collect();
    let after_counts = per_instance(&after);
    assert!(
        !after_counts.contains_key(&victim),
        "a call started after the kill was answered by the dead {victim}?! {after_counts:?}"
    );
    for id in &c.ids[1..] {
        assert!(
            after_counts.get(id).copied().unwrap_or(0) > 20,
            "survivor {id} got few calls after the kill: {after_counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_gets_traffic_within_a_second_of_passing() {
    let _shared = CORES.read().await;
    let c = Cluster::start(BEAMLINE, 2, |g| g).await;
    let load = Load::start(&c.gateway, BEAMLINE, 4, PACE).await;
    load.wait_calls(100, secs(15)).await;

    let (_new_agent, new_id, passing_at) = start_agent(&c.registry, BEAMLINE).await;
    let reached = poll_for(secs(5), "the new instance to answer a call", async || {
        load.records()
            .into_iter()
            .find(|r| r.result.as_ref().is_ok_and(|id| *id == new_id))
            .map(|r| r.finished)
    })
    .await;
    let records = load.stop().await;
    let delay = reached.saturating_duration_since(passing_at);
    assert!(
        delay < secs(1),
        "the new instance {new_id} answered its first call {delay:?} after it was seen passing \
         in Consul (want < 1 s); calls per instance: {:?}",
        per_instance(&records)
    );
    let failed = failures(&records);
    assert!(failed.is_empty(), "failed calls: {failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigtermed_instance_drains_without_failures_and_gets_nothing_once_deregistered() {
    let _shared = CORES.read().await;
    let mut c = Cluster::start(BEAMLINE, 3, |g| g).await;
    let load = Load::start(&c.gateway, BEAMLINE, 4, PACE).await;
    load.wait_calls(100, secs(15)).await;

    let victim = c.ids[0].clone();
    let signalled_at = Instant::now();
    c.agents[0].sigterm();
    support::agent::wait_gone(&c.registry, &victim, secs(10)).await;
    let gone_at = Instant::now();
    // A second of calls after the deregistration (the drain grace is 500ms).
    let before = load.len();
    load.wait_calls(before + 100, secs(15)).await;
    poll_until(
        secs(10),
        "1 s of calls after the deregistration",
        async || gone_at.elapsed(),
        |e| *e >= secs(1),
    )
    .await;
    let status = c.agents[0].wait_exit(secs(10)).await;
    let records = load.stop().await;

    assert!(status.success(), "the drained agent exited with {status}");
    let failed = failures(&records);
    assert!(
        failed.is_empty(),
        "{} of {} calls failed during the drain of {victim} (first: {:?})",
        failed.len(),
        records.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    let late: Vec<_> = records
        .iter()
        .filter(|r| r.started > gone_at && r.result.as_ref().is_ok_and(|id| *id == victim))
        .collect();
    assert!(
        late.is_empty(),
        "{} calls started after {victim} deregistered were answered by it (first: {:?})",
        late.len(),
        late.first()
    );
    let during: Vec<_> = records
        .iter()
        .filter(|r| r.started > signalled_at)
        .cloned()
        .collect();
    let counts = per_instance(&during);
    for id in &c.ids[1..] {
        assert!(
            counts.get(id).copied().unwrap_or(0) > 10,
            "survivor {id} got few calls after the SIGTERM: {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_keep_succeeding_with_the_registry_stopped() {
    let _shared = CORES.read().await;
    let mut c = Cluster::start(BEAMLINE, 3, |g| g).await;
    let load = Load::start(&c.gateway, BEAMLINE, 4, PACE).await;
    load.wait_calls(50, secs(15)).await;
    c.registry.kill9();
    let killed_at = Instant::now();
    // 1.5 s without a registry: the watch has failed and backed off several times by then.
    let before = load.len();
    load.wait_calls(before + 200, secs(15)).await;
    poll_until(
        secs(10),
        "1.5 s of calls without the registry",
        async || killed_at.elapsed(),
        |e| *e >= ms(1500),
    )
    .await;
    let records = load.stop().await;
    let failed = failures(&records);
    assert!(
        failed.is_empty(),
        "{} of {} calls failed with the registry stopped (first: {:?})",
        failed.len(),
        records.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    let after: Vec<_> = records
        .iter()
        .filter(|r| r.started > killed_at + ms(500))
        .cloned()
        .collect();
    let counts = per_instance(&after);
    assert_eq!(
        counts.len(),
        3,
        "with the registry stopped, calls went to {counts:?}, not to all 3 known instances"
    );

    // A fresh connection (a new caller) works too.
    let mut client = c.gateway.client().await;
    describe(&mut client, BEAMLINE)
        .await
        .expect("Describe from a new caller with the registry stopped");
}

/// The median of `samples` (sorted in place).
fn median(samples: &mut [std::time::Duration]) -> std::time::Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_describe_takes_no_delayed_ack_stall() {
    let _shared = CORES.read().await;
    // On loopback a Describe takes well under a millisecond; 40 ms per call is Nagle's algorithm
    // on a server socket meeting the client's delayed ACK (TCP_NODELAY not set on accepted
    // connections). Checked directly against the agent and through the gateway.
    let c = Cluster::start(BEAMLINE, 1, |g| g).await;
    let mut direct = c.agents[0].client().await;
    let mut gateway = c.gateway.client().await;
    let mut d = Vec::new();
    for _ in 0..40 {
        let t = Instant::now();
        direct
            .describe(beamline_mesh::proto::DescribeRequest {})
            .await
            .expect("direct Describe");
        d.push(t.elapsed());
    }
    let mut g = Vec::new();
    for _ in 0..40 {
        let t = Instant::now();
        describe(&mut gateway, BEAMLINE)
            .await
            .expect("Describe through the gateway");
        g.push(t.elapsed());
    }
    let (d, g) = (median(&mut d), median(&mut g));
    assert!(
        d < ms(10) && g < ms(10),
        "median sequential Describe: direct to the agent {d:?}, through the gateway {g:?} \
         (want < 10 ms each on loopback)"
    );
}

/// The gateway's `/metrics` as `(passing in Consul, used by the balancer)` for `beamline`.
async fn instance_gauges(metrics_base: &str, beamline: &str) -> (f64, f64) {
    let (_, _, text) = support::policy::http_get(&format!("{metrics_base}/metrics")).await;
    let samples = support::policy::parse_prometheus(&text);
    let gauge = |name: &str| {
        samples
            .iter()
            .find(|s| {
                s.name == name && s.labels.get("beamline").map(String::as_str) == Some(beamline)
            })
            .map_or(-1.0, |s| s.value)
    };
    (
        gauge("beamline_gateway_healthy_instances"),
        gauge("beamline_gateway_routable_instances"),
    )
}

/// Polls Describe through the gateway until instance `id` answers; returns when it did.
async fn first_answer_from(
    gateway: &GatewayProc,
    id: &str,
    timeout: std::time::Duration,
) -> Instant {
    let mut client = gateway.client().await;
    let deadline = Instant::now() + timeout;
    loop {
        let last = match describe(&mut client, BEAMLINE).await {
            Ok(answered) if answered == id => return Instant::now(),
            other => other,
        };
        assert!(
            Instant::now() < deadline,
            "no Describe through the gateway reached {id} within {timeout:?}; last answer \
             {last:?}\n--- gateway stderr ---\n{}",
            gateway.stderr_tail(4000)
        );
        tokio::time::sleep(ms(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_back_from_maintenance_is_routed_again_within_a_second() {
    let _shared = CORES.read().await;
    // One instance, no traffic while it is away: the balancer must take both changes (gone,
    // back) on its own, not when the next call arrives.
    let c = Cluster::start(BEAMLINE, 1, |g| g.arg("--metrics-listen", "127.0.0.1:0")).await;
    let metrics = c
        .gateway
        .wait_stdout_line("metrics listening on ", secs(10))
        .await;
    let id = c.ids[0].clone();
    let service = service_name(BEAMLINE);
    let maintenance = format!("/v1/agent/service/maintenance/{id}");

    let resp = c
        .registry
        .put_empty(&format!("{maintenance}?enable=true&reason=t"))
        .await;
    assert_eq!(resp.code(), 200, "maintenance on: {resp:?}");
    poll_until(
        secs(10),
        "the gateway to see the instance leave",
        async || instance_gauges(&metrics, BEAMLINE).await,
        |(passing, routable)| *passing == 0.0 && *routable == 0.0,
    )
    .await;
    let resp = c
        .registry
        .put_empty(&format!("{maintenance}?enable=false"))
        .await;
    assert_eq!(resp.code(), 200, "maintenance off: {resp:?}");
    support::agent::wait_passing(&c.registry, &service, &id, secs(10)).await;
    let passing_at = Instant::now();

    // The gauges converge: what the balancer uses is what Consul has passing, within 1 s.
    poll_until(
        secs(1),
        "routable_instances to equal healthy_instances (1) within 1 s of passing",
        async || instance_gauges(&metrics, BEAMLINE).await,
        |(passing, routable)| *passing == 1.0 && *routable == 1.0,
    )
    .await;
    let answered_at = first_answer_from(&c.gateway, &id, secs(5)).await;
    let delay = answered_at.saturating_duration_since(passing_at);
    assert!(
        delay < secs(1),
        "the instance answered through the gateway {delay:?} after it passed again (want < 1 s)"
    );
    // And it stays routed: every call now succeeds.
    let mut client = c.gateway.client().await;
    for i in 0..20 {
        describe(&mut client, BEAMLINE)
            .await
            .unwrap_or_else(|e| panic!("call {i} after the blip failed: {e:?}"));
    }
    let (_, _, status) = support::policy::http_get(&format!("{metrics}/status.json")).await;
    let status: serde_json::Value = serde_json::from_str(&status).expect("status.json is JSON");
    let instance = &status["beamlines"][0]["instances"][0];
    assert_eq!(instance["healthy"], true, "status.json: {status}");
    assert_eq!(instance["routable"], true, "status.json: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_paused_past_its_check_timeout_gets_traffic_again_once_it_passes() {
    let _shared = CORES.read().await;
    let c = Cluster::start(BEAMLINE, 2, |g| g).await;
    let victim = c.ids[0].clone();
    let service = service_name(BEAMLINE);

    // SIGSTOP past the check timeout (300 ms): the registry's check fails and Consul marks the
    // instance critical; no call flows meanwhile.
    c.agents[0].freeze();
    poll_until(
        secs(10),
        "the frozen instance to leave ?passing",
        async || support::agent::health_entry(&c.registry, &service, &victim, true).await,
        Option::is_none,
    )
    .await;
    c.agents[0].thaw();
    support::agent::wait_passing(&c.registry, &service, &victim, secs(10)).await;
    let passing_at = Instant::now();

    let answered_at = first_answer_from(&c.gateway, &victim, secs(5)).await;
    let delay = answered_at.saturating_duration_since(passing_at);
    assert!(
        delay < secs(1),
        "the resumed instance {victim} answered through the gateway {delay:?} after it passed \
         again (want < 1 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_instance_is_taken_out_of_rotation_and_no_call_fails() {
    let _shared = CORES.read().await;
    let c = Cluster::start(BEAMLINE, 3, |g| g).await;
    let load = Load::start(&c.gateway, BEAMLINE, 8, PACE).await;
    load.wait_calls(200, secs(15)).await;
    let victim = c.ids[0].clone();
    // SIGSTOP: its sockets accept, nothing answers; Consul notices only after its check fails.
    c.agents[0].freeze();
    let frozen_at = Instant::now();
    poll_until(
        secs(10),
        "3 s of calls with one instance frozen",
        async || frozen_at.elapsed(),
        |e| *e >= secs(3),
    )
    .await;
    c.agents[0].thaw();
    let records = load.stop().await;

    let failed = failures(&records);
    assert!(
        failed.is_empty(),
        "{} of {} calls failed with {victim} frozen (first: {:?})",
        failed.len(),
        records.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    // The calls in flight to it when it froze are failed over within the unresponsive bound
    // (1 s, PINGs every 250 ms), not left hanging until it thaws (3 s); no later call waits on it.
    let slowest = records
        .iter()
        .map(|r| r.finished.duration_since(r.started))
        .max()
        .unwrap_or_default();
    assert!(
        slowest < ms(1600),
        "a call took {slowest:?} with {victim} frozen for 3 s: it waited on the frozen instance"
    );
}
