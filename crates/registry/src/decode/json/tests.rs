//! Property tests (proptest) of request-body decoding: any bytes and any JSON value decode to a
//! value or an error, never a panic; a field of the wrong type or an unknown field is refused
//! with an error that names it; nesting past serde_json's limit is an error, not a stack
//! overflow. KV writes carry no JSON (the value is raw bytes), so their outside input is the
//! query string: `?flags=`/`?cas=` are checked here too.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::{Field, CHECK_FIELDS, CHECK_UPDATE_FIELDS, SERVICE_FIELDS};
use crate::decode::{check_registration, check_update, service_registration};
use crate::http::Query;

/// Every body decoder, its result reduced to the error text.
fn decode_all(body: &[u8]) -> [Result<(), String>; 3] {
    [
        service_registration(body)
            .map(drop)
            .map_err(|e| e.to_string()),
        check_registration(body)
            .map(drop)
            .map_err(|e| e.to_string()),
        check_update(body).map(drop).map_err(|e| e.to_string()),
    ]
}

/// JSON values of bounded depth and size: scalars of every kind, strings with escapes and
/// non-ASCII, numbers at the edges of i64/u64/f64.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        proptest::sample::select(&["10s", "1m30s", "passing", "critical", "0.0.0.0", "::", ""][..])
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Object keys: mostly known field names in any letter case (and Consul's aliases), some
/// arbitrary strings.
fn key() -> impl Strategy<Value = String> {
    let known: Vec<&'static str> = SERVICE_FIELDS
        .iter()
        .chain(CHECK_FIELDS)
        .map(|f| f.name)
        .chain([
            "Output",
            "Passing",
            "Warning",
            "service_id",
            "tls_skip_verify",
        ])
        .collect();
    prop_oneof![
        3 => (proptest::sample::select(known), any::<u64>()).prop_map(|(k, bits)| recase(k, bits)),
        1 => ".{0,8}",
    ]
}

/// `name` with the letters' case flipped where `bits` says (Go matches keys case-insensitively).
fn recase(name: &str, bits: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if bits >> (i % 64) & 1 == 1 {
                if c.is_ascii_uppercase() {
                    c.to_ascii_lowercase()
                } else {
                    c.to_ascii_uppercase()
                }
            } else {
                c
            }
        })
        .collect()
}

fn is_known(key: &str, fields: &[Field]) -> bool {
    fields.iter().any(|f| {
        f.name.eq_ignore_ascii_case(key) || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(key))
    })
}

/// The JSON kinds a field of each type refuses (null is always "absent").
#[derive(Debug, Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Int,
    Strings,
    StringMap,
    Duration,
    Header,
}

const SERVICE_TYPED: &[(&str, Ty)] = &[
    ("Kind", Ty::Str),
    ("ID", Ty::Str),
    ("Name", Ty::Str),
    ("Tags", Ty::Strings),
    ("Port", Ty::Int),
    ("Address", Ty::Str),
    ("SocketPath", Ty::Str),
    ("EnableTagOverride", Ty::Bool),
    ("Meta", Ty::StringMap),
    ("Namespace", Ty::Str),
    ("Partition", Ty::Str),
];

const CHECK_TYPED: &[(&str, Ty)] = &[
    ("CheckID", Ty::Str),
    ("ID", Ty::Str),
    ("Name", Ty::Str),
    ("Notes", Ty::Str),
    ("ServiceID", Ty::Str),
    ("Status", Ty::Str),
    ("Namespace", Ty::Str),
    ("Partition", Ty::Str),
    ("ScriptArgs", Ty::Strings),
    ("HTTP", Ty::Str),
    ("Method", Ty::Str),
    ("Header", Ty::Header),
    ("Body", Ty::Str),
    ("DisableRedirects", Ty::Bool),
    ("TCP", Ty::Str),
    ("TCPUseTLS", Ty::Bool),
    ("UDP", Ty::Str),
    ("GRPC", Ty::Str),
    ("GRPCUseTLS", Ty::Bool),
    ("H2PING", Ty::Str),
    ("H2PingUseTLS", Ty::Bool),
    ("OSService", Ty::Str),
    ("AliasNode", Ty::Str),
    ("AliasService", Ty::Str),
    ("DockerContainerID", Ty::Str),
    ("Shell", Ty::Str),
    ("TLSServerName", Ty::Str),
    ("TLSSkipVerify", Ty::Bool),
    ("Interval", Ty::Duration),
    ("Timeout", Ty::Duration),
    ("TTL", Ty::Duration),
    ("SuccessBeforePassing", Ty::Int),
    ("FailuresBeforeWarning", Ty::Int),
    ("FailuresBeforeCritical", Ty::Int),
    ("DeregisterCriticalServiceAfter", Ty::Duration),
    ("OutputMaxSize", Ty::Int),
    ("ProxyHTTP", Ty::Str),
    ("ProxyGRPC", Ty::Str),
];

