//! Drops routes nobody needs, once a second: a route costs a balancer, connections and health
//! watches. Which routes go is [`keeps`], a plain function of what the route is doing; the loop
//! only reads those facts and removes what it says.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Inner;

/// What decides whether a route stays.
#[derive(Debug, Clone, Copy)]
pub(super) struct RouteState {
    /// A call holds the route now.
    pub in_flight: bool,
    /// Its beamline is in the fleet (or the fleet is not known yet).
    pub registered: bool,
    /// Since its last call.
    pub idle_for: Duration,
    /// Instances that left discovery are still followed for their tasks (draining).
    pub follows_departed: bool,
}

/// Whether a route in `state` stays: a call in flight holds it; a registered beamline's route
/// stays until it has been idle for `idle`; a beamline gone from Consul keeps its route only
/// while a draining instance is followed for its tasks.
pub(super) fn keeps(state: RouteState, idle: Duration) -> bool {
    if state.in_flight {
        return true;
    }
    if state.registered {
        state.idle_for < idle
    } else {
        state.follows_departed
    }
}

pub(super) async fn sweep(inner: Weak<Inner>, idle: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let fleet = inner.discovery.fleet();
        let mut routes = inner.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.retain(|beamline, route| {
            let state = RouteState {
                in_flight: Arc::strong_count(route) > 1,
                registered: !fleet.resolved || fleet.beamlines.contains_key(beamline),
                idle_for: route.idle_for(),
                follows_departed: route.follows_departed(),
            };
            let keep = keeps(state, idle);
            if !keep {
                tracing::debug!(%beamline, registered = state.registered, "dropping the route");
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests;
