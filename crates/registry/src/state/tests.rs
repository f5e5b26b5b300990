use super::*;
use crate::model::Weights;

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
    let mut s = State::restore(1, vec![], vec![], vec![]);
    assert_eq!(s.service_index("a"), 1, "unknown names block from 1");
    let topics = s.apply(2, vec![Change::PutService(service("a1", "a"))]);
    assert!(topics.contains(&Topic::Service("a".into())));
    assert!(!topics.contains(&Topic::Service("b".into())));
    s.apply(3, vec![Change::PutService(service("b1", "b"))]);
    assert_eq!(s.service_index("a"), 2);
    assert_eq!(s.service_index("b"), 3);
    s.apply(4, vec![Change::DeleteService("a1".into())]);
    assert_eq!(
        s.service_index("a"),
        4,
        "a deletion leaves a tombstone index"
    );
}

#[test]
fn kv_index_covers_deletions_under_a_prefix() {
    let mut s = State::restore(1, vec![], vec![], vec![]);
    s.apply(2, vec![Change::PutKv(kv("app/a", 2))]);
    s.apply(3, vec![Change::PutKv(kv("other", 3))]);
    assert_eq!(s.kv_index("app/", false), 2);
    s.apply(4, vec![Change::DeleteKv("app/a".into())]);
    assert_eq!(s.kv_index("app/", false), 4);
    assert_eq!(s.kv_index("app/a", true), 4);
    assert_eq!(s.kv_index("other", true), 3);
}
