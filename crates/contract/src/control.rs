//! The facility's control state as it is stored in Consul KV (`wire::kv` names the keys): who
//! halted a beamline (or all of them) and why, and who holds a beamline's lock, for what and
//! until when. The gateway writes it; the gateway and every agent read it (one blocking query on
//! the prefix) and refuse actuating work from it with the same words.
//!
//! Owns the values' JSON shape, reading a KV prefix into a [`ControlState`] and the rule "may
//! this actuating call go on" given `now`; it must not do I/O (the watch loop is
//! `beamline_consul::control`'s) nor decide who may halt or lock (the gateway's policy).
//!
//! Fail closed: a halt record that cannot be read counts as a halt, a lock record that cannot be
//! read as a lock nobody holds that never expires (a `safety` caller breaks it).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::beamline::BeamlineId;
use crate::proto;
use crate::wire::kv;

/// The longest a lock may be taken for.
pub const MAX_LOCK: Duration = Duration::from_secs(24 * 3600);
/// A lock's duration when the caller names none.
pub const DEFAULT_LOCK: Duration = Duration::from_secs(2 * 3600);
/// The longest reason or note, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;

/// A halt as stored (`beamline-mesh/halt/<beamline>` or `…/_all`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// The caller who halted.
    pub by: String,
    pub reason: String,
    #[serde(with = "rfc3339")]
    pub since: SystemTime,
}

/// A halt record as the gateway writes it: the [`Halt`] and the role of whoever placed it
/// (`wire::role`), so that the control room's halt is lifted or replaced by the control room only.
/// Stored flat, `role` beside `by` (`{"by":…,"reason":…,"since":…,"role":"safety"}`): readers that
/// only refuse calls read it as a [`Halt`] and ignore the role, and a record without one (written
/// before roles were stored, or anonymously) reads with an empty role, an operator's.
///
/// The role is a field of this record rather than of [`Halt`] so that every reader and literal
/// of `Halt` stays as it is; the gateway's Halt and Resume read it whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltRecord {
    #[serde(flatten)]
    pub halt: Halt,
    /// The role of `halt.by` when it halted; empty: an operator's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
}

impl HaltRecord {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record stored at `key`; one that cannot be read fails closed: a halt by "unknown"
    /// saying why, placed as if by the control room (only `safety` lifts or replaces what
    /// nobody can tell the origin of).
    pub fn read(key: &str, value: &[u8]) -> HaltRecord {
        serde_json::from_slice::<HaltRecord>(value).unwrap_or_else(|e| HaltRecord {
            halt: Halt {
                by: "unknown".to_string(),
                reason: format!("the halt record {key} cannot be read ({e})"),
                since: SystemTime::UNIX_EPOCH,
            },
            role: crate::wire::role::SAFETY.to_string(),
        })
    }

    /// Whether the control room (the `safety` role) placed it.
    pub fn by_safety(&self) -> bool {
        self.role == crate::wire::role::SAFETY
    }
}

/// A lock as stored (`beamline-mesh/lock/<beamline>`); past `expires` it counts as free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub holder: String,
    pub note: String,
    #[serde(with = "rfc3339")]
    pub since: SystemTime,
    #[serde(with = "rfc3339")]
    pub expires: SystemTime,
}

impl Halt {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// As the Fleet service reports it; `all` for the fleet-wide halt.
    pub fn to_proto(&self, all: bool) -> proto::HaltState {
        proto::HaltState {
            halted: true,
            by: self.by.clone(),
            reason: self.reason.clone(),
            since: Some(self.since.into()),
            all,
        }
    }
}

impl Lock {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether the lock still holds at `now`.
    pub fn holds_at(&self, now: SystemTime) -> bool {
        now < self.expires
    }

    /// As the Fleet service reports it.
    pub fn to_proto(&self) -> proto::LockState {
        proto::LockState {
            locked: true,
            holder: self.holder.clone(),
            note: self.note.clone(),
            since: Some(self.since.into()),
            expires: Some(self.expires.into()),
        }
    }
}

/// One KV entry under [`kv::PREFIX`], as read from Consul.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    /// The entry's ModifyIndex: what a check-and-set write names.
    pub modify_index: u64,
}

/// A lock with the ModifyIndex it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    pub lock: Lock,
    pub modify_index: u64,
}

/// Every halt and lock, as read from one answer of the KV prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlState {
    /// The fleet-wide halt.
    pub all: Option<Halt>,
    /// Halts by beamline id.
    pub halts: BTreeMap<String, Halt>,
    /// Locks by beamline id, expired ones included (they count as free).
    pub locks: BTreeMap<String, HeldLock>,
}

