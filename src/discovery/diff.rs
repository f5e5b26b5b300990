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
    let mut changes = Vec::new();
    for (id, addr) in previous {
        if next.get(id) != Some(addr) {
            changes.push(Change::Remove(id.clone()));
        }
    }
    for (id, addr) in next {
        if previous.get(id) != Some(addr) {
            changes.push(Change::Insert(id.clone(), addr.clone()));
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
}
