//! Builds the status view from what the gateway knows: the mesh's routes (instances, health,
//! what the balancer uses), the Facility's catalog (cards, instances' SDK facts, halts, locks),
//! the control state (halts and locks as last read from Consul KV) and the call totals. Rows
//! are the union of all of them: the page works while the catalog is empty (not learnt yet) and
//! shows a halt of a beamline that no longer registers.
//!
//! I/O-free given the sources and `now` (a lock past its expiry counts as free); it must not
//! read the sources itself (the routes do) nor render.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use beamline_consul::control::ControlView;
use beamline_contract::control::{Halt, Lock};
use beamline_contract::proto::{self, FleetSnapshot};
use beamline_mesh_client::discovery::Resolution;
use beamline_mesh_client::RouteStatus;

use super::sample::Rates;
use super::view::{
    finish, state, BeamlineView, CapabilityView, CardView, HaltView, InstanceView, LockView,
    StatusView,
};
use beamline_contract::beamline::natural_cmp;

/// Everything a view is built from.
pub struct Sources<'a> {
    pub routes: &'a [RouteStatus],
    pub catalog: &'a FleetSnapshot,
    pub control: &'a ControlView,
    pub rates: &'a Rates,
    pub discovery_updates: u64,
}

/// The view of `sources` at `now` (wall clock for locks' expiry, monotonic for rates).
pub fn build(sources: Sources<'_>, now: SystemTime, mono_now: Instant) -> StatusView {
    let mut rows: BTreeMap<String, BeamlineView> = BTreeMap::new();
    for route in sources.routes {
        let row = from_route(route);
        rows.insert(row.beamline.clone(), row);
    }
    for entry in &sources.catalog.beamlines {
        let row = rows
            .entry(entry.beamline.clone())
            .or_insert_with(|| BeamlineView::new(entry.beamline.clone(), state::CATALOG_ONLY));
        merge_entry(row, entry, now);
    }
    let control = &sources.control.state;
    for (id, halt) in &control.halts {
        row_of(&mut rows, id).halt = Some(halt_view(halt, false));
    }
    for (id, held) in &control.locks {
        if held.lock.holds_at(now) {
            row_of(&mut rows, id).lock = Some(lock_view(&held.lock));
        }
    }
    for (id, totals) in &sources.rates.now {
        let row = rows
            .entry(id.clone())
            .or_insert_with(|| BeamlineView::new(id.clone(), state::NOT_ROUTED_NOW));
        row.calls_total = totals.calls;
        row.errors_total = totals.errors;
        if let Some((calls, errors)) = sources.rates.per_sec(id, mono_now) {
            row.calls_per_sec = Some(calls);
            row.errors_per_sec = Some(errors);
        }
    }
    let fleet_halt = match &control.all {
        Some(halt) => Some(halt_view(halt, true)),
        None => (sources.catalog.fleet_halt.as_ref())
            .filter(|h| h.halted)
            .map(|h| halt_state_view(h, true)),
    };
    let mut beamlines: Vec<BeamlineView> = rows.into_values().collect();
    if let Some(all) = &fleet_halt {
        for row in beamlines.iter_mut().filter(|b| b.halt.is_none()) {
            row.halt = Some(all.clone());
        }
    }
    let totals = finish(&mut beamlines);
    StatusView {
        as_of: prost_types::Timestamp::from(now).to_string(),
        window_secs: sources.rates.window_secs(mono_now),
        discovery_updates: sources.discovery_updates,
        totals,
        fleet_halt,
        control_unreadable: sources.control.unreadable.clone(),
        beamlines,
    }
}

fn row_of<'a>(rows: &'a mut BTreeMap<String, BeamlineView>, id: &str) -> &'a mut BeamlineView {
    rows.entry(id.to_string())
        .or_insert_with(|| BeamlineView::new(id.to_string(), state::CATALOG_ONLY))
}

