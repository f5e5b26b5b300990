//! Idle connections to agents, end to end (registry, a demo agent of 5.3.1, a gateway with
//! `--idle-connection-timeout 1s`, real tonic clients, the gateway's sockets read from `/proc`):
//! a connection that carried no call for the bound is closed with its health watch, and the
//! next call opens it again; a task on an instance whose connection was let go can still be
//! cancelled through a drain; and an idle instance that dies is known dead at once, not kept
//! as draining for the 5-minute drain bound.

use std::time::Duration;

use crate::support::agent::*;
use crate::support::gateway::*;
use crate::support::sockets::established_to;
use crate::support::*;
use beamline_mesh::proto::{CancelRequest, GetTaskRequest};
use serde_json::json;
use tonic::Code;

const BEAMLINE: &str = "5.3.1";

async fn idle_cluster() -> Cluster {
    Cluster::start(BEAMLINE, 1, |g| g.arg("--idle-connection-timeout", "1s")).await
}

/// The gateway's connections to the cluster's one agent, by their local ports.
fn connections(c: &Cluster) -> Vec<u16> {
    established_to(c.gateway.pid(), c.agents[0].addr.port())
}

/// Polls until the gateway holds `n` connections to the agent.
async fn wait_connections(c: &Cluster, n: usize, within: Duration, what: &str) {
    poll_until(
        within,
        what,
        async || connections(c),
        |held| held.len() == n,
    )
    .await;
}

/// An actuating scan of at least 20 s started through the gateway (its stream dropped: the task
/// runs on); its task id.
async fn long_scan(c: &Cluster) -> String {
    let mut client = c.gateway.client().await;
    let params = json!({"motor": "sample_x", "start": 0, "stop": 1, "steps": 200, "dwell_ms": 100});
    first_task(
        &mut client,
        to(BEAMLINE, execute_request("scan", params, "")),
    )
    .await
    .expect("a scan through the gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_the_next_call_opens_it_again() {
    let c = idle_cluster().await;
    assert_eq!(
        connections(&c).len(),
        1,
        "Describe went through one connection"
    );

    // Within the bound and a quarter of it (plus slack for a loaded machine), nothing holds it.
    wait_connections(&c, 0, secs(5), "the idle connection to be closed").await;

    // The next call dials again and is answered.
    let mut client = c.gateway.client().await;
    let id = describe(&mut client, BEAMLINE)
        .await
        .expect("Describe after the connection was let go");
    assert_eq!(id, c.ids[0]);
    let opened = connections(&c);
    assert_eq!(opened.len(), 1, "the call opened one connection");

    // Calls keep it, the very same connection: a Describe every 300 ms for 3 s, three times
    // the bound (the pause paces the calls; nothing waits on it).
    for _ in 0..10 {
        describe(&mut client, BEAMLINE).await.expect("Describe");
        assert_eq!(connections(&c), opened, "a connection in use is kept");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_connections(
        &c,
        0,
        secs(5),
        "the connection to be closed once calls stop",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_on_an_idle_instance_can_still_be_cancelled_through_its_drain() {
    let mut c = idle_cluster().await;
    let id = long_scan(&c).await;
    wait_connections(&c, 0, secs(5), "the idle connection to be closed").await;

    // A deploy: SIGTERM; the agent deregisters at once while its scan runs on.
    c.agents[0].sigterm();
    wait_gone(&c.registry, &c.ids[0], secs(10)).await;
    let mut client = c.gateway.client().await;
    let task = client
        .cancel(to(
            BEAMLINE,
            CancelRequest {
                task_id: id.clone(),
            },
        ))
        .await
        .expect("Cancel of a task on a draining instance whose connection was let go")
        .into_inner();
    assert_eq!(task.task_id, id);
    let status = c.agents[0].wait_exit(secs(10)).await;
    assert!(status.success(), "the drained agent exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_that_dies_is_known_dead_at_once() {
    let mut c = idle_cluster().await;
    let id = long_scan(&c).await;
    wait_connections(&c, 0, secs(5), "the idle connection to be closed").await;

    c.agents[0].kill9();
    // Consul's check sees it (2 s) and the gateway, with no call asking, looks at the instance
    // again at once (its health watch fails to connect), rather than keeping it as a draining
    // instance for the 5-minute drain bound on the word of its last health answer.
    let owner = c.ids[0].clone();
    poll_until(
        secs(15),
        "the gateway to look at the dead instance again",
        async || c.gateway.stderr(),
        |log| {
            log.lines()
                .any(|l| l.contains("health watch failed") && l.contains(&owner))
        },
    )
    .await;
    // So the task's owner is registered but not healthy: UNAVAILABLE saying so.
    let mut client = c.gateway.client().await;
    let err = poll_for(
        secs(2),
        "GetTask to say the owner is not healthy",
        async || {
            let asked = client
                .get_task(to(
                    BEAMLINE,
                    GetTaskRequest {
                        task_id: id.clone(),
                    },
                ))
                .await;
            match asked {
                Err(e) if e.message().contains("registered but not healthy") => Some(e),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}
