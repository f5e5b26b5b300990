//! Health checks the registry runs itself, like a Consul agent: TTL timers, HTTP/TCP/gRPC probes
//! on their interval (the first run staggered by a random delay up to the interval), Consul's
//! SuccessBeforePassing / FailuresBeforeWarning / FailuresBeforeCritical thresholds, and the
//! reaper that deregisters services critical for longer than DeregisterCriticalServiceAfter.
//!
//! Every time-driven decision is an I/O-free state machine in its own module, given `now`:
//! `ttl` (expiry), `thresholds` (result counting), `schedule` (when a probe runs) and `reaper`
//! (which services are due). This module owns only the thin async loops that drive them: read
//! the clock, sleep, probe, and commit what the machine decided through the registry's write
//! path. The network side of a probe is `probe`.

pub mod probe;
pub mod reaper;
pub mod schedule;
pub mod thresholds;
pub mod ttl;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tracing::{debug, warn};

use super::catalog::unix_ms;
use super::logs::chain;
use super::model::{Check, CheckKind};
use super::Registry;
use probe::ProbeResult;
use schedule::Schedule;
use thresholds::{Limits, Transition};
use ttl::{TtlClock, TtlStep};

pub use reaper::Reaper;
pub use thresholds::Thresholds;
pub use ttl::TTL_EXPIRED;

/// How often the reaper looks; Consul's is 30 s, ours is finer so that values from 1 s work.
const REAP_EVERY: Duration = Duration::from_secs(1);

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A check as it comes back from storage: TTL checks keep their state until their TTL runs out;
/// every other check starts over from its initial status and runs again, as in Consul.
pub fn restored(mut check: Check) -> Check {
    match check.def.kind {
        Some(CheckKind::Ttl { .. }) => {
            if let Some(expired) = ttl::expired(unix_ms(SystemTime::now()), &check) {
                check = expired;
            }
        }
        Some(_) => {
            check.status = check.def.initial_status;
            check.output = String::new();
        }
        None => {}
    }
    check
}

/// The task that keeps `check` up to date, if it needs one (maintenance checks do not).
pub fn runner(registry: Weak<Registry>, check: &Check) -> Option<Task> {
    let id = check.def.id.clone();
    match check.def.kind.clone()? {
        CheckKind::Ttl { ttl } => Some(Box::pin(watch_ttl(registry, id, TtlClock::new(ttl)))),
        kind => Some(Box::pin(probe_forever(registry, check.clone(), kind))),
    }
}

/// Drives a TTL check's [`TtlClock`] on the wall clock (its expiry is persisted as wall time).
async fn watch_ttl(registry: Weak<Registry>, id: String, clock: TtlClock) {
    loop {
        let expires = {
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let state = registry.state();
            let Some(check) = state.checks.get(&id) else {
                return;
            };
            check.ttl_expires_unix_ms
        };
        let now = unix_ms(SystemTime::now());
        let wake_at = match clock.poll(now, expires) {
            TtlStep::WaitUntil(at) => at,
            TtlStep::Expire { look_again_at } => {
                expire(&registry, &id);
                look_again_at
            }
        };
        tokio::time::sleep(Duration::from_millis(wake_at.saturating_sub(now))).await;
    }
}

fn expire(registry: &Weak<Registry>, id: &str) {
    let Some(registry) = registry.upgrade() else {
        return;
    };
    let updated = {
        let state = registry.state();
        let Some(check) = state.checks.get(id) else {
            return;
        };
        // Looked at again under the lock: a report may have come in since the poll.
        match ttl::expired(unix_ms(SystemTime::now()), check) {
            Some(updated) => updated,
            None => return,
        }
    };
    if let Err(e) = registry.set_check_state(updated, true) {
        warn!(check = id, error = %chain(&e), "cannot record TTL expiry");
    }
}

/// Drives a probed check's [`Schedule`] on Tokio's clock, feeding each result to [`record`].
async fn probe_forever(registry: Weak<Registry>, check: Check, kind: CheckKind) {
    use tokio::time::{sleep_until, Instant};

    let schedule = Schedule::new(kind.interval());
    let stagger = rand::rng().random_range(Duration::ZERO..=schedule.max_stagger());
    sleep_until(schedule.first_run(Instant::now(), stagger)).await;
    let timeout = check.def.timeout;
    // Held while the runner lives (an aborted runner drops it): the target's connection stays
    // open between runs and closes with the last check on that target.
    let _connection = match &kind {
        CheckKind::Grpc { probe: p, .. } => Some(probe::GrpcLease::new(p)),
        _ => None,
    };
    loop {
        let started = Instant::now();
        let result = match &kind {
            CheckKind::Http { probe: p, .. } => probe::http(p, timeout).await,
            CheckKind::Tcp { addr, .. } => probe::tcp(addr, timeout).await,
            CheckKind::Grpc { probe: p, .. } => probe::grpc(p, timeout).await,
            CheckKind::Ttl { .. } => return,
        };
        {
            let Some(registry) = registry.upgrade() else {
                return;
            };
            // A check removed or redefined has (or will have) another runner, or none.
            if !record(&registry, &check, result) {
                return;
            }
        }
        sleep_until(schedule.next_run(started, Instant::now())).await;
    }
}

/// Applies one probe result through the check's [`Thresholds`]; false when `check` is no
/// longer the registered definition (its runner should end).
fn record(registry: &Arc<Registry>, check: &Check, result: ProbeResult) -> bool {
    let id = &check.def.id;
    let updated = {
        let mut state = registry.state_for_counters();
        let Some(current) = state.checks.get(id).cloned() else {
            return false;
        };
        if current.def != check.def {
            return false;
        }
        let thresholds = state.thresholds.entry(id.clone()).or_default();
        let status = match thresholds.on_result(Limits::of(&current.def), result.status) {
            Transition::Become(status) => status,
            Transition::Hold => {
                debug!(check = %id, "result below its threshold; status kept");
                return true;
            }
        };
        if current.status == status && current.output == result.output {
            return true;
        }
        let mut updated = current;
        updated.status = status;
        updated.output = result.output;
        updated
    };
    if updated.status != check.status {
        debug!(check = %id, status = updated.status.as_str(), "check result");
    }
    // Probe outputs are not worth a disk write: probes re-run after a restart.
    if let Err(e) = registry.set_check_state(updated, false) {
        if let Some(held_back) = registry.admit_log(true, &format!("record {id}")) {
            warn!(check = %id, error = %chain(&e), held_back, "cannot record check result");
        }
    }
    true
}

/// Drives the state's [`Reaper`]: deregisters the services it finds due, until the registry is
/// dropped.
pub async fn reap_forever(registry: Weak<Registry>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let due = registry.state().reaper.poll(std::time::Instant::now());
        for service_id in due {
            match registry.deregister_service(&service_id) {
                Ok(()) => warn!(
                    service = %service_id,
                    "deregistered: a check was critical for longer than its DeregisterCriticalServiceAfter"
                ),
                Err(super::RegistryError::NotFound(_)) => {}
                Err(e) => warn!(service = %service_id, error = %chain(&e), "cannot reap service"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
