//! The answer cache: rendered JSON of blocking reads, so that the watchers one change wakes
//! together (every gateway watching a beamline) get the same bytes from one render.
//!
//! Owns the entries, their total size and eviction. An entry is keyed by an [`AnswerKey`] that
//! the endpoint builds from the parameters it reads (never from the raw query string: a
//! parameter no endpoint reads, `?junk=1`, must not make a new entry holding a copy of the
//! answer). The cache is bounded in bytes, [`DEFAULT_ANSWER_CACHE_BYTES`] (64 MiB) unless the
//! registry is configured otherwise; past the budget the least recently used entries go, and an
//! answer larger than the whole budget is served but not kept. It must not decide what a
//! parameter means; that is each endpoint's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;

/// The default budget: the answers of every watched service of a large site (1,000 services at
/// ~10 KB) many times over, and any single answer up to 64 MiB.
pub const DEFAULT_ANSWER_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// What an entry costs beside its key and body: the map slots, the order index, the counters.
const ENTRY_OVERHEAD: usize = 128;

/// The identity of an answer: the endpoint's path and the values of the parameters that shape
/// it, as that endpoint understood them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnswerKey(String);

impl AnswerKey {
    pub fn new(path: &str) -> AnswerKey {
        AnswerKey(path.to_string())
    }

    /// Adds one parameter. Values are form-encoded, so no value can forge another parameter.
    pub fn param(mut self, name: &str, value: impl std::fmt::Display) -> AnswerKey {
        let pair = form_urlencoded::Serializer::new(String::new())
            .append_pair(name, &value.to_string())
            .finish();
        self.0.push('&');
        self.0.push_str(&pair);
        self
    }
}

/// Entries and their byte count, least recently used first in `order`.
struct Entry {
    index: u64,
    version: u64,
    body: Bytes,
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<AnswerKey, Entry>,
    order: BTreeMap<u64, AnswerKey>,
    tick: u64,
    bytes: usize,
}

fn cost(key: &AnswerKey, body: &Bytes) -> usize {
    key.0.len() + body.len() + ENTRY_OVERHEAD
}

impl Inner {
    fn remove(&mut self, key: &AnswerKey) {
        if let Some(old) = self.entries.remove(key) {
            self.order.remove(&old.used);
            self.bytes -= cost(key, &old.body);
        }
    }
}

/// Rendered answers by [`AnswerKey`], at most `budget` bytes of them.
pub struct AnswerCache {
    inner: Mutex<Inner>,
    budget: usize,
}

impl Default for AnswerCache {
    fn default() -> Self {
        AnswerCache::new(DEFAULT_ANSWER_CACHE_BYTES)
    }
}

/// What the cache holds, for `/v1/agent/self` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerCacheSize {
    pub entries: usize,
    pub bytes: usize,
}

impl AnswerCache {
    pub fn new(budget: usize) -> AnswerCache {
        AnswerCache {
            inner: Mutex::default(),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer rendered for `key` at this result `index` and quiet-write `version`, if kept.
    pub fn get(&self, key: &AnswerKey, index: u64, version: u64) -> Option<Bytes> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(key)?;
        if entry.index != index || entry.version != version {
            return None;
        }
        let (body, was) = (entry.body.clone(), std::mem::replace(&mut entry.used, tick));
        inner.order.remove(&was);
        inner.order.insert(tick, key.clone());
        Some(body)
    }

    /// Keeps `body` as the answer for `key`, replacing an older one and evicting the least
    /// recently used entries past the budget.
    pub fn put(&self, key: AnswerKey, index: u64, version: u64, body: Bytes) {
        let mut inner = self.lock();
        inner.remove(&key);
        let size = cost(&key, &body);
        if size > self.budget {
            return;
        }
        while inner.bytes + size > self.budget {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            inner.remove(&oldest);
        }
        inner.tick += 1;
        let used = inner.tick;
        inner.order.insert(used, key.clone());
        inner.bytes += size;
        let entry = Entry {
            index,
            version,
            body,
            used,
        };
        inner.entries.insert(key, entry);
    }

    pub fn size(&self) -> AnswerCacheSize {
        let inner = self.lock();
        AnswerCacheSize {
            entries: inner.entries.len(),
            bytes: inner.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
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
}
