use std::time::{Duration, Instant};

use super::*;
use crate::model::Weights;
use crate::model::{CheckDefinition, CheckKind, CheckStatus};

fn service(id: &str, name: &str) -> Service {
    Service {
        id: id.into(),
        name: name.into(),
        kind: String::new(),
        tags: vec![],
        address: String::new(),
        port: 0,
        meta: Default::default(),
        tagged_addresses: Default::default(),
        weights: Weights::default(),
        enable_tag_override: false,
        create_index: 0,
        modify_index: 0,
    }
}

fn kv(key: &str, index: u64) -> KvEntry {
    KvEntry {
        key: key.into(),
        value: vec![],
        flags: 0,
        create_index: index,
        modify_index: index,
        lock_index: 0,
    }
}

#[test]
fn a_write_moves_only_its_own_service_index() {
    let mut s = State::restore(Instant::now(), 1, vec![], vec![], vec![]);
    assert_eq!(s.service_index("a"), 1, "unknown names block from 1");
    let topics = s.apply(
        2,
        vec![Change::PutService(service("a1", "a"))],
        Instant::now(),
    );
    assert!(topics.contains(&Topic::Service("a".into())));
    assert!(!topics.contains(&Topic::Service("b".into())));
    s.apply(
        3,
        vec![Change::PutService(service("b1", "b"))],
        Instant::now(),
    );
    assert_eq!(s.service_index("a"), 2);
    assert_eq!(s.service_index("b"), 3);
    s.apply(4, vec![Change::DeleteService("a1".into())], Instant::now());
    assert_eq!(
        s.service_index("a"),
        4,
        "a deletion leaves a tombstone index"
    );
}

#[test]
fn kv_index_covers_deletions_under_a_prefix() {
    let mut s = State::restore(Instant::now(), 1, vec![], vec![], vec![]);
    s.apply(2, vec![Change::PutKv(kv("app/a", 2))], Instant::now());
    s.apply(3, vec![Change::PutKv(kv("other", 3))], Instant::now());
    assert_eq!(s.kv_index("app/", false), 2);
    s.apply(4, vec![Change::DeleteKv("app/a".into())], Instant::now());
    assert_eq!(s.kv_index("app/", false), 4);
    assert_eq!(s.kv_index("app/a", true), 4);
    assert_eq!(s.kv_index("other", true), 3);
}

fn critical_check(id: &str, service: &str, status: CheckStatus) -> Check {
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
            deregister_critical_after: Some(Duration::from_secs(60)),
        },
        status,
        output: String::new(),
        ttl_expires_unix_ms: None,
        create_index: 2,
        modify_index: 2,
    }
}

#[test]
fn check_writes_keep_the_reaper_told_at_the_time_given() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut s = State::restore(t0, 1, vec![service("web1", "web")], vec![], vec![]);
    let critical = critical_check("c", "web1", CheckStatus::Critical);
    s.apply(2, vec![Change::PutCheck(critical.clone())], at(10));
    assert_eq!(s.reaper.critical_since("c"), Some(at(10)));
    s.apply(3, vec![Change::PutCheck(critical.clone())], at(20));
    assert_eq!(s.reaper.critical_since("c"), Some(at(10)), "still critical");
    assert_eq!(s.reaper.poll(at(70)), ["web1"]);
    let passing = critical_check("c", "web1", CheckStatus::Passing);
    s.apply(4, vec![Change::PutCheck(passing)], at(30));
    assert!(s.reaper.poll(at(100)).is_empty());
    s.apply(5, vec![Change::PutCheck(critical)], at(40));
    s.apply(6, vec![Change::DeleteCheck("c".into())], at(50));
    assert!(
        s.reaper.poll(at(1000)).is_empty(),
        "a removed check is forgotten"
    );
    assert!(!s.thresholds.contains_key("c"));
}

#[test]
fn restored_critical_checks_start_their_period_at_the_restore() {
    let t0 = Instant::now();
    let checks = vec![critical_check("c", "web1", CheckStatus::Critical)];
    let s = State::restore(t0, 7, vec![service("web1", "web")], checks, vec![]);
    assert_eq!(s.reaper.critical_since("c"), Some(t0));
    assert_eq!(s.reaper.next_deadline(), Some(t0 + Duration::from_secs(60)));
}
