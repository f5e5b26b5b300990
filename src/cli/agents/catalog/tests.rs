use beamline_mesh::proto::{AgentCard, Capability, InstanceEntry};

use super::*;

fn snapshot() -> FleetSnapshot {
    let capability = |name: &str, actuating: bool, description: &str| Capability {
        name: name.into(),
        actuating,
        description: description.into(),
        ..Capability::default()
    };
    FleetSnapshot {
        beamlines: vec![
            BeamlineEntry {
                beamline: "2.1.1".into(),
                instances: vec![InstanceEntry {
                    instance_id: "beamline-2-1-1-a".into(),
                    address: "127.0.0.1:7001".into(),
                    healthy: true,
                    sdk_version: "0.1.0".into(),
                    card_revision: "r1".into(),
                    enforces_halt: true,
                }],
                card: Some(AgentCard {
                    capabilities: vec![
                        capability("move_motor", true, "Moves a motor"),
                        capability("read_pv", false, "Reads a PV"),
                    ],
                    ..AgentCard::default()
                }),
                halt: Some(HaltState {
                    halted: true,
                    by: "alice".into(),
                    reason: "sample on fire".into(),
                    ..HaltState::default()
                }),
                lock: Some(LockState::default()),
                card_error: String::new(),
            },
            BeamlineEntry {
                beamline: "10.1.1".into(),
                instances: vec![InstanceEntry {
                    instance_id: "old".into(),
                    address: "127.0.0.1:7002".into(),
                    healthy: false,
                    ..InstanceEntry::default()
                }],
                card_error: "Describe failed: Unavailable: down".into(),
                ..BeamlineEntry::default()
            },
        ],
        fleet_halt: Some(HaltState::default()),
    }
}

#[test]
fn the_text_shows_state_instances_and_capabilities() {
    let text = text(&snapshot());
    assert_eq!(
        text,
        "2.1.1  1/1 healthy  HALTED by alice since ?: sample on fire\n\
         \x20 instance beamline-2-1-1-a  127.0.0.1:7001  healthy  sdk 0.1.0  card r1\n\
         \x20 move_motor  actuating  Moves a motor\n\
         \x20 read_pv     read-only  Reads a PV\n\
         \n\
         10.1.1  0/1 healthy\n\
         \x20 instance old  127.0.0.1:7002  unhealthy  (too old to halt itself: only the gateway stops it)\n\
         \x20 card unavailable: Describe failed: Unavailable: down\n"
    );
}

#[test]
fn the_fleet_halt_comes_first_and_an_empty_catalog_says_so() {
    let halted = FleetSnapshot {
        beamlines: Vec::new(),
        fleet_halt: Some(HaltState {
            halted: true,
            all: true,
            by: "safety".into(),
            reason: "drill".into(),
            ..HaltState::default()
        }),
    };
    assert_eq!(
        text(&halted),
        "EVERY BEAMLINE HALTED by safety since ?: drill\n\nno beamlines in the gateway's catalog\n"
    );
}

#[test]
fn json_is_canonical_proto_json() {
    let json: serde_json::Value = serde_json::from_str(&json(&snapshot()).unwrap()).unwrap();
    assert_eq!(
        json["beamlines"][0]["instances"][0]["instanceId"],
        "beamline-2-1-1-a"
    );
    assert_eq!(
        json["beamlines"][0]["card"]["capabilities"][0]["actuating"],
        true
    );
    assert_eq!(
        json["beamlines"][1]["cardError"],
        "Describe failed: Unavailable: down"
    );
}

#[test]
fn the_text_escapes_what_agents_and_kv_supplied() {
    let mut snapshot = snapshot();
    let entry = &mut snapshot.beamlines[0];
    entry.card.as_mut().unwrap().capabilities[0].description =
        "Moves\u{1b}[2J\u{1b}]0;pwned\u{7}".into();
    entry.card.as_mut().unwrap().capabilities[1].name = "read\rpv".into();
    entry.halt.as_mut().unwrap().reason = "fire\n2.1.1  1/1 healthy".into();
    entry.halt.as_mut().unwrap().by = "\u{9b}31malice".into();
    entry.instances[0].address = "127.0.0.1:7001\u{202e}".into();
    snapshot.beamlines[1].card_error = "down\u{1b}[1A".into();
    let text = text(&snapshot);
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
        "{text:?}"
    );
    assert!(
        text.contains("Moves\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"),
        "{text}"
    );
    assert!(
        text.contains("HALTED by \\u{9b}31malice since ?: fire\\n2.1.1"),
        "{text}"
    );
    assert!(text.contains("read\\rpv"), "{text}");
    assert!(text.contains("127.0.0.1:7001\\u{202e}"), "{text}");
    assert!(text.contains("card unavailable: down\\u{1b}[1A"), "{text}");
    assert_eq!(text.lines().count(), 8, "no line forged: {text}");
}
