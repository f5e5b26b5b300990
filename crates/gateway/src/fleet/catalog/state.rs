//! The catalog as a state machine without I/O: told what discovery publishes, what the control
//! state says, what each Describe answered and what time it is, it keeps every beamline's entry,
//! says which beamline to Describe next (and when to retry one that failed), and hands out the
//! changes and the new view. The loop in `learner` does the I/O and the sleeping.
//!
//! Cards are learnt by push: a beamline is described when it first appears, and again only when
//! its [`CardKey`] changes (the revisions its instances publish, or, for instances that publish
//! none, the set of those instances); never on a timer. A failed Describe is retried after a
//! backoff and shows as `card_error`. A beamline without a healthy instance is not described
//! until one passes (its instances changing is itself an input).
//!
//! Locks are shown only while they hold, so the machine names the next expiry (`next_expiry`)
//! and re-evaluates at it (`on_time`), emitting a LOCK change then.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use beamline_consul::backoff::Backoff;
use beamline_consul::control::ControlView;
use beamline_contract::proto::{AgentCard, BeamlineEntry, FleetChange, HaltState, InstanceEntry};
use beamline_mesh_client::discovery::Fleet;

use super::entry::{self, CardKey};
use super::view::{CardKinds, Change, View};
use beamline_contract::beamline::natural_cmp;

/// The machine's settings: the backoff of failed Describes.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub min: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            min: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

/// One Describe to make: the beamline, and which wish for its card it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    pub beamline: String,
    pub generation: u64,
}

/// Everything known of one beamline. What it shows (instances, card, card error, halt, lock)
/// is kept once, in its entry, which the view and the changes share: at 1,000 beamlines a
/// second copy of every card and instance list was ~0.8 MB of the gateway.
#[derive(Debug)]
struct Beamline {
    card_key: CardKey,
    kinds: Option<Arc<CardKinds>>,
    entry: Arc<BeamlineEntry>,
    learning: Learning,
}

/// Where learning a beamline's card stands.
#[derive(Debug)]
struct Learning {
    /// Bumped whenever the card may have changed; the card is current when `learnt` reaches it.
    wanted: u64,
    learnt: u64,
    in_flight: bool,
    retry_at: Option<Instant>,
    backoff: Backoff,
}

impl Beamline {
    fn wants_describe(&self, now: Instant) -> bool {
        let learning = &self.learning;
        learning.learnt < learning.wanted
            && !learning.in_flight
            && learning.retry_at.is_none_or(|at| at <= now)
            && self.has_healthy()
    }

    fn has_healthy(&self) -> bool {
        self.entry.instances.iter().any(|i| i.healthy)
    }
}

/// The catalog machine (see the module doc).
#[derive(Debug)]
pub struct CatalogState {
    retry: Retry,
    beamlines: BTreeMap<String, Beamline>,
    control: Arc<ControlView>,
    fleet_halt: HaltState,
    changes: Vec<Change>,
    /// The view must be built again.
    dirty: bool,
}

impl CatalogState {
    pub fn new(retry: Retry, control: Arc<ControlView>) -> CatalogState {
        CatalogState {
            retry,
            beamlines: BTreeMap::new(),
            fleet_halt: entry::fleet_halt(&control.state),
            control,
            changes: Vec::new(),
            dirty: true,
        }
    }

    /// Discovery published `fleet` (at wall-clock `now`, for the locks of new beamlines).
    pub fn on_fleet(&mut self, fleet: &Fleet, now: SystemTime) {
        let gone: Vec<String> = self
            .beamlines
            .keys()
            .filter(|id| !fleet.beamlines.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            self.beamlines.remove(&id);
            self.changes.push(Change::Removed(id));
            self.dirty = true;
        }
        for (id, resolution) in &fleet.beamlines {
            let instances: Vec<InstanceEntry> =
                resolution.instances().iter().map(entry::instance).collect();
            let key = CardKey::of(&instances);
            match self.beamlines.get_mut(id.as_str()) {
                None => self.add(id.as_str(), instances, key, now),
                Some(beamline) => {
                    if beamline.card_key != key {
                        beamline.card_key = key;
                        beamline.learning.wanted += 1;
                        // A new revision is worth asking at once, whatever the last failure.
                        beamline.learning.retry_at = None;
                        beamline.learning.backoff.reset();
                    }
                    if beamline.entry.instances != instances {
                        self.changed(id.as_str(), vec![FleetChange::Instances], |entry| {
                            entry.instances = instances;
                        });
                    }
                }
            }
        }
    }

    fn add(&mut self, id: &str, instances: Vec<InstanceEntry>, key: CardKey, now: SystemTime) {
        let entry = Arc::new(BeamlineEntry {
            beamline: id.to_string(),
            instances,
            card: None,
            halt: Some(entry::halt(&self.control.state, id)),
            lock: Some(entry::lock(&self.control.state, id, now)),
            card_error: String::new(),
        });
        let beamline = Beamline {
            card_key: key,
            kinds: None,
            entry,
            learning: Learning {
                wanted: 1,
                learnt: 0,
                in_flight: false,
                retry_at: None,
                backoff: Backoff::new(self.retry.min, self.retry.max),
            },
        };
        self.beamlines.insert(id.to_string(), beamline);
        self.changes.push(Change::Beamline {
            entry: self.beamlines[id].entry.clone(),
            changes: vec![FleetChange::Added],
        });
        self.dirty = true;
    }

