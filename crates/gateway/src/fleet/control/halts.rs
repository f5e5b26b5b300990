//! The check-and-set decisions of Halt and Resume: given the halt record as read (with its
//! ModifyIndex) and who asks, what to write with which `cas`, or why not; and what to answer
//! when the check-and-set lost. I/O-free: `control` reads, asks here, and writes.
//!
//! Owns the rule of the control room's halt: a halt placed by `safety` (or a record nobody can
//! read, see [`HaltRecord::read`]) is lifted only by `safety`, and a Halt by anyone else over it
//! writes nothing and answers it (the stop stays as the control room wrote it). Whether the
//! caller may halt or resume the scope at all is `rules`'; lock decisions are `plan`'s.
//!
//! Every write names the ModifyIndex it decided on (`cas=0`: only if there is still none), so a
//! halt written between the read and the write (the control room's, say) is never silently
//! replaced or erased: the write loses, and the caller is told what stands now.

use tonic::Status;

use beamline_consul::KvEntry;
use beamline_contract::control::{Halt, HaltRecord, Refusal};

use super::rules::Scope;
use crate::caller::{Caller, Role};

/// A halt record as read, with the ModifyIndex a check-and-set names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHalt {
    pub record: HaltRecord,
    pub modify_index: u64,
}

impl StoredHalt {
    /// The halt record in `entry` (one that cannot be read fails closed, as the control room's).
    pub fn read(entry: &KvEntry) -> StoredHalt {
        StoredHalt {
            record: HaltRecord::read(&entry.key, &entry.value),
            modify_index: entry.modify_index,
        }
    }

    /// "beamline 5.3.1 is halted by "x" since T: why", as refusals say it.
    fn describe(&self, scope: &Scope) -> String {
        let (beamline, all) = match scope {
            Scope::Beamline(id) => (id.to_string(), false),
            Scope::All => (String::new(), true),
        };
        let refusal = Refusal::Halted {
            beamline,
            halt: self.record.halt.clone(),
            all,
        };
        let role = match self.record.role.as_str() {
            "" => String::new(),
            role => format!(" ({role} role)"),
        };
        format!("{refusal}{role}")
    }
}

/// The record a Halt by `caller` writes: the halt and the caller's role (none without
/// authentication: an anonymous halt counts as an operator's).
pub fn record(caller: Option<&Caller>, halt: Halt) -> HaltRecord {
    HaltRecord {
        halt,
        role: caller.map_or("", |c| c.role.as_str()).to_string(),
    }
}

/// How a Halt is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaltPlan {
    /// Write the new halt (replacing who, why and when) with this `cas`: 0 when none was read
    /// (only if still none), else the ModifyIndex read.
    Write { cas: u64 },
    /// The control room's halt stands and the caller is not `safety`: write nothing, answer it.
    Stands(Halt),
}

/// What Halt by `caller` does given the record `stored`.
pub fn plan_halt(caller: Option<&Caller>, stored: Option<&StoredHalt>) -> HaltPlan {
    match stored {
        None => HaltPlan::Write { cas: 0 },
        Some(s) if s.record.by_safety() && !is_safety(caller) => {
            HaltPlan::Stands(s.record.halt.clone())
        }
        Some(s) => HaltPlan::Write {
            cas: s.modify_index,
        },
    }
}

/// After a Halt's check-and-set by `caller` lost, given the record read again: the halt to
/// answer (it stands, and the caller would not replace it: another's when the caller is not
/// `safety`, or the control room's own), or None to decide again (the halt was lifted
/// meanwhile, or `safety` lost to an operator's halt, which the control room's must replace).
pub fn after_lost_halt(caller: Option<&Caller>, now: Option<&StoredHalt>) -> Option<Halt> {
    let now = now?;
    if is_safety(caller) && !now.record.by_safety() {
        return None;
    }
    Some(now.record.halt.clone())
}

/// How a Resume is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumePlan {
    /// Nothing halted there: nothing to write.
    NotHalted,
    /// Delete the halt read, only if it is still that one (`cas=<its ModifyIndex>`).
    Delete { cas: u64 },
}

/// What Resume of `scope` by `caller` does given the record `stored`: the control room's halt
/// is PERMISSION_DENIED to anyone but `safety`, naming it.
pub fn plan_resume(
    scope: &Scope,
    caller: Option<&Caller>,
    stored: Option<&StoredHalt>,
) -> Result<ResumePlan, Status> {
    let Some(stored) = stored else {
        return Ok(ResumePlan::NotHalted);
    };
    if stored.record.by_safety() && !is_safety(caller) {
        let who = caller.map_or_else(
            || "an unauthenticated caller".to_string(),
            |c| format!("caller {:?} ({})", c.name, c.role.as_str()),
        );
        return Err(Status::permission_denied(format!(
            "{who} may not call Resume on {scope}: the control room's halt needs the safety role \
             to lift ({})",
            stored.describe(scope)
        )));
    }
    Ok(ResumePlan::Delete {
        cas: stored.modify_index,
    })
}

/// After a Resume's check-and-set lost, given the record read again: FAILED_PRECONDITION naming
/// the halt standing now (who, when, why), which stays; Ok when none stands (it was lifted
/// meanwhile: what the caller asked for holds).
pub fn after_lost_resume(scope: &Scope, now: Option<&StoredHalt>) -> Result<(), Status> {
    match now {
        None => Ok(()),
        Some(now) => Err(Status::failed_precondition(format!(
            "{scope} was halted again while it was being resumed, and stays halted: {}; \
             look again and resume if meant",
            now.describe(scope)
        ))),
    }
}

fn is_safety(caller: Option<&Caller>) -> bool {
    caller.is_some_and(|c| c.role == Role::Safety)
}
