//! Turning successive snapshots into `tower::discover::Change` events for a balancer: pure, so
//! it is tested without Consul or the network.

use std::collections::BTreeMap;

use tower::discover::Change;

use super::Resolution;

/// The healthy instances of a snapshot: id → address.
pub fn healthy(resolution: &Resolution) -> BTreeMap<String, String> {
    resolution
        .instances()
        .iter()
        .filter(|i| i.healthy)
        .map(|i| (i.id.clone(), i.addr.clone()))
        .collect()
}

/// The changes that turn `previous` into `next` (an instance whose address changed is removed
/// and inserted again).
pub fn diff(
    previous: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
) -> Vec<Change<String, String>> {
    diff_by(previous, next, |a, b| a == b)
}

/// The changes that turn `previous` into `next`, where `same` says whether an id's value in
/// both is one and the same thing: one that is not is removed and inserted again. The mesh's
/// pool compares endpoints by identity, not by id and address, so an instance that left and
/// came back between two looks (a new health watch, a new connection) is replaced, never kept
/// as it was.
pub fn diff_by<V: Clone>(
    previous: &BTreeMap<String, V>,
    next: &BTreeMap<String, V>,
    same: impl Fn(&V, &V) -> bool,
) -> Vec<Change<String, V>> {
    let mut changes = Vec::new();
    for (id, old) in previous {
        if !next.get(id).is_some_and(|new| same(old, new)) {
            changes.push(Change::Remove(id.clone()));
        }
    }
    for (id, new) in next {
        if !previous.get(id).is_some_and(|old| same(old, new)) {
            changes.push(Change::Insert(id.clone(), new.clone()));
        }
    }
    changes
}

#[cfg(test)]
mod tests;
