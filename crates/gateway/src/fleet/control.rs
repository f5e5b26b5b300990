//! The gateway's side of the control state in Consul KV: the fail-closed view every actuating
//! call is checked against (`beamline_consul::control`), and the writes behind Halt, Resume,
//! Lock and Unlock.
//!
//! Owns the order of each write (check the request, authorize, read, decide, write, wait until
//! the gateway's own view shows it) and the mapping of KV failures to gRPC statuses; who may
//! do what is `rules`', the check-and-set decisions `plan`'s, the values' shape and the refusal
//! rule `beamline_contract::control`'s.
//!
//! Semantics worth knowing:
//! - Halting a halted beamline replaces who, why and when (the latest halt is the one people
//!   need to read); resuming one that is not halted answers `halted: false` and writes nothing.
//! - A well-formed beamline discovery does not know is NOT_FOUND for Halt and Lock; Resume and
//!   Unlock of it still remove a record that is there (a beamline that left Consul must not
//!   stay halted for good when it comes back).
//! - Every write returns only once the gateway's control view has read it (bounded by
//!   [`CATCH_UP`]), so the next actuating Execute through this gateway already meets the halt.
//! - Consul unreachable: UNAVAILABLE with the cause; a write that failed changed nothing.

mod plan;
mod rules;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tonic::Status;

use beamline_consul::control::{ControlView, ControlWatch, FollowSettings};
use beamline_consul::{ConsulClient, ConsulConfig, ConsulError, KvEntry};
use beamline_contract::beamline::BeamlineId;
use beamline_contract::control::{ControlState, Halt, HeldLock, Lock, Record};
use beamline_contract::proto::{
    HaltRequest, HaltState, LockRequest, LockState, ResumeRequest, UnlockRequest,
};
use beamline_contract::wire::kv;
use beamline_mesh_client::Mesh;

use crate::caller::Caller;
use plan::{held_by_another, plan_lock, plan_unlock, LockPlan, UnlockPlan};
use rules::{actor, authorize, Act, Scope};

/// How long a write waits for the gateway's own view to show it before answering anyway.
pub const CATCH_UP: Duration = Duration::from_secs(2);

/// The control state as the gateway follows and writes it.
pub struct Control {
    client: ConsulClient,
    watch: ControlWatch,
    /// Discovery, for NOT_FOUND on beamlines Consul does not know.
    mesh: Mesh,
}

impl Control {
    /// Starts following the control state (call inside a Tokio runtime).
    pub fn start(consul: ConsulConfig, mesh: Mesh) -> Control {
        let client = ConsulClient::new(consul);
        let watch = beamline_consul::control::spawn(client.clone(), FollowSettings::default());
        Control {
            client,
            watch,
            mesh,
        }
    }

    /// The view now.
    pub fn view(&self) -> Arc<ControlView> {
        self.watch.view()
    }

