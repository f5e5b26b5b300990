//! The registry's in-memory state and the per-result indexes that blocking queries compare.
//!
//! Owns consistency of the maps and the index rules (a result's index is the last write that
//! changed that result, never 0, never going back while the process lives). It does no I/O:
//! `Registry` decides what to write, persists it, then applies it here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use super::checks::{Reaper, Thresholds};
use super::model::{Check, KvEntry, Service};
use super::watch::Topic;

/// One change, already validated and indexed.
#[derive(Debug, Clone)]
pub enum Change {
    PutService(Service),
    DeleteService(String),
    PutCheck(Check),
    DeleteCheck(String),
    PutKv(KvEntry),
    DeleteKv(String),
}

#[derive(Debug, Default)]
pub struct State {
    /// The last write's index (Consul's raft index).
    pub index: u64,
    /// Count of output-only updates, which change answers without a new index.
    pub quiet_writes: u64,
    pub services: BTreeMap<String, Service>,
    pub checks: BTreeMap<String, Check>,
    pub kv: BTreeMap<String, KvEntry>,
    /// Runtime-only facts about checks (not persisted, as in Consul): each probed check's
    /// result counts, and since when each critical check has been critical.
    pub thresholds: HashMap<String, Thresholds>,
    pub reaper: Reaper,
    /// Service name → instance IDs, and service ID ("" for the node) → check IDs: every read
    /// of one service touches only its own entries, however large the catalog.
    by_name: HashMap<String, BTreeSet<String>>,
    checks_by_service: HashMap<String, BTreeSet<String>>,
    /// Per service name, the last write that changed anything under it, kept after the name
    /// disappears (a tombstone) so a watcher of a deregistered service sees a higher index.
    service_index: HashMap<String, u64>,
    services_index: u64,
    checks_index: u64,
    kv_index: u64,
    kv_tombstones: BTreeMap<String, u64>,
}

impl State {
    /// The state as storage gives it back, at `now` (a restored critical check's critical
    /// period starts over, as in Consul).
    pub fn restore(
        now: Instant,
        index: u64,
        services: Vec<Service>,
        checks: Vec<Check>,
        kv: Vec<KvEntry>,
    ) -> State {
        // Everything restored counts as written at the restored index: watchers from before a
        // restart wake once and re-read, which is what a Consul client expects after a failover.
        let index = index.max(1);
        let mut state = State {
            index,
            services_index: index,
            checks_index: index,
            kv_index: index,
            ..State::default()
        };
        for s in services {
            state.service_index.insert(s.name.clone(), index);
            state.index_service(&s);
            state.services.insert(s.id.clone(), s);
        }
        for c in checks {
            state
                .thresholds
                .insert(c.def.id.clone(), Thresholds::default());
            state.reaper.on_check(now, &c);
            state.index_check(&c);
            state.checks.insert(c.def.id.clone(), c);
        }
        state.kv = kv.into_iter().map(|e| (e.key.clone(), e)).collect();
        state
    }

    /// The service name a check belongs to, or `None` for a node-level check.
    pub fn check_service_name(&self, check: &Check) -> Option<&str> {
        self.services
            .get(&check.def.service_id)
            .map(|s| s.name.as_str())
    }

