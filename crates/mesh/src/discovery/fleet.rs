//! The fleet-wide discovery watch as a state machine without I/O (quinn-proto's shape): it is
//! told what Consul answered and when, and says what to ask next, which services to fetch, what
//! fleet to publish, and how long to pause. The async loop in `watch` does the asking.
//!
//! One blocking query on every check (`/v1/health/state/any`, narrowed to beamline agents and
//! node checks) is the change trigger for the whole fleet: a gateway holds one registry
//! connection however many beamlines there are. The checks say which beamline services exist and
//! whether anything about one changed; only a service whose checks changed is fetched again
//! (`/v1/health/service/<name>`, not blocking: addresses and `Meta` live there). An instance's
//! Meta (`beamline`, `sdk_version`, `card_revision`, `controls`) is fixed for its id: the SDK
//! gives every process a fresh instance id, so a new card revision arrives as a new instance,
//! whose check changes the fingerprint; the published fleet compares Meta too, so a fetch that
//! shows a changed Meta is published as a change.
//!
//! Consul's client rules: an index that went backwards restarts from 0; 0 is never sent as a
//! blocking index; the loop is rate-limited. A registry that restarted empty is not believed at
//! once: the last fleet is held for the restart grace while agents register again. While Consul
//! is unreachable the last fleet stays (fail static), and retries back off with jitter.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{RegisteredInstance, Resolution, Snapshot, WatchSettings};
use beamline_consul::backoff::Backoff;
use beamline_consul::{CheckEntry, Indexed, ServiceEntry};
use beamline_contract::beamline::{BeamlineId, AGENT_TAG};
use beamline_contract::wire::meta;

/// The Consul filter of the fleet query: the checks of beamline agents, and node checks (whose
/// status applies to every service on their node).
pub fn checks_filter() -> String {
    format!("ServiceTags contains \"{AGENT_TAG}\" or ServiceID == \"\"")
}

/// Every beamline Consul knows, with its instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fleet {
    /// False until Consul has answered once (and every service it named was fetched).
    pub resolved: bool,
    pub beamlines: BTreeMap<BeamlineId, Snapshot>,
}

impl Fleet {
    /// What discovery knows about `beamline`.
    pub fn resolution(&self, beamline: &BeamlineId) -> Snapshot {
        match self.beamlines.get(beamline) {
            Some(snapshot) => snapshot.clone(),
            None if self.resolved => Arc::new(Resolution::NotFound),
            None => Arc::new(Resolution::Pending),
        }
    }
}

/// The next fleet query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// `?index=` (0: answer at once).
    pub index: u64,
    /// `?wait=`.
    pub wait: Duration,
}

/// What to log, once per occurrence (the loop turns these into lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The first failure of an outage.
    Unreachable,
    /// The first answer after an outage.
    Reachable,
    /// Consul filtered the answer by ACLs (said once).
    FilteredByAcls,
    /// A restarted registry answered empty: the last fleet is held for the grace.
    HoldingAfterRestart,
}

/// What an answer to the fleet query asks of the loop.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Services to fetch now, each with the fingerprint of its checks to report back.
    pub fetch: Vec<(String, u64)>,
    pub notes: Vec<Note>,
}

/// The fleet watch (see the module doc).
#[derive(Debug)]
pub struct FleetWatch {
    settings: WatchSettings,
    index: u64,
    backoff: Backoff,
    outage: bool,
    acl_warned: bool,
    /// Set while a restarted registry's empty answer is held back.
    grace_until: Option<Instant>,
    /// The fingerprint of each service's checks in the last answer.
    wanted: BTreeMap<String, u64>,
    /// Each service as last fetched, with the fingerprint it was fetched for.
    fetched: BTreeMap<String, (u64, Vec<ServiceEntry>)>,
    /// A fetch failed: ask again soon rather than block.
    dirty: bool,
    answered: bool,
}

impl FleetWatch {
    pub fn new(settings: WatchSettings) -> FleetWatch {
        FleetWatch {
            backoff: Backoff::new(settings.min_backoff, settings.max_backoff),
            settings,
            index: 0,
            outage: false,
            acl_warned: false,
            grace_until: None,
            wanted: BTreeMap::new(),
            fetched: BTreeMap::new(),
            dirty: false,
            answered: false,
        }
    }

    /// The query to send at `now`.
    pub fn query(&self, now: Instant) -> Query {
        let wait = match self.grace_until {
            // Inside a grace period, wake when it ends even if Consul stays quiet.
            Some(until) => until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
            // A fetch failed: look again after the backoff, not after a long block.
            None if self.dirty => self.backoff.current(),
            None => self.settings.wait,
        };
        Query {
            index: self.index,
            wait,
        }
    }

    /// Consul answered the fleet query at `now`.
    pub fn on_checks(&mut self, now: Instant, answer: Indexed<Vec<CheckEntry>>) -> Plan {
        let mut notes = Vec::new();
        if self.outage {
            notes.push(Note::Reachable);
            self.outage = false;
        }
        if answer.filtered_by_acls && !self.acl_warned {
            notes.push(Note::FilteredByAcls);
            self.acl_warned = true;
        }
        let went_back = answer.index < self.index;
        // Consul's rules: an index that went backwards restarts from 0; never block on 0.
        self.index = if went_back { 0 } else { answer.index.max(1) };
        let wanted = fingerprints(&answer.value);
        if went_back && wanted.is_empty() && !self.wanted.is_empty() && self.grace_until.is_none() {
            notes.push(Note::HoldingAfterRestart);
            self.grace_until = Some(now + self.settings.restart_grace);
        }
        let holding = self.grace_until.is_some_and(|until| now < until) && wanted.is_empty();
        if holding {
            return Plan {
                fetch: Vec::new(),
                notes,
            };
        }
        self.grace_until = None;
        self.fetched
            .retain(|service, _| wanted.contains_key(service));
        let fetch = wanted
            .iter()
            .filter(|(service, print)| {
                self.fetched
                    .get(*service)
                    .is_none_or(|(had, _)| had != *print)
            })
            .map(|(service, print)| (service.clone(), *print))
            .collect();
        self.wanted = wanted;
        self.answered = true;
        self.dirty = false;
        Plan { fetch, notes }
    }

