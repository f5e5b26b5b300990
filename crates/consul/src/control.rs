//! Following the facility's control state (halts and locks, `beamline_contract::control`) in
//! Consul KV: one blocking query on `wire::kv::PREFIX`, published as a [`ControlView`] that the
//! gateway and every agent read before actuating work.
//!
//! [`Follow`] decides (I/O-free, quinn-proto's shape: told each answer or failure, it says what
//! index to ask with, whether to publish, how long to pause); [`spawn`] is the thin loop on
//! `tokio::time`. Fail closed: until the first answer and from the first failure until the next
//! answer the view is unreadable, and actuating work is refused; reads never consult it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::backoff::{jitter, Backoff};
use super::{ConsulClient, ConsulError};
use beamline_contract::control::{ControlState, Record, Refusal};
use beamline_contract::wire::kv;

/// Why an answer Consul filtered by ACLs cannot be trusted.
const FILTERED: &str = "Consul hid keys under beamline-mesh/ from this token \
    (X-Consul-Results-Filtered-By-ACLs): it needs key_prefix \"beamline-mesh/\" read \
    (check CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE)";

/// The control state as last read, and whether it can be trusted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlView {
    /// The last state read (empty before the first answer).
    pub state: ControlState,
    /// Why the state cannot be read now, if it cannot: actuating work is refused.
    pub unreadable: Option<String>,
    /// The KV index of the last answer (0 before the first).
    pub index: u64,
}

impl ControlView {
    /// The view before Consul has answered.
    pub fn starting() -> ControlView {
        ControlView {
            state: ControlState::default(),
            unreadable: Some("Consul has not answered yet".to_string()),
            index: 0,
        }
    }

    /// Why an actuating call by `caller` on `beamline` may not go on at `now`: a known halt
    /// or lock first (it says more), then an unreadable state.
    pub fn refusal(
        &self,
        beamline: &str,
        caller: Option<&str>,
        now: SystemTime,
    ) -> Option<Refusal> {
        if let Some(refusal) = self.state.refusal(beamline, caller, now) {
            return Some(refusal);
        }
        self.unreadable.as_ref().map(|reason| Refusal::Unreadable {
            reason: reason.clone(),
        })
    }
}

/// How the follower asks.
#[derive(Debug, Clone)]
pub struct FollowSettings {
    /// `?wait=` of the blocking query. It bounds how long a silently dead connection to Consul
    /// (a peer gone without a reset: a crashed host, a dropped NAT entry) can hide a halt: the
    /// view stays readable, and stale, until the query's timeout (this wait plus Consul's jitter
    /// and the client timeout) ends it. 30 s by default, not Consul's 5 min; the client's TCP
    /// keepalive (`ConsulClient::new`) usually notices sooner.
    pub wait: Duration,
    /// Pauses after failures: short, since actuating work is refused meanwhile.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for FollowSettings {
    fn default() -> Self {
        FollowSettings {
            wait: Duration::from_secs(30),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// The follower's decisions, without I/O.
#[derive(Debug)]
pub struct Follow {
    index: u64,
    backoff: Backoff,
    failing: bool,
    /// The index of the last answer, as Consul sent it (None before the first).
    last: Option<u64>,
}

/// What an answer asks of the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// Publish the new state (it changed, or it is readable again).
    Publish,
    /// Nothing changed: ask again.
    Unchanged,
}

impl Follow {
    pub fn new(settings: &FollowSettings) -> Follow {
        Follow {
            index: 0,
            backoff: Backoff::new(settings.min_backoff, settings.max_backoff),
            failing: false,
            last: None,
        }
    }

    /// The `?index=` of the next query (0: answer at once).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Consul answered with `index`. Consul's client rules: an index that went backwards (a
    /// restored or restarted server) starts again from 0, and 0 is never sent to block on.
    pub fn on_answer(&mut self, index: u64) -> Answered {
        self.backoff.reset();
        let was_failing = std::mem::replace(&mut self.failing, false);
        let last = self.last.replace(index);
        self.index = if index < self.index { 0 } else { index.max(1) };
        if was_failing || last != Some(index) {
            Answered::Publish
        } else {
            Answered::Unchanged
        }
    }

    /// The query failed: whether this starts an outage (publish the unreadable view with the
    /// cause, log once; the first failure before any answer too), and the pause before asking
    /// again (from index 0: anything may have changed).
    pub fn on_error(&mut self, jitter: f64) -> (bool, Duration) {
        let started = !std::mem::replace(&mut self.failing, true);
        self.index = 0;
        (started, self.backoff.next(jitter))
    }
}

/// The running follower; stops when dropped.
pub struct ControlWatch {
    view: watch::Receiver<Arc<ControlView>>,
    task: tokio::task::JoinHandle<()>,
}

impl ControlWatch {
    /// The view now and its changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ControlView>> {
        self.view.clone()
    }

    /// The view now.
    pub fn view(&self) -> Arc<ControlView> {
        self.view.borrow().clone()
    }
}

impl Drop for ControlWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts following the control state in the Consul `client` talks to (call inside a Tokio
/// runtime).
pub fn spawn(client: ConsulClient, settings: FollowSettings) -> ControlWatch {
    let (tx, view) = watch::channel(Arc::new(ControlView::starting()));
    let task = tokio::spawn(follow(client, settings, tx));
    ControlWatch { view, task }
}

async fn follow(
    client: ConsulClient,
    settings: FollowSettings,
    tx: watch::Sender<Arc<ControlView>>,
) {
    let mut machine = Follow::new(&settings);
    loop {
        match client
            .kv_list(kv::PREFIX, machine.index(), settings.wait)
            .await
        {
            Ok(answer) => {
                if machine.on_answer(answer.index) == Answered::Publish {
                    // Real Consul answers a token that may not read the prefix with the keys it
                    // may read (none) and this flag, not a 403: that is not "nothing halted".
                    let unreadable = answer.filtered_by_acls.then(|| FILTERED.to_string());
                    let was = tx.borrow().unreadable.clone();
                    match (&was, &unreadable) {
                        (_, Some(why)) if was.as_ref() != Some(why) => {
                            tracing::warn!("control state (halts, locks) unreadable: {why}; actuating work is refused")
                        }
                        (Some(_), None) => tracing::info!("control state (halts, locks) read"),
                        _ => {}
                    }
                    let state = ControlState::from_records(answer.value.iter().map(|e| Record {
                        key: &e.key,
                        value: &e.value,
                        modify_index: e.modify_index,
                    }));
                    tx.send_replace(Arc::new(ControlView {
                        state,
                        unreadable,
                        index: answer.index,
                    }));
                }
            }
            Err(error) => {
                let (started, pause) = machine.on_error(jitter());
                if started {
                    tracing::warn!(%error, "control state (halts, locks) unreadable: actuating work is refused until it is read again");
                    publish_unreadable(&tx, &error);
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(pause).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

fn publish_unreadable(tx: &watch::Sender<Arc<ControlView>>, error: &ConsulError) {
    tx.send_modify(|view| {
        let mut next = ControlView::clone(view);
        next.unreadable = Some(error.to_string());
        *view = Arc::new(next);
    });
}

#[cfg(test)]
mod tests;
