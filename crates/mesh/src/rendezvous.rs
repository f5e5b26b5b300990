//! Rendezvous (highest-random-weight) hashing: the instance an idempotency key maps to, so a
//! retried keyed Execute reaches the instance that already has the task. When membership
//! changes, only the keys of the instances that left or joined move.

use std::hash::Hasher;

/// FNV-1a (64 bits) over the parts, each closed by a 0xff byte, then a 64-bit avalanche:
/// stable across builds and processes (every gateway replica must agree).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    for part in parts {
        hasher.write(part);
        hasher.write_u8(0xff);
    }
    let mut hash = hasher.finish();
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
mod tests;
