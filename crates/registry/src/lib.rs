//! The embedded, Consul-HTTP-API-compatible registry (`beamline-mesh registry`).
//!
//! It speaks the subset of Consul's HTTP API that agents, the mesh and common Consul clients use,
//! with Consul's semantics (blocking queries with per-result indexes, agent-run checks,
//! deregister-critical-after, KV) and durable state. It is not a general Consul: one node, one
//! datacenter, no raft, no sessions, no service mesh proxies.
//!
//! This module owns the `Registry` handle: the one lock around state and storage, and the commit
//! path every write takes (validate → persist → apply → wake watchers → start or stop checks).

pub mod catalog;
pub mod checks;
pub mod config;
pub mod decode;
pub mod error;
pub mod filter;
pub mod http;
pub mod kv;
pub mod logs;
pub mod model;
pub mod persist;
pub mod render;
pub mod server;
pub mod state;
pub mod watch;

/// The descriptor limit, shared with the gateway and the agents (`beamline-listen`).
pub use beamline_listen::rlimit;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::task::AbortHandle;

pub use config::{Node, RegistryConfig};
pub use error::RegistryError;

use model::Check;
use persist::{Op, Persist};
use state::{Change, State};
use watch::Watchers;

pub struct Registry {
    config: RegistryConfig,
    node: Node,
    state: RwLock<State>,
    /// Written under the state's write lock, so storage order is index order.
    persist: Option<Mutex<Persist>>,
    /// Rendered answers of blocking reads, shared by the watchers one change wakes together.
    answers: http::AnswerCache,
    watchers: Watchers,
    runners: Mutex<HashMap<String, AbortHandle>>,
    /// Rate limits of the lines about check status changes (per check) and refused requests
    /// (per status and route), so a flapping check or a looping client cannot flood the log.
    check_logs: Mutex<logs::LogLimiter>,
    request_logs: Mutex<logs::LogLimiter>,
    this: Weak<Registry>,
}