    /// The loop fetched `service` for the checks `fingerprint` (None: the fetch failed, and the
    /// service is asked for again after the backoff).
    pub fn on_fetched(
        &mut self,
        service: &str,
        fingerprint: u64,
        entries: Option<Vec<ServiceEntry>>,
    ) {
        match entries {
            Some(entries) => {
                self.backoff.reset();
                if self.wanted.contains_key(service) {
                    self.fetched
                        .insert(service.to_string(), (fingerprint, entries));
                }
            }
            None => {
                self.dirty = true;
                // Forget the fetch it was for, so the next answer fetches it again.
                self.fetched.remove(service);
            }
        }
    }

    /// The fleet query failed at `now`: how long to pause before the next (backoff with
    /// `jitter`, a fraction in 0..=1 the loop draws), and whether to say so.
    pub fn on_error(&mut self, jitter: f64) -> (Duration, Option<Note>) {
        let note = (!self.outage).then_some(Note::Unreachable);
        self.outage = true;
        (self.backoff.next(jitter), note)
    }

    /// How long to pause after an answer to a query sent at `started` (the rate limit).
    pub fn pause(&self, started: Instant, now: Instant) -> Duration {
        self.settings
            .min_interval
            .saturating_sub(now.saturating_duration_since(started))
    }

    /// The fleet as the last answers and fetches make it; unresolved until the first answer's
    /// services were all fetched. During a restart grace it is the fleet from before.
    pub fn fleet(&self) -> Fleet {
        let complete = self
            .wanted
            .keys()
            .all(|service| self.fetched.contains_key(service));
        let mut instances: BTreeMap<BeamlineId, Vec<RegisteredInstance>> = BTreeMap::new();
        for (service, (_, entries)) in &self.fetched {
            for entry in entries {
                let Some(id) = entry.service.meta.get(meta::BEAMLINE) else {
                    continue;
                };
                // Ids that differ only in '.' and '-' share a service name: an instance counts
                // for the id it registered, under that id's own service name only.
                let Ok(beamline) = BeamlineId::parse(id) else {
                    continue;
                };
                if beamline.service_name() != *service {
                    continue;
                }
                instances
                    .entry(beamline)
                    .or_default()
                    .push(RegisteredInstance {
                        healthy: entry.is_passing(),
                        addr: entry.address(),
                        beamline: Some(id.clone()),
                        id: entry.service.id.clone(),
                        sdk_version: entry.service.meta.get(meta::SDK_VERSION).cloned(),
                        card_revision: entry.service.meta.get(meta::CARD_REVISION).cloned(),
                        controls: entry.service.meta.get(meta::CONTROLS).cloned(),
                    });
            }
        }
        let beamlines = instances
            .into_iter()
            .map(|(beamline, mut all)| {
                all.sort_by(|a, b| a.id.cmp(&b.id));
                (beamline, Arc::new(Resolution::Instances(all)))
            })
            .collect();
        Fleet {
            resolved: self.answered && complete,
            beamlines,
        }
    }
}

/// The part of a check that changes what a fetch of its service would say: not its output or
/// modify index, which a check updating its output changes on every run.
fn what_a_fetch_shows(check: &CheckEntry) -> (&str, &str, &str, &str, &[String]) {
    (
        &check.node,
        &check.service_id,
        &check.check_id,
        check.status.as_str(),
        &check.service_tags,
    )
}

/// Per beamline service in a check answer, a fingerprint of everything about it that a fetch
/// would show changed: its checks (id, status, node, tags) and the node checks of its nodes.
fn fingerprints(checks: &[CheckEntry]) -> BTreeMap<String, u64> {
    let mut node_checks: BTreeMap<&str, Vec<&CheckEntry>> = BTreeMap::new();
    let mut services: BTreeMap<&str, Vec<&CheckEntry>> = BTreeMap::new();
    for check in checks {
        if check.service_id.is_empty() {
            node_checks.entry(&check.node).or_default().push(check);
        } else if check.service_tags.iter().any(|t| t == AGENT_TAG) {
            services.entry(&check.service_name).or_default().push(check);
        }
    }
    services
        .into_iter()
        .map(|(service, mut own)| {
            own.sort_by(|a, b| (&a.service_id, &a.check_id).cmp(&(&b.service_id, &b.check_id)));
            let mut hasher = DefaultHasher::new();
            for check in &own {
                what_a_fetch_shows(check).hash(&mut hasher);
            }
            let nodes: BTreeSet<&str> = own.iter().map(|c| c.node.as_str()).collect();
            for node in nodes {
                node.hash(&mut hasher);
                let mut of_node = node_checks.get(node).cloned().unwrap_or_default();
                of_node.sort_by(|a, b| a.check_id.cmp(&b.check_id));
                for check in of_node {
                    what_a_fetch_shows(check).hash(&mut hasher);
                }
            }
            (service.to_string(), hasher.finish())
        })
        .collect()
}

#[cfg(test)]
mod tests;
