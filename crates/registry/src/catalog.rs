//! Service and check writes with Consul's agent rules: re-registration keeps the state of checks
//! that still exist, deregistration takes the service's checks along, maintenance mode is a
//! critical check with a reserved ID, TTL updates set status and output.
//!
//! Owns the decisions of each write (what changes, which error); the commit path, storage and
//! wake-ups are `Registry::write`'s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::checks::ttl::TtlClock;
use super::decode::ServiceRegistration;
use super::error::{bad_request, quote, RegistryError};
use super::model::{Check, CheckDefinition, CheckKind, CheckStatus, SERVICE_MAINTENANCE_PREFIX};
use super::state::{Change, State};
use super::Registry;

/// Consul's default note for maintenance mode without a reason.
const DEFAULT_MAINTENANCE_REASON: &str =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn unknown_service(id: &str) -> RegistryError {
    RegistryError::NotFound(format!(
        "Unknown service ID {}. Ensure that the service ID is passed, not the service name.",
        quote(id)
    ))
}

fn unknown_check(id: &str) -> RegistryError {
    RegistryError::NotFound(format!("Unknown check ID {}", quote(id)))
}

/// A new check's state, or the updated definition of an existing one with its state kept.
fn upsert_check(state: &State, def: CheckDefinition, index: u64) -> Check {
    let now = unix_ms(SystemTime::now());
    let ttl_expiry = |def: &CheckDefinition| match def.kind {
        Some(CheckKind::Ttl { ttl }) => Some(TtlClock::new(ttl).expiry_after_report(now)),
        _ => None,
    };
    match state.checks.get(&def.id) {
        Some(old) => {
            let same = old.def == def;
            Check {
                ttl_expires_unix_ms: if same {
                    old.ttl_expires_unix_ms
                } else {
                    ttl_expiry(&def).max(old.ttl_expires_unix_ms)
                },
                def,
                status: old.status,
                output: old.output.clone(),
                create_index: old.create_index,
                modify_index: if same { old.modify_index } else { index },
            }
        }
        None => Check {
            ttl_expires_unix_ms: ttl_expiry(&def),
            status: def.initial_status,
            def,
            output: String::new(),
            create_index: index,
            modify_index: index,
        },
    }
}

impl Registry {
    /// PUT /v1/agent/service/register.
    pub fn register_service(
        &self,
        reg: ServiceRegistration,
        replace_existing_checks: bool,
    ) -> Result<(), RegistryError> {
        self.write(|state, index| {
            let ServiceRegistration {
                mut service,
                checks,
            } = reg;
            let mut changes = Vec::new();
            if let Some(old) = state.services.get(&service.id) {
                if replace_existing_checks {
                    for stale in state.checks_of_service(&service.id) {
                        if !stale.is_maintenance() && !checks.iter().any(|c| c.id == stale.def.id) {
                            changes.push(Change::DeleteCheck(stale.def.id.clone()));
                        }
                    }
                }
                service.create_index = old.create_index;
                service.modify_index = old.modify_index;
                if *old != service {
                    service.modify_index = index;
                    changes.push(Change::PutService(service.clone()));
                }
            } else {
                service.create_index = index;
                service.modify_index = index;
                changes.push(Change::PutService(service.clone()));
            }
            for def in checks {
                if let Some(other) = state.checks.get(&def.id) {
                    if other.def.service_id != def.service_id {
                        return Err(bad_request(format!(
                            "Invalid check: CheckID {} belongs to another service",
                            quote(&def.id)
                        )));
                    }
                }
                let check = upsert_check(state, def, index);
                if state.checks.get(&check.def.id) != Some(&check) {
                    changes.push(Change::PutCheck(check));
                }
            }
            Ok((changes, ()))
        })
    }

    /// PUT /v1/agent/service/deregister/:id (also the reaper's way out).
    pub fn deregister_service(&self, id: &str) -> Result<(), RegistryError> {
        self.write(|state, _| {
            if !state.services.contains_key(id) {
                return Err(unknown_service(id));
            }
            // Checks first: applying them needs the service to still name them.
            let mut changes: Vec<Change> = state
                .checks_of_service(id)
                .map(|c| Change::DeleteCheck(c.def.id.clone()))
                .collect();
            changes.push(Change::DeleteService(id.to_string()));
            Ok((changes, ()))
        })
    }

