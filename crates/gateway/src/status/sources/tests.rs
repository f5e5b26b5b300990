//! Rows are the union of the mesh's routes, the catalog, the control state and the totals; each
//! adds what it knows; a lock past its expiry is free; a fleet-wide halt halts every row.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use beamline_consul::control::ControlView;
use beamline_contract::control::{ControlState, Halt, HeldLock, Lock};
use beamline_contract::proto::{
    AgentCard, BeamlineEntry, Capability, FleetSnapshot, HaltState, InstanceEntry, LockState,
};
use beamline_mesh_client::discovery::{RegisteredInstance, Resolution};
use beamline_mesh_client::RouteStatus;

use super::{build, Sources};
use crate::observe::CallTotals;
use crate::status::sample::{Rates, Sample};
use crate::status::view::{state, Attention, StatusView};
use beamline_contract::beamline::BeamlineId;

fn route(id: &str, instances: &[(&str, bool)], routable: Option<&[&str]>) -> RouteStatus {
    let all = instances
        .iter()
        .map(|(iid, healthy)| RegisteredInstance {
            id: iid.to_string(),
            addr: format!("127.0.0.1:{}", 5000 + iid.len()),
            healthy: *healthy,
            beamline: Some(id.to_string()),
            ..Default::default()
        })
        .collect();
    RouteStatus {
        beamline: BeamlineId::parse(id).unwrap(),
        resolution: Arc::new(Resolution::Instances(all)),
        routable: routable.map(|r| r.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()),
    }
}

fn readable(state: ControlState) -> ControlView {
    ControlView {
        state,
        unreadable: None,
        index: 7,
    }
}

fn no_rates() -> Rates {
    Rates {
        now: BTreeMap::new(),
        baseline: None,
    }
}

fn view(
    routes: &[RouteStatus],
    catalog: &FleetSnapshot,
    control: &ControlView,
    rates: &Rates,
    now: SystemTime,
) -> StatusView {
    let sources = Sources {
        routes,
        catalog,
        control,
        rates,
        discovery_updates: 3,
    };
    build(sources, now, Instant::now())
}

fn row<'a>(view: &'a StatusView, id: &str) -> &'a crate::status::view::BeamlineView {
    (view.beamlines.iter())
        .find(|b| b.beamline == id)
        .unwrap_or_else(|| panic!("no row {id} in {view:?}"))
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

#[test]
fn routes_alone_make_the_page_while_the_catalog_is_empty() {
    let routes = [
        route("10.1.1", &[("a", true), ("b", true)], None),
        route("2.1.1", &[("a", true), ("b", false)], Some(&["a"])),
        route("5.3.1", &[("a", true)], Some(&[])),
    ];
    let v = view(
        &routes,
        &FleetSnapshot::default(),
        &readable(ControlState::default()),
        &no_rates(),
        t(0),
    );
    assert_eq!(v.totals.beamlines, 3);
    assert_eq!((v.totals.instances_passing, v.totals.instances), (4, 5));
    // 2.1.1 misses an instance, 5.3.1's balancer uses none of its passing ones: both first.
    let order: Vec<&str> = v.beamlines.iter().map(|b| b.beamline.as_str()).collect();
    assert_eq!(order, ["2.1.1", "5.3.1", "10.1.1"]);
    assert_eq!(row(&v, "2.1.1").state, state::ROUTED);
    assert_eq!(row(&v, "5.3.1").attention, [Attention::Unroutable]);
    assert_eq!(row(&v, "10.1.1").state, state::IDLE);
    assert!(row(&v, "10.1.1").card.is_none());
    assert_eq!(v.control_unreadable, None);
}

