//! The gateway's errors, end to end (registry, demo agents, gateway with `--failfast 1s`, real
//! tonic clients): every instance gone → UNAVAILABLE within the failfast bound, never a hang;
//! an unknown beamline → NOT_FOUND naming it; a missing or malformed `x-beamline` →
//! INVALID_ARGUMENT; a deadline over on arrival → DEADLINE_EXCEEDED at once; an absurd
//! `grpc-timeout` is no deadline (and no crash); a task whose owner is not registered →
//! NOT_FOUND; a 10 KB key or a 100 KB task id is answered with a message quoting a bounded part;
//! a message over 4 MiB is RESOURCE_EXHAUSTED (gateway and agent) without being buffered whole;
//! 300 unknown beamline ids are NOT_FOUND at once and leave no descriptor or metrics series; a
//! failed call's access line keeps its capability, task id and instance.

use crate::support;

use std::time::{Duration, Instant};

use crate::support::gateway::*;
use crate::support::*;
use beamline_mesh::proto::{CancelRequest, DescribeRequest, GetTaskRequest, SubscribeRequest};
use tonic::Code;

const BEAMLINE: &str = "5.3.1";
/// The gateway's --failfast in these tests, and how long a failfast answer may take.
const FAILFAST: &str = "1s";
const FAILFAST_BOUND: Duration = Duration::from_millis(2000);

