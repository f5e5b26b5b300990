//! Health checks the registry runs itself, like a Consul agent: TTL timers, HTTP/TCP/gRPC probes
//! on their interval (the first run staggered by a random delay up to the interval), Consul's
//! SuccessBeforePassing / FailuresBeforeWarning / FailuresBeforeCritical thresholds, and the
//! reaper that deregisters services critical for longer than DeregisterCriticalServiceAfter.
//!
//! Owns scheduling and thresholds; the network side of a probe is `probe`, and every state
//! change goes through the registry's write path.

pub mod probe;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use tracing::{debug, warn};

use super::catalog::unix_ms;
use super::logs::chain;
use super::model::{Check, CheckKind, CheckStatus};
use super::Registry;
use probe::ProbeResult;

/// Consul's output for an expired TTL check.
pub const TTL_EXPIRED: &str = "TTL expired";

/// How often the reaper looks; Consul's is 30 s, ours is finer so that values from 1 s work.
const REAP_EVERY: Duration = Duration::from_secs(1);

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A check as it comes back from storage: TTL checks keep their state until their TTL runs out;
/// every other check starts over from its initial status and runs again, as in Consul.
pub fn restored(mut check: Check) -> Check {
    match check.def.kind {
        Some(CheckKind::Ttl { .. }) => {
            let expired = check
                .ttl_expires_unix_ms
                .is_none_or(|at| at <= unix_ms(SystemTime::now()));
            if expired {
                check.status = CheckStatus::Critical;
                check.output = TTL_EXPIRED.to_string();
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
        CheckKind::Ttl { ttl } => Some(Box::pin(watch_ttl(registry, id, ttl))),
        kind => Some(Box::pin(probe_forever(registry, check.clone(), kind))),
    }
}

async fn watch_ttl(registry: Weak<Registry>, id: String, ttl: Duration) {
    loop {
        let expires = {
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let state = registry.state();
            let Some(check) = state.checks.get(&id) else {
                return;
            };
            check.ttl_expires_unix_ms.unwrap_or(0)
        };
        let now = unix_ms(SystemTime::now());
        if expires > now {
            tokio::time::sleep(Duration::from_millis(expires - now)).await;
            continue;
        }
        expire(&registry, &id);
        // Every report moves the expiry to report time + ttl, so waking after one ttl is never
        // later than the next expiry.
        tokio::time::sleep(ttl).await;
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
        let still_expired = check
            .ttl_expires_unix_ms
            .is_none_or(|at| at <= unix_ms(SystemTime::now()));
        if !still_expired || (check.status == CheckStatus::Critical && check.output == TTL_EXPIRED)
        {
            return;
        }
        let mut updated = check.clone();
        updated.status = CheckStatus::Critical;
        updated.output = TTL_EXPIRED.to_string();
        updated
    };
    if let Err(e) = registry.set_check_state(updated, true) {
        warn!(check = id, error = %chain(&e), "cannot record TTL expiry");
    }
}

async fn probe_forever(registry: Weak<Registry>, check: Check, kind: CheckKind) {
    let interval = kind.interval().unwrap_or(Duration::from_secs(10));
    let stagger = rand::rng().random_range(Duration::ZERO..=interval);
    tokio::time::sleep(stagger).await;
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
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

/// Applies one probe result through Consul's thresholds; false when `check` is no longer the
/// registered definition (its runner should end).
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
        let runtime = state.runtime.entry(id.clone()).or_default();
        let def = &current.def;
        let status = if result.status == CheckStatus::Critical {
            runtime.failures = runtime.failures.saturating_add(1);
            runtime.successes = 0;
            if runtime.failures >= def.failures_before_critical {
                Some(CheckStatus::Critical)
            } else if def.failures_before_warning > 0
                && runtime.failures >= def.failures_before_warning
            {
                Some(CheckStatus::Warning)
            } else {
                None
            }
        } else {
            runtime.successes = runtime.successes.saturating_add(1);
            runtime.failures = 0;
            (runtime.successes >= def.success_before_passing).then_some(result.status)
        };
        let Some(status) = status else {
            debug!(check = %id, "result below its threshold; status kept");
            return true;
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

/// Deregisters services whose check has been critical for longer than its
/// DeregisterCriticalServiceAfter, until the registry is dropped.
pub async fn reap_forever(registry: Weak<Registry>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        for service_id in due_for_reaping(&registry) {
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

fn due_for_reaping(registry: &Registry) -> Vec<String> {
    let state = registry.state();
    let now = Instant::now();
    let mut due: Vec<String> = state
        .checks
        .values()
        .filter(|c| !c.def.service_id.is_empty())
        .filter_map(|c| {
            let after = c.def.deregister_critical_after?;
            let since = state.runtime.get(&c.def.id)?.critical_since?;
            (c.status == CheckStatus::Critical && now.duration_since(since) >= after)
                .then(|| c.def.service_id.clone())
        })
        .collect();
    due.sort();
    due.dedup();
    due
}
