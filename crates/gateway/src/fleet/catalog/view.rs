//! What the catalog publishes: the current view (every entry, built once per change and shared
//! by `Arc`, the fleet-wide halt, and each beamline's capabilities by name for the hot path) and
//! the changes since, on a bounded broadcast channel.
//!
//! Owns publication and subscription as one atomic step (a watcher's snapshot and the first
//! change it receives never overlap nor leave a gap); it must not decide what changed (the
//! `state` machine's) nor how a watcher is served (`stream`'s).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

use beamline_contract::proto::{
    fleet_event, BeamlineEntry, FleetChange, FleetEvent, FleetSnapshot, HaltState,
};

use super::CapabilityKind;

/// Each capability of a card by name: whether it actuates.
pub type CardKinds = HashMap<String, bool>;

/// The catalog as of one change.
#[derive(Debug, Default)]
pub struct View {
    /// Every beamline discovery knows, in natural order of ids.
    pub entries: Vec<Arc<BeamlineEntry>>,
    /// The fleet-wide halt (`halted` false when there is none).
    pub fleet_halt: HaltState,
    /// Per beamline with a card: its capabilities.
    pub kinds: HashMap<String, Arc<CardKinds>>,
}

impl View {
    /// Whether `capability` of `beamline` actuates, as its card says (a lookup: no allocation).
    pub fn capability(&self, beamline: &str, capability: &str) -> CapabilityKind {
        match self
            .kinds
            .get(beamline)
            .and_then(|kinds| kinds.get(capability))
        {
            Some(true) => CapabilityKind::Actuating,
            Some(false) => CapabilityKind::ReadOnly,
            None => CapabilityKind::Unknown,
        }
    }

    /// The visible part of the view as a snapshot message.
    pub fn snapshot(&self, visible: &dyn Fn(&str) -> bool) -> FleetSnapshot {
        FleetSnapshot {
            beamlines: self
                .entries
                .iter()
                .filter(|entry| visible(&entry.beamline))
                .map(|entry| BeamlineEntry::clone(entry))
                .collect(),
            fleet_halt: Some(self.fleet_halt.clone()),
        }
    }
}

/// One change of the catalog, as broadcast to every watcher.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A beamline's whole new entry and what changed in it.
    Beamline {
        entry: Arc<BeamlineEntry>,
        changes: Vec<FleetChange>,
    },
    /// A beamline left discovery.
    Removed(String),
    /// The fleet-wide halt changed (everyone sees it).
    FleetHalt(HaltState),
}

impl Change {
    /// The event a watcher allowed to see `visible` beamlines receives, if any.
    pub fn event_for(&self, visible: &dyn Fn(&str) -> bool) -> Option<FleetEvent> {
        let (event, changes) = match self {
            Change::Beamline { entry, changes } => {
                if !visible(&entry.beamline) {
                    return None;
                }
                let changes = changes.iter().map(|c| *c as i32).collect();
                (
                    fleet_event::Event::Beamline(BeamlineEntry::clone(entry)),
                    changes,
                )
            }
            Change::Removed(id) => {
                if !visible(id) {
                    return None;
                }
                (fleet_event::Event::Removed(id.clone()), Vec::new())
            }
            Change::FleetHalt(halt) => (fleet_event::Event::FleetHalt(halt.clone()), Vec::new()),
        };
        Some(FleetEvent {
            event: Some(event),
            changes,
        })
    }
}

/// The current view and the channel of changes, shared by the learner (the one writer), the
/// Fleet service's readers and every watcher.
pub struct Published {
    current: RwLock<Arc<View>>,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Published {
    /// `backlog`: how many changes a watcher may fall behind before it is sent a fresh snapshot
    /// instead (the bound on what the gateway keeps for slow watchers).
    pub fn new(backlog: usize) -> Published {
        let (changes, _) = broadcast::channel(backlog.max(1));
        Published {
            current: RwLock::new(Arc::new(View::default())),
            changes,
        }
    }

    /// Publishes `view` and the `changes` that led to it, at once for every subscriber.
    pub fn publish(&self, view: Arc<View>, changes: Vec<Change>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = view;
        for change in changes {
            // No subscriber: nobody to tell.
            let _ = self.changes.send(Arc::new(change));
        }
    }

    /// The view now and every change after it.
    pub fn subscribe(&self) -> (Arc<View>, broadcast::Receiver<Arc<Change>>) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.clone(), self.changes.subscribe())
    }

    /// The view now.
    pub fn current(&self) -> Arc<View> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the view now without taking a reference to it (the hot path's lookups).
    pub fn with<T>(&self, read: impl FnOnce(&View) -> T) -> T {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        read(&current)
    }

    /// Watchers subscribed now.
    pub fn watchers(&self) -> usize {
        self.changes.receiver_count()
    }
}