impl ControlState {
    /// Reads the records of the KV prefix; keys it does not know are ignored (another tool's, or
    /// a newer gateway's), values it cannot read fail closed (see the module doc).
    pub fn from_records<'a>(records: impl IntoIterator<Item = Record<'a>>) -> ControlState {
        let mut state = ControlState::default();
        for record in records {
            if let Some(name) = record.key.strip_prefix(kv::HALT_PREFIX) {
                let halt = HaltRecord::read(record.key, record.value).halt;
                if record.key == kv::HALT_ALL {
                    state.all = Some(halt);
                } else if BeamlineId::parse(name).is_ok() {
                    state.halts.insert(name.to_string(), halt);
                }
            } else if let Some(name) = record.key.strip_prefix(kv::LOCK_PREFIX) {
                if BeamlineId::parse(name).is_err() {
                    continue;
                }
                let lock = serde_json::from_slice::<Lock>(record.value).unwrap_or_else(|e| Lock {
                    holder: String::new(),
                    note: format!("the lock record {} cannot be read ({e})", record.key),
                    since: SystemTime::UNIX_EPOCH,
                    expires: SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX as u64 * 8),
                });
                let modify_index = record.modify_index;
                state
                    .locks
                    .insert(name.to_string(), HeldLock { lock, modify_index });
            }
        }
        state
    }

    /// The halt that applies to `beamline`: the fleet-wide one first.
    pub fn halt(&self, beamline: &str) -> Option<(&Halt, bool)> {
        match &self.all {
            Some(all) => Some((all, true)),
            None => self.halts.get(beamline).map(|h| (h, false)),
        }
    }

    /// The lock on `beamline` that holds at `now`.
    pub fn lock(&self, beamline: &str, now: SystemTime) -> Option<&Lock> {
        self.locks
            .get(beamline)
            .map(|held| &held.lock)
            .filter(|lock| lock.holds_at(now))
    }

    /// Why an actuating call (an Execute of an actuating capability, a Cancel of an actuating
    /// task) by `caller` on `beamline` may not go on at `now`, if it may not. A halt stops
    /// everyone; a lock everyone but its holder (`caller` None: nobody verified, so not the
    /// holder).
    pub fn refusal(
        &self,
        beamline: &str,
        caller: Option<&str>,
        now: SystemTime,
    ) -> Option<Refusal> {
        if let Some((halt, all)) = self.halt(beamline) {
            return Some(Refusal::Halted {
                beamline: beamline.to_string(),
                halt: halt.clone(),
                all,
            });
        }
        let lock = self.lock(beamline, now)?;
        if caller.is_some_and(|c| !lock.holder.is_empty() && c == lock.holder) {
            return None;
        }
        Some(Refusal::Locked {
            beamline: beamline.to_string(),
            lock: lock.clone(),
        })
    }

    /// Whether `beamline` is halted (for refusals that do not depend on the caller).
    pub fn is_halted(&self, beamline: &str) -> bool {
        self.halt(beamline).is_some()
    }
}

/// Why an actuating call is refused: FAILED_PRECONDITION, with this as the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Halted {
        beamline: String,
        halt: Halt,
        /// The fleet-wide halt.
        all: bool,
    },
    Locked {
        beamline: String,
        lock: Lock,
    },
    /// The control state cannot be read (Consul unreachable): actuating work is refused until
    /// it can (fail closed).
    Unreadable {
        reason: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Halted {
                beamline,
                halt,
                all,
            } => {
                let scope = if *all {
                    "every beamline is halted".to_string()
                } else {
                    format!("beamline {beamline} is halted")
                };
                write!(
                    f,
                    "{scope} by {:?} since {}: {}",
                    halt.by,
                    rfc3339::format_seconds(halt.since),
                    halt.reason
                )
            }
            Refusal::Locked { beamline, lock } => write!(
                f,
                "beamline {beamline} is locked by {:?} until {} (since {}): {}",
                lock.holder,
                rfc3339::format_seconds(lock.expires),
                rfc3339::format_seconds(lock.since),
                lock.note
            ),
            Refusal::Unreadable { reason } => write!(
                f,
                "actuating calls are refused while the halt state cannot be read: {reason}"
            ),
        }
    }
}

/// A reason or note a person will read on every refusal: non-empty, at most
/// [`MAX_TEXT_BYTES`], printable (no control characters). `field` names it in the error.
pub fn check_text(field: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{field} is empty: say why"));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "{field} is {} bytes; at most {MAX_TEXT_BYTES}",
            text.len()
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{field} has a control character"));
    }
    Ok(())
}

/// Timestamps as RFC 3339 text (`2026-12-05T14:00:00Z`), as people and Consul's UI read them.
pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// `time` as RFC 3339 in UTC, as precise as it is (what is stored).
    pub fn format(time: SystemTime) -> String {
        prost_types::Timestamp::from(time).to_string()
    }

    /// `time` as RFC 3339 in UTC to the second, as refusals show it to people.
    pub fn format_seconds(time: SystemTime) -> String {
        let mut stamp = prost_types::Timestamp::from(time);
        stamp.nanos = 0;
        stamp.to_string()
    }

    /// RFC 3339 text as a time.
    pub fn parse(text: &str) -> Result<SystemTime, String> {
        let ts: prost_types::Timestamp = text
            .parse()
            .map_err(|_| format!("{text:?} is not an RFC 3339 time"))?;
        SystemTime::try_from(ts).map_err(|_| format!("{text:?} is out of range"))
    }

    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
