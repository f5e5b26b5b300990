//! Reading Consul-shaped JSON answers: arrays, sorted service IDs and keys, a health entry's
//! checks. Each panics with the value when its shape is wrong, so a failure shows what came back.
//!
//! Must not make requests; callers pass the JSON they got.

use serde_json::Value;

/// The array at `v` (panics with the value if it is not an array).
pub fn arr(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {v}"))
}

/// `Service.ID` of each entry of a /v1/health/service answer, sorted.
pub fn service_ids(entries: &Value) -> Vec<String> {
    let mut ids: Vec<String> = arr(entries)
        .iter()
        .map(|e| {
            e["Service"]["ID"]
                .as_str()
                .unwrap_or_else(|| panic!("entry without Service.ID: {e}"))
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

/// The service-level checks (ServiceID non-empty) of a health/service entry or a list of
/// checks. Node-level checks (Consul's serfHealth, checks registered without a ServiceID) may
/// appear beside them, as in Consul.
pub fn service_checks(entry_or_list: &Value) -> Vec<Value> {
    let list = match entry_or_list.get("Checks") {
        Some(checks) => checks,
        None => entry_or_list,
    };
    arr(list)
        .iter()
        .filter(|c| c["ServiceID"].as_str().is_some_and(|s| !s.is_empty()))
        .cloned()
        .collect()
}

/// The check with this CheckID in a health/service entry or a list of checks.
pub fn find_check(entry_or_list: &Value, check_id: &str) -> Value {
    let list = match entry_or_list.get("Checks") {
        Some(checks) => checks,
        None => entry_or_list,
    };
    arr(list)
        .iter()
        .find(|c| c["CheckID"] == check_id)
        .cloned()
        .unwrap_or_else(|| panic!("no check {check_id} in {list}"))
}

/// Sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}
