//! KV writes with Consul's check-and-set rules (`cas=0` creates only; `cas=N` writes only if the
//! entry's ModifyIndex is N).
//!
//! Owns the write decisions; reads are plain lookups done by the HTTP layer.

use super::error::RegistryError;
use super::model::KvEntry;
use super::state::Change;
use super::Registry;

/// Consul's default `kv_max_value_size`.
pub const MAX_VALUE_SIZE: usize = 512 * 1024;

impl Registry {
    /// PUT /v1/kv/:key. Returns whether the value was written.
    pub fn kv_put(
        &self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
    ) -> Result<bool, RegistryError> {
        self.write(|state, index| {
            let existing = state.kv.get(key);
            let allowed = match (cas, existing) {
                (None, _) => true,
                (Some(0), existing) => existing.is_none(),
                (Some(n), Some(e)) => e.modify_index == n,
                (Some(_), None) => false,
            };
            if !allowed {
                return Ok((vec![], false));
            }
            let entry = KvEntry {
                key: key.to_string(),
                value,
                flags,
                create_index: existing.map_or(index, |e| e.create_index),
                modify_index: index,
                lock_index: existing.map_or(0, |e| e.lock_index),
            };
            Ok((vec![Change::PutKv(entry)], true))
        })
    }

    /// DELETE /v1/kv/:key (`recurse` deletes the prefix). Returns whether it was applied.
    pub fn kv_delete(
        &self,
        key: &str,
        recurse: bool,
        cas: Option<u64>,
    ) -> Result<bool, RegistryError> {
        self.write(|state, _| {
            if let Some(n) = cas {
                // Consul applies cas to the one key; a missing key "matches" only index 0.
                let current = state.kv.get(key).map_or(0, |e| e.modify_index);
                if current != n {
                    return Ok((vec![], false));
                }
            }
            let changes = if recurse {
                state
                    .kv
                    .range(key.to_string()..)
                    .take_while(|(k, _)| k.starts_with(key))
                    .map(|(k, _)| Change::DeleteKv(k.clone()))
                    .collect()
            } else if state.kv.contains_key(key) {
                vec![Change::DeleteKv(key.to_string())]
            } else {
                vec![]
            };
            Ok((changes, true))
        })
    }
}