    pub fn checks_of_service<'a>(&'a self, service_id: &str) -> impl Iterator<Item = &'a Check> {
        self.checks_by_service
            .get(service_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.checks.get(id))
    }

    pub fn node_checks(&self) -> impl Iterator<Item = &Check> {
        self.checks_of_service("")
    }

    pub fn instances<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Service> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|id| self.services.get(id))
    }

    fn index_service(&mut self, s: &Service) {
        self.by_name
            .entry(s.name.clone())
            .or_default()
            .insert(s.id.clone());
    }

    fn unindex_service(&mut self, s: &Service) {
        if let Some(ids) = self.by_name.get_mut(&s.name) {
            ids.remove(&s.id);
            if ids.is_empty() {
                self.by_name.remove(&s.name);
            }
        }
    }

    fn index_check(&mut self, c: &Check) {
        self.checks_by_service
            .entry(c.def.service_id.clone())
            .or_default()
            .insert(c.def.id.clone());
    }

    fn unindex_check(&mut self, c: &Check) {
        if let Some(ids) = self.checks_by_service.get_mut(&c.def.service_id) {
            ids.remove(&c.def.id);
            if ids.is_empty() {
                self.checks_by_service.remove(&c.def.service_id);
            }
        }
    }

    /// Index of everything under one service name; 1 for a name never seen, so a watcher of a
    /// service that does not exist yet blocks until it is registered.
    pub fn service_index(&self, name: &str) -> u64 {
        self.service_index.get(name).copied().unwrap_or(1).max(1)
    }

    pub fn services_index(&self) -> u64 {
        self.services_index.max(1)
    }

    pub fn checks_index(&self) -> u64 {
        self.checks_index.max(1)
    }

    /// Index of the KV entries under `prefix` (or the one key when `exact`), deletions included.
    pub fn kv_index(&self, prefix: &str, exact: bool) -> u64 {
        let best = if exact {
            let live = self.kv.get(prefix).map(|e| e.modify_index);
            let dead = self.kv_tombstones.get(prefix).copied();
            live.max(dead)
        } else {
            let live = self
                .kv
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, e)| e.modify_index)
                .max();
            let dead = self
                .kv_tombstones
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, i)| *i)
                .max();
            live.max(dead)
        };
        // Consul falls back to the KV table's index when nothing under the prefix ever existed.
        best.unwrap_or(self.kv_index).max(1)
    }

    /// Applies changes made at `index`, at `now`, and returns the topics whose results changed.
    pub fn apply(&mut self, index: u64, changes: Vec<Change>, now: Instant) -> Vec<Topic> {
        let mut touched_names: Vec<String> = Vec::new();
        let mut topics = Vec::new();
        let mut services_changed = false;
        let mut checks_changed = false;
        let mut node_check_changed = false;
        let mut kv_changed = false;
        for change in changes {
            match change {
                Change::PutService(s) => {
                    if let Some(old) = self.services.remove(&s.id) {
                        self.unindex_service(&old);
                        if old.name != s.name {
                            touched_names.push(old.name);
                        }
                    }
                    touched_names.push(s.name.clone());
                    services_changed = true;
                    self.index_service(&s);
                    self.services.insert(s.id.clone(), s);
                }
                Change::DeleteService(id) => {
                    if let Some(old) = self.services.remove(&id) {
                        self.unindex_service(&old);
                        touched_names.push(old.name);
                        services_changed = true;
                    }
                }
                Change::PutCheck(c) => {
                    match self.check_service_name(&c) {
                        Some(name) => touched_names.push(name.to_string()),
                        None => node_check_changed = true,
                    }
                    self.thresholds.entry(c.def.id.clone()).or_default();
                    self.reaper.on_check(now, &c);
                    checks_changed = true;
                    if let Some(old) = self.checks.remove(&c.def.id) {
                        self.unindex_check(&old);
                    }
                    self.index_check(&c);
                    self.checks.insert(c.def.id.clone(), c);
                }
                Change::DeleteCheck(id) => {
                    if let Some(old) = self.checks.remove(&id) {
                        self.unindex_check(&old);
                        match self.check_service_name(&old) {
                            Some(name) => touched_names.push(name.to_string()),
                            None if old.def.service_id.is_empty() => node_check_changed = true,
                            // The service went away in the same write; it was already touched.
                            None => {}
                        }
                        self.thresholds.remove(&id);
                        self.reaper.on_check_removed(&id);
                        checks_changed = true;
                    }
                }
                Change::PutKv(e) => {
                    self.kv_tombstones.remove(&e.key);
                    self.kv.insert(e.key.clone(), e);
                    kv_changed = true;
                }
                Change::DeleteKv(key) => {
                    if self.kv.remove(&key).is_some() {
                        self.kv_tombstones.insert(key, index);
                        kv_changed = true;
                    }
                }
            }
        }
        if node_check_changed {
            // A node check is part of every service's health on this node.
            touched_names.extend(self.service_index.keys().cloned());
        }
        touched_names.sort();
        touched_names.dedup();
        for name in touched_names {
            self.service_index.insert(name.clone(), index);
            topics.push(Topic::Service(name));
        }
        if services_changed {
            self.services_index = index;
            topics.push(Topic::Services);
        }
        if checks_changed {
            self.checks_index = index;
            topics.push(Topic::Checks);
        }
        if kv_changed {
            self.kv_index = index;
            topics.push(Topic::Kv);
        }
        self.index = index;
        topics
    }
}

#[cfg(test)]
mod tests;
