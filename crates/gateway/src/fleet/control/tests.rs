//! The control RPCs' rules without Consul: the authorization table and the request checks
//! (`rules`), and the check-and-set decisions given the read record (and `now`): Halt's and
//! Resume's (`halts`), Lock's and Unlock's (`plan`). The
//! writes themselves are tested end to end (tests/e2e/fleet_lock.rs). Shared fixtures here.

mod halts;
mod plan;
mod rules;

use std::collections::BTreeSet;

use crate::caller::{Beamlines, Caller, Role};
use beamline_contract::beamline::BeamlineId;

fn caller(name: &str, role: Role, beamlines: &[&str]) -> Caller {
    let beamlines = if beamlines == ["*"] {
        Beamlines::All
    } else {
        Beamlines::Only(
            beamlines
                .iter()
                .map(|b| b.to_string())
                .collect::<BTreeSet<_>>(),
        )
    };
    Caller {
        name: name.into(),
        role,
        beamlines: beamlines.into(),
    }
}

fn id(text: &str) -> BeamlineId {
    BeamlineId::parse(text).unwrap()
}

/// `status` has `code` and its message says every one of `parts`.
#[track_caller]
fn assert_says(status: &tonic::Status, code: tonic::Code, parts: &[&str]) {
    assert_eq!(status.code(), code, "{status:?}");
    for part in parts {
        assert!(
            status.message().contains(part),
            "lacks {part:?}: {}",
            status.message()
        );
    }
}
