use super::*;

fn body(n: usize) -> Bytes {
    Bytes::from(vec![b'x'; n])
}

#[test]
fn keys_name_their_parameters_and_values_cannot_forge_others() {
    let a = AnswerKey::new("p").param("filter", "a&tag=b");
    let b = AnswerKey::new("p").param("filter", "a").param("tag", "b");
    assert_ne!(a, b);
}

#[test]
fn a_hit_needs_the_same_index_and_version() {
    let cache = AnswerCache::new(1 << 20);
    let key = AnswerKey::new("health/service/web");
    cache.put(key.clone(), 5, 0, body(10));
    assert_eq!(cache.get(&key, 5, 0), Some(body(10)));
    assert_eq!(cache.get(&key, 6, 0), None);
    assert_eq!(cache.get(&key, 5, 1), None);
    cache.put(key.clone(), 6, 0, body(20));
    assert_eq!(cache.size().entries, 1, "a newer answer replaces the older");
}

#[test]
fn the_byte_budget_holds_and_the_least_recently_used_go_first() {
    let per = cost(&AnswerKey::new("k0"), &body(1000));
    let cache = AnswerCache::new(3 * per);
    for k in ["k0", "k1", "k2"] {
        cache.put(AnswerKey::new(k), 1, 0, body(1000));
    }
    assert!(cache.get(&AnswerKey::new("k0"), 1, 0).is_some(), "k0 used");
    cache.put(AnswerKey::new("k3"), 1, 0, body(1000));
    assert!(
        cache.get(&AnswerKey::new("k1"), 1, 0).is_none(),
        "k1 was oldest"
    );
    assert!(cache.get(&AnswerKey::new("k0"), 1, 0).is_some());
    assert_eq!(
        cache.size(),
        AnswerCacheSize {
            entries: 3,
            bytes: 3 * per
        }
    );
}

#[test]
fn an_answer_larger_than_the_budget_is_not_kept() {
    let cache = AnswerCache::new(4096);
    let key = AnswerKey::new("big");
    cache.put(key.clone(), 1, 0, body(100));
    cache.put(key.clone(), 2, 0, body(10_000));
    assert_eq!(cache.get(&key, 2, 0), None);
    assert_eq!(cache.size().bytes, 0, "the stale smaller answer went too");
}

#[test]
fn many_keys_never_pass_the_budget() {
    let budget = 64 * 1024;
    let cache = AnswerCache::new(budget);
    for i in 0..10_000 {
        cache.put(AnswerKey::new("p").param("tag", i), 1, 0, body(3000));
        assert!(cache.size().bytes <= budget);
    }
    assert!(cache.size().entries <= budget / 3000);
}
