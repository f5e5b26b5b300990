use super::*;

#[test]
fn a_key_stays_put_unless_its_instance_leaves() {
    let all = ["a", "b", "c"];
    let mut moved = 0;
    let mut per_instance = std::collections::HashMap::new();
    for k in 0..3000 {
        let key = format!("key-{k}");
        let chosen = pick(&key, all).unwrap();
        *per_instance.entry(chosen).or_insert(0) += 1;
        assert_eq!(pick(&key, all), Some(chosen), "deterministic");
        let without_c: Vec<&str> = all.iter().copied().filter(|i| *i != "c").collect();
        let after = pick(&key, without_c).unwrap();
        if chosen != "c" {
            assert_eq!(after, chosen, "keys of remaining instances do not move");
        } else {
            moved += 1;
        }
    }
    assert!(moved > 800 && moved < 1200, "about a third moves: {moved}");
    assert!(per_instance.values().all(|n| *n > 800), "{per_instance:?}");
    assert_eq!(pick("k", std::iter::empty()), None);
}

/// Every gateway replica, of every build, must pick the same instance for a key: the hash is
/// pinned to the value the first version computed.
#[test]
fn the_hash_is_the_same_in_every_build() {
    assert_eq!(
        fnv1a(&[b"task-key-1", b"agent-5-3-1-a"]),
        0xcc1e7e563be013f7
    );
}
