use std::time::{Duration, SystemTime};

use super::*;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn halt(by: &str) -> Halt {
    Halt {
        by: by.to_string(),
        reason: "sample on fire".to_string(),
        since: at(0),
    }
}

fn lock(holder: &str, expires: u64) -> Lock {
    Lock {
        holder: holder.to_string(),
        note: "aligning by hand".to_string(),
        since: at(0),
        expires: at(expires),
    }
}

fn state(records: &[(&str, Vec<u8>)]) -> ControlState {
    ControlState::from_records(records.iter().enumerate().map(|(i, (key, value))| Record {
        key,
        value,
        modify_index: i as u64 + 10,
    }))
}

#[test]
fn values_round_trip_as_json_with_rfc3339_times() {
    let text = String::from_utf8(halt("alice").to_json()).unwrap();
    assert!(
        text.contains("\"since\":\"2027-01-15T08:00:00Z\""),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<Halt>(&text).unwrap(), halt("alice"));
    let l = lock("bob", 60);
    assert_eq!(serde_json::from_slice::<Lock>(&l.to_json()).unwrap(), l);
}

#[test]
fn a_beamline_halt_stops_that_beamline_only() {
    let s = state(&[("beamline-mesh/halt/5.3.1", halt("alice").to_json())]);
    let refusal = s.refusal("5.3.1", Some("alice"), at(1)).unwrap();
    assert_eq!(
        refusal.to_string(),
        "beamline 5.3.1 is halted by \"alice\" since 2027-01-15T08:00:00Z: sample on fire"
    );
    assert_eq!(s.refusal("7.0.1", None, at(1)), None);
}

#[test]
fn the_fleet_halt_stops_every_beamline() {
    let s = state(&[(kv::HALT_ALL, halt("desk").to_json())]);
    let refusal = s.refusal("7.0.1", None, at(1)).unwrap();
    assert!(refusal
        .to_string()
        .starts_with("every beamline is halted by \"desk\""));
    assert!(s.is_halted("12.3.1"));
}

#[test]
fn a_lock_refuses_everyone_but_its_holder_until_it_expires() {
    let s = state(&[("beamline-mesh/lock/5.3.1", lock("bob", 60).to_json())]);
    assert_eq!(s.refusal("5.3.1", Some("bob"), at(30)), None);
    let refusal = s.refusal("5.3.1", Some("planner"), at(30)).unwrap();
    assert!(
        refusal
            .to_string()
            .starts_with("beamline 5.3.1 is locked by \"bob\" until 2027-01-15T08:01:00Z"),
        "{refusal}"
    );
    assert!(
        s.refusal("5.3.1", None, at(30)).is_some(),
        "unverified is not the holder"
    );
    assert_eq!(s.refusal("5.3.1", Some("planner"), at(60)), None, "expired");
    assert_eq!(s.locks["5.3.1"].modify_index, 10);
}

#[test]
fn a_halt_outranks_the_holder_of_a_lock() {
    let s = state(&[
        ("beamline-mesh/halt/5.3.1", halt("alice").to_json()),
        ("beamline-mesh/lock/5.3.1", lock("bob", 60).to_json()),
    ]);
    assert!(matches!(
        s.refusal("5.3.1", Some("bob"), at(1)),
        Some(Refusal::Halted { .. })
    ));
}

#[test]
fn unreadable_records_fail_closed_and_foreign_keys_are_ignored() {
    let s = state(&[
        ("beamline-mesh/halt/5.3.1", b"not json".to_vec()),
        ("beamline-mesh/lock/7.0.1", b"{}".to_vec()),
        ("beamline-mesh/halt/not an id", halt("x").to_json()),
        ("beamline-mesh/other/5.3.1", b"x".to_vec()),
    ]);
    let halted = s.refusal("5.3.1", None, at(1)).unwrap().to_string();
    assert!(halted.contains("cannot be read"), "{halted}");
    let locked = s.refusal("7.0.1", Some(""), at(1_000_000)).unwrap();
    assert!(matches!(locked, Refusal::Locked { .. }));
    assert_eq!(s.halts.len(), 1);
}

#[test]
fn reasons_must_say_something_short_and_printable() {
    assert!(check_text("reason", "beam dump").is_ok());
    assert_eq!(
        check_text("reason", "  ").unwrap_err(),
        "reason is empty: say why"
    );
    assert!(check_text("note", &"x".repeat(MAX_TEXT_BYTES + 1)).is_err());
    assert!(check_text("note", "a\nb").is_err());
}

#[test]
fn a_halt_record_stores_the_role_flat_and_reads_without_one() {
    let record = HaltRecord {
        halt: halt("control-room"),
        role: "safety".to_string(),
    };
    let text = String::from_utf8(record.to_json()).unwrap();
    assert!(text.contains("\"role\":\"safety\""), "{text}");
    assert!(text.contains("\"by\":\"control-room\""), "flat: {text}");
    let read = HaltRecord::read(kv::HALT_ALL, text.as_bytes());
    assert_eq!(read, record);
    assert!(read.by_safety());
    // Readers of a plain Halt (agents, the catalog) read it and ignore the role.
    assert_eq!(
        serde_json::from_str::<Halt>(&text).unwrap(),
        halt("control-room")
    );
    // A record written before roles were stored: an operator's; an anonymous one stores none.
    let old = HaltRecord::read(kv::HALT_ALL, &halt("alice").to_json());
    assert_eq!((&old.halt, old.role.as_str()), (&halt("alice"), ""));
    assert!(!old.by_safety());
    let anonymous = HaltRecord {
        halt: halt("anonymous"),
        role: String::new(),
    };
    let text = String::from_utf8(anonymous.to_json()).unwrap();
    assert!(!text.contains("role"), "{text}");
}

#[test]
fn an_unreadable_halt_record_is_the_control_rooms() {
    let read = HaltRecord::read("beamline-mesh/halt/5.3.1", b"not json");
    assert!(read.by_safety());
    assert!(read.halt.reason.contains("cannot be read"), "{read:?}");
    let s = state(&[("beamline-mesh/halt/5.3.1", b"not json".to_vec())]);
    assert_eq!(s.halts["5.3.1"], read.halt);
}
