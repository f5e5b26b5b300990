use std::time::{Duration, Instant};

use super::*;
use crate::model::{CheckDefinition, CheckKind};

const AFTER: Duration = Duration::from_secs(60);

fn check(id: &str, service: &str, status: CheckStatus, after: Option<Duration>) -> Check {
    Check {
        def: CheckDefinition {
            id: id.into(),
            name: id.into(),
            notes: String::new(),
            service_id: service.into(),
            kind: Some(CheckKind::Ttl {
                ttl: Duration::from_secs(10),
            }),
            timeout: Duration::from_secs(10),
            initial_status: CheckStatus::Critical,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            deregister_critical_after: after,
        },
        status,
        output: String::new(),
        ttl_expires_unix_ms: None,
        create_index: 1,
        modify_index: 1,
    }
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

#[test]
fn fires_only_after_the_critical_period() {
    let t0 = Instant::now();
    let mut reaper = Reaper::default();
    reaper.on_check(t0, &check("c", "web", CheckStatus::Critical, Some(AFTER)));
    assert_eq!(reaper.next_deadline(), Some(secs(t0, 60)));
    assert!(reaper.poll(secs(t0, 59)).is_empty());
    assert_eq!(reaper.poll(secs(t0, 60)), ["web"]);
    assert_eq!(
        reaper.poll(secs(t0, 600)),
        ["web"],
        "due until deregistered"
    );
}

#[test]
fn staying_critical_keeps_the_start_of_the_period() {
    let t0 = Instant::now();
    let mut reaper = Reaper::default();
    let c = check("c", "web", CheckStatus::Critical, Some(AFTER));
    reaper.on_check(t0, &c);
    // A new output, a redefinition: still critical, so the period runs on.
    reaper.on_check(secs(t0, 30), &c);
    assert_eq!(reaper.critical_since("c"), Some(t0));
    assert_eq!(reaper.poll(secs(t0, 60)), ["web"]);
}

#[test]
fn a_check_flipping_back_before_the_period_ends_is_not_reaped() {
    let t0 = Instant::now();
    let mut reaper = Reaper::default();
    reaper.on_check(t0, &check("c", "web", CheckStatus::Critical, Some(AFTER)));
    reaper.on_check(
        secs(t0, 50),
        &check("c", "web", CheckStatus::Passing, Some(AFTER)),
    );
    assert_eq!(reaper.critical_since("c"), None);
    assert_eq!(reaper.next_deadline(), None);
    assert!(reaper.poll(secs(t0, 61)).is_empty());
    // Critical again: the period starts over.
    reaper.on_check(
        secs(t0, 70),
        &check("c", "web", CheckStatus::Critical, Some(AFTER)),
    );
    assert!(reaper.poll(secs(t0, 129)).is_empty());
    assert_eq!(reaper.poll(secs(t0, 130)), ["web"]);
}

#[test]
fn a_warning_ends_the_critical_period_too() {
    let t0 = Instant::now();
    let mut reaper = Reaper::default();
    reaper.on_check(t0, &check("c", "web", CheckStatus::Critical, Some(AFTER)));
    reaper.on_check(
        secs(t0, 10),
        &check("c", "web", CheckStatus::Warning, Some(AFTER)),
    );
    assert!(reaper.poll(secs(t0, 100)).is_empty());
}

#[test]
fn checks_without_a_period_or_a_service_are_never_due() {
    let t0 = Instant::now();
    let mut reaper = Reaper::default();
    reaper.on_check(t0, &check("plain", "web", CheckStatus::Critical, None));
    reaper.on_check(t0, &check("node", "", CheckStatus::Critical, Some(AFTER)));
    assert_eq!(
        reaper.critical_since("plain"),
        Some(t0),
        "tracked all the same"
    );
    assert_eq!(reaper.next_deadline(), None);
    assert!(reaper.poll(secs(t0, 10_000)).is_empty());
}

#[test]
fn a_period_added_by_redefinition_counts_from_the_first_critical_moment() {
    let t0 = Instant::now();
    let mut reaper = Reaper::default();
    reaper.on_check(t0, &check("c", "web", CheckStatus::Critical, None));
    reaper.on_check(
        secs(t0, 90),
        &check("c", "web", CheckStatus::Critical, Some(AFTER)),
    );
    assert_eq!(reaper.poll(secs(t0, 90)), ["web"]);
}

#[test]
fn a_removed_check_is_forgotten() {
    let t0 = Instant::now();
    let mut reaper = Reaper::default();
    reaper.on_check(t0, &check("c", "web", CheckStatus::Critical, Some(AFTER)));
    reaper.on_check_removed("c");
    assert!(reaper.poll(secs(t0, 100)).is_empty());
}

#[test]
fn several_due_checks_name_their_service_once_in_order() {
    let t0 = Instant::now();
    let mut reaper = Reaper::default();
    let short = Some(Duration::from_secs(5));
    reaper.on_check(t0, &check("b1", "b", CheckStatus::Critical, short));
    reaper.on_check(t0, &check("b2", "b", CheckStatus::Critical, short));
    reaper.on_check(t0, &check("a1", "a", CheckStatus::Critical, Some(AFTER)));
    assert_eq!(reaper.next_deadline(), Some(secs(t0, 5)));
    assert_eq!(reaper.poll(secs(t0, 5)), ["b"]);
    assert_eq!(reaper.poll(secs(t0, 60)), ["a", "b"]);
}

#[test]
fn an_endless_period_never_fires() {
    let t0 = Instant::now();
    let mut reaper = Reaper::default();
    reaper.on_check(
        t0,
        &check("c", "web", CheckStatus::Critical, Some(Duration::MAX)),
    );
    assert_eq!(reaper.next_deadline(), None);
    assert!(reaper.poll(secs(t0, 1_000_000)).is_empty());
}
