//! Who may halt, resume, lock and unlock what, and which requests are refused as malformed.

use std::time::Duration;

use tonic::Code;

use super::super::rules::*;
use super::*;
use beamline_contract::control::{DEFAULT_LOCK, MAX_LOCK};

fn bl(text: &str) -> Scope {
    Scope::Beamline(id(text))
}

#[test]
fn the_authorization_table() {
    let bl531 = caller("bl531-team", Role::Operator, &["5.3.1"]);
    let ops = caller("ops", Role::Operator, &["*"]);
    let safety = caller("control-room", Role::Safety, &["7.0.1"]);
    let viewer = caller("viewer", Role::Observer, &["*"]);
    let (own, other) = (bl("5.3.1"), bl("8.3.2"));
    use Act::*;
    // (caller, act, scope, allowed)
    let table: Vec<(Option<&Caller>, Act, &Scope, bool)> = vec![
        (Some(&bl531), Halt, &own, true),
        (Some(&bl531), Resume, &own, true),
        (Some(&bl531), Lock, &own, true),
        (Some(&bl531), Unlock, &own, true),
        (Some(&bl531), Halt, &other, false),
        (Some(&bl531), Resume, &other, false),
        (Some(&bl531), Lock, &other, false),
        (Some(&bl531), Unlock, &other, false),
        (Some(&bl531), Halt, &Scope::All, false),
        (Some(&ops), Halt, &other, true),
        (Some(&ops), Halt, &Scope::All, false),
        (Some(&ops), Resume, &Scope::All, false),
        // Safety: any beamline (not only its own 7.0.1) and all; breaks locks; never locks.
        (Some(&safety), Halt, &other, true),
        (Some(&safety), Resume, &other, true),
        (Some(&safety), Halt, &Scope::All, true),
        (Some(&safety), Resume, &Scope::All, true),
        (Some(&safety), Unlock, &other, true),
        (Some(&safety), Lock, &other, false),
        (Some(&viewer), Halt, &own, false),
        (Some(&viewer), Resume, &own, false),
        (Some(&viewer), Lock, &own, false),
        (Some(&viewer), Unlock, &own, false),
        (Some(&viewer), Halt, &Scope::All, false),
        // Without authentication there is no caller: everything goes but Lock (below).
        (None, Halt, &Scope::All, true),
        (None, Resume, &other, true),
        (None, Unlock, &other, true),
    ];
    for (who, act, scope, allowed) in table {
        let got = authorize(who, act, scope);
        let label = format!("{:?} {act:?} {scope}", who.map(|c| &c.name));
        match (got, allowed) {
            (Ok(()), true) => {}
            (Err(status), false) => {
                assert_eq!(status.code(), Code::PermissionDenied, "{label}");
                let c = who.unwrap();
                let message = status.message();
                for part in [&*c.name, c.role.as_str(), act.rpc(), &scope.to_string()] {
                    assert!(message.contains(part), "{label}: {message}");
                }
            }
            (got, _) => panic!("{label}: {got:?}, expected allowed={allowed}"),
        }
    }
}

/// A lock lets only its holder through, and without authentication nobody is anyone: the
/// taker itself would be refused. So Lock needs callers the gateway can tell apart.
#[test]
fn without_authentication_lock_is_a_failed_precondition() {
    let status = authorize(None, Act::Lock, &bl("5.3.1")).unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    for part in ["locks need callers", "--insecure-no-auth"] {
        assert!(status.message().contains(part), "{}", status.message());
    }
}

#[test]
fn scope_is_one_beamline_or_all() {
    assert_eq!(scope("5.3.1", false).unwrap(), bl("5.3.1"));
    assert_eq!(scope("", true).unwrap(), Scope::All);
    for (beamline, all, part) in [
        ("5.3.1", true, "not both"),
        ("", false, "name a beamline"),
        ("5..3", false, "invalid beamline id"),
        ("_all", false, "invalid beamline id"),
        ("5.3.1/../x", false, "invalid beamline id"),
    ] {
        let status = scope(beamline, all).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{beamline:?}");
        assert!(status.message().contains(part), "{}", status.message());
    }
    assert_eq!(beamline_id("").unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(beamline_id("8.3.2").unwrap(), id("8.3.2"));
}

#[test]
fn reasons_and_notes_are_checked() {
    text("reason", "sample on fire").unwrap();
    for bad in ["", "   ", "a\nb", &"x".repeat(1025)] {
        let status = text("note", bad).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("note "),
            "{}",
            status.message()
        );
    }
}

#[test]
fn lock_durations_are_positive_and_at_most_a_day() {
    let d = |seconds: i64, nanos: i32| Some(prost_types::Duration { seconds, nanos });
    assert_eq!(lock_duration(None).unwrap(), DEFAULT_LOCK);
    assert_eq!(lock_duration(d(2, 0)).unwrap(), Duration::from_secs(2));
    assert_eq!(
        lock_duration(d(0, 1_000_000)).unwrap(),
        Duration::from_millis(1)
    );
    assert_eq!(lock_duration(d(24 * 3600, 0)).unwrap(), MAX_LOCK);
    for (bad, part) in [
        (d(0, 0), "zero"),
        (d(-1, 0), "negative"),
        (d(0, -5), "negative"),
        (d(25 * 3600, 0), "25h is over the maximum of 24h"),
        (d(24 * 3600, 1), "over the maximum of 24h"),
        // Crafted values: answered, never a panic (prost's Display and conversion negate
        // seconds, which overflows on i64::MIN), and nanos beyond a second are refused.
        (d(i64::MIN, 0), "negative"),
        (d(i64::MIN, -999_999_999), "negative"),
        (d(i64::MIN, 999_999_999), "negative"),
        (d(i64::MAX, 0), "over the maximum of 24h"),
        (d(i64::MAX, 999_999_999), "over the maximum of 24h"),
        (d(0, 1_000_000_000), "out of range"),
        (d(1, i32::MAX), "out of range"),
        (d(i64::MAX, i32::MAX), "out of range"),
        (d(i64::MIN, i32::MIN), "out of range"),
        (d(-1, -1_000_000_000), "out of range"),
    ] {
        let status = lock_duration(bad).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        assert!(status.message().contains(part), "{}", status.message());
    }
}

#[test]
fn durations_read_as_the_flags_are_written() {
    assert_eq!(human(Duration::from_secs(7200)), "2h");
    assert_eq!(human(Duration::from_secs(5400)), "90m");
    assert_eq!(human(Duration::from_secs(45)), "45s");
    assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    assert_eq!(human(Duration::ZERO), "0s");
}

#[test]
fn the_anonymous_actor() {
    assert_eq!(actor(None), ANONYMOUS);
    assert_eq!(
        actor(Some(&caller("alice", Role::Operator, &["*"]))),
        "alice"
    );
}
