//! The registration body: the framework's tag and Meta beside the team's, and the health check
//! target dialled at the advertised address (an IPv6 host bracketed), at the health listener's
//! port when there is one.

use std::collections::BTreeMap;

use super::*;

fn instance() -> Instance {
    Instance {
        beamline: "5.3.1".parse().unwrap(),
        instance_id: "beamline-5-3-1-0123abcd".to_string(),
        agent_version: "1.2.3".to_string(),
    }
}

#[test]
fn the_check_dials_the_advertised_address_bracketing_an_ipv6_host() {
    let check = CheckSettings::default();
    let none = BTreeMap::new();
    for (host, target) in [
        ("10.0.0.5", "10.0.0.5:50051"),
        ("agent.example", "agent.example:50051"),
        ("::1", "[::1]:50051"),
        ("fd00::5", "[fd00::5]:50051"),
    ] {
        let r = registration(&instance(), host, 50051, &check, &[], &none);
        assert_eq!(r.check.grpc, target);
        assert_eq!((r.address.as_str(), r.port), (host, 50051));
    }
}

#[test]
fn with_a_health_port_the_check_dials_it_on_the_advertised_host() {
    let check = CheckSettings {
        port: Some(8081),
        ..CheckSettings::default()
    };
    for (host, target) in [("10.0.0.5", "10.0.0.5:8081"), ("::1", "[::1]:8081")] {
        let r = registration(&instance(), host, 50051, &check, &[], &BTreeMap::new());
        assert_eq!(r.check.grpc, target);
        // Callers still dial the service's own port.
        assert_eq!((r.address.as_str(), r.port), (host, 50051));
    }
}

#[test]
fn the_frameworks_tag_and_meta_come_first_and_win() {
    let tags = vec![AGENT_TAG.to_string(), "motion".to_string()];
    let extra = BTreeMap::from([
        (meta::SDK_VERSION.to_string(), "forged".to_string()),
        ("team".to_string(), "optics".to_string()),
    ]);
    let r = registration(
        &instance(),
        "10.0.0.5",
        1,
        &CheckSettings::default(),
        &tags,
        &extra,
    );
    assert_eq!(r.tags, vec![AGENT_TAG.to_string(), "motion".to_string()]);
    assert_eq!(r.meta[meta::SDK_VERSION], SDK_VERSION);
    assert_eq!(r.meta["team"], "optics");
    assert_eq!(r.meta[meta::BEAMLINE], "5.3.1");
    assert_eq!(r.meta[meta::INSTANCE_ID], "beamline-5-3-1-0123abcd");
    assert_eq!(r.id, "beamline-5-3-1-0123abcd");
}

#[test]
fn the_card_revision_and_the_controls_enforced_are_advertised_and_win_over_the_teams() {
    let extra = BTreeMap::from([
        (meta::CARD_REVISION.to_string(), "forged".to_string()),
        (meta::CONTROLS.to_string(), "none".to_string()),
    ]);
    let mut r = registration(
        &instance(),
        "10.0.0.5",
        1,
        &CheckSettings::default(),
        &[],
        &extra,
    );
    advertise(
        &mut r,
        Some("00ff00ff00ff00ff"),
        Some(meta::CONTROLS_ENFORCED),
    );
    assert_eq!(r.meta[meta::CARD_REVISION], "00ff00ff00ff00ff");
    assert_eq!(r.meta[meta::CONTROLS], meta::CONTROLS_ENFORCED);
    advertise(&mut r, None, Some(meta::CONTROLS_HALT_ONLY));
    assert_eq!(r.meta[meta::CONTROLS], "halt");

    // An agent that enforces nothing (a service served without the control state) does not
    // claim to, and a card that could not be read is not made up.
    let mut r = registration(
        &instance(),
        "10.0.0.5",
        1,
        &CheckSettings::default(),
        &[],
        &BTreeMap::new(),
    );
    advertise(&mut r, None, None);
    assert!(!r.meta.contains_key(meta::CARD_REVISION), "{:?}", r.meta);
    assert!(!r.meta.contains_key(meta::CONTROLS), "{:?}", r.meta);
}