/// A Describe through the gateway that must fail; the status and how long it took.
async fn describe_err(
    client: &mut beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient<
        tonic::transport::Channel,
    >,
    beamline: &str,
) -> (tonic::Status, Duration) {
    let started = Instant::now();
    match describe(client, beamline).await {
        Ok(id) => panic!("Describe of {beamline} succeeded (answered by {id})"),
        Err(status) => (status, started.elapsed()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_gone_is_unavailable_within_the_failfast_bound() {
    let mut c = Cluster::start(BEAMLINE, 2, |g| g.failfast(FAILFAST)).await;
    let mut client = c.gateway.client().await;
    for agent in &mut c.agents {
        agent.kill9();
    }
    // At once: the gates close (health watches end) before Consul's checks notice.
    let (status, took) = describe_err(&mut client, BEAMLINE).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(BEAMLINE),
        "the message should name the beamline: {status:?}"
    );
    assert!(
        took < FAILFAST_BOUND,
        "UNAVAILABLE took {took:?} (failfast 1s, want < {FAILFAST_BOUND:?})"
    );

    // Once Consul has both instances critical (registered, none healthy): still UNAVAILABLE,
    // saying no instance is healthy, within the bound.
    for id in &c.ids {
        poll_until(
            secs(10),
            &format!("{id} to turn critical"),
            async || support::agent::health_entry(&c.registry, "beamline-5-3-1", id, true).await,
            |e| e.is_none(),
        )
        .await;
    }
    let (status, took) = describe_err(&mut client, BEAMLINE).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("no healthy instance of beamline 5.3.1"),
        "{status:?}"
    );
    assert!(took < FAILFAST_BOUND, "UNAVAILABLE took {took:?}");

    // A new agent brings the beamline back.
    let (_agent, id, _) = start_agent(&c.registry, BEAMLINE).await;
    let answered = poll_for(secs(5), "a Describe to succeed again", async || {
        describe(&mut client, BEAMLINE).await.ok()
    })
    .await;
    assert_eq!(answered, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_beamline_is_not_found_naming_it_and_bad_keys_are_invalid_argument() {
    let c = Cluster::start(BEAMLINE, 1, |g| g.failfast(FAILFAST)).await;
    let mut client = c.gateway.client().await;

    let (status, took) = describe_err(&mut client, "9.9.9").await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("9.9.9"), "{status:?}");
    assert!(
        took < ms(500),
        "NOT_FOUND took {took:?} (the gateway knows the fleet)"
    );

    // No routing key at all.
    let err = client
        .describe(DescribeRequest {})
        .await
        .expect_err("Describe without x-beamline");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("x-beamline"), "{err:?}");

    // Keys that break the beamline id rule.
    let too_long = "a".repeat(33);
    for bad in [
        "bad id!",
        "5..3",
        ".5",
        "5.3.",
        "5_3_1",
        "",
        too_long.as_str(),
    ] {
        let started = Instant::now();
        let err = client
            .describe(to(bad, DescribeRequest {}))
            .await
            .expect_err(&format!("Describe with x-beamline {bad:?}"));
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "x-beamline {bad:?}: {err:?}"
        );
        assert!(
            started.elapsed() < secs(1),
            "x-beamline {bad:?} took {:?}",
            started.elapsed()
        );
    }
    // The same routing key on the other RPCs.
    let err = client
        .get_task(GetTaskRequest {
            task_id: "x/y".into(),
        })
        .await
        .expect_err("GetTask without x-beamline");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = client
        .execute(tonic::Request::new(support::agent::execute_request(
            "status",
            serde_json::json!({}),
            "",
        )))
        .await
        .expect_err("Execute without x-beamline");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // A 10 KB key: INVALID_ARGUMENT quoting a bounded part of it, not RESOURCE_EXHAUSTED from
    // an error message too large for the reply's headers.
    let huge = "b".repeat(10 * 1024);
    let err = client
        .describe(to(&huge, DescribeRequest {}))
        .await
        .expect_err("Describe with a 10 KB x-beamline");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().len() < 512 && err.message().contains('…'),
        "the message quotes the key cut short: {} bytes",
        err.message().len()
    );

    // The good key still works on the same connection.
    describe(&mut client, BEAMLINE)
        .await
        .expect("Describe of 5.3.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_over_on_arrival_is_deadline_exceeded_at_once() {
    let c = Cluster::start(BEAMLINE, 1, |g| g.failfast(FAILFAST)).await;
    describe(&mut c.gateway.client().await, BEAMLINE)
        .await
        .expect("a first call");
    // Sent on h2 directly: tonic's client would run a timer of its own for these deadlines
    // and report its expiry as CANCELLED itself, hiding what the gateway said. The gateway
    // stamps each call's arrival and the mesh answers at once a deadline already over, so
    // tonic's server timer (which says CANCELLED "Timeout expired") never gets to answer.
    let mut answers = Vec::new();
    for timeout in ["0n", "1n", "1u", "15u"] {
        for _ in 0..10 {
            let started = Instant::now();
            let status = c.gateway.describe_raw(BEAMLINE, timeout).await;
            let took = started.elapsed();
            assert!(
                took < ms(500),
                "grpc-timeout {timeout}: answered after {took:?}"
            );
            answers.push((timeout, status));
        }
    }
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(_, s)| s.code != Code::DeadlineExceeded as i32)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} calls with deadlines over on arrival were not DEADLINE_EXCEEDED: {wrong:?}",
        wrong.len(),
        answers.len()
    );
    // A deadline that can be met still is.
    let status = c.gateway.describe_raw(BEAMLINE, "5S").await;
    assert_eq!(status.code, Code::Ok as i32, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agent_makes_a_call_miss_its_deadline_with_deadline_exceeded() {
    let c = Cluster::start(BEAMLINE, 1, |g| g.failfast(FAILFAST)).await;
    let mut client = c.gateway.client().await;
    describe(&mut client, BEAMLINE).await.expect("a first call");
    c.agents[0].freeze();
    let started = Instant::now();
    let result = tokio::time::timeout(
        secs(5),
        client.describe(to_with_timeout(BEAMLINE, DescribeRequest {}, ms(300))),
    )
    .await
    .expect("a call to a frozen agent hung past its deadline");
    let took = started.elapsed();
    c.agents[0].thaw();
    let status = result.expect_err("a frozen agent cannot answer");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        took < ms(800),
        "answered after {took:?} for a 300 ms deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_owner_is_not_registered_is_not_found() {
    let c = Cluster::start(BEAMLINE, 1, |g| g.failfast(FAILFAST)).await;
    let mut client = c.gateway.client().await;
    let ghost = "beamline-5-3-1-00000000/0123456789";
    let err = client
        .get_task(to(
            BEAMLINE,
            GetTaskRequest {
                task_id: ghost.into(),
            },
        ))
        .await
        .expect_err("GetTask of a task of no registered instance");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message().contains(ghost) || err.message().contains("beamline-5-3-1-00000000"),
        "{err:?}"
    );
    let err = client
        .cancel(to(
            BEAMLINE,
            CancelRequest {
                task_id: ghost.into(),
            },
        ))
        .await
        .expect_err("Cancel");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = client
        .subscribe(to(
            BEAMLINE,
            SubscribeRequest {
                task_id: ghost.into(),
            },
        ))
        .await
        .expect_err("Subscribe");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // A task id that names no instance at all.
    let err = client
        .get_task(to(
            BEAMLINE,
            GetTaskRequest {
                task_id: "no-slash".into(),
            },
        ))
        .await
        .expect_err("GetTask of a malformed id");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // A 100 KB task id, naming no instance and naming the real one: NOT_FOUND quoting a bounded
    // part of it (never RESOURCE_EXHAUSTED from a reply whose headers are too large).
    for owner in ["beamline-5-3-1-00000000", c.ids[0].as_str()] {
        let huge = format!("{owner}/{}", "t".repeat(100 * 1024));
        let err = client
            .get_task(to(BEAMLINE, GetTaskRequest { task_id: huge }))
            .await
            .expect_err("GetTask of a 100 KB task id");
        assert_eq!(err.code(), Code::NotFound, "{owner}: {err:?}");
        assert!(
            err.message().len() < 512,
            "{owner}: {} bytes",
            err.message().len()
        );
    }
    // A task of the real instance that does not exist: the agent's own NOT_FOUND.
    let err = client
        .get_task(to(
            BEAMLINE,
            GetTaskRequest {
                task_id: format!("{}/nosuchtask", c.ids[0]),
            },
        ))
        .await
        .expect_err("GetTask of an unknown task of a real instance");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_grpc_timeouts_are_not_deadlines_and_break_nothing() {
    let c = Cluster::start(BEAMLINE, 1, |g| g.failfast(FAILFAST)).await;
    let mut client = c.gateway.client().await;
    // Longer than gRPC's 8 digits, or beyond any clock: no deadline, not a crash.
    for value in ["18446744073709551615H", "123456789S", "99999999H"] {
        let mut request = to(BEAMLINE, DescribeRequest {});
        request.metadata_mut().insert(
            "grpc-timeout",
            tonic::metadata::MetadataValue::from_static(value),
        );
        let answered = tokio::time::timeout(CALL_BOUND, client.describe(request))
            .await
            .unwrap_or_else(|_| panic!("a Describe with grpc-timeout {value} hung"));
        answered.unwrap_or_else(|s| panic!("grpc-timeout {value}: {s:?}"));
    }
    describe(&mut client, BEAMLINE)
        .await
        .expect("the gateway still routes");
}

/// An Execute of `status` whose params carry a string of `bytes` bytes.
fn execute_of(bytes: usize) -> beamline_mesh::proto::ExecuteRequest {
    support::agent::execute_request(
        "status",
        serde_json::json!({ "pad": "p".repeat(bytes) }),
        "",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_is_resource_exhausted_and_never_buffered_whole() {
    const MIB: usize = 1024 * 1024;
    let c = Cluster::start(BEAMLINE, 1, |g| g.failfast(FAILFAST)).await;
    let mut gateway = c.gateway.client().await;
    let mut direct = c.agents[0].client().await;
    // Just over the default 4 MiB, through the gateway and straight to the agent.
    let err = gateway
        .execute(to(BEAMLINE, execute_of(4 * MIB + 1024)))
        .await
        .expect_err("a 4 MiB + 1 KiB Execute through the gateway");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let err = direct
        .execute(execute_of(4 * MIB + 1024))
        .await
        .expect_err("a 4 MiB + 1 KiB Execute to the agent");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Under it: the agent's own schema check answers (the pad is not a param of `status`).
    let err = gateway
        .execute(to(BEAMLINE, execute_of(3 * MIB)))
        .await
        .expect_err("a 3 MiB Execute with an unknown param");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Params nested deeper than the decoder goes: the caller's fault, INVALID_ARGUMENT (tonic
    // says INTERNAL), directly and through the gateway.
    let mut deep = serde_json::json!({"leaf": 1});
    for _ in 0..60 {
        deep = serde_json::json!({ "a": deep });
    }
    let nested = || support::agent::execute_request("status", deep.clone(), "");
    let err = direct
        .execute(nested())
        .await
        .expect_err("params nested 60 deep, to the agent");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = gateway
        .execute(to(BEAMLINE, nested()))
        .await
        .expect_err("params nested 60 deep, through the gateway");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // 100 MB: refused while it streams in; the gateway's peak memory stays far below it.
    let before = c.gateway.memory("VmHWM");
    let started = Instant::now();
    let err = gateway
        .execute(to(BEAMLINE, execute_of(100 * MIB)))
        .await
        .expect_err("a 100 MB Execute through the gateway");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let peak = c.gateway.memory("VmHWM");
    assert!(
        peak < before + 32 * MIB as u64,
        "the gateway's peak RSS rose from {} to {} MiB on a 100 MB message",
        before / MIB as u64,
        peak / MIB as u64
    );
    assert!(started.elapsed() < secs(10), "took {:?}", started.elapsed());
    // The connection and the beamline still work.
    describe(&mut gateway, BEAMLINE)
        .await
        .expect("Describe after the refused messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_beamlines_are_not_found_at_once_and_leave_nothing_behind() {
    let c = Cluster::start(BEAMLINE, 1, |g| g.arg("--metrics-listen", "127.0.0.1:0")).await;
    let metrics = c
        .gateway
        .wait_stdout_line("metrics listening on ", secs(10))
        .await;
    let mut client = c.gateway.client().await;
    let fds_before = c.gateway.open_fds();
    let mut slowest = Duration::ZERO;
    for n in 0..300 {
        let id = format!("77.{n}.1");
        let (status, took) = describe_err(&mut client, &id).await;
        assert_eq!(status.code(), Code::NotFound, "{id}: {status:?}");
        assert!(status.message().contains(&id), "{status:?}");
        slowest = slowest.max(took);
    }
    // No failfast wait: the gateway knows the fleet.
    assert!(slowest < ms(500), "the slowest NOT_FOUND took {slowest:?}");
    let fds_after = c.gateway.open_fds();
    assert!(
        fds_after <= fds_before + 4,
        "300 unknown ids left descriptors behind: {fds_before} before, {fds_after} after"
    );
    let (_, _, text) = support::policy::http_get(&format!("{metrics}/metrics")).await;
    assert!(
        !text.contains("77."),
        "unknown ids made metrics series:\n{}",
        text.lines()
            .filter(|l| l.contains("77."))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        text.contains("beamline=\"_unknown\""),
        "calls to unknown ids are counted as _unknown"
    );
    // The known beamline still works, and its calls are its own series.
    describe(&mut client, BEAMLINE)
        .await
        .expect("Describe of 5.3.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_calls_access_line_keeps_its_capability_task_and_instance() {
    use support::policy::{access_lines, log_text};
    let mut c = Cluster::start(BEAMLINE, 1, |g| {
        g.failfast(FAILFAST).global_arg("--log-format", "json")
    })
    .await;
    let mut client = c.gateway.client().await;
    let mut stream = client
        .execute(to(
            BEAMLINE,
            support::agent::execute_request(
                "monitor_pv",
                serde_json::json!({"name": "ring:current", "duration_ms": 60000}),
                "",
            ),
        ))
        .await
        .expect("Execute monitor_pv")
        .into_inner();
    let first = support::agent::next_event(&mut stream)
        .await
        .expect("a first event");
    let task_id = support::agent::task_of(&first).task_id.clone();
    let owner = c.ids[0].clone();
    c.agents[0].kill9();

    // A task call to the dead owner fails: the line still names the task and the instance.
    let err = client
        .get_task(to(
            BEAMLINE,
            GetTaskRequest {
                task_id: task_id.clone(),
            },
        ))
        .await
        .expect_err("GetTask of a task whose instance is dead");
    assert!(
        matches!(err.code(), Code::Unavailable | Code::NotFound),
        "{err:?}"
    );
    // An Execute that finds no instance: the line still names the capability.
    let err = client
        .execute(to(
            BEAMLINE,
            support::agent::execute_request("status", serde_json::json!({}), ""),
        ))
        .await
        .expect_err("Execute with no instance left");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    let lines = poll_for(secs(5), "both failed calls' access lines", async || {
        let lines = access_lines(&c.gateway.stderr());
        let failed: Vec<_> = lines
            .into_iter()
            .filter(|l| log_text(l, "code").is_some_and(|c| c != "OK" && c != "CANCELLED"))
            .collect();
        let unavailable_execute = failed.iter().any(|l| {
            log_text(l, "method").as_deref() == Some("Execute")
                && log_text(l, "code").as_deref() == Some("UNAVAILABLE")
                && log_text(l, "capability").as_deref() == Some("status")
        });
        let get = failed
            .iter()
            .any(|l| log_text(l, "method").as_deref() == Some("GetTask"));
        (unavailable_execute && get).then_some(failed)
    })
    .await;
    let get = lines
        .iter()
        .find(|l| log_text(l, "method").as_deref() == Some("GetTask"))
        .expect("the GetTask line");
    assert_eq!(
        log_text(get, "task_id").as_deref(),
        Some(task_id.as_str()),
        "{get}"
    );
    if log_text(get, "code").as_deref() == Some("UNAVAILABLE") {
        assert_eq!(
            log_text(get, "instance").as_deref(),
            Some(owner.as_str()),
            "{get}"
        );
    }
    // Both Executes failed UNAVAILABLE, each line naming its capability: the one that found no
    // instance, and the monitor_pv whose stream broke when its instance died (its status came
    // as trailers).
    let failed_executes: Vec<_> = lines
        .iter()
        .filter(|l| {
            log_text(l, "method").as_deref() == Some("Execute")
                && log_text(l, "code").as_deref() == Some("UNAVAILABLE")
        })
        .filter_map(|l| log_text(l, "capability"))
        .collect();
    assert!(
        failed_executes.iter().any(|c| c == "status"),
        "{failed_executes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_and_agents_advertise_a_limit_on_concurrent_streams() {
    let c = Cluster::start(BEAMLINE, 1, |g| g).await;
    let gateway: std::net::SocketAddr = c
        .gateway
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let agent: std::net::SocketAddr = c.agents[0]
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    assert_eq!(
        support::gateway::advertised_max_streams(gateway).await,
        1024
    );
    assert_eq!(support::gateway::advertised_max_streams(agent).await, 1024);
}

/// A `monitor_pv` task of `duration_ms` started through the gateway, its Execute stream past
/// the first event.
async fn streaming_monitor(
    client: &mut beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient<
        tonic::transport::Channel,
    >,
    duration_ms: u64,
) -> tonic::Streaming<beamline_mesh::proto::TaskEvent> {
    let request = support::agent::execute_request(
        "monitor_pv",
        serde_json::json!({"name": "ring:current", "duration_ms": duration_ms, "interval_ms": 100}),
        "",
    );
    let mut events = client
        .execute(to(BEAMLINE, request))
        .await
        .expect("Execute monitor_pv")
        .into_inner();
    events
        .message()
        .await
        .expect("a first event")
        .expect("an event");
    events
}

/// One call with 64 KB of metadata fails alone, RESOURCE_EXHAUSTED, saying why: the client's
/// connection stays up, a task streaming on it goes on, and the next call on it succeeds (at
/// HTTP/2's 16 KiB default the gateway closed the whole connection, GOAWAY, failing them all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_over_the_agents_limit_fails_that_call_not_the_connection() {
    let c = Cluster::start(BEAMLINE, 1, |g| g).await;
    let mut client = c.gateway.client().await;
    // A task streaming on the same connection.
    let mut events = streaming_monitor(&mut client, 5000).await;

    // Metadata under the limit goes through.
    let mut fits = to(BEAMLINE, DescribeRequest {});
    fits.metadata_mut()
        .insert("x-notes", "n".repeat(8 * 1024).parse().unwrap());
    client
        .describe(fits)
        .await
        .expect("8 KB of metadata is fine");

    let mut big = to(BEAMLINE, DescribeRequest {});
    big.metadata_mut()
        .insert("x-notes", "n".repeat(64 * 1024).parse().unwrap());
    let status = tokio::time::timeout(secs(5), client.describe(big))
        .await
        .expect("an answer within 5 s")
        .expect_err("64 KB of metadata is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("metadata"), "{status:?}");
    assert!(status.message().len() < 200, "{status:?}");

    // The stream and the connection live on.
    for _ in 0..3 {
        tokio::time::timeout(secs(5), events.message())
            .await
            .expect("the task's next event within 5 s")
            .expect("the stream still works")
            .expect("an event");
    }
    describe(&mut client, BEAMLINE)
        .await
        .expect("the next call on the same connection succeeds");
}

/// An instance killed mid-stream: the caller's stream through the gateway ends with
/// UNAVAILABLE saying the response broke off (gRPC trailers), not a reset stream's INTERNAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_broken_by_a_dying_instance_ends_unavailable() {
    let mut c = Cluster::start(BEAMLINE, 1, |g| g).await;
    let mut client = c.gateway.client().await;
    let mut events = streaming_monitor(&mut client, 20000).await;
    c.agents[0].kill9();
    let status = loop {
        match tokio::time::timeout(secs(10), events.message())
            .await
            .expect("the stream ends within 10 s of the kill")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended as if the task had finished"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("broke off"), "{status:?}");
}
