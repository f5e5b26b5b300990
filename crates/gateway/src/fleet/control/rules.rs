//! Which Halt, Resume, Lock and Unlock requests are well-formed (INVALID_ARGUMENT) and who may
//! send them (PERMISSION_DENIED), decided on the caller and the request alone, without I/O.
//!
//! Owns the authorization table of the control RPCs and the request checks; what is in KV and
//! whether a lock is free are `plan`'s, the writes `control`'s.
//!
//! The table: an `operator` halts, resumes and locks the beamlines its policy allows; `safety`
//! halts and resumes any beamline and every beamline (`all`), and breaks locks, whatever its
//! beamlines (a stop button must not depend on a list kept up to date); an `observer` does none
//! of it. Unlock is the lock holder's (by name) or `safety`'s (see `plan::plan_unlock`). A
//! gateway without authentication has no caller: everything is allowed and recorded as by
//! [`ANONYMOUS`].

use std::fmt;
use std::time::Duration;

use tonic::Status;

use beamline_contract::beamline::BeamlineId;
use beamline_contract::control::{check_text, DEFAULT_LOCK, MAX_LOCK};

use crate::caller::{Caller, Role};

/// Who a write is recorded as when the gateway runs without authentication.
pub const ANONYMOUS: &str = "anonymous";

/// A control RPC, as PERMISSION_DENIED names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Halt,
    Resume,
    Lock,
    Unlock,
}

impl Act {
    pub fn rpc(self) -> &'static str {
        match self {
            Act::Halt => "Halt",
            Act::Resume => "Resume",
            Act::Lock => "Lock",
            Act::Unlock => "Unlock",
        }
    }
}

/// What a halt or resume applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Beamline(BeamlineId),
    /// Every beamline (the fleet-wide halt).
    All,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Beamline(id) => write!(f, "beamline {id}"),
            Scope::All => f.write_str("every beamline"),
        }
    }
}

/// The name a write is recorded under: the caller's, or [`ANONYMOUS`].
pub fn actor(caller: Option<&Caller>) -> &str {
    caller.map_or(ANONYMOUS, |c| &*c.name)
}

/// A Halt's or Resume's scope: exactly one of a valid `beamline` and `all`.
pub fn scope(beamline: &str, all: bool) -> Result<Scope, Status> {
    match (beamline.is_empty(), all) {
        (false, true) => Err(Status::invalid_argument(
            "give either a beamline or all, not both",
        )),
        (true, false) => Err(Status::invalid_argument(
            "name a beamline, or all for every beamline",
        )),
        (true, true) => Ok(Scope::All),
        (false, false) => beamline_id(beamline).map(Scope::Beamline),
    }
}

/// A Lock's or Unlock's beamline.
pub fn beamline_id(beamline: &str) -> Result<BeamlineId, Status> {
    if beamline.is_empty() {
        return Err(Status::invalid_argument("name a beamline"));
    }
    BeamlineId::parse(beamline).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A Halt's reason or a Lock's note (`field`), as every refused caller will read it.
pub fn text(field: &str, text: &str) -> Result<(), Status> {
    check_text(field, text).map_err(Status::invalid_argument)
}

/// A Lock's duration: [`DEFAULT_LOCK`] when absent, otherwise positive and at most
/// [`MAX_LOCK`]. Checked by hand before anything reads it as a duration: prost's own conversion
/// and Display negate `seconds`, which overflows (a panic in debug builds) on `i64::MIN`, and
/// only a value checked here is ever formatted.
pub fn lock_duration(duration: Option<prost_types::Duration>) -> Result<Duration, Status> {
    const NANOS_PER_SECOND: i32 = 1_000_000_000;
    let Some(prost_types::Duration { seconds, nanos }) = duration else {
        return Ok(DEFAULT_LOCK);
    };
    if nanos <= -NANOS_PER_SECOND || nanos >= NANOS_PER_SECOND {
        return Err(Status::invalid_argument(format!(
            "lock duration has {nanos} nanoseconds, out of range (a Duration's nanos are less \
             than a second): give a positive duration of at most {}",
            human(MAX_LOCK)
        )));
    }
    if seconds < 0 || nanos < 0 {
        return Err(Status::invalid_argument(format!(
            "lock duration is negative: give a positive duration of at most {}",
            human(MAX_LOCK)
        )));
    }
    // Both are non-negative and nanos under a second: a valid std Duration.
    let duration = Duration::new(seconds.unsigned_abs(), nanos.unsigned_abs());
    if duration.is_zero() {
        return Err(Status::invalid_argument(
            "lock duration is zero: give a positive duration",
        ));
    }
    if duration > MAX_LOCK {
        return Err(Status::invalid_argument(format!(
            "lock duration {} is over the maximum of {}",
            human(duration),
            human(MAX_LOCK)
        )));
    }
    Ok(duration)
}

/// `2h`, `90m`, `45s`, `1.5s`: the largest whole unit, as the CLI's flags are written.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.subsec_nanos() != 0 {
        format!("{}s", duration.as_secs_f64())
    } else if secs != 0 && secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs != 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Whether `caller` may `act` on `scope` by its role and beamlines. For Unlock this comes
/// first, before the lock is read (a caller who may not unlock learns nothing of the lock);
/// whether it holds the lock or may break it is `plan::plan_unlock`'s.
///
/// Without authentication (no caller) every act is allowed but Lock, FAILED_PRECONDITION: a
/// lock refuses everyone but its holder, and a gateway that cannot tell callers apart has no
/// holder to let through (it would refuse its own taker).
pub fn authorize(caller: Option<&Caller>, act: Act, scope: &Scope) -> Result<(), Status> {
    let Some(caller) = caller else {
        return match act {
            Act::Lock => Err(Status::failed_precondition(
                "locks need callers the gateway can tell apart; this gateway runs with \
                 --insecure-no-auth (give it an --auth-file to use locks)",
            )),
            Act::Halt | Act::Resume | Act::Unlock => Ok(()),
        };
    };
    let denied = |why: &str| {
        Status::permission_denied(format!(
            "caller {:?} ({}) may not call {} on {scope}: {why}",
            caller.name,
            caller.role.as_str(),
            act.rpc()
        ))
    };
    match (caller.role, act, scope) {
        (Role::Safety, Act::Halt | Act::Resume | Act::Unlock, _) => Ok(()),
        (Role::Safety, Act::Lock, _) => Err(denied(
            "the safety role halts, resumes and breaks locks; locking is for a beamline's operators",
        )),
        (Role::Operator, _, Scope::All) => Err(denied("only the safety role acts on every beamline")),
        (Role::Operator, _, Scope::Beamline(id)) if caller.beamlines.allows(id.as_str()) => Ok(()),
        (Role::Operator, _, Scope::Beamline(_)) => Err(denied("not one of its beamlines")),
        (Role::Observer, _, _) => Err(denied("an observer only reads")),
    }
}
