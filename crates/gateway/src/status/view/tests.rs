//! Why a row needs attention, the order of rows, the totals and the filter rule.

use super::*;

fn instance(id: &str, passing: bool, routable: bool) -> InstanceView {
    InstanceView {
        id: id.into(),
        address: "127.0.0.1:1".into(),
        healthy: passing && routable,
        passing,
        routable,
        sdk_version: String::new(),
        card_revision: String::new(),
        enforces_halt: false,
    }
}

/// A beamline with two instances, `passing` of them passing, none routed yet.
fn beamline(id: &str, passing: usize) -> BeamlineView {
    let mut b = BeamlineView::new(id.into(), state::IDLE);
    b.instances = (0..2)
        .map(|i| instance(&format!("{id}-{i}"), i < passing, false))
        .collect();
    b
}

fn halt(by: &str) -> Option<HaltView> {
    Some(HaltView {
        by: by.into(),
        reason: "sample on fire".into(),
        since: None,
        all: false,
    })
}

fn ids(rows: &[BeamlineView]) -> Vec<&str> {
    rows.iter().map(|b| b.beamline.as_str()).collect()
}

#[test]
fn attention_comes_first_and_each_group_is_in_natural_order() {
    let mut halted = beamline("10.1.1", 2);
    halted.halt = halt("alice");
    let mut locked = beamline("7.0.1", 2);
    locked.lock = Some(LockView {
        holder: "bob".into(),
        note: "aligning".into(),
        since: None,
        expires: None,
    });
    let mut erroring = beamline("12.3.1", 2);
    erroring.errors_per_sec = Some(0.2);
    let mut rows = vec![
        beamline("10.2.1", 2),
        halted,
        beamline("2.1.1", 2),
        beamline("9.9.9", 1),
        erroring,
        locked,
        beamline("1.4.3", 2),
        beamline("3.0.0", 0),
    ];
    let totals = finish(&mut rows);
    assert_eq!(
        ids(&rows),
        ["3.0.0", "7.0.1", "9.9.9", "10.1.1", "12.3.1", "1.4.3", "2.1.1", "10.2.1"]
    );
    assert_eq!(rows[0].attention, [Attention::Unhealthy]);
    assert_eq!(rows[1].attention, [Attention::Locked]);
    assert_eq!(rows[3].attention, [Attention::Halted]);
    assert_eq!(rows[4].attention, [Attention::Erroring]);
    assert!(rows[5].attention.is_empty());
    assert_eq!(totals.attention, 5);
}

#[test]
fn ids_are_in_natural_order_not_text_order() {
    let mut rows: Vec<BeamlineView> = ["10.1.1", "2.10.1", "2.2.1", "2.1.1", "SST-10", "sst-2"]
        .iter()
        .map(|id| beamline(id, 2))
        .collect();
    finish(&mut rows);
    assert_eq!(
        ids(&rows),
        ["2.1.1", "2.2.1", "2.10.1", "10.1.1", "sst-2", "SST-10"]
    );
}

#[test]
fn totals_count_beamlines_instances_rates_halts_and_locks() {
    let mut a = beamline("5.3.1", 2);
    a.calls_per_sec = Some(1.5);
    a.errors_per_sec = Some(0.5);
    a.halt = halt("alice");
    let mut b = beamline("5.3.2", 1);
    b.calls_per_sec = Some(2.0);
    b.errors_per_sec = Some(0.0);
    b.lock = Some(LockView {
        holder: "bob".into(),
        note: "n".into(),
        since: None,
        expires: None,
    });
    let mut pseudo = BeamlineView::new("_unknown".into(), state::NOT_ROUTED_NOW);
    pseudo.calls_per_sec = Some(1.0);
    pseudo.errors_per_sec = Some(0.0);
    let mut rows = vec![a, b, beamline("6.0.1", 2), pseudo];
    let totals = finish(&mut rows);
    assert_eq!(
        totals,
        Totals {
            beamlines: 3,
            attention: 2,
            instances: 6,
            instances_passing: 5,
            calls_per_sec: Some(4.5),
            errors_per_sec: Some(0.5),
            halted: 1,
            locked: 1,
        }
    );
    // Calls under no beamline are counted, but nothing is missing there.
    let pseudo = rows.iter().find(|b| b.beamline == "_unknown").unwrap();
    assert!(pseudo.attention.is_empty());
    // No rates before two samples: none in the totals either.
    let mut rows = vec![beamline("5.3.1", 2)];
    assert_eq!(finish(&mut rows).calls_per_sec, None);
}

#[test]
fn a_balancer_that_uses_no_passing_instance_needs_attention() {
    let mut b = beamline("5.3.1", 2);
    b.state = state::NOT_ROUTABLE;
    assert_eq!(b.needs(), [Attention::Unroutable]);
    // Idle (no balancer yet) with every instance passing is fine.
    assert!(beamline("5.3.1", 2).needs().is_empty());
}

#[test]
fn the_filter_matches_every_word_without_case() {
    let mut b = beamline("10.1.1", 2);
    b.halt = halt("Alice");
    b.attention = b.needs();
    let text = b.search_text();
    assert!(matches(&text, ""));
    assert!(matches(&text, "  "));
    assert!(matches(&text, "HALTED"));
    assert!(matches(&text, "10.1 alice"));
    assert!(!matches(&text, "halted locked"));
    assert!(!matches(&text, "2.1.1"));
    let ok = beamline("2.1.1", 2);
    assert!(matches(&ok.search_text(), "ok"));
}

#[test]
fn halts_and_locks_lead_the_reasons() {
    let mut b = beamline("5.3.1", 1);
    b.errors_per_sec = Some(1.0);
    b.halt = halt("alice");
    b.lock = Some(LockView {
        holder: "bob".into(),
        note: "n".into(),
        since: None,
        expires: None,
    });
    assert_eq!(
        b.needs(),
        [
            Attention::Halted,
            Attention::Locked,
            Attention::Unhealthy,
            Attention::Erroring
        ]
    );
}
