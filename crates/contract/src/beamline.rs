//! Beamline ids and the names derived from them — the one check used by the CLI, the gateway and
//! (mirrored as a pattern) the charts' schema.
//!
//! Owns the id rule and the id → Consul service name mapping. Never reverse the name: code that
//! needs the id reads `Meta.beamline`.

use std::fmt;
use std::sync::Arc;

/// The longest id accepted.
pub const MAX_LEN: usize = 32;

/// `^[A-Za-z0-9]+([.-][A-Za-z0-9]+)*$` as a string, for schemas and error messages.
pub const PATTERN: &str = r"^[A-Za-z0-9]+([.-][A-Za-z0-9]+)*$";

/// The Consul tag every beamline agent instance carries.
pub const AGENT_TAG: &str = "beamline-agent";

/// A validated beamline id (`5.3.1`, `12.3.1`, `SST-1`). Shared, not copied: every call through
/// the gateway carries one from layer to layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BeamlineId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid beamline id {id}: {reason} (expected {PATTERN}, at most {MAX_LEN} characters)")]
pub struct InvalidBeamlineId {
    /// The id as given, quoted and cut to a bounded length (it is caller input).
    pub id: String,
    pub reason: &'static str,
}

impl BeamlineId {
    pub fn parse(id: &str) -> Result<BeamlineId, InvalidBeamlineId> {
        let bad = |reason| {
            Err(InvalidBeamlineId {
                id: crate::quote::quote(id),
                reason,
            })
        };
        if id.is_empty() {
            return bad("it is empty");
        }
        if id.len() > MAX_LEN {
            return bad("it is too long");
        }
        // Runs of alphanumerics separated by single '.' or '-'.
        let mut previous_was_separator = true;
        for c in id.chars() {
            let separator = c == '.' || c == '-';
            if separator && previous_was_separator {
                return bad("a '.' or '-' must sit between letters or digits");
            }
            if !separator && !c.is_ascii_alphanumeric() {
                return bad("only letters, digits, '.' and '-' are allowed");
            }
            previous_was_separator = separator;
        }
        if previous_was_separator {
            return bad("a '.' or '-' must sit between letters or digits");
        }
        Ok(BeamlineId(Arc::from(id)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a shared string: a clone is a reference count, not a copy.
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }

    /// `beamline-` + the id in lower case with dots as dashes (`5.3.1` → `beamline-5-3-1`).
    pub fn service_name(&self) -> String {
        format!("beamline-{}", self.0.to_ascii_lowercase().replace('.', "-"))
    }
}

/// Lookups by text (`map.get("5.3.1")`): the id orders, compares and hashes as its text.
impl std::borrow::Borrow<str> for BeamlineId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BeamlineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for BeamlineId {
    type Err = InvalidBeamlineId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BeamlineId::parse(s)
    }
}

mod order;
pub use order::natural_cmp;

#[cfg(test)]
mod tests;
