//! The check-and-set decisions of Lock and Unlock: given the lock record as read (with its
//! ModifyIndex), who asks and `now`, what to write and with which `cas`, or why not. I/O-free:
//! `control` reads, asks here, and writes.
//!
//! Owns "is this lock free, ours, or another's" and the `cas` each write names; who may ask at
//! all by role is `rules`' (checked before the lock is read). Halt's and Resume's are `halts`'.
//!
//! A lock past its expiry is free: anyone allowed to lock takes it over with `cas=<its
//! ModifyIndex>`, so a holder renewing at the same moment loses cleanly instead of both
//! believing they hold it. A record that cannot be read counts as held by nobody, forever
//! (`beamline_contract::control`'s fail-closed rule): only `safety` breaks it.

use std::time::SystemTime;

use tonic::Status;

use beamline_contract::beamline::BeamlineId;
use beamline_contract::control::{HeldLock, Lock, Refusal};

use super::rules::actor;
use crate::caller::{Caller, Role};

/// How a Lock is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockPlan {
    /// No record: create it (`cas=0`: only if still none).
    Create,
    /// An expired lock (anyone's): take it over (`cas=<its ModifyIndex>`).
    TakeOver { modify_index: u64, expired: Lock },
    /// The caller's own lock, still held: renew it (`cas=<its ModifyIndex>`) with the new note
    /// and expiry, keeping `since` (it has been held since then).
    Renew {
        modify_index: u64,
        since: SystemTime,
    },
}

impl LockPlan {
    /// The `cas` of the write.
    pub fn cas(&self) -> u64 {
        match self {
            LockPlan::Create => 0,
            LockPlan::TakeOver { modify_index, .. } | LockPlan::Renew { modify_index, .. } => {
                *modify_index
            }
        }
    }

    /// When the lock written by this plan counts as taken.
    pub fn since(&self, now: SystemTime) -> SystemTime {
        match self {
            LockPlan::Renew { since, .. } => *since,
            _ => now,
        }
    }
}

/// What Lock on `beamline` by `holder` does given the record `held` at `now`; a lock another
/// caller holds is FAILED_PRECONDITION naming the holder, the note and the expiry.
pub fn plan_lock(
    beamline: &BeamlineId,
    holder: &str,
    held: Option<&HeldLock>,
    now: SystemTime,
) -> Result<LockPlan, Status> {
    let Some(held) = held else {
        return Ok(LockPlan::Create);
    };
    let modify_index = held.modify_index;
    if !held.lock.holds_at(now) {
        return Ok(LockPlan::TakeOver {
            modify_index,
            expired: held.lock.clone(),
        });
    }
    if is_holder(&held.lock, holder) {
        return Ok(LockPlan::Renew {
            modify_index,
            since: held.lock.since,
        });
    }
    Err(held_by_another(beamline, &held.lock))
}

/// The FAILED_PRECONDITION of a lock someone else holds: the refusal's words, which name the
/// holder, the note and the expiry.
pub fn held_by_another(beamline: &BeamlineId, lock: &Lock) -> Status {
    Status::failed_precondition(
        Refusal::Locked {
            beamline: beamline.to_string(),
            lock: lock.clone(),
        }
        .to_string(),
    )
}

/// How an Unlock is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockPlan {
    /// No lock holds (none, or expired): nothing to write.
    Free,
    /// The holder lets go (`cas=<its ModifyIndex>`).
    Release { modify_index: u64, lock: Lock },
    /// `safety` (or, without authentication, anyone) removes another's lock.
    Break { modify_index: u64, lock: Lock },
}

/// What Unlock on `beamline` by `caller` does given the record `held` at `now`: the holder
/// releases, `safety` breaks; anyone else is PERMISSION_DENIED naming the holder. Only for a
/// caller `rules::authorize` let through for Unlock of `beamline` (an operator of it, `safety`,
/// or no caller without authentication): nobody else may learn who holds the lock.
pub fn plan_unlock(
    beamline: &BeamlineId,
    caller: Option<&Caller>,
    held: Option<&HeldLock>,
    now: SystemTime,
) -> Result<UnlockPlan, Status> {
    let live = held.filter(|h| h.lock.holds_at(now));
    let Some(held) = live else {
        return Ok(UnlockPlan::Free);
    };
    let (modify_index, lock) = (held.modify_index, held.lock.clone());
    if is_holder(&held.lock, actor(caller)) {
        return Ok(UnlockPlan::Release { modify_index, lock });
    }
    match caller {
        None => Ok(UnlockPlan::Break { modify_index, lock }),
        Some(c) if c.role == Role::Safety => Ok(UnlockPlan::Break { modify_index, lock }),
        Some(c) => Err(Status::permission_denied(format!(
            "caller {:?} ({}) may not call Unlock on beamline {beamline}: it is locked by {:?} \
             (only the holder or the safety role unlocks it)",
            c.name,
            c.role.as_str(),
            held.lock.holder
        ))),
    }
}

/// Whether `name` holds `lock` (an unreadable record's empty holder is nobody).
fn is_holder(lock: &Lock, name: &str) -> bool {
    !lock.holder.is_empty() && lock.holder == name
}
