//! Capabilities as a team declares them: schemas checked at start (bad or remote ones refused),
//! params validated with errors that name the path, and the Struct/JSON conversions.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::json;

use super::*;

fn spec(name: &str, schema: serde_json::Value) -> CapabilitySpec {
    CapabilitySpec {
        name: name.to_string(),
        description: format!("{name} does things"),
        params_schema: schema,
        actuating: name.starts_with("move"),
        tags: vec!["motion".to_string()],
        idempotent: !name.starts_with("move"),
    }
}

fn motor_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "motor": {"type": "string"},
            "position": {"type": "number"},
            "steps": {"type": "integer", "minimum": 1}
        },
        "required": ["motor"],
        "additionalProperties": false
    })
}

fn caps() -> Capabilities {
    Capabilities::new(vec![
        spec("status", json!({"type": "object"})),
        spec("move_motor", motor_schema()),
    ])
    .unwrap()
}

fn num(n: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn strukt(fields: Vec<(&str, Value)>) -> Struct {
    Struct {
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

#[test]
fn capabilities_are_shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Capabilities>();
}

#[test]
fn describe_lists_specs_in_order_with_compact_schema() {
    let described = caps().describe();
    assert_eq!(described.len(), 2);
    assert_eq!(described[0].name, "status");
    let motor = &described[1];
    assert_eq!(motor.name, "move_motor");
    assert!(motor.actuating);
    assert_eq!(motor.tags, vec!["motion".to_string()]);
    assert!(!motor.params_schema.contains(' ') && !motor.params_schema.contains('\n'));
    let parsed: serde_json::Value = serde_json::from_str(&motor.params_schema).unwrap();
    assert_eq!(parsed, motor_schema());
}

#[test]
fn revision_is_stable_and_changes_with_capabilities() {
    let a = caps().revision();
    assert_eq!(a, caps().revision());
    assert!(a.len() == 16 && a.chars().all(|c| c.is_ascii_hexdigit()));
    let mut changed = vec![
        spec("status", json!({"type": "object"})),
        spec("move_motor", motor_schema()),
    ];
    changed[1].description = "moves a motor".to_string();
    assert_ne!(a, Capabilities::new(changed).unwrap().revision());
    let fewer = Capabilities::new(vec![spec("status", json!({"type": "object"}))]).unwrap();
    assert_ne!(a, fewer.revision());
    assert_ne!(
        fewer.revision(),
        Capabilities::new(vec![]).unwrap().revision()
    );
}

#[test]
fn bad_schema_and_duplicates_are_refused() {
    let err = Capabilities::new(vec![spec("broken", json!({"type": "nonsense"}))])
        .err()
        .unwrap();
    assert!(
        matches!(&err, CapabilityError::BadSchema { name, .. } if name == "broken"),
        "{err}"
    );
    let err = Capabilities::new(vec![spec("a", json!({})), spec("a", json!({}))])
        .err()
        .unwrap();
    assert!(
        matches!(&err, CapabilityError::Duplicate(name) if name == "a"),
        "{err}"
    );
}

#[tokio::test]
async fn remote_refs_are_refused_without_panicking_in_a_runtime() {
    let schema = json!({"$ref": "https://example.invalid/schema.json"});
    let err = Capabilities::new(vec![spec("remote", schema)])
        .err()
        .unwrap();
    assert!(matches!(err, CapabilityError::BadSchema { .. }), "{err}");
}

#[test]
fn unknown_capability_is_not_found_and_named() {
    let err = caps().validate("fly", None).unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "unknown capability \"fly\"");
}

#[test]
fn valid_params_come_back_as_json_with_integers() {
    let params = strukt(vec![
        ("motor", text("sample_x")),
        ("position", num(1.5)),
        ("steps", num(10.0)),
    ]);
    let json = caps().validate("move_motor", Some(&params)).unwrap();
    assert_eq!(
        json,
        json!({"motor": "sample_x", "position": 1.5, "steps": 10})
    );
    assert!(json["steps"].is_i64());
}

#[test]
fn missing_params_are_an_empty_object() {
    assert_eq!(caps().validate("status", None).unwrap(), json!({}));
    let err = caps().validate("move_motor", None).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("motor"), "{}", err.message());
}

