use std::time::Duration;

use super::*;
use crate::model::CheckKind;

#[test]
fn keys_match_case_insensitively_and_aliases_apply() {
    let body = br#"{"name":"web","id":"web-1","port":80,"address":"10.0.0.1",
        "enable_tag_override":true,"tagged_addresses":{"lan":{"address":"10.0.0.1","port":80}},
        "check":{"ttl":"10s","deregister_critical_service_after":"1m","status":"passing"}}"#;
    let reg = service_registration(body).unwrap();
    assert_eq!(reg.service.id, "web-1");
    assert!(reg.service.enable_tag_override);
    assert_eq!(reg.service.tagged_addresses["lan"].port, 80);
    assert_eq!(reg.checks[0].id, "service:web-1");
    assert_eq!(reg.checks[0].name, "Service 'web' check");
    assert_eq!(reg.checks[0].initial_status, CheckStatus::Passing);
    assert_eq!(
        reg.checks[0].deregister_critical_after,
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        reg.service.tagged_addresses["lan_ipv4"],
        ServiceAddress {
            address: "10.0.0.1".into(),
            port: 80
        }
    );
}

#[test]
fn unknown_fields_and_bad_values_are_refused() {
    let err = |b: &[u8]| service_registration(b).err().unwrap().to_string();
    assert!(err(br#"{"Name":"a","Bogus":1}"#).starts_with("Request decode failed"));
    assert!(err(br#"{"Name":"a","Check":{"Bogus":1}}"#).starts_with("Request decode failed"));
    assert_eq!(err(br#"{"ID":"a"}"#), "Missing service name");
    assert!(err(br#"{"Name":"a","Check":{"TTL":"1s","Interval":"1s"}}"#).contains("both"));
    assert!(err(br#"{"Name":"a","Check":{}}"#).contains("TTL must be > 0"));
    assert!(
        err(br#"{"Name":"a","Check":{"TTL":"1s","Status":"fluffy"}}"#)
            .starts_with("Status for checks")
    );
    assert!(err(br#"{"Name":"a","Meta":{"a b":"c"}}"#).starts_with("Invalid Service Meta"));
    assert!(err(br#"{"Name":"a","Check":{"TTL":"nope"}}"#).contains("invalid duration"));
    assert!(err(b"{not json").starts_with("Request decode failed"));
    assert_eq!(
        err(br#"{"Name":"a","Address":"0.0.0.0"}"#),
        "Invalid service address"
    );
}

#[test]
fn several_checks_are_numbered_and_durations_accept_nanoseconds() {
    let body = br#"{"Name":"foo","Checks":[{"TTL":15000000000},{"TTL":"30s"}]}"#;
    let reg = service_registration(body).unwrap();
    let ids: Vec<_> = reg.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["service:foo:1", "service:foo:2"]);
    assert_eq!(
        reg.checks[0].kind,
        Some(CheckKind::Ttl {
            ttl: Duration::from_secs(15)
        })
    );
}
