use super::*;
use crate::discovery::RegisteredInstance;

fn inst(id: &str, addr: &str, healthy: bool) -> RegisteredInstance {
    RegisteredInstance {
        id: id.into(),
        addr: addr.into(),
        healthy,
        beamline: None,
        ..Default::default()
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