#[test]
fn invalid_params_name_the_path_and_reason() {
    let params = strukt(vec![("motor", text("sample_x")), ("position", text("abc"))]);
    let err = caps().validate("move_motor", Some(&params)).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .contains(r#"params/position: "abc" is not of type "number""#),
        "{}",
        err.message()
    );

    let params = strukt(vec![
        ("motor", text("m")),
        ("steps", num(2.5)),
        ("extra", num(1.0)),
    ]);
    let msg = caps()
        .validate("move_motor", Some(&params))
        .unwrap_err()
        .message()
        .to_string();
    assert!(
        msg.contains("params/steps") && msg.contains("integer"),
        "{msg}"
    );
    assert!(msg.contains("extra"), "all reasons are reported: {msg}");
}

#[test]
fn huge_invalid_params_give_a_bounded_reason() {
    let many: Vec<Value> = (0..1000).map(|_| text(&"x".repeat(100))).collect();
    let params = strukt(vec![(
        "motor",
        Value {
            kind: Some(Kind::ListValue(ListValue { values: many })),
        },
    )]);
    let err = caps().validate("move_motor", Some(&params)).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().len() <= MAX_REASON_BYTES + '…'.len_utf8());
}

#[test]
fn struct_to_json_covers_every_kind() {
    let inner = strukt(vec![("deep", num(-3.0))]);
    let s = strukt(vec![
        (
            "null",
            Value {
                kind: Some(Kind::NullValue(0)),
            },
        ),
        ("none", Value { kind: None }),
        ("int", num(42.0)),
        ("neg_zero", num(-0.0)),
        ("frac", num(0.25)),
        ("big", num(1e300)),
        ("nan", num(f64::NAN)),
        ("inf", num(f64::INFINITY)),
        ("ninf", num(f64::NEG_INFINITY)),
        ("str", text("hi")),
        (
            "bool",
            Value {
                kind: Some(Kind::BoolValue(true)),
            },
        ),
        (
            "obj",
            Value {
                kind: Some(Kind::StructValue(inner)),
            },
        ),
        (
            "list",
            Value {
                kind: Some(Kind::ListValue(ListValue {
                    values: vec![num(1.0), text("a")],
                })),
            },
        ),
    ]);
    let j = struct_to_json(&s);
    assert_eq!(
        j,
        json!({
            "null": null, "none": null, "int": 42, "neg_zero": 0, "frac": 0.25, "big": 1e300,
            "nan": null, "inf": null, "ninf": null, "str": "hi", "bool": true,
            "obj": {"deep": -3}, "list": [1, "a"]
        })
    );
    assert!(j["int"].is_i64() && j["big"].is_f64());
    // The edges of i64: -2^63 fits, 2^63 does not.
    assert!(struct_to_json(&strukt(vec![("n", num(-9.223_372_036_854_776e18))]))["n"].is_i64());
    assert!(struct_to_json(&strukt(vec![("n", num(9.223_372_036_854_776e18))]))["n"].is_f64());
}

#[test]
fn json_to_struct_round_trips_and_wraps_non_objects() {
    let v = json!({"a": 1, "b": [true, null, "x", {"c": 2.5}], "d": {}});
    let s = json_to_struct(&v);
    assert_eq!(s.fields["a"], num(1.0));
    assert_eq!(struct_to_json(&s), v);
    let wrapped = json_to_struct(&json!([1, 2]));
    assert_eq!(struct_to_json(&wrapped), json!({"value": [1, 2]}));
    assert_eq!(
        struct_to_json(&json_to_struct(&json!(null))),
        json!({"value": null})
    );
}

#[test]
fn the_revision_is_pinned_across_builds() {
    // Computed by the hand-written FNV-1a this replaced: a card's revision must not change
    // with the SDK's version, or every cached card would look stale after an upgrade.
    assert_eq!(caps().revision(), "500b8dd4bc4da40c");
    assert_eq!(
        Capabilities::new(vec![]).unwrap().revision(),
        "cbf29ce484222325"
    );
}
