//! Discovery: one watch of the whole fleet on a Consul blocking query (`fleet`: the decisions,
//! `watch`: the loop), published as every beamline's instances (healthy or not); each routed
//! beamline follows its own snapshot of it.
//!
//! The watch runs on its own task whether or not calls flow, keeps the last known fleet while
//! Consul is unreachable (fail static), holds it for a grace period when a restarted registry
//! comes back empty, and backs off with jitter, logging once per outage. It knows nothing of
//! gRPC: turning instances into connections is the mesh's.

mod diff;
pub mod fleet;
mod watch;

use std::sync::Arc;

pub use diff::{diff, diff_by, healthy};
pub use fleet::Fleet;
pub use watch::{spawn, BeamlineWatch, Discovery, WatchSettings};

/// One registered instance of a service, as discovery read it from Consul (the agent SDK's
/// `Instance` is an agent's own identity).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisteredInstance {
    /// The Consul service ID (the agent's instance id).
    pub id: String,
    /// `host:port` to dial.
    pub addr: String,
    /// Every check of the instance (node checks included) is passing.
    pub healthy: bool,
    /// `Meta.beamline`, the beamline id as registered.
    pub beamline: Option<String>,
    /// `Meta.sdk_version` (None: not published).
    pub sdk_version: Option<String>,
    /// `Meta.card_revision`: the fleet catalog Describes a beamline again when the set of its
    /// instances' revisions changes (None: an agent on an SDK that does not publish it).
    pub card_revision: Option<String>,
    /// `Meta.controls`: what the agent enforces itself (`halt,lock`; None: too old to).
    pub controls: Option<String>,
}

/// What discovery knows about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// No answer from Consul yet.
    Pending,
    /// Consul answered: nothing is registered under this name.
    NotFound,
    /// The registered instances (at least one), sorted by id.
    Instances(Vec<RegisteredInstance>),
}

impl Resolution {
    pub fn instance(&self, id: &str) -> Option<&RegisteredInstance> {
        match self {
            Resolution::Instances(all) => all.iter().find(|i| i.id == id),
            _ => None,
        }
    }

    pub fn instances(&self) -> &[RegisteredInstance] {
        match self {
            Resolution::Instances(all) => all,
            _ => &[],
        }
    }
}

pub type Snapshot = Arc<Resolution>;
