//! The check-and-set decisions: free, expired, ours, another's, unreadable; and who unlocks.

use std::time::{Duration, SystemTime};

use tonic::Code;

use super::super::plan::*;
use super::super::rules::{authorize, Act, Scope};
use super::*;
use beamline_contract::control::{ControlState, HeldLock, Lock, Record};

const T0: Duration = Duration::from_secs(1_800_000_000);

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
}

/// A lock by `holder` taken at 0 until `until`, read at ModifyIndex 42.
fn held(holder: &str, until: u64) -> HeldLock {
    HeldLock {
        lock: Lock {
            holder: holder.to_string(),
            note: "aligning by hand".to_string(),
            since: at(0),
            expires: at(until),
        },
        modify_index: 42,
    }
}

#[test]
fn a_missing_lock_is_created_with_cas_zero() {
    let plan = plan_lock(&id("5.3.1"), "alice", None, at(10)).unwrap();
    assert_eq!(plan, LockPlan::Create);
    assert_eq!(plan.cas(), 0);
    assert_eq!(plan.since(at(10)), at(10));
}

#[test]
fn an_expired_lock_is_taken_over_at_its_modify_index() {
    let record = held("bob", 100);
    // At the expiry itself the lock no longer holds.
    for now in [at(100), at(5000)] {
        let plan = plan_lock(&id("5.3.1"), "alice", Some(&record), now).unwrap();
        assert_eq!(plan.cas(), 42);
        assert!(matches!(&plan, LockPlan::TakeOver { expired, .. } if expired.holder == "bob"));
        assert_eq!(plan.since(now), now);
    }
}

#[test]
fn the_holder_renews_keeping_since() {
    let record = held("alice", 100);
    let plan = plan_lock(&id("5.3.1"), "alice", Some(&record), at(99)).unwrap();
    assert_eq!(
        plan,
        LockPlan::Renew {
            modify_index: 42,
            since: at(0)
        }
    );
    assert_eq!(plan.cas(), 42);
    assert_eq!(plan.since(at(99)), at(0));
}

#[test]
fn another_holder_is_failed_precondition_naming_holder_note_and_expiry() {
    let record = held("bob", 100);
    let status = plan_lock(&id("5.3.1"), "alice", Some(&record), at(99)).unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let expiry = beamline_contract::control::rfc3339::format(at(100));
    for part in ["5.3.1", "\"bob\"", "aligning by hand", expiry.as_str()] {
        assert!(status.message().contains(part), "{}", status.message());
    }
}

#[test]
fn an_unreadable_record_is_held_by_nobody_and_only_safety_breaks_it() {
    let state = ControlState::from_records([Record {
        key: "beamline-mesh/lock/5.3.1",
        value: b"not json",
        modify_index: 7,
    }]);
    let record = state.locks.get("5.3.1").unwrap();
    let status = plan_lock(&id("5.3.1"), "alice", Some(record), at(0)).unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // An empty name is nobody, not the holder of the unreadable record.
    assert!(plan_lock(&id("5.3.1"), "", Some(record), at(0)).is_err());
    let operator = caller("alice", Role::Operator, &["5.3.1"]);
    let status = plan_unlock(&id("5.3.1"), Some(&operator), Some(record), at(0)).unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let safety = caller("control-room", Role::Safety, &["*"]);
    let plan = plan_unlock(&id("5.3.1"), Some(&safety), Some(record), at(0)).unwrap();
    assert!(matches!(
        plan,
        UnlockPlan::Break {
            modify_index: 7,
            ..
        }
    ));
}

#[test]
fn who_unlocks() {
    let b = id("5.3.1");
    let record = held("alice", 100);
    let alice = caller("alice", Role::Operator, &["5.3.1"]);
    let bob = caller("bob", Role::Operator, &["5.3.1"]);
    let safety = caller("control-room", Role::Safety, &["*"]);
    let now = at(50);

    let plan = plan_unlock(&b, Some(&alice), Some(&record), now).unwrap();
    assert!(matches!(
        plan,
        UnlockPlan::Release {
            modify_index: 42,
            ..
        }
    ));
    let plan = plan_unlock(&b, Some(&safety), Some(&record), now).unwrap();
    assert!(
        matches!(plan, UnlockPlan::Break { modify_index: 42, ref lock } if lock.holder == "alice")
    );
    // No authentication: anyone breaks it.
    let plan = plan_unlock(&b, None, Some(&record), now).unwrap();
    assert!(matches!(plan, UnlockPlan::Break { .. }));
    // Another operator of the beamline (rules::authorize let it through): denied, naming the
    // holder. Observers and operators of other beamlines never get here (see control.rs).
    let status = plan_unlock(&b, Some(&bob), Some(&record), now).unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    for part in ["bob", "operator", "Unlock", "5.3.1", "\"alice\""] {
        assert!(status.message().contains(part), "{}", status.message());
    }

    // A free lock (none, or expired): nothing to write.
    for free in [None, Some(&record)] {
        let now = at(100);
        assert_eq!(
            plan_unlock(&b, Some(&bob), free, now).unwrap(),
            UnlockPlan::Free
        );
        assert_eq!(
            plan_unlock(&b, Some(&safety), free, now).unwrap(),
            UnlockPlan::Free
        );
    }
}

/// Unlock is authorized by role and beamline before the lock is read: an observer or an
/// operator of another beamline is PERMISSION_DENIED by `rules::authorize`, and that answer
/// cannot name the holder (it is decided without the lock).
#[test]
fn who_may_not_unlock_learns_nothing_of_the_lock() {
    let b = Scope::Beamline(id("5.3.1"));
    let viewer = caller("viewer", Role::Observer, &["*"]);
    let elsewhere = caller("bl702-team", Role::Operator, &["7.0.2"]);
    for who in [&viewer, &elsewhere] {
        let status = authorize(Some(who), Act::Unlock, &b).unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(!status.message().contains("locked"), "{}", status.message());
    }
}
