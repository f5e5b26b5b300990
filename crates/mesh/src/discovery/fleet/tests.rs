//! Every transition of the fleet watch, on explicit instants: what it asks, what it fetches,
//! what it publishes, the restart grace, backoff, and Consul's index rules.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use beamline_consul::{Node, ServiceInfo};

fn settings() -> WatchSettings {
    WatchSettings {
        wait: Duration::from_secs(300),
        min_interval: Duration::from_millis(20),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
        restart_grace: Duration::from_secs(10),
    }
}

fn check(service: &str, id: &str, status: &str, modify: u64) -> CheckEntry {
    CheckEntry {
        node: "node-1".into(),
        check_id: format!("service:{id}"),
        status: status.parse().unwrap(),
        service_id: id.into(),
        service_name: service.into(),
        service_tags: vec![AGENT_TAG.into()],
        modify_index: modify,
    }
}

fn node_check(status: &str) -> CheckEntry {
    CheckEntry {
        node: "node-1".into(),
        check_id: "serfHealth".into(),
        status: status.parse().unwrap(),
        service_id: String::new(),
        service_name: String::new(),
        service_tags: Vec::new(),
        modify_index: 1,
    }
}

fn answer(index: u64, checks: Vec<CheckEntry>) -> Indexed<Vec<CheckEntry>> {
    Indexed {
        value: checks,
        index,
        filtered_by_acls: false,
    }
}

/// The `/v1/health/service` entry of instance `id` of `beamline`, passing or not.
fn entry(beamline: &str, id: &str, port: u16, passing: bool) -> ServiceEntry {
    let status = if passing { "passing" } else { "critical" };
    ServiceEntry {
        node: Node {
            node: "node-1".into(),
            address: "10.0.0.1".into(),
        },
        service: ServiceInfo {
            id: id.into(),
            service: BeamlineId::parse(beamline).unwrap().service_name(),
            tags: vec![AGENT_TAG.into()],
            address: "127.0.0.1".into(),
            port,
            meta: BTreeMap::from([(meta::BEAMLINE.to_string(), beamline.to_string())]),
        },
        checks: vec![beamline_consul::HealthCheck {
            check_id: format!("service:{id}"),
            status: status.parse().unwrap(),
            service_id: id.into(),
            output: String::new(),
        }],
    }
}

fn id(s: &str) -> BeamlineId {
    BeamlineId::parse(s).unwrap()
}

fn fetched_names(plan: &Plan) -> Vec<&str> {
    plan.fetch.iter().map(|(s, _)| s.as_str()).collect()
}

/// Answers the plan's fetches from `entries` (by service name).
fn fetch_all(watch: &mut FleetWatch, plan: &Plan, entries: &[ServiceEntry]) {
    for (service, print) in &plan.fetch {
        let of: Vec<ServiceEntry> = entries
            .iter()
            .filter(|e| e.service.service == *service)
            .cloned()
            .collect();
        watch.on_fetched(service, *print, Some(of));
    }
}

#[test]
fn the_first_answer_fetches_every_beamline_and_resolves_the_fleet_once_fetched() {
    let t0 = Instant::now();
    let mut w = FleetWatch::new(settings());
    assert!(!w.fleet().resolved, "nothing known before Consul answers");
    assert_eq!(
        w.query(t0),
        Query {
            index: 0,
            wait: Duration::from_secs(300)
        }
    );

    let mut web = check("web", "web-1", "passing", 5);
    web.service_tags = vec!["http".into()];
    let plan = w.on_checks(
        t0,
        answer(
            7,
            vec![
                check("beamline-5-3-1", "a", "passing", 5),
                check("beamline-7-0-1", "b", "critical", 6),
                web,
                node_check("passing"),
            ],
        ),
    );
    assert_eq!(fetched_names(&plan), ["beamline-5-3-1", "beamline-7-0-1"]);
    assert!(
        !w.fleet().resolved,
        "not resolved until every service is fetched"
    );

    fetch_all(
        &mut w,
        &plan,
        &[
            entry("5.3.1", "a", 9001, true),
            entry("7.0.1", "b", 9002, false),
        ],
    );
    let fleet = w.fleet();
    assert!(fleet.resolved);
    assert_eq!(fleet.beamlines.len(), 2);
    let Resolution::Instances(a) = &*fleet.resolution(&id("5.3.1")) else {
        panic!("5.3.1 has instances");
    };
    assert_eq!(
        (a[0].id.as_str(), a[0].addr.as_str(), a[0].healthy),
        ("a", "127.0.0.1:9001", true)
    );
    assert_eq!(*fleet.resolution(&id("9.9.9")), Resolution::NotFound);
    // Blocks on the answer's index from now on.
    assert_eq!(w.query(t0).index, 7);
}

