//! Requests the gateway refuses before writing anything (INVALID_ARGUMENT, NOT_FOUND), and
//! writes while the registry is down (UNAVAILABLE): the control state in KV is left as it was.

use tonic::Code;

use crate::support::policy::*;

use super::{assert_status, stack, LOCKED};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_change_nothing() {
    let s = stack().await;
    let mut team = s.fleet_as(Some(TEAM_531_KEY)).await;
    let mut ops = s.fleet_as(Some(OPS_KEY)).await;
    team.lock(LOCKED, "aligning", None).await.unwrap();
    team.halt(LOCKED, false, "checking the vacuum")
        .await
        .unwrap();
    let before = control_records(s.registry()).await;
    assert_eq!(before.len(), 2, "{before:?}");

    let d = |seconds: i64| Some(prost_types::Duration { seconds, nanos: 0 });
    let invalid = Code::InvalidArgument;
    assert_status(
        team.lock(LOCKED, "", None).await,
        invalid,
        &["note", "empty"],
    );
    assert_status(team.lock(LOCKED, "a\nb", None).await, invalid, &["note"]);
    assert_status(
        team.lock_raw(LOCKED, "long", d(25 * 3600)).await,
        invalid,
        &["25h", "24h"],
    );
    assert_status(
        team.lock_raw(LOCKED, "none", d(0)).await,
        invalid,
        &["zero"],
    );
    assert_status(
        team.lock_raw(LOCKED, "back", d(-5)).await,
        invalid,
        &["negative"],
    );
    // Crafted durations are refused, not a panic of the gateway (it answers the next request).
    let raw = |seconds: i64, nanos: i32| Some(prost_types::Duration { seconds, nanos });
    for (duration, part) in [
        (raw(i64::MIN, 0), "negative"),
        (raw(i64::MIN, -999_999_999), "negative"),
        (raw(i64::MAX, 999_999_999), "over the maximum"),
        (raw(1, 1_000_000_000), "out of range"),
        (raw(-1, i32::MIN), "out of range"),
    ] {
        assert_status(
            team.lock_raw(LOCKED, "crafted", duration).await,
            invalid,
            &[part],
        );
    }
    assert_status(team.lock("5..3", "x", None).await, invalid, &["5..3"]);
    assert_status(
        team.lock("", "x", None).await,
        invalid,
        &["name a beamline"],
    );
    assert_status(
        team.unlock("bad id").await,
        invalid,
        &["invalid beamline id"],
    );
    assert_status(
        team.halt(LOCKED, false, " ").await,
        invalid,
        &["reason", "empty"],
    );
    assert_status(
        team.halt(LOCKED, true, "both").await,
        invalid,
        &["not both"],
    );
    assert_status(
        team.halt("", false, "neither").await,
        invalid,
        &["name a beamline"],
    );
    assert_status(team.resume(LOCKED, true).await, invalid, &["not both"]);
    assert_status(
        ops.lock("9.9.9", "nobody there", None).await,
        Code::NotFound,
        &["9.9.9", "not registered"],
    );
    assert_status(
        ops.halt("9.9.9", false, "nobody there").await,
        Code::NotFound,
        &["9.9.9"],
    );
    assert_status(ops.unlock("9.9.9").await, Code::NotFound, &["9.9.9"]);
    assert_status(ops.resume("9.9.9", false).await, Code::NotFound, &["9.9.9"]);
    assert_eq!(control_records(s.registry()).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kv_unreachable_writes_are_unavailable() {
    let mut s = stack().await;
    let mut team = s.fleet_as(Some(TEAM_531_KEY)).await;
    let safety_token = safety_token();
    let mut safety = s.fleet_as(Some(&safety_token)).await;
    s.registry_mut().kill9();
    let unavailable = Code::Unavailable;
    let parts = ["cannot lock beamline 5.3.1", "Consul"];
    assert_status(
        team.lock(LOCKED, "aligning", None).await,
        unavailable,
        &parts,
    );
    let parts = ["cannot unlock beamline 5.3.1", "Consul"];
    assert_status(team.unlock(LOCKED).await, unavailable, &parts);
    let parts = ["cannot halt beamline 5.3.1", "Consul"];
    assert_status(team.halt(LOCKED, false, "x").await, unavailable, &parts);
    let parts = ["cannot halt every beamline", "Consul"];
    assert_status(safety.halt("", true, "x").await, unavailable, &parts);
    let parts = ["cannot resume every beamline", "Consul"];
    assert_status(safety.resume("", true).await, unavailable, &parts);
}
