//! Tests for the `?filter=` evaluator: Consul's own API test expressions, go-bexpr's grammar
//! cases and error texts, and a garbage-input sweep (the parser must never panic).

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

#[test]
fn parse_errors_mirror_bexpr() {
    let cases = [
        (
            "foo == \"12x",
            r#"1:12 (11): rule "string": Unterminated string literal"#,
        ),
        (
            "foo == `12x",
            r#"1:12 (11): rule "string": Unterminated string literal"#,
        ),
        (
            "foo == 3x",
            r#"1:9 (8): rule "number": Invalid number literal"#,
        ),
        (
            "foo == 1.2.3",
            r#"1:11 (10): rule "number": Invalid number literal"#,
        ),
        (
            "foo == 01",
            r#"1:9 (8): rule "number": Invalid number literal"#,
        ),
        ("foo[3] == abc", r#"1:5 (4): rule "index": Invalid index"#),
        (
            "x in foo[\"abc\"",
            r#"1:15 (14): rule "index": Unclosed index expression"#,
        ),
        (
            "foo[\"abc\" == 3",
            r#"1:11 (10): rule "index": Unclosed index expression"#,
        ),
        ("x in 32", r#"1:6 (5): rule "match": Invalid selector"#),
        (
            "(foo == 4",
            r#"1:10 (9): rule "grouping": Unmatched parentheses"#,
        ),
        (
            "32 == 32",
            r#"1:4 (3): no match found, expected: "in", "not" or [ \t\r\n]"#,
        ),
        (
            "32 is empty",
            r#"1:4 (3): no match found, expected: "in", "not" or [ \t\r\n]"#,
        ),
        (
            "x in foo abc",
            r#"1:10 (9): no match found, expected: "and", "or", [ \t\r\n] or EOF"#,
        ),
        (
            "x in foo and ",
            r#"1:14 (13): no match found, expected: "(", "-", "0", "\"", "`", "not", [ \t\r\n], [1-9] or [a-zA-Z]"#,
        ),
        (
            "x in foo or not ",
            r#"1:17 (16): no match found, expected: "!=", "(", "-", "0", "==", "\"", "`", "contains", "in", "is", "matches", "not", [ \t\r\n], [1-9] or [a-zA-Z]"#,
        ),
        (
            "",
            r#"1:1 (0): no match found, expected: "(", "-", "0", "\"", "`", "not", [ \t\r\n], [1-9] or [a-zA-Z]"#,
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(parse_err(expr), want, "{expr}");
    }
    // Hyphens need quoting or an index, as in Consul (hashicorp/consul#6467).
    assert!(parse_err("Node == host-name").starts_with("1:13 (12): no match found"));
    assert!(parse_err("a == b\nand c").starts_with("2:"));
    assert!(parse_err("ID matches \"(\"").contains("regular expression"));
    for bad in [
        "not(ID == x)",
        "(ID == x)and(ID == y)",
        "ID == x and",
        "ID ==",
        "== x",
        "ID is",
        "()",
        "ID = x",
    ] {
        assert!(Filter::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [MAX_DEPTH, MAX_DEPTH + 1, 100_000] {
        let parens = format!("{}ID == x{}", "(".repeat(depth), ")".repeat(depth));
        let nots = format!("{}ID == x", "not ".repeat(depth));
        for expr in [parens, nots] {
            let r = Filter::parse(&expr);
            assert_eq!(r.is_ok(), depth <= MAX_DEPTH, "depth {depth}");
        }
    }
    let long = vec!["ID == x"; 10_000].join(" or ");
    assert!(eval(&long, &json!({"ID": "x"})));
}

#[test]
fn garbage_never_panics() {
    let pieces = [
        "ID", "Meta", ".", "[", "]", "\"", "`", "(", ")", " ", "\t", "\n", "==", "!=", "in", "not",
        "and", "or", "is", "empty", "contains", "matches", "-", "0", "1.5", "x", "é", "\\", "\\u",
        "\"a\"", "`b`", "[\"k\"]", "🦀", "\r", "=", "!", "_", "9", "a-b", "\0",
    ];
    let item = health_entry("a", "1", "linux", &["x"]);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut parsed = 0;
    for _ in 0..20_000 {
        let len = (next() % 12) as usize;
        let expr: String = (0..len)
            .map(|_| pieces[(next() % pieces.len() as u64) as usize])
            .collect();
        if let Ok(f) = Filter::parse(&expr) {
            parsed += 1;
            f.matches(&item);
            f.matches(&json!(null));
            f.matches(&json!([1, [2, {"ID": null}]]));
        }
    }
    assert!(parsed > 0, "the sweep should reach valid expressions too");
    for bytes in [
        &b"\xff\xfe"[..],
        b"ID == \"\xc3\xa9",
        b"\"\\\xf0\x9f\xa6\x80\"",
    ] {
        let _ = Filter::parse(&String::from_utf8_lossy(bytes));
    }
}

#[test]
fn filter_is_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Filter>();
}