#[test]
fn only_a_service_whose_checks_changed_is_fetched_again() {
    let t0 = Instant::now();
    let mut w = FleetWatch::new(settings());
    let both = |a: &str, b: &str, modify: u64| {
        vec![
            check("beamline-5-3-1", "a", a, 5),
            check("beamline-7-0-1", "b", b, modify),
            node_check("passing"),
        ]
    };
    let plan = w.on_checks(t0, answer(7, both("passing", "passing", 6)));
    fetch_all(
        &mut w,
        &plan,
        &[entry("5.3.1", "a", 1, true), entry("7.0.1", "b", 2, true)],
    );

    let same = w.on_checks(t0, answer(8, both("passing", "passing", 6)));
    assert!(same.fetch.is_empty(), "nothing changed: {same:?}");
    // A check that rewrote its output (a new modify index, same status): nothing to fetch.
    let rewritten = w.on_checks(t0, answer(9, both("passing", "passing", 8)));
    assert!(rewritten.fetch.is_empty(), "{rewritten:?}");
    let flipped = w.on_checks(t0, answer(10, both("passing", "critical", 9)));
    assert_eq!(fetched_names(&flipped), ["beamline-7-0-1"]);
    fetch_all(&mut w, &flipped, &[entry("7.0.1", "b", 2, false)]);
    let Resolution::Instances(b) = &*w.fleet().resolution(&id("7.0.1")) else {
        panic!("7.0.1 has instances");
    };
    assert!(!b[0].healthy);
}

#[test]
fn a_node_check_changing_refetches_the_services_on_that_node() {
    let t0 = Instant::now();
    let mut w = FleetWatch::new(settings());
    let plan = w.on_checks(
        t0,
        answer(
            7,
            vec![
                check("beamline-5-3-1", "a", "passing", 5),
                node_check("passing"),
            ],
        ),
    );
    fetch_all(&mut w, &plan, &[entry("5.3.1", "a", 1, true)]);
    let plan = w.on_checks(
        t0,
        answer(
            8,
            vec![
                check("beamline-5-3-1", "a", "passing", 5),
                node_check("critical"),
            ],
        ),
    );
    assert_eq!(fetched_names(&plan), ["beamline-5-3-1"]);
}

#[test]
fn a_service_that_goes_is_gone_from_the_fleet_and_mismatched_ids_are_ignored() {
    let t0 = Instant::now();
    let mut w = FleetWatch::new(settings());
    let plan = w.on_checks(
        t0,
        answer(
            7,
            vec![
                check("beamline-5-3-1", "a", "passing", 5),
                check("beamline-7-0-1", "b", "passing", 5),
            ],
        ),
    );
    // `5-3-1` shares 5.3.1's service name but is another id; `x` registered under the wrong one.
    let mut wrong = entry("7.0.1", "x", 3, true);
    wrong.service.service = "beamline-5-3-1".into();
    fetch_all(
        &mut w,
        &plan,
        &[
            entry("5.3.1", "a", 1, true),
            entry("5-3-1", "c", 4, true),
            wrong,
            entry("7.0.1", "b", 2, true),
        ],
    );
    let fleet = w.fleet();
    let Resolution::Instances(a) = &*fleet.resolution(&id("5.3.1")) else {
        panic!("5.3.1 has instances");
    };
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(fleet.beamlines.contains_key(&id("5-3-1")));

    let plan = w.on_checks(
        t0,
        answer(8, vec![check("beamline-7-0-1", "b", "passing", 5)]),
    );
    assert!(plan.fetch.is_empty());
    let fleet = w.fleet();
    assert_eq!(*fleet.resolution(&id("5.3.1")), Resolution::NotFound);
    assert!(fleet.resolved);
}