#[test]
fn the_catalog_adds_cards_instance_facts_halts_and_locks() {
    let routes = [route("5.3.1", &[("a", true)], None)];
    let catalog = FleetSnapshot {
        beamlines: vec![
            BeamlineEntry {
                beamline: "5.3.1".into(),
                instances: vec![
                    InstanceEntry {
                        instance_id: "a".into(),
                        address: "127.0.0.1:5001".into(),
                        healthy: true,
                        sdk_version: "0.9.0".into(),
                        card_revision: "r1".into(),
                        enforces_halt: true,
                    },
                    InstanceEntry {
                        instance_id: "b".into(),
                        address: "127.0.0.1:5002".into(),
                        healthy: false,
                        ..Default::default()
                    },
                ],
                card: Some(AgentCard {
                    card_revision: "r1".into(),
                    agent_version: "1.2.3".into(),
                    capabilities: vec![Capability {
                        name: "move_motor".into(),
                        description: "moves a motor".into(),
                        actuating: true,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                lock: Some(LockState {
                    locked: true,
                    holder: "bob".into(),
                    note: "aligning".into(),
                    since: Some(t(0).into()),
                    expires: Some(t(3600).into()),
                }),
                ..Default::default()
            },
            BeamlineEntry {
                beamline: "8.0.1".into(),
                halt: Some(HaltState {
                    halted: true,
                    by: "alice".into(),
                    reason: "beam dump".into(),
                    since: Some(t(0).into()),
                    all: false,
                }),
                card_error: "Describe failed: UNAVAILABLE".into(),
                // An expired lock is free.
                lock: Some(LockState {
                    locked: true,
                    expires: Some(t(10).into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        fleet_halt: None,
    };
    let v = view(
        &routes,
        &catalog,
        &readable(ControlState::default()),
        &no_rates(),
        t(60),
    );
    let a = row(&v, "5.3.1");
    assert_eq!(
        a.instances.len(),
        2,
        "the catalog's extra instance is listed"
    );
    assert_eq!(a.instances[0].sdk_version, "0.9.0");
    assert!(a.instances[0].enforces_halt);
    assert!(!a.instances[1].passing);
    assert_eq!(a.card.as_ref().unwrap().capabilities[0].name, "move_motor");
    assert_eq!(a.lock.as_ref().unwrap().holder, "bob");
    let b = row(&v, "8.0.1");
    assert_eq!(b.state, state::CATALOG_ONLY);
    assert_eq!(b.halt.as_ref().unwrap().reason, "beam dump");
    assert!(b.lock.is_none(), "expired at t(10), now t(60)");
    assert_eq!(
        b.card_error.as_deref(),
        Some("Describe failed: UNAVAILABLE")
    );
    assert_eq!((v.totals.halted, v.totals.locked), (1, 1));
}

#[test]
fn the_control_state_halts_and_locks_rows_and_the_fleet_halt_halts_all() {
    let routes = [
        route("5.3.1", &[("a", true)], None),
        route("6.0.1", &[("a", true)], None),
    ];
    let halt = |by: &str| Halt {
        by: by.into(),
        reason: "<script>alert(1)</script>".into(),
        since: t(0),
    };
    let lock = |expires: SystemTime| HeldLock {
        lock: Lock {
            holder: "bob".into(),
            note: "by hand".into(),
            since: t(0),
            expires,
        },
        modify_index: 3,
    };
    let mut control = ControlState::default();
    control.halts.insert("5.3.1".into(), halt("alice"));
    // A halt of a beamline that no longer registers is still shown.
    control.halts.insert("9.9.9".into(), halt("carol"));
    control.locks.insert("6.0.1".into(), lock(t(100)));
    control.locks.insert("5.3.1".into(), lock(t(10)));
    let v = view(
        &routes,
        &FleetSnapshot::default(),
        &readable(control.clone()),
        &no_rates(),
        t(50),
    );
    assert_eq!(row(&v, "5.3.1").halt.as_ref().unwrap().by, "alice");
    assert!(row(&v, "5.3.1").lock.is_none(), "expired");
    assert_eq!(row(&v, "6.0.1").lock.as_ref().unwrap().holder, "bob");
    assert_eq!(row(&v, "9.9.9").state, state::CATALOG_ONLY);
    assert_eq!((v.totals.halted, v.totals.locked), (2, 1));
    assert!(v.fleet_halt.is_none());

    control.all = Some(halt("safety"));
    let v = view(
        &routes,
        &FleetSnapshot::default(),
        &readable(control),
        &no_rates(),
        t(50),
    );
    assert!(v.fleet_halt.as_ref().unwrap().all);
    assert_eq!(v.totals.halted, 3);
    // A beamline's own halt says more than the fleet's.
    assert_eq!(row(&v, "5.3.1").halt.as_ref().unwrap().by, "alice");
    assert!(row(&v, "6.0.1").halt.as_ref().unwrap().all);
}

#[test]
fn totals_of_calls_add_rows_and_rates() {
    let routes = [route("5.3.1", &[("a", true)], None)];
    let now = Instant::now();
    let mut before = BTreeMap::new();
    before.insert(
        "5.3.1".to_string(),
        CallTotals {
            calls: 10,
            errors: 0,
        },
    );
    let mut after = before.clone();
    after.insert(
        "5.3.1".into(),
        CallTotals {
            calls: 30,
            errors: 0,
        },
    );
    after.insert(
        "7.0.1".into(),
        CallTotals {
            calls: 4,
            errors: 4,
        },
    );
    let rates = Rates {
        now: after,
        baseline: Some(Sample {
            at: now - Duration::from_secs(10),
            totals: before,
        }),
    };
    let sources = Sources {
        routes: &routes,
        catalog: &FleetSnapshot::default(),
        control: &ControlView::starting(),
        rates: &rates,
        discovery_updates: 0,
    };
    let v = build(sources, t(0), now);
    assert_eq!(v.window_secs, Some(10.0));
    assert_eq!(row(&v, "5.3.1").calls_per_sec, Some(2.0));
    let gone = row(&v, "7.0.1");
    assert_eq!(gone.state, state::NOT_ROUTED_NOW);
    assert_eq!(gone.errors_per_sec, Some(0.4));
    assert_eq!(v.totals.calls_per_sec, Some(2.4));
    assert_eq!(v.totals.errors_per_sec, Some(0.4));
    assert!(
        v.control_unreadable.is_some(),
        "Consul has not answered yet"
    );
}