/// A value of a JSON kind the type refuses.
fn wrong_value(ty: Ty) -> BoxedStrategy<Value> {
    let string = ".{0,6}".prop_map(Value::String);
    let number = prop_oneof![any::<i64>().prop_map(|n| json!(n)), Just(json!(1.5))];
    let boolean = any::<bool>().prop_map(Value::Bool);
    let array = Just(json!(["x", 1]));
    let object = Just(json!({"k": "v"}));
    match ty {
        Ty::Str => prop_oneof![number, boolean, array, object].boxed(),
        Ty::Bool => prop_oneof![string, number, array, object].boxed(),
        Ty::Int => prop_oneof![
            string,
            boolean,
            array,
            object,
            Just(json!(2.5)),
            Just(json!(u64::MAX))
        ]
        .boxed(),
        Ty::Strings => prop_oneof![
            string,
            number,
            boolean,
            object,
            Just(json!([1])),
            Just(json!([[]]))
        ]
        .boxed(),
        Ty::StringMap => prop_oneof![string, number, boolean, array, Just(json!({"k": 1}))].boxed(),
        Ty::Duration => prop_oneof![boolean, array, object].boxed(),
        Ty::Header => prop_oneof![
            string,
            number,
            boolean,
            array,
            Just(json!({"k": "v"})),
            Just(json!({"k": [1]}))
        ]
        .boxed(),
    }
}

