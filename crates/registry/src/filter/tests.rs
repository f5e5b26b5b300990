//! Tests for the `?filter=` evaluator: Consul's own API test expressions and the matching rules;
//! the error texts are in `parse_errors`, the property tests in `props`.

use super::*;
use serde_json::json;

fn health_entry(id: &str, version: &str, os: &str, tags: &[&str]) -> Value {
    json!({
        "Node": {"ID": "n1", "Node": "node1", "Address": "127.0.0.1", "Datacenter": "dc1",
                 "TaggedAddresses": {"lan": "127.0.0.1"}, "Meta": {"os": os}},
        "Service": {"ID": id, "Service": "foo", "Tags": tags, "Address": "", "Port": 8080,
                    "Meta": {"version": version}, "EnableTagOverride": false,
                    "Weights": {"Passing": 1, "Warning": 1}, "Proxy": null},
        "Checks": [
            {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
            {"CheckID": format!("service:{id}"), "Status": "critical", "ServiceTags": tags}
        ]
    })
}

fn agent_service() -> Value {
    json!({"ID": "foo1", "Service": "foo", "Tags": ["foo", "bar"], "Port": 8000,
           "Meta": {"version": "1", "k8s-namespace": "default", "empty": ""},
           "Address": "192.168.0.42", "EnableTagOverride": true, "Datacenter": "dc1",
           "Weights": {"Passing": 1, "Warning": 1}, "Ratio": 0.5})
}

fn eval(expr: &str, item: &Value) -> bool {
    Filter::parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .matches(item)
}

fn parse_err(expr: &str) -> String {
    match Filter::parse(expr) {
        Ok(f) => panic!("{expr} parsed: {f:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn consul_api_test_expressions() {
    let v1 = health_entry("foo1", "1", "linux", &["bar"]);
    let v2 = health_entry("foo2", "2", "linux", &["bar", "v2"]);
    let v2_win = health_entry("foo3", "2", "windows", &[]);
    let all = [&v1, &v2, &v2_win];
    let pick = |expr: &str| -> Vec<usize> {
        let f = Filter::parse(expr).unwrap();
        (0..all.len()).filter(|&i| f.matches(all[i])).collect()
    };
    assert_eq!(pick("Service.Meta.version == 2"), [1, 2]);
    assert_eq!(
        pick("Node.Meta.os == linux and Service.Meta.version == 2"),
        [1]
    );
    assert_eq!(pick(r#"Service.ID != "foo1""#), [1, 2]);
    assert_eq!(pick("v2 in Service.Tags"), [1]);
    assert_eq!(pick("Service.Tags is empty"), [2]);
    assert_eq!(pick("not (Node.Meta.os == linux)"), [2]);
    assert_eq!(
        pick(
            "(Service.Meta.version == 1 or (Node.Meta.os == windows and not bar in Service.Tags))"
        ),
        [0, 2]
    );
    assert!(eval("foo in Tags", &agent_service()));
    assert!(!eval("nope in Tags", &agent_service()));
}

#[test]
fn operators() {
    let s = agent_service();
    let cases = [
        ("ID == foo1", true),
        ("ID == \"foo1\"", true),
        ("ID == `foo1`", true),
        ("ID == Foo1", false),
        ("ID != foo1", false),
        ("Tags contains bar", true),
        ("Tags not contains bar", false),
        ("bar not in Tags", false),
        ("qux not in Tags", true),
        ("version in Meta", true),
        ("Meta contains version", true),
        ("\"k8s-namespace\" in Meta", true),
        ("Meta[\"k8s-namespace\"] == default", true),
        ("Meta[ `k8s-namespace` ].x is empty", true),
        ("oo in ID", true),
        ("ID contains xyz", false),
        ("Meta.empty is empty", true),
        ("Meta is not empty", true),
        ("Tags is not empty", true),
        ("Port == 8000", true),
        ("Port == \"8000\"", true),
        ("Port != 8001", true),
        ("Port == 8000.0", false),
        ("Ratio == 0.5", true),
        ("EnableTagOverride == true", true),
        ("EnableTagOverride == T", true),
        ("EnableTagOverride != false", true),
        ("EnableTagOverride == yes", false),
        ("Weights.Passing == 1", true),
        ("ID matches \"^foo[0-9]$\"", true),
        ("ID matches \"^bar\"", false),
        ("ID not matches \"^bar\"", true),
        ("Address matches `^192\\.168\\.`", true),
        ("Port matches \"8\"", false),
        ("not not ID == foo1", true),
        ("not ID == foo1 or Port == 8000", true),
        ("not (ID == foo1 or Port == 8000)", false),
        ("ID == foo1 and Port == 1 or Port == 8000", true),
        ("ID == foo1 and (Port == 1 or Port == 2)", false),
        ("\t\r\n ( \t ID \t == \t foo1 \t ) \n", true),
        ("ID==foo1", true),
    ];
    for (expr, want) in cases {
        assert_eq!(eval(expr, &s), want, "{expr}");
    }
}

#[test]
fn missing_paths_behave_like_bexpr_missing_map_keys() {
    let s = agent_service();
    for (expr, want) in [
        ("Meta.missing == x", false),
        ("Meta.missing == \"\"", false),
        ("Meta.missing != x", true),
        ("Meta.missing is empty", true),
        ("Meta.missing is not empty", false),
        ("x in Meta.missing", false),
        ("x not in Meta.missing", true),
        ("Meta.missing contains x", false),
        ("Meta.missing not contains x", true),
        ("Meta.missing matches \".*\"", false),
        ("Meta.missing not matches \".*\"", true),
        ("Nope.Deeper.Still == x", false),
        ("ID.sub == x", false),
        ("ID.sub != x", true),
        ("id == foo1", false),
        ("Proxy is empty", true),
    ] {
        assert_eq!(eval(expr, &s), want, "{expr}");
    }
    let h = health_entry("a", "1", "linux", &[]);
    assert!(eval("Service.Proxy is empty", &h));
    assert!(!eval("Service.Proxy.Mode == x", &h));
}

#[test]
fn selectors_through_arrays_match_any_element() {
    let h = health_entry("a", "1", "linux", &["t1"]);
    assert!(eval("Checks.Status == critical", &h));
    assert!(eval("Checks.Status == passing", &h));
    assert!(!eval("Checks.Status == warning", &h));
    assert!(eval("Checks.Status != passing", &h));
    assert!(eval("t1 in Checks.ServiceTags", &h));
    assert!(eval("Checks.ServiceTags is empty", &h));
    assert!(!eval("Checks.Nope is not empty", &h));
    let no_checks = json!({"Checks": []});
    assert!(!eval("Checks.Status != passing", &no_checks));
    assert!(eval("Checks is empty", &no_checks));
}

#[test]
fn strings_unquote_like_go() {
    let v = json!({"S": "a\tb", "Q": "a\\tb", "U": "é", "R": "x\ny"});
    assert!(eval(r#"S == "a\tb""#, &v));
    assert!(eval(r#"Q == `a\tb`"#, &v));
    assert!(eval(r#"U == "\u00e9""#, &v));
    assert!(eval(r#"U == "é""#, &v));
    assert!(eval(r#"S == "\x61\011b""#, &v));
    assert!(eval("R == `x\r\ny`", &v));
    assert!(eval(r#"Meta["we ird.key"] is empty"#, &v));
    // bexpr ends a "…" string at the first quote, so \" cannot be used (Consul refuses it).
    assert!(Filter::parse(r#"S == "a\"b""#).is_err());
    for bad in [
        r#"S == "\q""#,
        r#"S == "\'""#,
        r#"S == "\xff""#,
        r#"S == "\ud800""#,
        "S == \"a\nb\"",
        r#"S == "a\""#,
    ] {
        assert!(Filter::parse(bad).is_err(), "{bad}");
    }
}

mod parse_errors;
mod props;
