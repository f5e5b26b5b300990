//! Rendezvous (highest-random-weight) hashing: the instance an idempotency key maps to, so a
//! retried keyed Execute reaches the instance that already has the task. When membership
//! changes, only the keys of the instances that left or joined move.

/// FNV-1a, 64 bits: stable across builds and processes (every gateway replica must agree).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV mixes low bits poorly; finish with a 64-bit avalanche (splitmix64's).
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The candidate with the highest weight for `key`, or `None` when there is none.
pub fn pick<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .max_by_key(|id| (fnv1a(&[key.as_bytes(), id.as_bytes()]), *id))
}

#[cfg(test)]
mod tests {
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
}