/// `base` with `field` (any spelling) replaced by `key: v`.
fn with_field(base: Value, field: &str, key: &str, v: &Value) -> Value {
    let mut map = match base {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    map.retain(|k, _| !k.eq_ignore_ascii_case(field));
    map.insert(key.to_string(), v.clone());
    Value::Object(map)
}

fn object(pairs: impl IntoIterator<Item = (String, Value)>) -> Value {
    Value::Object(pairs.into_iter().collect::<Map<_, _>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_all(&body);
    }

    #[test]
    fn any_json_never_panics(v in any_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        let results = decode_all(&body);
        if !matches!(v, Value::Object(_) | Value::Null) {
            for r in results {
                prop_assert!(r.is_err(), "{} decoded", v);
            }
        }
    }

    #[test]
    fn json_objects_with_known_fields_never_panic(
        fields in proptest::collection::vec((key(), any_json()), 0..10),
        nested in proptest::collection::vec((key(), any_json()), 0..6),
    ) {
        // The nested-object fields (Check, Checks, Weights, TaggedAddresses) get objects of
        // field-like keys, so decoding goes past the first level.
        let mut body = object(fields);
        let inner = object(nested);
        body["check"] = inner.clone();
        body["Checks"] = json!([inner.clone(), null, inner.clone()]);
        body["WEIGHTS"] = inner.clone();
        body["TaggedAddresses"] = json!({"lan": inner});
        let _ = decode_all(&serde_json::to_vec(&body).unwrap());
    }

    #[test]
    fn any_json_inside_a_valid_body_never_panics(
        field in key(),
        v in any_json(),
        check_field in key(),
        cv in any_json(),
    ) {
        let service = json!({"Name": "web", "Check": {"TTL": "10s"}});
        let mut s = service.clone();
        s[&field] = v.clone();
        s["Check"][&check_field] = cv.clone();
        let _ = service_registration(&serde_json::to_vec(&s).unwrap());
        let mut c = json!({"Name": "c", "TTL": "10s"});
        c[&check_field] = cv;
        let _ = check_registration(&serde_json::to_vec(&c).unwrap());
        let mut u = json!({"Status": "passing"});
        u[&field] = v;
        let _ = check_update(&serde_json::to_vec(&u).unwrap());
    }

    #[test]
    fn unknown_fields_are_refused_by_name(
        base in proptest::sample::select(&[r#"{"Name":"web"}"#, r#"{"Name":"web","Check":{"TTL":"1s"}}"#][..]),
        unknown in "[A-Za-z_][A-Za-z0-9_ .-]{0,12}",
        v in any_json(),
        nested in any::<bool>(),
    ) {
        prop_assume!(
            !is_known(&unknown, SERVICE_FIELDS)
                && !is_known(&unknown, CHECK_FIELDS)
                && !is_known(&unknown, CHECK_UPDATE_FIELDS)
        );
        let mut body: Value = serde_json::from_str(base).unwrap();
        let want = format!("Request decode failed: json: unknown field \"{unknown}\"");
        if nested && body.get("Check").is_some() {
            body["Check"][&unknown] = v.clone();
        } else {
            body[&unknown] = v.clone();
        }
        let err = service_registration(&serde_json::to_vec(&body).unwrap()).err().map(|e| e.to_string());
        prop_assert_eq!(err.as_deref(), Some(want.as_str()));
        let mut c = json!({"Name": "c", "TTL": "1s"});
        c[&unknown] = v.clone();
        let err = check_registration(&serde_json::to_vec(&c).unwrap()).err().map(|e| e.to_string());
        prop_assert_eq!(err.as_deref(), Some(want.as_str()));
        let mut u = json!({"Status": "passing"});
        u[&unknown] = v;
        let err = check_update(&serde_json::to_vec(&u).unwrap()).err().map(|e| e.to_string());
        prop_assert_eq!(err.as_deref(), Some(want.as_str()));
    }

    #[test]
    fn service_fields_of_the_wrong_type_are_refused_by_name(
        (field, v) in proptest::sample::select(SERVICE_TYPED).prop_flat_map(|(f, ty)| (Just(f), wrong_value(ty))),
        bits in any::<u64>(),
    ) {
        let body = with_field(json!({"Name": "web"}), field, &recase(field, bits), &v);
        let err = service_registration(&serde_json::to_vec(&body).unwrap())
            .err()
            .map(|e| e.to_string());
        prop_assert!(err.as_deref().is_some_and(|e| e.contains(field)), "{} = {}: {:?}", field, v, err);
    }

    #[test]
    fn check_fields_of_the_wrong_type_are_refused_by_name(
        (field, v) in proptest::sample::select(CHECK_TYPED).prop_flat_map(|(f, ty)| (Just(f), wrong_value(ty))),
        bits in any::<u64>(),
    ) {
        let key = recase(field, bits);
        let check = with_field(json!({"Name": "c", "TTL": "10s"}), field, &key, &v);
        let err = check_registration(&serde_json::to_vec(&check).unwrap())
            .err()
            .map(|e| e.to_string());
        prop_assert!(err.as_deref().is_some_and(|e| e.contains(field)), "check {} = {}: {:?}", field, v, err);
        let service = json!({"Name": "web", "Check": with_field(json!({"TTL": "10s"}), field, &key, &v)});
        let err = service_registration(&serde_json::to_vec(&service).unwrap())
            .err()
            .map(|e| e.to_string());
        prop_assert!(err.as_deref().is_some_and(|e| e.contains(field)), "Check {} = {}: {:?}", field, v, err);
        let service = json!({"Name": "web", "Checks": [{"TTL": "10s"}, check]});
        let err = service_registration(&serde_json::to_vec(&service).unwrap())
            .err()
            .map(|e| e.to_string());
        prop_assert!(err.as_deref().is_some_and(|e| e.contains(field)), "Checks[1] {} = {}: {:?}", field, v, err);
    }

    #[test]
    fn check_update_fields_of_the_wrong_type_are_refused_by_name(
        field in proptest::sample::select(&["Status", "Output"][..]),
        v in wrong_value(Ty::Str),
    ) {
        let body = with_field(json!({"Status": "passing"}), field, field, &v);
        let err = check_update(&serde_json::to_vec(&body).unwrap()).err().map(|e| e.to_string());
        prop_assert!(err.as_deref().is_some_and(|e| e.contains(field)), "{} = {}: {:?}", field, v, err);
    }

    #[test]
    fn kv_flags_and_cas_parse_as_u64_or_are_refused(
        raw in prop_oneof![
            ".{0,24}",
            any::<u64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| format!("%3{}", n.to_string().split_at(1).0)),
            Just("18446744073709551616".to_string()),
            Just("-1".to_string()),
            Just("+1".to_string()),
        ],
        other in ".{0,24}",
    ) {
        let encoded: String = form_urlencoded::byte_serialize(raw.as_bytes()).collect();
        for q in [format!("flags={encoded}&cas={encoded}"), format!("{other}&flags={raw}&cas={raw}")] {
            let query = Query::parse(Some(&q));
            let value = query.get("flags").map(str::to_string);
            let want = value.as_deref().map(|v| v.parse::<u64>());
            match (query.u64("flags", "Invalid flags"), want) {
                (Ok(got), Some(Ok(n))) => prop_assert_eq!(got, Some(n)),
                (Ok(None), None) => {}
                (Err(e), Some(Err(_))) => prop_assert_eq!(e.to_string(), "Invalid flags"),
                (got, want) => prop_assert!(false, "{:?}: {:?} vs {:?}", q, got.map_err(|e| e.to_string()), want),
            }
            let cas = query.u64("cas", "Invalid cas index");
            prop_assert_eq!(cas.is_ok(), query.get("cas").is_none_or(|v| v.parse::<u64>().is_ok()));
            if let Err(e) = cas {
                prop_assert_eq!(e.to_string(), "Invalid cas index");
            }
        }
        let query = Query::parse(Some(&format!("flags={encoded}")));
        prop_assert_eq!(query.get("flags"), Some(raw.as_str()));
    }

    #[test]
    fn any_query_string_never_panics(q in ".{0,64}", bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        for q in [q, String::from_utf8_lossy(&bytes).into_owned()] {
            let query = Query::parse(Some(&q));
            let _ = query.u64("flags", "Invalid flags");
            let _ = query.u64("cas", "Invalid cas index");
            let _ = query.flag("recurse");
            let _ = query.blocking();
            let _ = query.filter();
        }
    }
}

proptest! {
    // Large bodies: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow(
        depth in 129..100_000usize,
        shape in 0..5u8,
        closed in any::<bool>(),
    ) {
        let (open, close) = match shape {
            0 | 1 => ("[".repeat(depth), "]".repeat(depth)),
            _ => ("{\"a\":".repeat(depth), "}".repeat(depth)),
        };
        let inner = format!("{open}1{}", if closed { close.as_str() } else { "" });
        let body = match shape {
            0 | 2 => inner,
            3 => format!(r#"{{"Name":"web","Proxy":{inner}}}"#),
            _ => format!(r#"{{"Name":"web","Meta":{inner}}}"#),
        };
        for r in decode_all(body.as_bytes()) {
            let err = r.err();
            prop_assert!(
                err.as_deref().is_some_and(|e| e.starts_with("Request decode failed")),
                "depth {} shape {}: {:?}", depth, shape, err.map(|e| e.chars().take(200).collect::<String>())
            );
        }
    }
}

#[test]
fn nesting_within_serde_jsons_limit_is_decoded() {
    let depth = 100;
    let body = format!(
        r#"{{"Name":"web","Proxy":{}1{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(service_registration(body.as_bytes()).is_ok());
}

/// The inputs proptest found (serde's type errors named no field), and nested ones.
#[test]
fn wrong_types_name_the_field_path() {
    let err = |body: &str| {
        service_registration(body.as_bytes())
            .err()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        err(r#"{"Name":"web","Kind":0}"#),
        "Request decode failed: Kind: invalid type: integer `0`, expected a string"
    );
    assert_eq!(
        err(r#"{"Name":"web","checks":[{"TTL":"1s"},{"ttl":"1s","status":5}]}"#),
        "Request decode failed: Checks[1].Status: invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        err(r#"{"Name":"web","Meta":{"a":"b","k":1}}"#),
        "Request decode failed: Meta.k: invalid type: integer `1`, expected a string"
    );
    assert_eq!(
        err(r#"{"Name":"web","TaggedAddresses":{"lan":{"Port":"80"}}}"#),
        "Request decode failed: TaggedAddresses.lan.Port: invalid type: string \"80\", expected i64"
    );
    assert_eq!(
        check_update(br#"{"Status":0}"#).err().unwrap().to_string(),
        "Request decode failed: Status: invalid type: integer `0`, expected a string"
    );
}
