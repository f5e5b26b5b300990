use std::time::Duration;

use super::*;
use crate::model::{CheckDefinition, CheckKind};

const TTL: Duration = Duration::from_secs(10);

fn check(status: CheckStatus, output: &str, expires: Option<u64>) -> Check {
    Check {
        def: CheckDefinition {
            id: "ttl".into(),
            name: "ttl".into(),
            notes: String::new(),
            service_id: "web".into(),
            kind: Some(CheckKind::Ttl { ttl: TTL }),
            timeout: Duration::from_secs(10),
            initial_status: CheckStatus::Critical,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            deregister_critical_after: None,
        },
        status,
        output: output.into(),
        ttl_expires_unix_ms: expires,
        create_index: 1,
        modify_index: 1,
    }
}

#[test]
fn a_report_sets_the_expiry_one_ttl_later() {
    let clock = TtlClock::new(TTL);
    assert_eq!(clock.expiry_after_report(1_000), 11_000);
    let huge = TtlClock::new(Duration::MAX);
    assert_eq!(huge.expiry_after_report(1_000), u64::MAX, "saturates");
}

#[test]
fn before_the_expiry_the_runner_waits_for_it() {
    let clock = TtlClock::new(TTL);
    assert_eq!(clock.poll(5_000, Some(11_000)), TtlStep::WaitUntil(11_000));
    assert_eq!(clock.poll(10_999, Some(11_000)), TtlStep::WaitUntil(11_000));
}

#[test]
fn at_and_after_the_expiry_the_check_expires_and_is_looked_at_a_ttl_later() {
    let clock = TtlClock::new(TTL);
    let step = TtlStep::Expire {
        look_again_at: 21_000,
    };
    assert_eq!(clock.poll(11_000, Some(11_000)), step);
    assert_eq!(clock.poll(11_000, None), step, "no expiry is expired");
}

#[test]
fn a_refresh_before_the_expiry_keeps_the_check() {
    let clock = TtlClock::new(TTL);
    // Reported at 1 s, again at 9 s: the runner woken at 11 s finds the new expiry, 19 s.
    let first = clock.expiry_after_report(1_000);
    assert_eq!(clock.poll(1_000, Some(first)), TtlStep::WaitUntil(11_000));
    let refreshed = clock.expiry_after_report(9_000);
    assert_eq!(
        clock.poll(11_000, Some(refreshed)),
        TtlStep::WaitUntil(19_000)
    );
    let passing = check(CheckStatus::Passing, "ok", Some(refreshed));
    assert_eq!(expired(11_000, &passing), None);
}

#[test]
fn expiry_makes_a_check_critical_once() {
    let passing = check(CheckStatus::Passing, "ok", Some(11_000));
    let after = expired(11_000, &passing).expect("expired at its expiry");
    assert_eq!(after.status, CheckStatus::Critical);
    assert_eq!(after.output, TTL_EXPIRED);
    assert_eq!(after.ttl_expires_unix_ms, Some(11_000));
    assert_eq!(expired(30_000, &after), None, "already recorded");
}

#[test]
fn a_failed_report_is_not_an_expiry() {
    // Critical from a report keeps its output until the TTL passes, then reads "TTL expired".
    let failed = check(CheckStatus::Critical, "disk full", Some(11_000));
    assert_eq!(expired(10_000, &failed), None);
    assert_eq!(expired(11_000, &failed).unwrap().output, TTL_EXPIRED);
}

#[test]
fn a_pass_after_expiry_is_a_new_life() {
    let clock = TtlClock::new(TTL);
    let dead = check(CheckStatus::Critical, TTL_EXPIRED, Some(11_000));
    assert!(has_expired(12_000, dead.ttl_expires_unix_ms));
    let revived = check(
        CheckStatus::Passing,
        "",
        Some(clock.expiry_after_report(12_000)),
    );
    assert!(!has_expired(12_000, revived.ttl_expires_unix_ms));
    assert_eq!(
        clock.poll(12_000, revived.ttl_expires_unix_ms),
        TtlStep::WaitUntil(22_000)
    );
    assert_eq!(expired(21_999, &revived), None);
    assert!(expired(22_000, &revived).is_some());
}
