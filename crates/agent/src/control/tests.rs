//! The agent's halt and lock decisions as functions of a view: halts, `_all`, locks and their
//! expiry, an unreadable state, locks left to the gateway (`service`: the same through an
//! `AgentService`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::*;
use beamline_contract::control::{ControlState, Halt, HeldLock, Lock};

const HERE: &str = "5.3.1";
const OTHER: &str = "7.0.1";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn halt(by: &str, reason: &str) -> Halt {
    Halt {
        by: by.into(),
        reason: reason.into(),
        since: at(0),
    }
}

fn lock(holder: &str, expires: SystemTime) -> HeldLock {
    HeldLock {
        lock: Lock {
            holder: holder.into(),
            note: "aligning by hand".into(),
            since: at(0),
            expires,
        },
        modify_index: 7,
    }
}

fn ask<'a>(beamline: &'a str, caller: Option<&'a str>, locks: Locks, now: SystemTime) -> Ask<'a> {
    Ask {
        beamline,
        caller,
        locks,
        now,
    }
}

fn view(state: ControlState) -> ControlView {
    ControlView {
        state,
        unreadable: None,
        index: 42,
    }
}

fn halted(beamline: &str) -> ControlView {
    view(ControlState {
        halts: BTreeMap::from([(beamline.to_string(), halt("ops", "sample on fire"))]),
        ..ControlState::default()
    })
}

fn locked_by(holder: &str, expires: SystemTime) -> ControlView {
    view(ControlState {
        locks: BTreeMap::from([(HERE.to_string(), lock(holder, expires))]),
        ..ControlState::default()
    })
}

#[test]
fn a_halt_refuses_actuating_execute_of_its_beamline_but_never_a_cancel() {
    let v = halted(HERE);
    for locks in [Locks::Enforced, Locks::AtGateway] {
        let refusal =
            execute_refusal(&v, &ask(HERE, Some("alice"), locks, at(1))).expect("refused");
        let text = refusal.to_string();
        assert!(
            text.contains("halted") && text.contains("\"ops\""),
            "{text}"
        );
        assert!(text.contains("sample on fire"), "{text}");
        assert_eq!(cancel_refusal(&v, &ask(HERE, None, locks, at(1))), None);
        assert_eq!(execute_refusal(&v, &ask(OTHER, None, locks, at(1))), None);
    }
    assert!(halt_of(&v, HERE).is_some());
    assert_eq!(halt_of(&v, OTHER), None);
}

#[test]
fn the_fleet_wide_halt_stops_every_beamline() {
    let v = view(ControlState {
        all: Some(halt("safety-officer", "evacuation drill")),
        ..ControlState::default()
    });
    for beamline in [HERE, OTHER] {
        let text = execute_refusal(&v, &ask(beamline, None, Locks::AtGateway, at(1)))
            .expect("refused")
            .to_string();
        assert!(text.contains("every beamline is halted"), "{text}");
        assert!(matches!(
            halt_of(&v, beamline),
            Some(Refusal::Halted { all: true, .. })
        ));
    }
}

#[test]
fn an_unreadable_state_refuses_actuating_execute_but_cancels_nothing() {
    let starting = ControlView::starting();
    for locks in [Locks::Enforced, Locks::AtGateway] {
        assert!(matches!(
            execute_refusal(&starting, &ask(HERE, Some("alice"), locks, at(1))),
            Some(Refusal::Unreadable { .. })
        ));
        assert_eq!(
            cancel_refusal(&starting, &ask(HERE, None, locks, at(1))),
            None
        );
    }
    assert_eq!(halt_of(&starting, HERE), None, "not a known halt");

    // Consul lost after a halt was read: the halt it knows says more than "unreadable".
    let mut lost = halted(HERE);
    lost.unreadable = Some("connection refused".into());
    assert!(matches!(
        execute_refusal(&lost, &ask(HERE, None, Locks::AtGateway, at(1))),
        Some(Refusal::Halted { .. })
    ));
    // Lost with nothing halted: refused as unreadable, locks left to the gateway or not.
    let mut lost = view(ControlState::default());
    lost.unreadable = Some("connection refused".into());
    assert!(matches!(
        execute_refusal(&lost, &ask(HERE, None, Locks::AtGateway, at(1))),
        Some(Refusal::Unreadable { .. })
    ));
}

#[test]
fn an_enforced_lock_lets_its_holder_alone_act_until_it_expires() {
    let v = locked_by("alice", at(3600));
    let locks = Locks::Enforced;
    assert_eq!(
        execute_refusal(&v, &ask(HERE, Some("alice"), locks, at(1))),
        None
    );
    for caller in [Some("bob"), None] {
        let text = execute_refusal(&v, &ask(HERE, caller, locks, at(1)))
            .expect("refused")
            .to_string();
        assert!(text.contains("locked by \"alice\""), "{text}");
        assert!(text.contains("aligning by hand"), "{text}");
        assert!(cancel_refusal(&v, &ask(HERE, caller, locks, at(1))).is_some());
    }
    assert_eq!(
        cancel_refusal(&v, &ask(HERE, Some("alice"), locks, at(1))),
        None
    );
    // Past its expiry the lock is free.
    assert_eq!(
        execute_refusal(&v, &ask(HERE, Some("bob"), locks, at(3600))),
        None
    );
    assert_eq!(cancel_refusal(&v, &ask(HERE, None, locks, at(3601))), None);
    // Another beamline's lock is not this one's.
    assert_eq!(
        execute_refusal(&v, &ask(OTHER, Some("bob"), locks, at(1))),
        None
    );
}

#[test]
fn locks_are_the_gateways_without_mutual_tls() {
    let v = locked_by("alice", at(3600));
    assert_eq!(
        execute_refusal(&v, &ask(HERE, Some("bob"), Locks::AtGateway, at(1))),
        None
    );
    assert_eq!(
        cancel_refusal(&v, &ask(HERE, None, Locks::AtGateway, at(1))),
        None
    );
}

#[test]
fn under_a_halt_a_cancel_goes_on_even_against_a_lock() {
    let mut v = locked_by("alice", at(3600));
    v.state.all = Some(halt("safety-officer", "stop"));
    assert_eq!(
        cancel_refusal(&v, &ask(HERE, Some("bob"), Locks::Enforced, at(1))),
        None
    );
}

mod service;

#[tokio::test]
async fn an_unreachable_consul_does_not_hold_the_start_up_and_refuses_actuating_work() {
    let config = beamline_consul::ConsulConfig::new("127.0.0.1:1").unwrap();
    let client = ConsulClient::new(config);
    let (_watch, control) = Control::follow(client.clone(), HERE, Locks::AtGateway);
    let started = std::time::Instant::now();
    assert!(!control.first_read(Duration::from_secs(30)).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let refused = control.check_execute(None).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("cannot be read"), "{refused:?}");
}
