//! The query string of a Consul request: repeated keys and bare flags (`?passing`) kept as
//! Consul sees them, and the options every endpoint reads from it (flags, numbers, `?filter=`,
//! blocking-query `?index=&wait=`), refused with Consul's 400 texts.
//!
//! Owns reading the query only; what an endpoint does with the options is its handler's.

use std::time::Duration;

use crate::error::{bad_request, RegistryError};
use crate::filter::Filter;
use beamline_consul::duration::parse_go;

/// Consul's default and maximum blocking-query waits.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);

/// The query string, with repeated keys and bare flags (`?passing`) kept as Consul sees them.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A boolean flag: absent is false, bare is true, otherwise Go's `strconv.ParseBool`.
    pub fn flag(&self, key: &str) -> Result<bool, RegistryError> {
        match self.get(key) {
            None => Ok(false),
            Some("") => Ok(true),
            Some(v) => {
                parse_bool(v).ok_or_else(|| bad_request(format!("Invalid value for ?{key}")))
            }
        }
    }

    pub fn u64(&self, key: &str, message: &str) -> Result<Option<u64>, RegistryError> {
        self.get(key)
            .map(|v| v.parse::<u64>().map_err(|_| bad_request(message)))
            .transpose()
    }

    pub fn filter(&self) -> Result<Option<Filter>, RegistryError> {
        match self.get("filter") {
            None | Some("") => Ok(None),
            Some(expr) => Filter::parse(expr).map(Some).map_err(|e| {
                bad_request(format!(
                    "Failed to create boolean expression evaluator: {e}"
                ))
            }),
        }
    }

    /// `?wait=`: Consul's default when absent or zero, clamped to its maximum.
    pub fn blocking_wait(&self) -> Result<Duration, RegistryError> {
        match self.get("wait") {
            None => Ok(DEFAULT_WAIT),
            Some(w) => {
                let d = parse_go(w).map_err(|_| bad_request("Invalid wait time"))?;
                Ok(if d.is_zero() {
                    DEFAULT_WAIT
                } else {
                    d.min(MAX_WAIT)
                })
            }
        }
    }

    /// The blocking-query options; `None` when the read must not block (no index or index 0).
    pub fn blocking(&self) -> Result<Option<(u64, Duration)>, RegistryError> {
        let wait = self.blocking_wait()?;
        let index = self.u64("index", "Invalid index")?.unwrap_or(0);
        Ok((index > 0).then_some((index, wait)))
    }
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
