//! The gateway's JSON access log: picks the `access` lines out of its stderr and reads their
//! fields wherever tracing-subscriber put them.
//!
//! Parses log text only; it must not read the process's stderr itself (the process type does).

use serde_json::Value;

/// The JSON lines of `stderr` whose target is `access`.
pub fn access_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v["target"] == "access")
        .collect()
}

/// A field of a JSON log line: under `fields` (tracing-subscriber's default) or at the top.
pub fn log_field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line.get("fields")
        .and_then(|f| f.get(name))
        .or_else(|| line.get(name))
}

/// A log field as text (strings as they are, other values as JSON).
pub fn log_text(line: &Value, name: &str) -> Option<String> {
    log_field(line, name).map(|v| match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    })
}
