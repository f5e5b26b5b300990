//! The catalog machine, input by input: events, what is described and when, natural order, lock
//! expiry.

use std::time::{Duration, SystemTime};

use beamline_contract::beamline::BeamlineId;
use beamline_contract::control::{ControlState, Halt, HeldLock, Lock};
use beamline_contract::proto::Capability;
use beamline_mesh_client::discovery::{RegisteredInstance, Resolution};

use super::*;
use crate::fleet::catalog::CapabilityKind;

const T0: Duration = Duration::from_secs(1_800_000_000);

fn wall(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
}

fn instance(id: &str, healthy: bool, revision: Option<&str>) -> RegisteredInstance {
    RegisteredInstance {
        id: id.into(),
        addr: format!("127.0.0.1:{}", 9000 + id.len()),
        healthy,
        beamline: None,
        sdk_version: Some("0.1.0".into()),
        card_revision: revision.map(str::to_string),
        controls: revision.map(|_| "halt,lock".to_string()),
    }
}

fn fleet(beamlines: &[(&str, Vec<RegisteredInstance>)]) -> Fleet {
    Fleet {
        resolved: true,
        beamlines: beamlines
            .iter()
            .map(|(id, all)| {
                (
                    BeamlineId::parse(id).unwrap(),
                    Arc::new(Resolution::Instances(all.clone())),
                )
            })
            .collect(),
    }
}

fn card(beamline: &str, revision: &str, capabilities: &[(&str, bool)]) -> AgentCard {
    AgentCard {
        beamline: beamline.into(),
        card_revision: revision.into(),
        capabilities: capabilities
            .iter()
            .map(|(name, actuating)| Capability {
                name: name.to_string(),
                actuating: *actuating,
                ..Capability::default()
            })
            .collect(),
        ..AgentCard::default()
    }
}

fn control(state: ControlState) -> Arc<ControlView> {
    Arc::new(ControlView {
        state,
        unreadable: None,
        index: 1,
    })
}

fn machine() -> CatalogState {
    CatalogState::new(
        Retry {
            min: Duration::from_secs(1),
            max: Duration::from_secs(8),
        },
        control(ControlState::default()),
    )
}

/// The changes as (beamline or event, what changed), for assertions.
fn summary(changes: &[Change]) -> Vec<(String, Vec<FleetChange>)> {
    changes
        .iter()
        .map(|change| match change {
            Change::Beamline { entry, changes } => (entry.beamline.clone(), changes.clone()),
            Change::Removed(id) => (format!("-{id}"), Vec::new()),
            Change::FleetHalt(halt) => (format!("all halted={}", halt.halted), Vec::new()),
        })
        .collect()
}

fn describes(state: &mut CatalogState, now: Instant) -> Vec<Describe> {
    std::iter::from_fn(|| state.next_describe(now)).collect()
}

#[test]
fn new_beamlines_are_added_in_natural_order_and_described_once_healthy() {
    let now = Instant::now();
    let mut s = machine();
    s.on_fleet(
        &fleet(&[
            ("10.1.1", vec![instance("b", true, Some("r1"))]),
            ("2.1.1", vec![instance("a", true, Some("r1"))]),
            ("5.3.1", vec![instance("c", false, Some("r1"))]),
        ]),
        wall(0),
    );
    let view = s.take_view().expect("a first view");
    let ids: Vec<&str> = view.entries.iter().map(|e| e.beamline.as_str()).collect();
    assert_eq!(ids, ["2.1.1", "5.3.1", "10.1.1"], "natural order");
    let changes = summary(&s.take_changes());
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|(_, c)| c == &[FleetChange::Added]));
    let entry = &view.entries[0];
    assert_eq!(entry.instances[0].card_revision, "r1");
    assert!(entry.instances[0].enforces_halt);
    assert_eq!(entry.halt.as_ref().map(|h| h.halted), Some(false));
    assert_eq!(entry.lock.as_ref().map(|l| l.locked), Some(false));

    // 5.3.1 has no healthy instance: nothing to describe it through yet.
    let wanted: Vec<String> = describes(&mut s, now)
        .into_iter()
        .map(|d| d.beamline)
        .collect();
    assert_eq!(wanted, ["10.1.1", "2.1.1"]);
    assert!(
        describes(&mut s, now).is_empty(),
        "in flight: not asked twice"
    );

    s.on_fleet(
        &fleet(&[
            ("10.1.1", vec![instance("b", true, Some("r1"))]),
            ("2.1.1", vec![instance("a", true, Some("r1"))]),
            ("5.3.1", vec![instance("c", true, Some("r1"))]),
        ]),
        wall(1),
    );
    assert_eq!(
        summary(&s.take_changes()),
        [("5.3.1".to_string(), vec![FleetChange::Instances])]
    );
    let wanted: Vec<String> = describes(&mut s, now)
        .into_iter()
        .map(|d| d.beamline)
        .collect();
    assert_eq!(wanted, ["5.3.1"], "described once an instance passes");
}