/// At most one line per check per period about its status changes (with a count of the rest).
const CHECK_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// At most one line per status and route per period about refused requests.
const REQUEST_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Registry {
    /// Opens (and with a data dir, restores) a registry. `node_ip` is the address clients reach
    /// this node at. Call inside a Tokio runtime: restored checks start running at once.
    pub fn open(config: RegistryConfig, node_ip: IpAddr) -> Result<Arc<Registry>, RegistryError> {
        let (state, persist) = match &config.data_dir {
            None => (
                State::restore(Instant::now(), 1, vec![], vec![], vec![]),
                None,
            ),
            Some(dir) => {
                let persist = Persist::open(dir)?;
                let snap = persist.load()?;
                let checks = snap.checks.into_iter().map(checks::restored).collect();
                let state =
                    State::restore(Instant::now(), snap.index, snap.services, checks, snap.kv);
                (state, Some(persist))
            }
        };
        let node_ip = if node_ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            node_ip
        };
        let node = Node {
            id: config::node_id(&config.node_name),
            name: config.node_name.clone(),
            address: node_ip.to_string(),
            datacenter: config.datacenter.clone(),
        };
        let answers = http::AnswerCache::new(config.answer_cache_bytes);
        let registry = Arc::new_cyclic(|this| Registry {
            config,
            node,
            state: RwLock::new(state),
            persist: persist.map(Mutex::new),
            answers,
            watchers: Watchers::default(),
            runners: Mutex::new(HashMap::new()),
            check_logs: Mutex::new(logs::LogLimiter::new(CHECK_LOG_EVERY)),
            request_logs: Mutex::new(logs::LogLimiter::new(REQUEST_LOG_EVERY)),
            this: this.clone(),
        });
        let restored: Vec<Check> = registry.state().checks.values().cloned().collect();
        for check in restored {
            registry.start_runner(&check);
        }
        Ok(registry)
    }

    /// Serves the HTTP API on `listener` within `limits` until the process ends, with the
    /// reaper alongside.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, limits: server::Limits) {
        self.serve_with(listener, limits, None).await
    }

    /// [`Registry::serve`], over HTTPS when `tls` is given.
    pub async fn serve_with(
        self: Arc<Self>,
        listener: TcpListener,
        limits: server::Limits,
        tls: Option<server::ServerTls>,
    ) {
        let reaper = tokio::spawn(checks::reap_forever(Arc::downgrade(&self)));
        let app = http::router(Arc::clone(&self));
        server::serve(self, listener, app, limits, tls).await;
        reaper.abort();
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn watchers(&self) -> &Watchers {
        &self.watchers
    }

    /// A read lock on the state. Keep it short: writers wait for it.
    pub fn state(&self) -> StateGuard<'_> {
        // A panic while holding the lock cannot leave a half-applied write: writes are applied
        // to memory only after storage accepted them, in `write`.
        StateGuard(self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn answers(&self) -> &http::AnswerCache {
        &self.answers
    }

    /// Check runner tasks alive: one per check that has a runner (TTL, HTTP, TCP, gRPC).
    pub fn check_runners(&self) -> usize {
        let runners = self.runners.lock().unwrap_or_else(|e| e.into_inner());
        runners.values().filter(|h| !h.is_finished()).count()
    }

    /// How much the answer cache holds (also in `/v1/agent/self` under `Stats.registry`).
    pub fn answer_cache_size(&self) -> http::AnswerCacheSize {
        self.answers.size()
    }

    /// Mutable state for runtime-only bookkeeping (check result counters), which is neither
    /// persisted nor indexed. Every other change goes through [`Registry::write`].
    pub(crate) fn state_for_counters(&self) -> StateGuardMut<'_> {
        StateGuardMut(self.lock())
    }

    fn lock(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, index: u64, ops: &[Op<'_>]) -> Result<(), RegistryError> {
        if let Some(persist) = &self.persist {
            persist
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .apply(index, ops)?;
        }
        Ok(())
    }

    /// Runs one write: `plan` reads the state and returns the changes (or an error, having
    /// changed nothing); they are persisted, applied at the next index and announced.
    pub fn write<R>(
        &self,
        plan: impl FnOnce(&State, u64) -> Result<(Vec<Change>, R), RegistryError>,
    ) -> Result<R, RegistryError> {
        let mut state = self.lock();
        let next = state.index + 1;
        let (changes, result) = plan(&state, next)?;
        if changes.is_empty() {
            return Ok(result);
        }
        self.persist(next, &ops(&changes))?;
        let (start, stop) = runner_changes(&state, &changes);
        let topics = state.apply(next, changes, Instant::now());
        // Under the lock, so runners change in index order: after the lock, a write that
        // removed a check could stop its runner before the write that added it started one,
        // leaving a runner for a check that no longer exists.
        for id in stop {
            self.stop_runner(&id);
        }
        for check in start {
            self.start_runner(&check);
        }
        drop(state);
        self.watchers.notify(topics, next);
        Ok(result)
    }

    /// Replaces a check's output (and TTL expiry) without a new index: Consul defers output-only
    /// updates, so they must not wake watchers.
    pub fn write_quietly(&self, check: Check, durable: bool) -> Result<(), RegistryError> {
        let mut state = self.lock();
        if !state.checks.contains_key(&check.def.id) {
            return Ok(());
        }
        if durable {
            self.persist(state.index, &[Op::PutCheck(&check)])?;
        }
        state.checks.insert(check.def.id.clone(), check);
        state.quiet_writes += 1;
        Ok(())
    }

    /// Whether a line about `subject` may be written now (see [`logs::LogLimiter::admit`]):
    /// `checks` picks the check-status limiter, otherwise the refused-request one.
    pub(crate) fn admit_log(&self, checks: bool, subject: &str) -> Option<u64> {
        let limiter = if checks {
            &self.check_logs
        } else {
            &self.request_logs
        };
        let mut limiter = limiter.lock().unwrap_or_else(|e| e.into_inner());
        limiter.admit(subject, Instant::now())
    }

    fn start_runner(&self, check: &Check) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let Some(task) = checks::runner(Arc::downgrade(&this), check) else {
            return;
        };
        let handle = tokio::spawn(task).abort_handle();
        let previous = self
            .runners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(check.def.id.clone(), handle);
        if let Some(previous) = previous {
            previous.abort();
        }
    }

    fn stop_runner(&self, id: &str) {
        let handle = self
            .runners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(handle) = handle {
            handle.abort();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for (_, handle) in self
            .runners
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            handle.abort();
        }
    }
}

/// A locked view of the state.
pub struct StateGuard<'a>(RwLockReadGuard<'a, State>);

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

pub(crate) struct StateGuardMut<'a>(RwLockWriteGuard<'a, State>);

impl std::ops::Deref for StateGuardMut<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl std::ops::DerefMut for StateGuardMut<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.0
    }
}

fn ops(changes: &[Change]) -> Vec<Op<'_>> {
    changes
        .iter()
        .map(|c| match c {
            Change::PutService(s) => Op::PutService(s),
            Change::DeleteService(id) => Op::DeleteService(id),
            Change::PutCheck(c) => Op::PutCheck(c),
            Change::DeleteCheck(id) => Op::DeleteCheck(id),
            Change::PutKv(e) => Op::PutKv(e),
            Change::DeleteKv(k) => Op::DeleteKv(k),
        })
        .collect()
}

/// Which check runners a write starts (new or redefined checks) and stops (removed checks).
fn runner_changes(state: &State, changes: &[Change]) -> (Vec<Check>, Vec<String>) {
    let mut start = Vec::new();
    let mut stop = Vec::new();
    for change in changes {
        match change {
            Change::PutCheck(c) => {
                let redefined = state
                    .checks
                    .get(&c.def.id)
                    .is_none_or(|old| old.def != c.def);
                if redefined {
                    start.push(c.clone());
                }
            }
            Change::DeleteCheck(id) => stop.push(id.clone()),
            _ => {}
        }
    }
    (start, stop)
}

/// Binds, opens the registry and returns it with the bound address; the caller serves it.
pub async fn bind(
    config: RegistryConfig,
    listen: SocketAddr,
) -> Result<(Arc<Registry>, TcpListener, SocketAddr), RegistryError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| RegistryError::Internal(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RegistryError::Internal(format!("cannot read bound address: {e}")))?;
    let registry = Registry::open(config, addr.ip())?;
    Ok((registry, listener, addr))
}
