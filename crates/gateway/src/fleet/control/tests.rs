//! The control RPCs' rules without Consul: the authorization table and the request checks
//! (`rules`), and the check-and-set decisions given the read record and `now` (`plan`). The
//! writes themselves are tested end to end (tests/e2e/fleet_lock.rs). Shared fixtures here.

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
        name: name.to_string(),
        role,
        beamlines,
    }
}

fn id(text: &str) -> BeamlineId {
    BeamlineId::parse(text).unwrap()
}