#[test]
fn a_card_is_learnt_once_and_again_only_when_the_revisions_change() {
    let now = Instant::now();
    let mut s = machine();
    let one = |healthy: bool, revisions: &[&str]| {
        let all = revisions
            .iter()
            .enumerate()
            .map(|(i, r)| instance(&format!("i{i}"), healthy || i > 0, Some(r)))
            .collect();
        fleet(&[("5.3.1", all)])
    };
    s.on_fleet(&one(true, &["r1", "r1"]), wall(0));
    s.take_changes();
    let d = s.next_describe(now).unwrap();
    s.on_described(
        &d,
        Ok(card("5.3.1", "r1", &[("move", true), ("read", false)])),
        now,
        0.0,
    );
    assert_eq!(
        summary(&s.take_changes()),
        [("5.3.1".to_string(), vec![FleetChange::Card])]
    );
    let view = s.take_view().unwrap();
    assert_eq!(view.entries[0].card.as_ref().unwrap().card_revision, "r1");
    assert_eq!(view.capability("5.3.1", "move"), CapabilityKind::Actuating);
    assert_eq!(view.capability("5.3.1", "read"), CapabilityKind::ReadOnly);
    assert_eq!(
        view.capability("5.3.1", "fly"),
        CapabilityKind::Unknown,
        "no such capability"
    );
    assert_eq!(
        view.capability("7.0.1", "move"),
        CapabilityKind::Unknown,
        "no card"
    );

    // Health changes: an INSTANCES change, no Describe.
    s.on_fleet(&one(false, &["r1", "r1"]), wall(1));
    assert_eq!(
        summary(&s.take_changes()),
        [("5.3.1".to_string(), vec![FleetChange::Instances])]
    );
    assert_eq!(
        s.next_describe(now),
        None,
        "never described on a timer or on health"
    );
    assert_eq!(s.next_retry(), None);

    // A second revision appears (a rolling deploy): described again.
    s.on_fleet(&one(true, &["r1", "r2"]), wall(2));
    let d = s.next_describe(now).expect("a new revision is described");
    // It changes again while the Describe is out: the answer is kept, and one more follows.
    s.on_fleet(&one(true, &["r2", "r2"]), wall(3));
    s.on_described(&d, Ok(card("5.3.1", "r2", &[("move", true)])), now, 0.0);
    assert!(
        s.next_describe(now).is_some(),
        "the newer wish is answered too"
    );
}

#[test]
fn agents_without_a_revision_are_described_when_their_instance_set_changes() {
    let now = Instant::now();
    let mut s = machine();
    s.on_fleet(
        &fleet(&[("7.0.1", vec![instance("a", true, None)])]),
        wall(0),
    );
    let d = s.next_describe(now).unwrap();
    s.on_described(&d, Ok(card("7.0.1", "", &[("x", false)])), now, 0.0);
    s.take_changes();
    let view = s.take_view().unwrap();
    assert!(
        !view.entries[0].instances[0].enforces_halt,
        "too old to halt itself"
    );
    assert_eq!(view.entries[0].instances[0].card_revision, "");

    // Health only: not described.
    s.on_fleet(
        &fleet(&[("7.0.1", vec![instance("a", false, None)])]),
        wall(1),
    );
    assert_eq!(s.next_describe(now), None);
    // A new instance (it may bring a new card): described.
    s.on_fleet(
        &fleet(&[(
            "7.0.1",
            vec![instance("a", true, None), instance("b", true, None)],
        )]),
        wall(2),
    );
    assert!(s.next_describe(now).is_some());
}