#[test]
fn a_registry_restarted_empty_is_held_for_the_grace_then_believed() {
    let t0 = Instant::now();
    let mut w = FleetWatch::new(settings());
    let plan = w.on_checks(
        t0,
        answer(70, vec![check("beamline-5-3-1", "a", "passing", 5)]),
    );
    fetch_all(&mut w, &plan, &[entry("5.3.1", "a", 1, true)]);
    let before = w.fleet();

    // The index went backwards and nothing is registered: a restarted registry, not a fleet gone.
    let plan = w.on_checks(t0, answer(3, vec![]));
    assert_eq!(plan.notes, [Note::HoldingAfterRestart]);
    assert_eq!(w.fleet(), before, "the last fleet is held");
    let q = w.query(t0 + Duration::from_secs(4));
    assert_eq!(
        (q.index, q.wait),
        (0, Duration::from_secs(6)),
        "wakes when the grace ends"
    );
    // Still empty within the grace: held.
    w.on_checks(t0 + Duration::from_secs(5), answer(4, vec![]));
    assert_eq!(w.fleet(), before);
    // Past the grace and still empty: believed.
    let plan = w.on_checks(t0 + Duration::from_secs(10), answer(5, vec![]));
    assert!(plan.notes.is_empty());
    assert!(w.fleet().beamlines.is_empty());
    assert_eq!(w.query(t0).wait, Duration::from_secs(300));
}

#[test]
fn agents_registering_again_within_the_grace_end_it() {
    let t0 = Instant::now();
    let mut w = FleetWatch::new(settings());
    let plan = w.on_checks(
        t0,
        answer(70, vec![check("beamline-5-3-1", "a", "passing", 5)]),
    );
    fetch_all(&mut w, &plan, &[entry("5.3.1", "a", 1, true)]);
    w.on_checks(t0, answer(3, vec![]));
    let plan = w.on_checks(
        t0 + Duration::from_secs(2),
        answer(6, vec![check("beamline-5-3-1", "a2", "passing", 6)]),
    );
    assert_eq!(fetched_names(&plan), ["beamline-5-3-1"]);
    fetch_all(&mut w, &plan, &[entry("5.3.1", "a2", 1, true)]);
    let Resolution::Instances(a) = &*w.fleet().resolution(&id("5.3.1")) else {
        panic!("5.3.1 has instances");
    };
    assert_eq!(a[0].id, "a2");
    assert_eq!(
        w.query(t0).wait,
        Duration::from_secs(300),
        "no grace any more"
    );
}

#[test]
fn failures_back_off_with_jitter_up_to_the_cap_and_are_said_once_per_outage() {
    let t0 = Instant::now();
    let mut w = FleetWatch::new(settings());
    assert_eq!(
        w.on_error(0.0),
        (Duration::from_millis(100), Some(Note::Unreachable))
    );
    assert_eq!(
        w.on_error(1.0),
        (Duration::from_millis(300), None),
        "200 ms + half of it"
    );
    for _ in 0..10 {
        w.on_error(0.0);
    }
    assert_eq!(w.on_error(0.0).0, Duration::from_secs(5), "capped");
    let plan = w.on_checks(t0, answer(7, vec![]));
    assert_eq!(plan.notes, [Note::Reachable]);
    // Consul's rule: never block on index 0.
    let plan = w.on_checks(t0, answer(0, vec![]));
    assert!(plan.notes.is_empty());
    assert_eq!(w.query(t0).index, 0, "went backwards: restart from 0");
    w.on_checks(t0, answer(0, vec![]));
    assert_eq!(w.query(t0).index, 1, "0 is never a blocking index");
}

