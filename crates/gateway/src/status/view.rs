//! What `/status.json` returns and the page shows: every beamline as one row with its instances,
//! rates, halt and lock and card, the fleet's totals, and the order rows come in (those that need
//! attention first, then the rest, each group in natural order of ids).
//!
//! Owns the model, why a beamline needs attention, the totals and the order (natural order is
//! the contract's `natural_cmp`, so the page and ListBeamlines agree); it must not read its
//! sources (`sources` builds rows from the mesh, the catalog and the control state) nor render
//! (`page`).

use serde::Serialize;

use beamline_contract::beamline::natural_cmp;

/// The whole page.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// When the view was built (RFC 3339).
    pub as_of: String,
    /// Seconds the rates are over (none until two samples exist).
    pub window_secs: Option<f64>,
    pub discovery_updates: u64,
    pub totals: Totals,
    /// The fleet-wide halt (`halt --all`), if any.
    pub fleet_halt: Option<HaltView>,
    /// Why the halt and lock state cannot be read now, if it cannot (actuating calls are
    /// refused meanwhile).
    pub control_unreadable: Option<String>,
    /// Attention first, then the rest; natural order of ids within each.
    pub beamlines: Vec<BeamlineView>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Totals {
    pub beamlines: usize,
    /// Beamlines listed first because they need attention.
    pub attention: usize,
    pub instances: usize,
    /// Instances passing every Consul check.
    pub instances_passing: usize,
    pub calls_per_sec: Option<f64>,
    pub errors_per_sec: Option<f64>,
    /// Beamlines halted, by their own halt or the fleet-wide one.
    pub halted: usize,
    pub locked: usize,
}

