//! The loop that drives the catalog machine ([`super::state::CatalogState`]): it feeds it
//! discovery's fleet, the control state, Describe answers and the time of the next lock expiry
//! or retry, makes the Describes it asks for (a few at once, each bounded by a timeout), and
//! publishes the view and changes it hands out.
//!
//! Owns the I/O, the timers and the task; every decision is the machine's.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use beamline_consul::control::ControlView;
use beamline_contract::proto::{AgentCard, DescribeRequest};
use beamline_mesh_client::discovery::Fleet;
use beamline_mesh_client::Mesh;

use super::state::{CatalogState, Describe};
use super::view::Published;

/// The longest the loop sleeps for a lock's expiry before looking again.
const MAX_SLEEP: Duration = Duration::from_secs(24 * 3600);

/// How the learner describes.
#[derive(Debug, Clone)]
pub struct LearnSettings {
    /// Describes in flight at once, at most (a registry restart brings every beamline back).
    pub concurrent: usize,
    /// One Describe's bound.
    pub timeout: Duration,
}

impl Default for LearnSettings {
    fn default() -> Self {
        LearnSettings {
            concurrent: 4,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What the loop follows.
pub struct Inputs {
    pub mesh: Mesh,
    pub fleet: watch::Receiver<Arc<Fleet>>,
    pub control: watch::Receiver<Arc<ControlView>>,
}

/// Runs until discovery or the control watch goes away.
pub async fn run(
    inputs: Inputs,
    mut state: CatalogState,
    published: Arc<Published>,
    settings: LearnSettings,
) {
    let Inputs {
        mesh,
        mut fleet,
        mut control,
    } = inputs;
    let fleet_now = fleet.borrow_and_update().clone();
    state.on_fleet(&fleet_now, SystemTime::now());
    let mut describing = FuturesUnordered::new();
    loop {
        while describing.len() < settings.concurrent {
            let Some(describe) = state.next_describe(Instant::now()) else {
                break;
            };
            describing.push(describe_one(&mesh, describe, settings.timeout));
        }
        if let Some(view) = state.take_view() {
            published.publish(view, state.take_changes());
        }
        // A retry that is due but finds every slot taken waits for a Describe to end instead.
        let wake = next_wake(&state, describing.len() < settings.concurrent);
        tokio::select! {
            changed = fleet.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = fleet.borrow_and_update().clone();
                state.on_fleet(&next, SystemTime::now());
            }
            changed = control.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = control.borrow_and_update().clone();
                state.on_control(next, SystemTime::now());
            }
            Some((describe, answer)) = describing.next(), if !describing.is_empty() => {
                let jitter = beamline_consul::backoff::jitter();
                state.on_described(&describe, answer, Instant::now(), jitter);
            }
            () = sleep_until(wake), if wake.is_some() => {
                state.on_time(SystemTime::now());
            }
        }
    }
}

/// The earlier of the next lock expiry and (when a Describe could start) the next retry, as a
/// monotonic instant.
fn next_wake(state: &CatalogState, can_describe: bool) -> Option<Instant> {
    let wall = SystemTime::now();
    // Past the expiry, never at it: a lock holds while `now < expires`. A day at most: an
    // unreadable lock record never expires, and the wake costs nothing.
    let expiry = state.next_expiry(wall).map(|at| {
        let left = at.duration_since(wall).unwrap_or_default();
        Instant::now() + left.min(MAX_SLEEP) + Duration::from_millis(1)
    });
    let retry = state.next_retry().filter(|_| can_describe);
    match (expiry, retry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until(wake: Option<Instant>) {
    if let Some(at) = wake {
        tokio::time::sleep_until(at).await;
    }
}

/// One Describe through the mesh. It goes through the beamline's route, so it creates one (with
/// its connections and health watches) if no caller has yet; that is accepted: the route goes
/// again once idle, and a card is learnt only on a beamline's first appearance and on a change.
async fn describe_one(
    mesh: &Mesh,
    describe: Describe,
    timeout: Duration,
) -> (Describe, Result<AgentCard, String>) {
    let answer = async {
        let mut client = mesh
            .agent(&describe.beamline)
            .map_err(|status| format!("Describe failed: {status}"))?;
        match tokio::time::timeout(timeout, client.describe(DescribeRequest {})).await {
            Ok(Ok(card)) => Ok(card.into_inner()),
            Ok(Err(status)) => Err(format!(
                "Describe failed: {:?}: {}",
                status.code(),
                status.message()
            )),
            Err(_) => Err(format!("Describe failed: no answer within {timeout:?}")),
        }
    }
    .await;
    (describe, answer)
}
