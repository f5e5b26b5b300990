//! Who may halt and resume: an operator its own beamlines, never all; `safety` any beamline
//! and all, and only it lifts or replaces its own halt; observers nothing; without
//! authentication anyone, but nobody locks. What a halt does to calls is fleet_halt.rs's.

use tonic::Code;

use crate::support::gateway::GatewayProc;
use crate::support::policy::*;
use crate::support::{poll_for, poll_until, secs};

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
    let stored = halt_record(&s).await;
    assert_eq!(stored["by"], "team-531");
    assert_eq!(stored["role"], "operator");
    // Halting again replaces who and why.
    let again = ops.halt(LOCKED, false, "vacuum alarm").await.unwrap();
    assert_eq!(again.by, "ops-console");
    let stored = halt_record(&s).await;
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
    assert_eq!(stored["role"], "safety");
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

/// The halt record of 5.3.1 in the stack's KV (there must be one).
async fn halt_record(s: &PolicyStack) -> serde_json::Value {
    control_record(s.registry(), &halt_key(LOCKED))
        .await
        .expect("5.3.1's halt record is in KV")
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

/// The control room's halt is the control room's: an operator may neither lift it nor replace
/// who, why and when (its Halt answers the standing halt and writes nothing); `safety` replaces
/// an operator's halt and lifts its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_control_room_lifts_or_replaces_its_halt() {
    let s = stack().await;
    let mut team = s.fleet_as(Some(TEAM_531_KEY)).await;
    let mut ops = s.fleet_as(Some(OPS_KEY)).await;
    let safety_token = safety_token();
    let mut safety = s.fleet_as(Some(&safety_token)).await;

    // An operator's halt, replaced by the control room's (role and all).
    team.halt(LOCKED, false, "checking the vacuum")
        .await
        .unwrap();
    let room = safety.halt(LOCKED, false, "sample on fire").await.unwrap();
    assert_eq!(
        (room.by.as_str(), room.reason.as_str()),
        ("control-room", "sample on fire")
    );
    let stored = halt_record(&s).await;
    assert_eq!(
        (&stored["by"], &stored["role"]),
        (&"control-room".into(), &"safety".into())
    );
    let before = control_records(s.registry()).await;

    // Operators: Resume is PERMISSION_DENIED naming the halt; Halt answers the standing halt.
    let since = room.since.unwrap().to_string();
    for caller in [&mut team, &mut ops] {
        assert_status(
            caller.resume(LOCKED, false).await,
            Code::PermissionDenied,
            &[
                "Resume",
                "5.3.1",
                "the control room's halt needs the safety role",
                "control-room",
                "sample on fire",
                since.as_str(),
            ],
        );
        let answer = caller.halt(LOCKED, false, "mine now").await.unwrap();
        assert_eq!(answer, room, "the standing halt is answered");
    }
    assert_eq!(
        control_records(s.registry()).await,
        before,
        "nothing written"
    );
    // Still halted, as the control room wrote it.
    let mut agents = s.client().await;
    assert_status(
        move_as(&mut agents, LOCKED, TEAM_531_KEY, "sample_x").await,
        Code::FailedPrecondition,
        &["5.3.1", "halted", "control-room", "sample on fire"],
    );

    // The control room lifts its own.
    let resumed = safety.resume(LOCKED, false).await.unwrap();
    assert!(!resumed.halted);
    assert!(control_records(s.registry()).await.is_empty());
}

/// A gateway without authentication has no caller: Halt, Resume and Unlock are allowed and
/// recorded as by "anonymous"; Lock is FAILED_PRECONDITION (a lock lets only its holder through,
/// and this gateway cannot tell anyone apart, so it would refuse its own taker), while Unlock
/// still clears a lock taken through a gateway with authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_writes_are_by_anonymous_and_locks_are_refused() {
    let s = stack().await;
    let open = GatewayProc::builder(s.registry()).start();
    let mut anyone = FleetCaller::new(open.channel().await, None);
    let halt = poll_for(
        secs(10),
        "the open gateway's discovery to know 5.3.1",
        async || anyone.halt(LOCKED, false, "no auth here").await.ok(),
    )
    .await;
    assert_eq!(halt.by, "anonymous");
    let stored = halt_record(&s).await;
    assert_eq!(stored["by"], "anonymous");
    assert_eq!(stored.get("role"), None, "an anonymous halt has no role");
    assert_eq!(
        anyone.halt("", true, "all of it").await.unwrap().by,
        "anonymous"
    );
    anyone.resume("", true).await.unwrap();
    anyone.resume(LOCKED, false).await.unwrap();
    assert!(control_records(s.registry()).await.is_empty());

    assert_status(
        anyone.lock(LOCKED, "by hand", None).await,
        Code::FailedPrecondition,
        &["locks need callers", "--insecure-no-auth"],
    );
    assert!(control_records(s.registry()).await.is_empty());

    // A lock taken through the gateway with authentication: cleared here.
    let mut team = s.fleet_as(Some(TEAM_531_KEY)).await;
    team.lock(LOCKED, "aligning", None).await.unwrap();
    let unlocked = anyone.unlock(LOCKED).await.unwrap();
    assert!(!unlocked.locked);
    assert_eq!(unlocked.holder, "team-531");
    assert!(control_records(s.registry()).await.is_empty());
}

/// An operator's Resume racing the control room's Halt never erases the control room's halt:
/// Resume deletes only the halt it read (`cas`), so whatever the order, once both return the
/// control room's halt is in KV. Rounds where Resume lost the check-and-set answer
/// FAILED_PRECONDITION naming the halt now standing (counted, not asserted: timing decides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_racing_the_control_rooms_halt_never_erases_it() {
    let s = stack().await;
    let mut team = s.fleet_as(Some(TEAM_531_KEY)).await;
    let safety_token = safety_token();
    let mut safety = s.fleet_as(Some(&safety_token)).await;
    let mut by_cas = 0;
    for round in 0..10 {
        team.halt(LOCKED, false, "checking the vacuum")
            .await
            .unwrap();
        let reason = format!("fire, round {round}");
        let (resumed, halted) = tokio::join!(
            team.resume(LOCKED, false),
            safety.halt(LOCKED, false, &reason)
        );
        let halted = halted.expect("the control room always halts");
        assert_eq!(halted.by, "control-room", "round {round}");
        let stored = halt_record(&s).await;
        assert_eq!(
            (&stored["by"], &stored["reason"], &stored["role"]),
            (
                &"control-room".into(),
                &reason.as_str().into(),
                &"safety".into()
            ),
            "round {round}: the control room's halt stands (resume: {resumed:?})"
        );
        match resumed {
            Ok(state) => assert!(!state.halted, "round {round}: {state:?}"),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                for part in ["halted again", "control-room", reason.as_str()] {
                    assert!(status.message().contains(part), "{}", status.message());
                }
                by_cas += 1;
            }
            Err(status) => assert_eq!(
                status.code(),
                tonic::Code::PermissionDenied,
                "round {round}: {status:?}"
            ),
        }
        safety.resume(LOCKED, false).await.unwrap();
    }
    eprintln!("halt/resume race: {by_cas} of 10 rounds decided by the check-and-set");
}