#[derive(Debug, Serialize)]
pub struct BeamlineView {
    pub beamline: String,
    /// What routing says: routed, idle, pending, not routable, ….
    pub state: &'static str,
    pub instances: Vec<InstanceView>,
    pub calls_total: u64,
    pub errors_total: u64,
    pub calls_per_sec: Option<f64>,
    pub errors_per_sec: Option<f64>,
    /// Why it is listed first (empty: it is not).
    pub attention: Vec<Attention>,
    /// Its own halt, or the fleet-wide one (`all` set).
    pub halt: Option<HaltView>,
    /// Its lock, if one holds now.
    pub lock: Option<LockView>,
    /// Its card as the catalog last learnt it.
    pub card: Option<CardView>,
    /// Why the card is absent or may be stale.
    pub card_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub id: String,
    pub address: String,
    /// Passing in Consul and used by the balancer: what "healthy" means for an instance.
    pub healthy: bool,
    /// Every Consul check of the instance passes.
    pub passing: bool,
    /// The balancer holds the instance and its health gate is open.
    pub routable: bool,
    /// `Meta.sdk_version`, `Meta.card_revision` (from the catalog; empty when unknown).
    pub sdk_version: String,
    pub card_revision: String,
    /// The agent enforces halts and locks itself.
    pub enforces_halt: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HaltView {
    pub by: String,
    pub reason: String,
    /// RFC 3339.
    pub since: Option<String>,
    /// The fleet-wide halt.
    pub all: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LockView {
    pub holder: String,
    pub note: String,
    pub since: Option<String>,
    pub expires: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CardView {
    pub card_revision: String,
    pub agent_version: String,
    pub capabilities: Vec<CapabilityView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapabilityView {
    pub name: String,
    pub description: String,
    pub actuating: bool,
}

/// What routing says of a beamline (`BeamlineView::state`).
pub mod state {
    pub const ROUTED: &str = "routed";
    pub const PENDING: &str = "pending";
    pub const NOT_REGISTERED: &str = "not registered";
    /// Nothing has called it (lately): no balancer, no connections yet; nothing wrong.
    pub const IDLE: &str = "idle (no balancer until the first call)";
    /// Calls were counted, but the mesh routes it no more.
    pub const NOT_ROUTED_NOW: &str = "idle (not routed now)";
    /// Consul says passing, but the balancer has no open gate: say so.
    pub const NOT_ROUTABLE: &str = "not routable (no instance answers its health watch)";
    pub const NO_HEALTHY: &str = "no healthy instance";
    /// Known only from the catalog or the control state.
    pub const CATALOG_ONLY: &str = "not routed";
}

/// Why a beamline is listed first; the words are also what the filter box matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Fewer passing instances than registered, or none.
    Unhealthy,
    /// Instances pass in Consul, but the balancer uses none of them.
    Unroutable,
    Halted,
    Locked,
    /// Errors in the rate window.
    Erroring,
}

impl Attention {
    pub fn word(self) -> &'static str {
        match self {
            Attention::Unhealthy => "unhealthy",
            Attention::Unroutable => "unroutable",
            Attention::Halted => "halted",
            Attention::Locked => "locked",
            Attention::Erroring => "erroring",
        }
    }
}

impl BeamlineView {
    /// A row with nothing known but its id and routing state.
    pub fn new(beamline: String, state: &'static str) -> BeamlineView {
        BeamlineView {
            beamline,
            state,
            instances: Vec::new(),
            calls_total: 0,
            errors_total: 0,
            calls_per_sec: None,
            errors_per_sec: None,
            attention: Vec::new(),
            halt: None,
            lock: None,
            card: None,
            card_error: None,
        }
    }

    pub fn passing(&self) -> usize {
        self.instances.iter().filter(|i| i.passing).count()
    }

    /// Why this row needs attention, from what it holds.
    pub fn needs(&self) -> Vec<Attention> {
        // Halts and locks first: who stopped a beamline and why is what the control room reads.
        let mut why = Vec::new();
        if self.halt.is_some() {
            why.push(Attention::Halted);
        }
        if self.lock.is_some() {
            why.push(Attention::Locked);
        }
        let passing = self.passing();
        if self.is_pseudo() {
            // `_unknown`, `_other`: calls counted under no beamline have no instances to miss.
        } else if passing == 0 || passing < self.instances.len() {
            why.push(Attention::Unhealthy);
        } else if self.state == state::NOT_ROUTABLE {
            why.push(Attention::Unroutable);
        }
        if self.errors_per_sec.is_some_and(|e| e > 0.0) {
            why.push(Attention::Erroring);
        }
        why
    }

    /// A metrics label standing for many beamlines (`_unknown`, `_other`), not a beamline.
    pub fn is_pseudo(&self) -> bool {
        self.beamline.starts_with('_')
    }

    /// The words the filter box matches: the id, the state, the attention words or "ok", who
    /// halted or holds it.
    pub fn search_text(&self) -> String {
        let mut words = vec![self.beamline.clone(), self.state.to_string()];
        if self.attention.is_empty() {
            words.push("ok healthy".to_string());
        }
        words.extend(self.attention.iter().map(|a| a.word().to_string()));
        if let Some(halt) = &self.halt {
            words.push(halt.by.clone());
        }
        if let Some(lock) = &self.lock {
            words.push(lock.holder.clone());
        }
        words.join(" ").to_lowercase()
    }
}

/// Whether `text` (a row's [`BeamlineView::search_text`]) matches `filter`: every word of the
/// filter, without case, is in it (an empty filter matches everything). The page's script
/// applies the same rule.
pub fn matches(text: &str, filter: &str) -> bool {
    let text = text.to_lowercase();
    filter
        .split_whitespace()
        .all(|word| text.contains(&word.to_lowercase()))
}

/// Sets each row's attention, orders the rows and counts the totals.
pub fn finish(beamlines: &mut [BeamlineView]) -> Totals {
    for b in beamlines.iter_mut() {
        b.attention = b.needs();
    }
    beamlines.sort_by(|a, b| {
        (a.attention.is_empty())
            .cmp(&b.attention.is_empty())
            .then_with(|| natural_cmp(&a.beamline, &b.beamline))
    });
    let sum = |rate: fn(&BeamlineView) -> Option<f64>| {
        let rates: Vec<f64> = beamlines.iter().filter_map(rate).collect();
        (!rates.is_empty()).then(|| rates.iter().sum())
    };
    Totals {
        beamlines: beamlines.iter().filter(|b| !b.is_pseudo()).count(),
        attention: beamlines.iter().filter(|b| !b.attention.is_empty()).count(),
        instances: beamlines.iter().map(|b| b.instances.len()).sum(),
        instances_passing: beamlines.iter().map(BeamlineView::passing).sum(),
        calls_per_sec: sum(|b| b.calls_per_sec),
        errors_per_sec: sum(|b| b.errors_per_sec),
        halted: beamlines.iter().filter(|b| b.halt.is_some()).count(),
        locked: beamlines.iter().filter(|b| b.lock.is_some()).count(),
    }
}

#[cfg(test)]
mod tests;
