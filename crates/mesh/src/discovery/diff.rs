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
mod tests {
    use super::*;
    use crate::discovery::Instance;

    fn inst(id: &str, addr: &str, healthy: bool) -> Instance {
        Instance {
            id: id.into(),
            addr: addr.into(),
            healthy,
            beamline: None,
        }
    }

    fn describe(changes: &[Change<String, String>]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Insert(k, v) => format!("+{k}@{v}"),
                Change::Remove(k) => format!("-{k}"),
            })
            .collect()
    }

    #[test]
    fn only_healthy_instances_are_inserted_and_changes_are_minimal() {
        let a = Resolution::Instances(vec![inst("a", "h:1", true), inst("b", "h:2", false)]);
        let b = Resolution::Instances(vec![inst("a", "h:1", true), inst("b", "h:2", true)]);
        let c = Resolution::Instances(vec![inst("a", "h:9", true)]);
        let empty = BTreeMap::new();
        assert_eq!(describe(&diff(&empty, &healthy(&a))), ["+a@h:1"]);
        assert_eq!(describe(&diff(&healthy(&a), &healthy(&b))), ["+b@h:2"]);
        assert!(diff(&healthy(&b), &healthy(&b)).is_empty());
        assert_eq!(
            describe(&diff(&healthy(&b), &healthy(&c))),
            ["-a", "-b", "+a@h:9"]
        );
        assert_eq!(
            describe(&diff(&healthy(&c), &healthy(&Resolution::NotFound))),
            ["-a"]
        );
    }

    #[test]
    fn a_value_that_is_not_the_same_one_is_replaced_even_under_the_same_id() {
        // Same id, same address, but another thing (compared by identity): remove, then insert.
        let old = std::sync::Arc::new("h:1".to_string());
        let new = std::sync::Arc::new("h:1".to_string());
        let previous = BTreeMap::from([("a".to_string(), old.clone())]);
        let kept = BTreeMap::from([("a".to_string(), old)]);
        let next = BTreeMap::from([("a".to_string(), new)]);
        let changes = diff_by(&previous, &next, std::sync::Arc::ptr_eq);
        let described: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Insert(k, v) => format!("+{k}@{v}"),
                Change::Remove(k) => format!("-{k}"),
            })
            .collect();
        assert_eq!(described, ["-a", "+a@h:1"]);
        assert!(diff_by(&previous, &kept, std::sync::Arc::ptr_eq).is_empty());
    }
}
