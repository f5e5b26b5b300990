//! What a restart does to a check (`restored`): the TTL machine decides for TTL checks, probed
//! checks start over, maintenance checks are kept.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::checks::probe::HttpProbe;
use crate::model::{CheckDefinition, CheckStatus};

fn check(kind: Option<CheckKind>, status: CheckStatus, expires: Option<u64>) -> Check {
    Check {
        def: CheckDefinition {
            id: "c".into(),
            name: "c".into(),
            notes: String::new(),
            service_id: "web".into(),
            kind,
            timeout: Duration::from_secs(10),
            initial_status: CheckStatus::Warning,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            deregister_critical_after: None,
        },
        status,
        output: "before the restart".into(),
        ttl_expires_unix_ms: expires,
        create_index: 1,
        modify_index: 1,
    }
}

fn ttl() -> Option<CheckKind> {
    Some(CheckKind::Ttl {
        ttl: Duration::from_secs(30),
    })
}

#[test]
fn a_ttl_check_keeps_its_state_until_its_ttl_would_have_run_out() {
    let later = unix_ms(SystemTime::now()) + 60_000;
    let kept = check(ttl(), CheckStatus::Passing, Some(later));
    assert_eq!(restored(kept.clone()), kept);
}

#[test]
fn a_ttl_check_whose_ttl_ran_out_while_down_comes_back_expired() {
    let gone = check(ttl(), CheckStatus::Passing, Some(1_000));
    let back = restored(gone);
    assert_eq!(back.status, CheckStatus::Critical);
    assert_eq!(back.output, TTL_EXPIRED);
}

#[test]
fn a_probed_check_starts_over_from_its_initial_status() {
    let http = Some(CheckKind::Http {
        probe: HttpProbe {
            url: "http://127.0.0.1:1/".into(),
            method: String::new(),
            header: BTreeMap::new(),
            body: String::new(),
            tls_server_name: String::new(),
            tls_skip_verify: false,
        },
        interval: Duration::from_secs(1),
    });
    let back = restored(check(http, CheckStatus::Critical, None));
    assert_eq!(back.status, CheckStatus::Warning);
    assert_eq!(back.output, "");
}

#[test]
fn a_maintenance_check_is_kept_as_it_was() {
    let maintenance = check(None, CheckStatus::Critical, None);
    assert_eq!(restored(maintenance.clone()), maintenance);
}