    /// The view now and its changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ControlView>> {
        self.watch.subscribe()
    }

    /// Halts one beamline or all of them (replacing any halt there); answers the halt stored.
    pub async fn halt(
        &self,
        caller: Option<&Caller>,
        request: HaltRequest,
    ) -> Result<HaltState, Status> {
        let scope = rules::scope(&request.beamline, request.all)?;
        rules::text("reason", &request.reason)?;
        authorize(caller, Act::Halt, &scope)?;
        if let Scope::Beamline(id) = &scope {
            self.known(id)?;
        }
        let halt = Halt {
            by: actor(caller).to_string(),
            reason: request.reason,
            since: to_the_second(SystemTime::now()),
        };
        let key = halt_key(&scope);
        self.client
            .kv_put(&key, &halt.to_json(), None)
            .await
            .map_err(|e| unavailable(&format!("halt {scope}"), &e))?;
        self.caught_up().await;
        tracing::info!(by = %halt.by, %scope, reason = %halt.reason, "halted");
        Ok(halt.to_proto(scope == Scope::All))
    }

    /// Resumes one beamline or all of them. Answers the halt that still applies to the
    /// beamline (the fleet-wide one) or `halted: false`.
    pub async fn resume(
        &self,
        caller: Option<&Caller>,
        request: ResumeRequest,
    ) -> Result<HaltState, Status> {
        let scope = rules::scope(&request.beamline, request.all)?;
        authorize(caller, Act::Resume, &scope)?;
        let key = halt_key(&scope);
        let what = format!("resume {scope}");
        let entry = self.read(&key, &what).await?;
        match (&entry, &scope) {
            (None, Scope::Beamline(id)) => self.known(id)?,
            (None, Scope::All) => {}
            (Some(_), _) => {
                self.client
                    .kv_delete(&key, None)
                    .await
                    .map_err(|e| unavailable(&what, &e))?;
                self.caught_up().await;
                tracing::info!(by = actor(caller), %scope, "resumed");
            }
        }
        let still = match &scope {
            Scope::Beamline(_) => self.view().state.all.clone(),
            Scope::All => None,
        };
        Ok(still.map_or_else(
            || HaltState {
                all: scope == Scope::All,
                ..HaltState::default()
            },
            |all| all.to_proto(true),
        ))
    }

    /// Locks a beamline for the caller (or renews its own lock); answers the lock stored.
    pub async fn lock(
        &self,
        caller: Option<&Caller>,
        request: LockRequest,
    ) -> Result<LockState, Status> {
        let id = rules::beamline_id(&request.beamline)?;
        rules::text("note", &request.note)?;
        let duration = rules::lock_duration(request.duration)?;
        authorize(caller, Act::Lock, &Scope::Beamline(id.clone()))?;
        self.known(&id)?;
        let key = kv::lock_key(&id);
        let what = format!("lock beamline {id}");
        let holder = actor(caller);
        let held = self.read_lock(&id, &key, &what).await?;
        let now = to_the_second(SystemTime::now());
        let plan = plan_lock(&id, holder, held.as_ref(), now)?;
        let lock = Lock {
            holder: holder.to_string(),
            note: request.note,
            since: plan.since(now),
            expires: now + duration,
        };
        let written = self
            .client
            .kv_put(&key, &lock.to_json(), Some(plan.cas()))
            .await
            .map_err(|e| unavailable(&what, &e))?;
        if !written {
            return Err(self.lost_race(&id, holder, &key, &what).await);
        }
        self.caught_up().await;
        match &plan {
            LockPlan::TakeOver { expired, .. } => tracing::info!(
                by = holder, beamline = %id, note = %lock.note, until = %rfc3339(lock.expires),
                expired_holder = %expired.holder, "locked (an expired lock taken over)"
            ),
            LockPlan::Renew { .. } => tracing::info!(
                by = holder, beamline = %id, note = %lock.note, until = %rfc3339(lock.expires),
                "lock renewed"
            ),
            LockPlan::Create => tracing::info!(
                by = holder, beamline = %id, note = %lock.note, until = %rfc3339(lock.expires),
                "locked"
            ),
        }
        Ok(lock.to_proto())
    }

    /// Unlocks a beamline: the holder releases, `safety` breaks. Answers `locked: false` with
    /// what the removed lock was (nothing when none held).
    pub async fn unlock(
        &self,
        caller: Option<&Caller>,
        request: UnlockRequest,
    ) -> Result<LockState, Status> {
        let id = rules::beamline_id(&request.beamline)?;
        let key = kv::lock_key(&id);
        let what = format!("unlock beamline {id}");
        let held = self.read_lock(&id, &key, &what).await?;
        let plan = plan_unlock(&id, caller, held.as_ref(), SystemTime::now())?;
        let (modify_index, lock, broken) = match plan {
            UnlockPlan::Free => {
                if held.is_none() {
                    self.known(&id)?;
                }
                return Ok(LockState::default());
            }
            UnlockPlan::Release { modify_index, lock } => (modify_index, lock, false),
            UnlockPlan::Break { modify_index, lock } => (modify_index, lock, true),
        };
        let deleted = self
            .client
            .kv_delete(&key, Some(modify_index))
            .await
            .map_err(|e| unavailable(&what, &e))?;
        if !deleted {
            let now = self.read_lock(&id, &key, &what).await?;
            let holder =
                now.map_or_else(|| "nobody".to_string(), |h| format!("{:?}", h.lock.holder));
            return Err(Status::failed_precondition(format!(
                "the lock on beamline {id} changed while it was being unlocked (now held by \
                 {holder}); look again and retry"
            )));
        }
        self.caught_up().await;
        let by = actor(caller);
        if broken {
            tracing::info!(by, beamline = %id, holder = %lock.holder, note = %lock.note, "lock broken");
        } else {
            tracing::info!(by, beamline = %id, note = %lock.note, "unlocked");
        }
        Ok(LockState {
            locked: false,
            ..lock.to_proto()
        })
    }

    /// NOT_FOUND unless discovery knows `id` (before discovery has answered, every id might be).
    fn known(&self, id: &BeamlineId) -> Result<(), Status> {
        if self.mesh.is_known(id.as_str()) {
            return Ok(());
        }
        Err(Status::not_found(format!(
            "beamline {id} is not registered in Consul"
        )))
    }

    async fn read(&self, key: &str, what: &str) -> Result<Option<KvEntry>, Status> {
        self.client
            .kv_get(key)
            .await
            .map_err(|e| unavailable(what, &e))
    }

    /// The lock record of `id` with its ModifyIndex, read as the watch reads it (an unreadable
    /// value fails closed: a lock nobody holds that never expires).
    async fn read_lock(
        &self,
        id: &BeamlineId,
        key: &str,
        what: &str,
    ) -> Result<Option<HeldLock>, Status> {
        let Some(entry) = self.read(key, what).await? else {
            return Ok(None);
        };
        let record = Record {
            key: &entry.key,
            value: &entry.value,
            modify_index: entry.modify_index,
        };
        Ok(ControlState::from_records([record])
            .locks
            .remove(id.as_str()))
    }

    /// The FAILED_PRECONDITION of a check-and-set by `holder` that lost: who won, as read now.
    async fn lost_race(&self, id: &BeamlineId, holder: &str, key: &str, what: &str) -> Status {
        match self.read_lock(id, key, what).await {
            Ok(Some(held)) if held.lock.holder != holder => {
                let status = held_by_another(id, &held.lock);
                Status::failed_precondition(format!(
                    "another caller locked beamline {id} first: {}",
                    status.message()
                ))
            }
            Ok(_) => Status::failed_precondition(format!(
                "the lock on beamline {id} changed while it was being taken (by another request \
                 of the same caller, or released meanwhile); retry"
            )),
            Err(status) => status,
        }
    }

    /// Waits (at most [`CATCH_UP`]) until the gateway's view has read the KV prefix at least as
    /// of now, so that what was just written is enforced by this gateway when the RPC returns.
    async fn caught_up(&self) {
        // The prefix's index as Consul answers it now covers the write (deletes included, by
        // their tombstones); the watch publishes the same index for the same query.
        let index = match self.client.kv_list(kv::PREFIX, 0, Duration::ZERO).await {
            Ok(answer) => answer.index,
            Err(error) => {
                tracing::warn!(%error, "written, but the control state cannot be read back");
                return;
            }
        };
        let mut view = self.subscribe();
        let read = view.wait_for(|v| v.unreadable.is_none() && v.index >= index);
        if tokio::time::timeout(CATCH_UP, read).await.is_err() {
            tracing::warn!(
                index,
                "written, but the gateway's control view has not read it within {CATCH_UP:?}"
            );
        }
    }
}

fn halt_key(scope: &Scope) -> String {
    match scope {
        Scope::Beamline(id) => kv::halt_key(id),
        Scope::All => kv::HALT_ALL.to_string(),
    }
}

/// UNAVAILABLE: Consul could not be read or written; `what` the RPC was doing.
fn unavailable(what: &str, error: &ConsulError) -> Status {
    Status::unavailable(format!("cannot {what}: {error}"))
}

/// `time` without its fraction of a second: records are stored and refusals print times to the
/// second, and the answer must say what is stored (and a lock's expiry what refusals say).
fn to_the_second(time: SystemTime) -> SystemTime {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs())
}

fn rfc3339(time: SystemTime) -> String {
    beamline_contract::control::rfc3339::format(time)
}

#[cfg(test)]
mod tests;
