//! Values shared by the checks that probe the same target (a gRPC connection), kept while any
//! check holds a lease on them and dropped with the last lease.
//!
//! Owns the key → value map and its reference counting only; what a value is, and when it is
//! made or replaced, is its user's.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Shared values by key.
pub struct Leases<K, V> {
    map: Mutex<HashMap<K, Arc<V>>>,
}

impl<K, V> Default for Leases<K, V> {
    fn default() -> Self {
        Leases {
            map: Mutex::default(),
        }
    }
}

/// A hold on the value for one key; the value leaves the map when its last lease is dropped.
pub struct Lease<K: Eq + Hash + 'static, V: 'static> {
    leases: &'static Leases<K, V>,
    key: K,
    value: Arc<V>,
}

impl<K: Eq + Hash + Clone + 'static, V: Default + 'static> Leases<K, V> {
    /// The value for `key`, made (by `Default`) if no lease holds one.
    pub fn lease(&'static self, key: K) -> Lease<K, V> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let value = Arc::clone(map.entry(key.clone()).or_default());
        Lease {
            leases: self,
            key,
            value,
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl<K: Eq + Hash + 'static, V: 'static> std::ops::Deref for Lease<K, V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.value
    }
}

impl<K: Eq + Hash + 'static, V: 'static> Drop for Lease<K, V> {
    fn drop(&mut self) {
        let mut map = self.leases.map.lock().unwrap_or_else(|e| e.into_inner());
        // Leases are only made under this lock, so two counts (the map's and ours) mean ours is
        // the last.
        if Arc::strong_count(&self.value) == 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests;
