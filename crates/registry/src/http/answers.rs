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
mod tests;
