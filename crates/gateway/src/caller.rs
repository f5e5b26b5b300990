//! Who is calling: the identity the authentication layer establishes and every later layer
//! (authorization, rate limits, metrics, access log) reads from the request's extensions.
//!
//! Owns the caller's shape; it must not decide who a caller is (`auth`) or what it may do.

use std::collections::BTreeSet;

/// What a caller may do: observers read, operators also act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Observer,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Observer => "observer",
            Role::Operator => "operator",
        }
    }
}

/// The beamlines a caller may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beamlines {
    All,
    Only(BTreeSet<String>),
}

impl Beamlines {
    pub fn allows(&self, beamline: &str) -> bool {
        match self {
            Beamlines::All => true,
            Beamlines::Only(set) => set.contains(beamline),
        }
    }
}

/// An authenticated caller, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub beamlines: Beamlines,
}

/// The RPC of a gateway request, from its path (`/beamline.v1.BeamlineAgent/Execute`).
pub fn method_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