    /// Changes `id`'s entry by `edit` and records the change. The entry is a new one when the
    /// view or a change still holds the old (they must not see it change).
    fn changed(
        &mut self,
        id: &str,
        changes: Vec<FleetChange>,
        edit: impl FnOnce(&mut BeamlineEntry),
    ) {
        let Some(beamline) = self.beamlines.get_mut(id) else {
            return;
        };
        edit(Arc::make_mut(&mut beamline.entry));
        self.changes.push(Change::Beamline {
            entry: beamline.entry.clone(),
            changes,
        });
        self.dirty = true;
    }

    /// The control state changed (read at wall-clock `now`).
    pub fn on_control(&mut self, control: Arc<ControlView>, now: SystemTime) {
        self.control = control;
        let fleet_halt = entry::fleet_halt(&self.control.state);
        if fleet_halt != self.fleet_halt {
            self.fleet_halt = fleet_halt.clone();
            self.changes.push(Change::FleetHalt(fleet_halt));
            self.dirty = true;
        }
        self.evaluate(now, true);
    }

    /// Time passed to `now`: a lock that expired shows as free.
    pub fn on_time(&mut self, now: SystemTime) {
        self.evaluate(now, false);
    }

    /// Brings every beamline's lock (and, with `halts`, its halt) up to the control state at
    /// `now`.
    fn evaluate(&mut self, now: SystemTime, halts: bool) {
        let state = &self.control.state;
        let mut changed = Vec::new();
        for (id, beamline) in &self.beamlines {
            let mut changes = Vec::new();
            let halt = entry::halt(state, id);
            let halt = (halts && Some(&halt) != beamline.entry.halt.as_ref()).then_some(halt);
            if halt.is_some() {
                changes.push(FleetChange::Halt);
            }
            let lock = entry::lock(state, id, now);
            let lock = (Some(&lock) != beamline.entry.lock.as_ref()).then_some(lock);
            if lock.is_some() {
                changes.push(FleetChange::Lock);
            }
            if !changes.is_empty() {
                changed.push((id.clone(), changes, halt, lock));
            }
        }
        for (id, changes, halt, lock) in changed {
            self.changed(&id, changes, |entry| {
                if let Some(halt) = halt {
                    entry.halt = Some(halt);
                }
                if let Some(lock) = lock {
                    entry.lock = Some(lock);
                }
            });
        }
    }

    /// When the next shown lock expires (the loop calls `on_time` then).
    pub fn next_expiry(&self, now: SystemTime) -> Option<SystemTime> {
        let state = &self.control.state;
        self.beamlines
            .keys()
            .filter_map(|id| state.lock(id, now).map(|lock| lock.expires))
            .min()
    }

    /// The next Describe to make at `now`, if any; it counts as in flight until `on_described`.
    pub fn next_describe(&mut self, now: Instant) -> Option<Describe> {
        let (id, beamline) = self
            .beamlines
            .iter_mut()
            .find(|(_, beamline)| beamline.wants_describe(now))?;
        beamline.learning.in_flight = true;
        Some(Describe {
            beamline: id.clone(),
            generation: beamline.learning.wanted,
        })
    }

    /// When a failed Describe is due again (the earliest), if one is waiting.
    pub fn next_retry(&self) -> Option<Instant> {
        self.beamlines
            .values()
            .filter(|b| {
                let l = &b.learning;
                l.learnt < l.wanted && !l.in_flight && b.has_healthy()
            })
            .filter_map(|b| b.learning.retry_at)
            .min()
    }

    /// A Describe made for `describe` answered at `now` (`jitter` in 0..=1 for the backoff
    /// after a failure).
    pub fn on_described(
        &mut self,
        describe: &Describe,
        answer: Result<AgentCard, String>,
        now: Instant,
        jitter: f64,
    ) {
        let Some(beamline) = self.beamlines.get_mut(&describe.beamline) else {
            // It left while the Describe was out.
            return;
        };
        let learning = &mut beamline.learning;
        learning.in_flight = false;
        // The new card, if one was learnt (after a failure the last card stays: stale is
        // better than none, and card_error says so).
        let (card, error) = match answer {
            Ok(card) => {
                learning.learnt = learning.learnt.max(describe.generation);
                learning.retry_at = None;
                learning.backoff.reset();
                (Some(card), String::new())
            }
            Err(error) => {
                learning.retry_at = Some(now + learning.backoff.next(jitter));
                (None, error)
            }
        };
        let shown = &beamline.entry;
        let new_card = card.filter(|card| shown.card.as_ref() != Some(card));
        if new_card.is_none() && error == shown.card_error {
            return;
        }
        if let Some(card) = &new_card {
            beamline.kinds = Some(Arc::new(entry::kinds(card)));
        }
        let id = describe.beamline.clone();
        self.changed(&id, vec![FleetChange::Card], |entry| {
            if let Some(card) = new_card {
                entry.card = Some(card);
            }
            entry.card_error = error;
        });
    }

    /// The changes since the last call.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// The view, when it changed since the last call.
    pub fn take_view(&mut self) -> Option<Arc<View>> {
        if !std::mem::replace(&mut self.dirty, false) {
            return None;
        }
        let mut entries: Vec<Arc<BeamlineEntry>> =
            self.beamlines.values().map(|b| b.entry.clone()).collect();
        entries.sort_by(|a, b| natural_cmp(&a.beamline, &b.beamline));
        let kinds: HashMap<String, Arc<CardKinds>> = self
            .beamlines
            .iter()
            .filter_map(|(id, b)| Some((id.clone(), b.kinds.clone()?)))
            .collect();
        Some(Arc::new(View {
            entries,
            fleet_halt: self.fleet_halt.clone(),
            kinds,
        }))
    }
}

#[cfg(test)]
mod tests;