fn from_route(route: &RouteStatus) -> BeamlineView {
    let id = route.beamline.to_string();
    let all = match &*route.resolution {
        Resolution::Pending => return BeamlineView::new(id, state::PENDING),
        Resolution::NotFound => return BeamlineView::new(id, state::NOT_REGISTERED),
        Resolution::Instances(all) => all,
    };
    let routable = |i: &str| route.routable.as_ref().is_some_and(|r| r.contains(i));
    let instances: Vec<InstanceView> = all
        .iter()
        .map(|i| InstanceView {
            id: i.id.clone(),
            address: i.addr.clone(),
            healthy: i.healthy && routable(&i.id),
            passing: i.healthy,
            routable: routable(&i.id),
            sdk_version: String::new(),
            card_revision: String::new(),
            enforces_halt: false,
        })
        .collect();
    let state = if instances.iter().any(|i| i.healthy) {
        state::ROUTED
    } else if route.routable.is_none() {
        state::IDLE
    } else if instances.iter().any(|i| i.passing) {
        state::NOT_ROUTABLE
    } else {
        state::NO_HEALTHY
    };
    let mut row = BeamlineView::new(id, state);
    row.instances = instances;
    row
}

/// Adds what the catalog knows of a beamline to its row: the instances' SDK facts (and any
/// instance the mesh does not list), the card, the halt and the lock.
fn merge_entry(row: &mut BeamlineView, entry: &proto::BeamlineEntry, now: SystemTime) {
    for i in &entry.instances {
        match row.instances.iter_mut().find(|r| r.id == i.instance_id) {
            Some(known) => {
                known.sdk_version = i.sdk_version.clone();
                known.card_revision = i.card_revision.clone();
                known.enforces_halt = i.enforces_halt;
            }
            None => row.instances.push(InstanceView {
                id: i.instance_id.clone(),
                address: i.address.clone(),
                healthy: false,
                passing: i.healthy,
                routable: false,
                sdk_version: i.sdk_version.clone(),
                card_revision: i.card_revision.clone(),
                enforces_halt: i.enforces_halt,
            }),
        }
    }
    row.instances.sort_by(|a, b| natural_cmp(&a.id, &b.id));
    if let Some(card) = &entry.card {
        row.card = Some(CardView {
            card_revision: card.card_revision.clone(),
            agent_version: card.agent_version.clone(),
            capabilities: (card.capabilities.iter())
                .map(|c| CapabilityView {
                    name: c.name.clone(),
                    description: c.description.clone(),
                    actuating: c.actuating,
                })
                .collect(),
        });
    }
    if !entry.card_error.is_empty() {
        row.card_error = Some(entry.card_error.clone());
    }
    if let Some(halt) = entry.halt.as_ref().filter(|h| h.halted) {
        row.halt = Some(halt_state_view(halt, halt.all));
    }
    let expired = |lock: &proto::LockState| {
        lock.expires
            .and_then(|t| SystemTime::try_from(t).ok())
            .is_some_and(|expires| expires <= now)
    };
    if let Some(lock) = (entry.lock.as_ref()).filter(|l| l.locked && !expired(l)) {
        row.lock = Some(LockView {
            holder: lock.holder.clone(),
            note: lock.note.clone(),
            since: lock.since.as_ref().map(ToString::to_string),
            expires: lock.expires.as_ref().map(ToString::to_string),
        });
    }
}

fn halt_view(halt: &Halt, all: bool) -> HaltView {
    halt_state_view(&halt.to_proto(all), all)
}

fn halt_state_view(halt: &proto::HaltState, all: bool) -> HaltView {
    HaltView {
        by: halt.by.clone(),
        reason: halt.reason.clone(),
        since: halt.since.as_ref().map(ToString::to_string),
        all,
    }
}

fn lock_view(lock: &Lock) -> LockView {
    let proto = lock.to_proto();
    LockView {
        holder: proto.holder,
        note: proto.note,
        since: proto.since.as_ref().map(ToString::to_string),
        expires: proto.expires.as_ref().map(ToString::to_string),
    }
}

#[cfg(test)]
mod tests;
