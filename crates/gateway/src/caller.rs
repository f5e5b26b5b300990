//! Who is calling: the identity the authentication layer establishes and every later layer
//! (authorization, rate limits, metrics, access log) reads from the request's extensions.
//!
//! Owns the caller's shape; it must not decide who a caller is (`auth`) or what it may do.

use std::collections::BTreeSet;
use std::sync::Arc;

use beamline_contract::wire;

/// What a caller may do: observers read, operators also act on their beamlines, and `safety`
/// (the control room's stop button) halts and resumes any beamline or all of them and breaks
/// locks, but otherwise only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Observer,
    Operator,
    Safety,
}

impl Role {
    /// Every role, in the order the policy file's errors list them.
    pub const ALL: [Role; 3] = [Role::Operator, Role::Observer, Role::Safety];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Observer => wire::role::OBSERVER,
            Role::Operator => wire::role::OPERATOR,
            Role::Safety => wire::role::SAFETY,
        }
    }

    /// The role named `name` (`operator`, `observer`, `safety`), as the policy file and JWT
    /// claims spell it.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
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

/// An authenticated caller, in the request's extensions. Cloned per call (into the request for
/// the layers after authentication, into the response for the access log): its name and
/// beamlines are shared, so a clone allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: Arc<str>,
    pub role: Role,
    pub beamlines: Arc<Beamlines>,
}

/// The RPC of a gateway request, from its path (`/beamline.v1.BeamlineAgent/Execute`).
pub fn method_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests;