#[test]
fn a_failed_fetch_is_asked_again_after_the_backoff_not_after_a_long_block() {
    let t0 = Instant::now();
    let mut w = FleetWatch::new(settings());
    let checks = vec![check("beamline-5-3-1", "a", "passing", 5)];
    let plan = w.on_checks(t0, answer(7, checks.clone()));
    let (service, print) = plan.fetch[0].clone();
    w.on_fetched(&service, print, None);
    assert!(
        !w.fleet().resolved,
        "a beamline Consul named is not known yet"
    );
    assert_eq!(w.query(t0).wait, Duration::from_millis(100));
    let plan = w.on_checks(t0, answer(7, checks));
    assert_eq!(fetched_names(&plan), ["beamline-5-3-1"], "fetched again");
    fetch_all(&mut w, &plan, &[entry("5.3.1", "a", 1, true)]);
    assert!(w.fleet().resolved);
    assert_eq!(w.query(t0).wait, Duration::from_secs(300));
}

#[test]
fn acl_filtering_is_said_once_and_the_pause_keeps_the_rate_limit() {
    let t0 = Instant::now();
    let mut w = FleetWatch::new(settings());
    let mut filtered = answer(7, vec![]);
    filtered.filtered_by_acls = true;
    assert_eq!(
        w.on_checks(t0, filtered.clone()).notes,
        [Note::FilteredByAcls]
    );
    assert!(w.on_checks(t0, filtered).notes.is_empty());
    assert_eq!(
        w.pause(t0, t0 + Duration::from_millis(5)),
        Duration::from_millis(15)
    );
    assert_eq!(w.pause(t0, t0 + Duration::from_secs(1)), Duration::ZERO);
}

#[test]
fn an_instances_meta_is_read_and_a_changed_meta_is_a_changed_fleet() {
    let t0 = Instant::now();
    let mut w = FleetWatch::new(settings());
    let with_meta = |revision: &str| {
        let mut e = entry("5.3.1", "a", 9001, true);
        e.service.meta.extend([
            (meta::SDK_VERSION.to_string(), "0.9.0".to_string()),
            (meta::CARD_REVISION.to_string(), revision.to_string()),
            (
                meta::CONTROLS.to_string(),
                meta::CONTROLS_ENFORCED.to_string(),
            ),
        ]);
        e
    };
    let plan = w.on_checks(
        t0,
        answer(3, vec![check("beamline-5-3-1", "a", "passing", 3)]),
    );
    fetch_all(&mut w, &plan, &[with_meta("r1")]);
    let before = w.fleet();
    let a = before.resolution(&id("5.3.1")).instances()[0].clone();
    assert_eq!(a.sdk_version.as_deref(), Some("0.9.0"));
    assert_eq!(a.card_revision.as_deref(), Some("r1"));
    assert_eq!(a.controls.as_deref(), Some(meta::CONTROLS_ENFORCED));

    // An older SDK publishes none of them: None, not an error.
    let plan = w.on_checks(
        t0,
        answer(4, vec![check("beamline-5-3-1", "a", "critical", 4)]),
    );
    fetch_all(&mut w, &plan, &[entry("5.3.1", "a", 9001, true)]);
    let old = w.fleet().resolution(&id("5.3.1")).instances()[0].clone();
    assert_eq!(
        (old.sdk_version, old.card_revision, old.controls),
        (None, None, None)
    );

    // Only the Meta differs: the fleet differs, so the watch publishes it.
    let plan = w.on_checks(
        t0,
        answer(5, vec![check("beamline-5-3-1", "a", "passing", 5)]),
    );
    fetch_all(&mut w, &plan, &[with_meta("r2")]);
    let after = w.fleet();
    assert_ne!(
        before, after,
        "a new card_revision is a change of the fleet"
    );
    assert_eq!(
        after.resolution(&id("5.3.1")).instances()[0]
            .card_revision
            .as_deref(),
        Some("r2")
    );
}
