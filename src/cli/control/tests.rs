//! The one line each command prints, from the gateway's answer.

use super::*;

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn id(text: &str) -> BeamlineId {
    BeamlineId::parse(text).unwrap()
}

#[test]
fn halt_and_resume_lines() {
    let halt = HaltState {
        halted: true,
        by: "alice".into(),
        reason: "sample on fire".into(),
        since: at(1_796_479_200),
        all: false,
    };
    let one = Scope::Beamline(id("5.3.1"));
    assert_eq!(
        halted_line(&one, &halt),
        "halted 5.3.1 (by alice at 2026-12-05T14:00:00Z): sample on fire"
    );
    assert_eq!(
        halted_line(&Scope::All, &halt),
        "halted every beamline (by alice at 2026-12-05T14:00:00Z): sample on fire"
    );
    assert_eq!(resumed_line(&one, &HaltState::default()), "resumed 5.3.1");
    assert_eq!(
        resumed_line(&one, &HaltState { all: true, ..halt }),
        "resumed 5.3.1; every beamline is still halted (by alice at 2026-12-05T14:00:00Z): \
         sample on fire"
    );
}

#[test]
fn lock_and_unlock_lines() {
    let lock = LockState {
        locked: true,
        holder: "alice".into(),
        note: "aligning by hand".into(),
        since: at(1_796_479_200),
        expires: at(1_796_486_400),
    };
    let b = id("5.3.1");
    assert_eq!(
        locked_line(&b, &lock),
        "locked 5.3.1 for alice until 2026-12-05T16:00:00Z: aligning by hand"
    );
    let removed = LockState {
        locked: false,
        ..lock
    };
    assert_eq!(
        unlocked_line(&b, &removed),
        "unlocked 5.3.1 (was held by alice until 2026-12-05T16:00:00Z: aligning by hand)"
    );
    assert_eq!(
        unlocked_line(&b, &LockState::default()),
        "5.3.1 was not locked"
    );
}

#[test]
fn what_kv_says_is_printed_escaped() {
    // Reasons and notes come back from KV, where any tool may have written them.
    let halt = HaltState {
        halted: true,
        by: "alice\u{1b}[8m".into(),
        reason: "fire\r\u{1b}[2Kall clear".into(),
        since: at(1_796_479_200),
        all: true,
    };
    let one = Scope::Beamline(id("5.3.1"));
    assert_eq!(
        halted_line(&one, &halt),
        "halted 5.3.1 (by alice\\u{1b}[8m at 2026-12-05T14:00:00Z): fire\\r\\u{1b}[2Kall clear"
    );
    assert!(!resumed_line(&one, &halt).contains('\u{1b}'));
    let lock = LockState {
        locked: true,
        holder: "bob\u{9b}0m".into(),
        note: "mine\nlocked 5.3.1 for you".into(),
        since: at(1_796_479_200),
        expires: at(1_796_486_400),
    };
    let b = id("5.3.1");
    assert_eq!(
        locked_line(&b, &lock),
        "locked 5.3.1 for bob\\u{9b}0m until 2026-12-05T16:00:00Z: mine\\nlocked 5.3.1 for you"
    );
    let unlocked = unlocked_line(&b, &lock);
    assert!(!unlocked.chars().any(char::is_control), "{unlocked:?}");
}
