use std::time::Duration;

use super::{keeps, RouteState};

const IDLE: Duration = Duration::from_secs(600);

fn state(in_flight: bool, registered: bool, idle_for: u64, follows_departed: bool) -> RouteState {
    RouteState {
        in_flight,
        registered,
        idle_for: Duration::from_secs(idle_for),
        follows_departed,
    }
}

#[test]
fn a_registered_beamline_keeps_its_route_until_idle_for_the_bound() {
    assert!(keeps(state(false, true, 0, false), IDLE));
    assert!(keeps(state(false, true, 599, false), IDLE));
    assert!(!keeps(state(false, true, 600, false), IDLE));
}

#[test]
fn a_call_in_flight_holds_any_route() {
    assert!(keeps(state(true, true, 10_000, false), IDLE));
    assert!(keeps(state(true, false, 10_000, false), IDLE));
}

#[test]
fn a_beamline_gone_from_consul_keeps_its_route_only_while_a_drain_is_followed() {
    assert!(keeps(state(false, false, 0, true), IDLE));
    assert!(
        !keeps(state(false, false, 0, false), IDLE),
        "even when just used"
    );
}
