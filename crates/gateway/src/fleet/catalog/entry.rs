//! The parts of a beamline's catalog entry, each from its source: its instances (discovery,
//! with their Meta), what decides when its card must be learnt again, and its halt and lock
//! (the control state at a given time).
//!
//! Owns these translations; what changed and when to Describe are the `state` machine's.

use std::collections::BTreeSet;
use std::time::SystemTime;

use beamline_contract::control::ControlState;
use beamline_contract::proto::{AgentCard, HaltState, InstanceEntry, LockState};
use beamline_mesh_client::discovery::RegisteredInstance;

use super::view::CardKinds;

/// The `Meta.controls` item saying an agent halts itself.
const HALT_CONTROL: &str = "halt";

/// An instance as the catalog shows it.
pub fn instance(registered: &RegisteredInstance) -> InstanceEntry {
    InstanceEntry {
        instance_id: registered.id.clone(),
        address: registered.addr.clone(),
        healthy: registered.healthy,
        sdk_version: registered.sdk_version.clone().unwrap_or_default(),
        card_revision: registered.card_revision.clone().unwrap_or_default(),
        enforces_halt: registered
            .controls
            .as_deref()
            .is_some_and(|controls| controls.split(',').any(|c| c.trim() == HALT_CONTROL)),
    }
}

/// What, when it changes, makes a beamline's card worth learning again: the distinct card
/// revisions its instances publish, and the instances that publish none (older SDKs: any change
/// of that set may be a new card). Health and addresses are not in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardKey {
    revisions: BTreeSet<String>,
    unrevised: BTreeSet<String>,
}

impl CardKey {
    pub fn of(instances: &[InstanceEntry]) -> CardKey {
        let mut key = CardKey::default();
        for instance in instances {
            if instance.card_revision.is_empty() {
                key.unrevised.insert(instance.instance_id.clone());
            } else {
                key.revisions.insert(instance.card_revision.clone());
            }
        }
        key
    }
}

/// `beamline`'s own halt (`halted` false when there is none; the fleet-wide one is apart).
pub fn halt(state: &ControlState, beamline: &str) -> HaltState {
    state
        .halts
        .get(beamline)
        .map(|halt| halt.to_proto(false))
        .unwrap_or_default()
}

/// The fleet-wide halt (`halted` false when there is none).
pub fn fleet_halt(state: &ControlState) -> HaltState {
    state
        .all
        .as_ref()
        .map(|halt| halt.to_proto(true))
        .unwrap_or_default()
}

/// `beamline`'s lock if it holds at `now` (an expired lock is free: `locked` false).
pub fn lock(state: &ControlState, beamline: &str, now: SystemTime) -> LockState {
    state
        .lock(beamline, now)
        .map(|lock| lock.to_proto())
        .unwrap_or_default()
}

/// The capabilities of `card` by name: whether each actuates.
pub fn kinds(card: &AgentCard) -> CardKinds {
    card.capabilities
        .iter()
        .map(|capability| (capability.name.clone(), capability.actuating))
        .collect()
}
