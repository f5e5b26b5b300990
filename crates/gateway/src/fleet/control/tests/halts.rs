//! Halt's and Resume's check-and-set decisions: the `cas` each write names, the control room's
//! halt (lifted and replaced only by `safety`), and the answers after a lost check-and-set.

use std::time::{Duration, SystemTime};

use tonic::Code;

use super::super::halts::*;
use super::super::rules::Scope;
use super::*;
use beamline_consul::KvEntry;
use beamline_contract::control::{Halt, HaltRecord};

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

/// A halt by `by` with `role`, read at ModifyIndex `index`.
fn stored(by: &str, role: &str, index: u64) -> StoredHalt {
    let record = HaltRecord {
        halt: Halt {
            by: by.to_string(),
            reason: "sample on fire".to_string(),
            since: at(0),
        },
        role: role.to_string(),
    };
    StoredHalt::read(&KvEntry {
        key: "beamline-mesh/halt/5.3.1".to_string(),
        value: record.to_json(),
        create_index: 1,
        modify_index: index,
    })
}

fn operator() -> Caller {
    caller("team-531", Role::Operator, &["5.3.1"])
}

fn safety() -> Caller {
    caller("control-room", Role::Safety, &["*"])
}

fn bl() -> Scope {
    Scope::Beamline(id("5.3.1"))
}

#[test]
fn the_record_stores_the_callers_role() {
    let halt = stored("x", "", 1).record.halt;
    assert_eq!(record(Some(&safety()), halt.clone()).role, "safety");
    assert_eq!(record(Some(&operator()), halt.clone()).role, "operator");
    // Anonymous (no authentication): no role, an operator's.
    assert_eq!(record(None, halt).role, "");
}

#[test]
fn a_halt_is_written_with_cas_on_what_was_read() {
    let ops = operator();
    assert_eq!(plan_halt(Some(&ops), None), HaltPlan::Write { cas: 0 });
    for role in ["", "operator"] {
        let theirs = stored("ops-console", role, 42);
        assert_eq!(
            plan_halt(Some(&ops), Some(&theirs)),
            HaltPlan::Write { cas: 42 }
        );
    }
    // The control room replaces anyone's, its own included.
    for role in ["", "operator", "safety"] {
        let standing = stored("someone", role, 42);
        assert_eq!(
            plan_halt(Some(&safety()), Some(&standing)),
            HaltPlan::Write { cas: 42 }
        );
    }
}

#[test]
fn an_operators_halt_leaves_the_control_rooms_standing() {
    let room = stored("control-room", "safety", 42);
    for who in [Some(operator()), None] {
        assert_eq!(
            plan_halt(who.as_ref(), Some(&room)),
            HaltPlan::Stands(room.record.halt.clone())
        );
    }
    // A record nobody can read counts as the control room's.
    let unreadable = StoredHalt::read(&KvEntry {
        key: "beamline-mesh/halt/5.3.1".to_string(),
        value: b"not json".to_vec(),
        create_index: 1,
        modify_index: 7,
    });
    assert!(matches!(
        plan_halt(Some(&operator()), Some(&unreadable)),
        HaltPlan::Stands(_)
    ));
    assert!(plan_resume(&bl(), Some(&operator()), Some(&unreadable)).is_err());
    assert_eq!(
        plan_resume(&bl(), Some(&safety()), Some(&unreadable)).unwrap(),
        ResumePlan::Delete { cas: 7 }
    );
}

#[test]
fn after_a_lost_halt_what_stands_is_answered_unless_the_control_room_must_replace_it() {
    let ops = operator();
    let theirs = stored("ops-console", "operator", 43);
    let room = stored("control-room", "safety", 43);
    assert_eq!(
        after_lost_halt(Some(&ops), Some(&theirs)),
        Some(theirs.record.halt.clone())
    );
    assert_eq!(
        after_lost_halt(Some(&ops), Some(&room)),
        Some(room.record.halt.clone())
    );
    assert_eq!(
        after_lost_halt(Some(&safety()), Some(&room)),
        Some(room.record.halt.clone())
    );
    // Safety lost to an operator's halt: decide again (the control room's must stand).
    assert_eq!(after_lost_halt(Some(&safety()), Some(&theirs)), None);
    // Lifted meanwhile: decide again (the caller asked for a halt).
    assert_eq!(after_lost_halt(Some(&ops), None), None);
}

#[test]
fn a_resume_deletes_only_the_halt_it_read() {
    let ops = operator();
    assert_eq!(
        plan_resume(&bl(), Some(&ops), None).unwrap(),
        ResumePlan::NotHalted
    );
    for role in ["", "operator"] {
        let theirs = stored("ops-console", role, 42);
        assert_eq!(
            plan_resume(&bl(), Some(&ops), Some(&theirs)).unwrap(),
            ResumePlan::Delete { cas: 42 }
        );
        assert_eq!(
            plan_resume(&bl(), None, Some(&theirs)).unwrap(),
            ResumePlan::Delete { cas: 42 }
        );
    }
    let room = stored("control-room", "safety", 42);
    assert_eq!(
        plan_resume(&Scope::All, Some(&safety()), Some(&room)).unwrap(),
        ResumePlan::Delete { cas: 42 }
    );
}

#[test]
fn only_safety_lifts_the_control_rooms_halt() {
    let room = stored("control-room", "safety", 42);
    let status = plan_resume(&bl(), Some(&operator()), Some(&room)).unwrap_err();
    let parts = [
        "\"team-531\" (operator)",
        "Resume",
        "beamline 5.3.1",
        "the control room's halt needs the safety role",
        "halted by \"control-room\"",
        "2027-01-15T08:00:00Z",
        "sample on fire",
    ];
    assert_says(&status, Code::PermissionDenied, &parts);
    let status = plan_resume(&bl(), None, Some(&room)).unwrap_err();
    assert_says(
        &status,
        Code::PermissionDenied,
        &["an unauthenticated caller"],
    );
}

#[test]
fn a_resume_that_lost_names_the_halt_now_standing() {
    let now = stored("control-room", "safety", 43);
    let status = after_lost_resume(&bl(), Some(&now)).unwrap_err();
    let parts = [
        "beamline 5.3.1 was halted again while it was being resumed",
        "stays halted",
        "\"control-room\"",
        "(safety role)",
        "2027-01-15T08:00:00Z",
        "sample on fire",
    ];
    assert_says(&status, Code::FailedPrecondition, &parts);
    let status = after_lost_resume(&Scope::All, Some(&now)).unwrap_err();
    let parts = ["every beamline is halted by"];
    assert_says(&status, Code::FailedPrecondition, &parts);
    // Lifted by someone else meanwhile: what the caller asked for holds.
    assert!(after_lost_resume(&bl(), None).is_ok());
}