#[test]
fn a_failed_describe_sets_card_error_and_is_retried_with_backoff() {
    let t = Instant::now();
    let mut s = machine();
    s.on_fleet(
        &fleet(&[("5.3.1", vec![instance("a", true, Some("r1"))])]),
        wall(0),
    );
    s.take_changes();
    let d = s.next_describe(t).unwrap();
    s.on_described(&d, Err("Describe failed: Unavailable: down".into()), t, 0.0);
    assert_eq!(
        summary(&s.take_changes()),
        [("5.3.1".to_string(), vec![FleetChange::Card])]
    );
    let view = s.take_view().unwrap();
    assert_eq!(
        view.entries[0].card_error,
        "Describe failed: Unavailable: down"
    );
    assert!(view.entries[0].card.is_none());
    assert_eq!(s.next_retry(), Some(t + Duration::from_secs(1)));
    assert_eq!(s.next_describe(t + Duration::from_millis(999)), None);

    let later = t + Duration::from_secs(1);
    let d = s.next_describe(later).expect("retried after the backoff");
    s.on_described(
        &d,
        Err("Describe failed: Unavailable: down".into()),
        later,
        0.0,
    );
    assert!(
        s.take_changes().is_empty(),
        "the same error again is no change"
    );
    assert_eq!(
        s.next_retry(),
        Some(later + Duration::from_secs(2)),
        "doubled"
    );

    let d = s.next_describe(later + Duration::from_secs(2)).unwrap();
    s.on_described(&d, Ok(card("5.3.1", "r1", &[])), later, 0.0);
    let view = s.take_view().unwrap();
    assert_eq!(view.entries[0].card_error, "");
    assert!(view.entries[0].card.is_some());
    assert_eq!(s.next_retry(), None);
}

fn lock(holder: &str, expires: SystemTime) -> HeldLock {
    HeldLock {
        lock: Lock {
            holder: holder.into(),
            note: "aligning".into(),
            since: wall(0),
            expires,
        },
        modify_index: 3,
    }
}

fn halt(by: &str) -> Halt {
    Halt {
        by: by.into(),
        reason: "sample on fire".into(),
        since: wall(0),
    }
}

#[test]
fn halts_and_locks_change_entries_and_an_expired_lock_shows_free_at_its_expiry() {
    let mut s = machine();
    s.on_fleet(
        &fleet(&[
            ("5.3.1", vec![instance("a", true, Some("r1"))]),
            ("7.0.1", vec![instance("b", true, Some("r1"))]),
        ]),
        wall(0),
    );
    s.take_changes();
    assert_eq!(s.next_expiry(wall(0)), None);

    let mut state = ControlState::default();
    state.halts.insert("5.3.1".into(), halt("alice"));
    state.locks.insert("7.0.1".into(), lock("bob", wall(60)));
    s.on_control(control(state.clone()), wall(1));
    assert_eq!(
        summary(&s.take_changes()),
        [
            ("5.3.1".to_string(), vec![FleetChange::Halt]),
            ("7.0.1".to_string(), vec![FleetChange::Lock]),
        ]
    );
    let view = s.take_view().unwrap();
    let halted = view.entries[0].halt.clone().unwrap();
    assert!(halted.halted && !halted.all);
    assert_eq!(halted.by, "alice");
    assert_eq!(view.entries[1].lock.as_ref().unwrap().holder, "bob");
    assert_eq!(s.next_expiry(wall(1)), Some(wall(60)));

    // The same state again: nothing.
    s.on_control(control(state.clone()), wall(2));
    assert!(s.take_changes().is_empty());
    s.on_time(wall(59));
    assert!(s.take_changes().is_empty(), "still held before its expiry");

    s.on_time(wall(60));
    assert_eq!(
        summary(&s.take_changes()),
        [("7.0.1".to_string(), vec![FleetChange::Lock])]
    );
    let view = s.take_view().unwrap();
    assert!(
        !view.entries[1].lock.as_ref().unwrap().locked,
        "expired: free"
    );
    assert_eq!(s.next_expiry(wall(60)), None, "nothing more to wake for");

    // A fleet-wide halt is its own event; the beamlines' own halts are unchanged.
    state.all = Some(halt("safety"));
    s.on_control(control(state), wall(61));
    assert_eq!(
        summary(&s.take_changes()),
        [("all halted=true".to_string(), vec![])]
    );
    assert!(s.take_view().unwrap().fleet_halt.all);
}

#[test]
fn a_beamline_that_leaves_is_removed_and_its_late_card_ignored() {
    let now = Instant::now();
    let mut s = machine();
    s.on_fleet(
        &fleet(&[("5.3.1", vec![instance("a", true, Some("r1"))])]),
        wall(0),
    );
    let d = s.next_describe(now).unwrap();
    s.take_changes();
    s.on_fleet(&fleet(&[]), wall(1));
    assert_eq!(summary(&s.take_changes()), [("-5.3.1".to_string(), vec![])]);
    s.on_described(&d, Ok(card("5.3.1", "r1", &[])), now, 0.0);
    assert!(s.take_changes().is_empty());
    let view = s.take_view().unwrap();
    assert!(view.entries.is_empty() && view.kinds.is_empty());

    // Back again: added and described again.
    s.on_fleet(
        &fleet(&[("5.3.1", vec![instance("a", true, Some("r1"))])]),
        wall(2),
    );
    assert_eq!(
        summary(&s.take_changes()),
        [("5.3.1".to_string(), vec![FleetChange::Added])]
    );
    assert!(s.next_describe(now).is_some());
}