    /// PUT /v1/agent/service/maintenance/:id?enable=&reason=.
    pub fn set_maintenance(
        &self,
        id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), RegistryError> {
        self.write(|state, index| {
            if !state.services.contains_key(id) {
                return Err(unknown_service(id));
            }
            let check_id = format!("{SERVICE_MAINTENANCE_PREFIX}{id}");
            let existing = state.checks.contains_key(&check_id);
            let changes = match (enable, existing) {
                (true, false) => {
                    let reason = if reason.is_empty() {
                        DEFAULT_MAINTENANCE_REASON
                    } else {
                        reason
                    };
                    vec![Change::PutCheck(Check {
                        def: CheckDefinition {
                            id: check_id,
                            name: "Service Maintenance Mode".to_string(),
                            notes: reason.to_string(),
                            service_id: id.to_string(),
                            kind: None,
                            timeout: Duration::ZERO,
                            initial_status: CheckStatus::Critical,
                            success_before_passing: 0,
                            failures_before_warning: 0,
                            failures_before_critical: 0,
                            deregister_critical_after: None,
                        },
                        status: CheckStatus::Critical,
                        output: String::new(),
                        ttl_expires_unix_ms: None,
                        create_index: index,
                        modify_index: index,
                    })]
                }
                (false, true) => vec![Change::DeleteCheck(check_id)],
                _ => vec![],
            };
            Ok((changes, ()))
        })
    }

    /// PUT /v1/agent/check/register.
    pub fn register_check(&self, def: CheckDefinition) -> Result<(), RegistryError> {
        self.write(|state, index| {
            if !def.service_id.is_empty() && !state.services.contains_key(&def.service_id) {
                return Err(bad_request(format!(
                    "ServiceID {} does not exist",
                    quote(&def.service_id)
                )));
            }
            let check = upsert_check(state, def, index);
            let changes = if state.checks.get(&check.def.id) == Some(&check) {
                vec![]
            } else {
                vec![Change::PutCheck(check)]
            };
            Ok((changes, ()))
        })
    }

    /// PUT /v1/agent/check/deregister/:id.
    pub fn deregister_check(&self, id: &str) -> Result<(), RegistryError> {
        self.write(|state, _| {
            if !state.checks.contains_key(id) {
                return Err(unknown_check(id));
            }
            Ok((vec![Change::DeleteCheck(id.to_string())], ()))
        })
    }

    /// PUT /v1/agent/check/{pass,warn,fail}/:id and /update/:id: a TTL check's report.
    pub fn update_ttl(
        &self,
        id: &str,
        status: CheckStatus,
        output: String,
    ) -> Result<(), RegistryError> {
        let updated = {
            let state = self.state();
            let check = state.checks.get(id).ok_or_else(|| unknown_check(id))?;
            let Some(CheckKind::Ttl { ttl }) = check.def.kind else {
                return Err(bad_request(format!(
                    "CheckID {} does not have associated TTL",
                    quote(id)
                )));
            };
            let mut updated = check.clone();
            let now = unix_ms(SystemTime::now());
            updated.ttl_expires_unix_ms = Some(TtlClock::new(ttl).expiry_after_report(now));
            updated.output = output;
            updated.status = status;
            updated
        };
        self.set_check_state(updated, true)
    }

    /// Stores a check's new status and output: a status change is a write at a new index; an
    /// output-only change is not (it must not wake watchers).
    pub fn set_check_state(&self, updated: Check, durable: bool) -> Result<(), RegistryError> {
        let status_changed = {
            let state = self.state();
            match state.checks.get(&updated.def.id) {
                // Gone, or redefined meanwhile: this result is stale.
                None => return Ok(()),
                Some(current) if current.def != updated.def => return Ok(()),
                Some(current) => current.status != updated.status,
            }
        };
        if !status_changed {
            return self.write_quietly(updated, durable);
        }
        let (id, status, output) = (
            updated.def.id.clone(),
            updated.status,
            updated.output.clone(),
        );
        let changed = self.write(|state, index| {
            match state.checks.get(&updated.def.id) {
                Some(current) if current.def == updated.def => {}
                _ => return Ok((vec![], false)),
            }
            let mut check = updated;
            check.modify_index = index;
            Ok((vec![Change::PutCheck(check)], true))
        })?;
        if changed {
            self.log_status_change(&id, status, &output);
        }
        Ok(())
    }

    /// One line per check per period: passing at info, warning and critical at warn.
    fn log_status_change(&self, id: &str, status: CheckStatus, output: &str) {
        let Some(held_back) = self.admit_log(true, id) else {
            return;
        };
        // A probe's output can be a 4 KB body: the line keeps its start.
        let output: String = output.chars().take(200).collect();
        let status = status.as_str();
        if status == "passing" {
            tracing::info!(
                check = id,
                status,
                output,
                held_back,
                "check status changed"
            );
        } else {
            tracing::warn!(
                check = id,
                status,
                output,
                held_back,
                "check status changed"
            );
        }
    }
}
