//! Who may halt and resume: an operator its own beamlines, never all; `safety` any beamline
//! and all; observers nothing. What a halt does to calls is fleet_halt.rs's.

use tonic::Code;

use crate::support::gateway::{start_agent, GatewayProc};
use crate::support::policy::*;
use crate::support::{poll_for, poll_until, secs, Registry};

use super::{assert_status, halt_key, move_as, stack, LOCKED, OTHER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_halt_and_resume() {
    let s = stack().await;
    let mut team = s.fleet_as(Some(TEAM_531_KEY)).await;
    let mut ops = s.fleet_as(Some(OPS_KEY)).await;
    let mut viewer = s.fleet_as(Some(VIEWER_KEY)).await;
    let safety_token = safety_token();
    let mut safety = s.fleet_as(Some(&safety_token)).await;
    let denied = Code::PermissionDenied;

    // An operator halts its beamline, not another's, and never all.
    assert_status(
        team.halt(OTHER, false, "not mine").await,
        denied,
        &["team-531", "operator", "Halt", "7.0.1"],
    );
    let halt = team
        .halt(LOCKED, false, "checking the vacuum")
        .await
        .unwrap();
    assert!(halt.halted && !halt.all);
    assert_eq!(
        (halt.by.as_str(), halt.reason.as_str()),
        ("team-531", "checking the vacuum")
    );
    let stored = control_record(s.registry(), &halt_key(LOCKED))
        .await
        .unwrap();
    assert_eq!(stored["by"], "team-531");
    // Halting again replaces who and why.
    let again = ops.halt(LOCKED, false, "vacuum alarm").await.unwrap();
    assert_eq!(again.by, "ops-console");
    let stored = control_record(s.registry(), &halt_key(LOCKED))
        .await
        .unwrap();
    assert_eq!(stored["reason"], "vacuum alarm");
    for caller in [&mut team, &mut ops] {
        assert_status(
            caller.halt("", true, "everything").await,
            denied,
            &["Halt", "every beamline"],
        );
        assert_status(
            caller.resume("", true).await,
            denied,
            &["Resume", "every beamline"],
        );
    }
    assert_status(
        viewer.halt(LOCKED, false, "x").await,
        denied,
        &["viewer", "observer"],
    );
    assert_status(
        viewer.resume(LOCKED, false).await,
        denied,
        &["viewer", "observer"],
    );

    // Safety halts everything (whatever its beamlines); resuming one beamline then says the
    // fleet-wide halt still holds it.
    let all = safety.halt("", true, "fire drill").await.unwrap();
    assert!(all.halted && all.all);
    assert_eq!(all.by, "control-room");
    let stored = control_record(s.registry(), "beamline-mesh/halt/_all")
        .await
        .unwrap();
    assert_eq!(stored["reason"], "fire drill");
    let resumed = team.resume(LOCKED, false).await.unwrap();
    assert!(resumed.halted && resumed.all, "{resumed:?}");
    assert_eq!(resumed.reason, "fire drill");
    assert_eq!(control_record(s.registry(), &halt_key(LOCKED)).await, None);
    let resumed = safety.resume("", true).await.unwrap();
    assert!(!resumed.halted && resumed.all);
    assert!(control_records(s.registry()).await.is_empty());
    // Resuming what is not halted answers halted: false.
    let resumed = team.resume(LOCKED, false).await.unwrap();
    assert!(!resumed.halted && !resumed.all);
    // Safety halts and resumes one beamline too.
    safety.halt(OTHER, false, "beam dump").await.unwrap();
    safety.resume(OTHER, false).await.unwrap();
    assert!(control_records(s.registry()).await.is_empty());
}

/// From Halt returning, this gateway refuses the next actuating Execute itself, with no
/// polling (the Fleet service answers once its own control view has read the write): each
/// refusal's access-log line says `refused=halt` and names no instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_halt_returning_the_next_actuating_execute_is_refused_by_the_gateway() {
    let s = PolicyStack::start(&[LOCKED, OTHER], false, |b| {
        b.global_arg("--log-format", "json")
    })
    .await;
    let mut team = s.fleet_as(Some(TEAM_531_KEY)).await;
    let mut agents = s.client().await;
    for trial in 0..10 {
        let reason = format!("trial {trial}");
        team.halt(LOCKED, false, &reason).await.unwrap();
        assert_status(
            move_as(&mut agents, LOCKED, TEAM_531_KEY, "sample_x").await,
            Code::FailedPrecondition,
            &["5.3.1", "halted", "team-531", &reason],
        );
        team.resume(LOCKED, false).await.unwrap();
    }
    let refusals = poll_until(
        secs(10),
        "the access-log lines of the 10 refused moves",
        async || {
            access_lines(&s.gateway.stderr())
                .into_iter()
                .filter(|l| log_text(l, "capability").as_deref() == Some("move_motor"))
                .collect::<Vec<_>>()
        },
        |lines| lines.len() >= 10,
    )
    .await;
    for line in refusals {
        assert_eq!(
            log_text(&line, "refused").as_deref(),
            Some("halt"),
            "{line}"
        );
        assert_eq!(log_text(&line, "instance").as_deref(), Some(""), "{line}");
    }
}

/// A gateway without authentication has no caller: every control RPC is allowed and recorded
/// as by "anonymous".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_writes_are_by_anonymous() {
    let registry = Registry::start();
    let _agent = start_agent(&registry, LOCKED).await;
    let gateway = GatewayProc::builder(&registry).start();
    let mut anyone = FleetCaller::new(gateway.channel().await, None);
    let halt = poll_for(
        secs(10),
        "the gateway's discovery to know 5.3.1",
        async || anyone.halt(LOCKED, false, "no auth here").await.ok(),
    )
    .await;
    assert_eq!(halt.by, "anonymous");
    let stored = control_record(&registry, &halt_key(LOCKED)).await.unwrap();
    assert_eq!(stored["by"], "anonymous");
    assert_eq!(
        anyone.halt("", true, "all of it").await.unwrap().by,
        "anonymous"
    );
    anyone.resume("", true).await.unwrap();
    anyone.resume(LOCKED, false).await.unwrap();
    let lock = anyone.lock(LOCKED, "by hand", None).await.unwrap();
    assert_eq!(lock.holder, "anonymous");
    let unlocked = anyone.unlock(LOCKED).await.unwrap();
    assert_eq!(unlocked.holder, "anonymous");
    assert!(control_records(&registry).await.is_empty());
}
