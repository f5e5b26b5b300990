//! The gateway's side of the control state in Consul KV: the fail-closed view every actuating
//! call is checked against (`beamline_consul::control`), and the writes behind Halt, Resume,
//! Lock and Unlock.
//!
//! Owns the order of each write (check the request, authorize, read, decide, write, wait until
//! the gateway's own view shows it) and the mapping of KV failures to gRPC statuses; who may
//! do what is `rules`', the check-and-set decisions `halts`' (Halt, Resume) and `plan`'s (Lock,
//! Unlock), the values' shape and the refusal rule `beamline_contract::control`'s.
//!
//! Semantics worth knowing:
//! - Halting a halted beamline replaces who, why and when (the latest halt is the one people
//!   need to read), except the control room's (`safety`) halt, which only `safety` replaces or
//!   lifts: anyone else's Halt answers it and writes nothing. Resuming one that is not halted
//!   answers `halted: false` and writes nothing.
//! - Every write is a check-and-set on what was read: a halt written meanwhile is never erased
//!   or overwritten unseen (Resume answers FAILED_PRECONDITION naming it; Halt answers it).
//! - Lock needs authentication (FAILED_PRECONDITION without); Unlock authorizes by role and
//!   beamline before it reads the lock, so who may not unlock learns nothing of it.
//! - A well-formed beamline discovery does not know is NOT_FOUND for Halt and Lock; Resume and
//!   Unlock of it still remove a record that is there (a beamline that left Consul must not
//!   stay halted for good when it comes back).
//! - Every write returns only once the gateway's control view has read it (bounded by
//!   [`CATCH_UP`]), so the next actuating Execute through this gateway already meets the halt.
//! - Consul unreachable: UNAVAILABLE with the cause; a write that failed changed nothing.

mod halts;
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
use halts::{HaltPlan, ResumePlan, StoredHalt};
use plan::{held_by_another, plan_lock, plan_unlock, LockPlan, UnlockPlan};
use rules::{actor, authorize, Act, Scope};

/// How long a write waits for the gateway's own view to show it before answering anyway.
pub const CATCH_UP: Duration = Duration::from_secs(2);

/// How often Halt decides and writes again when its check-and-set lost to a halt it must
/// replace, or to a resume, before answering FAILED_PRECONDITION.
const WRITE_ATTEMPTS: usize = 3;

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

    /// Halts one beamline or all of them (replacing any halt there, but the control room's for
    /// anyone else); answers the halt that stands.
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
        let key = halt_key(&scope);
        let what = format!("halt {scope}");
        let all = scope == Scope::All;
        let mut stored = self.read_halt(&key, &what).await?;
        for _ in 0..WRITE_ATTEMPTS {
            let cas = match halts::plan_halt(caller, stored.as_ref()) {
                HaltPlan::Stands(standing) => {
                    tracing::info!(by = actor(caller), %scope, halted_by = %standing.by,
                        "halt not replaced: the control room's halt stands");
                    return Ok(standing.to_proto(all));
                }
                HaltPlan::Write { cas } => cas,
            };
            let halt = Halt {
                by: actor(caller).to_string(),
                reason: request.reason.clone(),
                since: to_the_second(SystemTime::now()),
            };
            let written = self
                .client
                .kv_put(
                    &key,
                    &halts::record(caller, halt.clone()).to_json(),
                    Some(cas),
                )
                .await
                .map_err(|e| unavailable(&what, &e))?;
            if written {
                self.caught_up().await;
                tracing::info!(by = %halt.by, %scope, reason = %halt.reason, "halted");
                return Ok(halt.to_proto(all));
            }
            stored = self.read_halt(&key, &what).await?;
            if let Some(standing) = halts::after_lost_halt(caller, stored.as_ref()) {
                tracing::info!(by = actor(caller), %scope, halted_by = %standing.by,
                    "halt not written: another halt was written first");
                return Ok(standing.to_proto(all));
            }
        }
        Err(Status::failed_precondition(format!(
            "the halt on {scope} kept changing while it was being written; look again and retry"
        )))
    }

    /// Resumes one beamline or all of them (the control room's halt only for `safety`). Answers
    /// the halt that still applies to the beamline (the fleet-wide one) or `halted: false`.
    pub async fn resume(
        &self,
        caller: Option<&Caller>,
        request: ResumeRequest,
    ) -> Result<HaltState, Status> {
        let scope = rules::scope(&request.beamline, request.all)?;
        authorize(caller, Act::Resume, &scope)?;
        let key = halt_key(&scope);
        let what = format!("resume {scope}");
        let stored = self.read_halt(&key, &what).await?;
        match (halts::plan_resume(&scope, caller, stored.as_ref())?, &scope) {
            (ResumePlan::NotHalted, Scope::Beamline(id)) => self.known(id)?,
            (ResumePlan::NotHalted, Scope::All) => {}
            (ResumePlan::Delete { cas }, _) => {
                let deleted = self
                    .client
                    .kv_delete(&key, Some(cas))
                    .await
                    .map_err(|e| unavailable(&what, &e))?;
                if !deleted {
                    let now = self.read_halt(&key, &what).await?;
                    halts::after_lost_resume(&scope, now.as_ref())?;
                }
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
        // Before the lock is read: who may not unlock it learns nothing of it.
        authorize(caller, Act::Unlock, &Scope::Beamline(id.clone()))?;
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

    /// The halt record at `key` with its ModifyIndex.
    async fn read_halt(&self, key: &str, what: &str) -> Result<Option<StoredHalt>, Status> {
        Ok(self.read(key, what).await?.as_ref().map(StoredHalt::read))
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
