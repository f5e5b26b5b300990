//! Consul's check statuses, typed: what the registry stores and serves, what the mesh and the
//! CLI read from Consul.

use std::fmt;
use std::str::FromStr;

/// The status of one Consul health check. Ordered from best to worst, so the worst of several
/// is their `max`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    /// Consul's spelling (`passing`, `warning`, `critical`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is none of Consul's three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown check status {0} (Consul's are passing, warning and critical)")]
pub struct UnknownCheckStatus(pub String);

impl FromStr for CheckStatus {
    type Err = UnknownCheckStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "passing" => Ok(CheckStatus::Passing),
            "warning" => Ok(CheckStatus::Warning),
            "critical" => Ok(CheckStatus::Critical),
            other => Err(UnknownCheckStatus(crate::quote::quote(other))),
        }
    }
}
