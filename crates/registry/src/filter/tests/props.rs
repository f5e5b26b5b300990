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

/// Property tests (proptest): the parser never panics on any input, deep nesting is an error
/// rather than a stack overflow, and expressions from a small generator of the grammar parse
/// and evaluate as the boolean algebra they spell (`not`, `and`, `or`).
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Valid expressions from the tests above, the seeds of the mutation property.
    const VALID: &[&str] = &[
        "Service.Meta.version == 2",
        "Node.Meta.os == linux and Service.Meta.version == 2",
        r#"Service.ID != "foo1""#,
        "v2 in Service.Tags",
        "Service.Tags is empty",
        "not (Node.Meta.os == linux)",
        "(Service.Meta.version == 1 or (Node.Meta.os == windows and not bar in Service.Tags))",
        "Tags not contains bar",
        "\"k8s-namespace\" in Meta",
        "Meta[\"k8s-namespace\"] == default",
        "Meta[ `k8s-namespace` ].x is empty",
        "Ratio == 0.5",
        "Port != -8001",
        "ID matches \"^foo[0-9]$\"",
        "Address matches `^192\\.168\\.`",
        "ID not matches \"^bar\"",
        "Meta is not empty",
        "\t\r\n ( \t ID \t == \t foo1 \t ) \n",
        "ID==foo1",
        r#"S == "\x61\011b\u00e9\U0001F980""#,
    ];

    /// Pieces spliced into valid expressions: tokens, quotes, escapes, multi-byte characters.
    const PIECES: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        "\"",
        "`",
        "\\",
        "\\u",
        "\\x",
        "\\U0010FFFF",
        "\\777",
        " ",
        "\n",
        "not ",
        " and ",
        " or ",
        " in ",
        "==",
        "!=",
        "is",
        "empty",
        "-",
        "0",
        "01",
        "1.",
        ".",
        "é",
        "🦀",
        "\u{0}",
        "\u{FEFF}",
        "matches \"(\"",
        "a{99999}",
        "x",
    ];

    fn entries() -> Vec<Value> {
        vec![
            health_entry("foo1", "1", "linux", &["bar"]),
            health_entry("foo2", "2", "windows", &[]),
            agent_service(),
            json!(null),
            json!([1, "x", [2, {"ID": null}], {"Meta": {"k": []}}]),
            json!({"ID": 7, "Tags": "bar", "Meta": [{"version": "1"}, {"version": 2}]}),
        ]
    }

    fn check_no_panic(expr: &str) {
        if let Ok(f) = Filter::parse(expr) {
            for item in entries() {
                f.matches(&item);
            }
        }
    }

    /// Cuts `s` at the char boundary nearest below `at` (inputs are always whole UTF-8).
    fn boundary(s: &str, at: usize) -> usize {
        let mut i = at.min(s.len());
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Insert(usize, usize),
        Delete(usize, usize),
        Replace(usize, usize, usize),
        Duplicate(usize, usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let at = any::<usize>();
        prop_oneof![
            (at, 0..PIECES.len()).prop_map(|(a, p)| Edit::Insert(a, p)),
            (at, 1..8usize).prop_map(|(a, n)| Edit::Delete(a, n)),
            (at, 1..4usize, 0..PIECES.len()).prop_map(|(a, n, p)| Edit::Replace(a, n, p)),
            (at, 1..16usize).prop_map(|(a, n)| Edit::Duplicate(a, n)),
        ]
    }

    fn apply(src: &str, edits: &[Edit]) -> String {
        let mut s = src.to_string();
        for e in edits {
            let pick = |a: usize, s: &str| boundary(s, a % (s.len() + 1));
            match *e {
                Edit::Insert(a, p) => {
                    let i = pick(a, &s);
                    s.insert_str(i, PIECES[p]);
                }
                Edit::Delete(a, n) | Edit::Replace(a, n, _) => {
                    let i = pick(a, &s);
                    let j = boundary(&s, i + n);
                    let with = match *e {
                        Edit::Replace(_, _, p) => PIECES[p],
                        _ => "",
                    };
                    s.replace_range(i..j, with);
                }
                Edit::Duplicate(a, n) => {
                    let i = pick(a, &s);
                    let j = boundary(&s, i + n);
                    let copy = s[i..j].to_string();
                    s.insert_str(j, &copy);
                }
            }
        }
        s
    }

    // ---- a small generator of the grammar, with entries to evaluate on ----

    const SELECTORS: &[&str] = &[
        "ID",
        "Port",
        "Tags",
        "Meta.version",
        "Meta[\"k8s-namespace\"]",
        "Meta[ `odd key` ]",
        "Checks.Status",
        "Missing.Deeper",
        "Flag",
    ];

    /// Values as they appear in an expression: bare words (never keywords), numbers, strings.
    const VALUES: &[&str] = &[
        "foo1",
        "bar",
        "passing",
        "critical",
        "v_2",
        "8000",
        "0",
        "-3",
        "0.5",
        "true",
        "T",
        "\"foo1\"",
        "\"\"",
        "\"a b\"",
        "\"\\u00e9\"",
        "`raw\\n`",
        "\"k8s-namespace\"",
    ];

    const REGEXES: &[&str] = &["\"^foo\"", "\"[0-9]+\"", "\".*\"", "`^$`", "\"ss\""];

    /// One match expression and its complement (the same match with the opposite operator).
    fn match_pair() -> impl Strategy<Value = (String, String, &'static str)> {
        let sel = proptest::sample::select(SELECTORS);
        let val = proptest::sample::select(VALUES);
        let re = proptest::sample::select(REGEXES);
        let ws = proptest::sample::select(&[" ", "  ", "\t", "\n "][..]);
        let pair = |a: String, b: String, flip: bool, sel: &'static str| {
            if flip {
                (b, a, sel)
            } else {
                (a, b, sel)
            }
        };
        prop_oneof![
            (
                sel.clone(),
                proptest::sample::select(&["", " "][..]),
                val.clone(),
                any::<bool>()
            )
                .prop_map(move |(s, w, v, f)| pair(
                    format!("{s}{w}=={w}{v}"),
                    format!("{s}{w}!={w}{v}"),
                    f,
                    s
                )),
            (sel.clone(), ws.clone(), val.clone(), any::<bool>()).prop_map(move |(s, w, v, f)| {
                pair(
                    format!("{s}{w}contains{w}{v}"),
                    format!("{s}{w}not{w}contains{w}{v}"),
                    f,
                    s,
                )
            }),
            (val, ws, sel.clone(), any::<bool>()).prop_map(move |(v, w, s, f)| pair(
                format!("{v}{w}in{w}{s}"),
                format!("{v}{w}not{w}in{w}{s}"),
                f,
                s
            )),
            (sel.clone(), re, any::<bool>()).prop_map(move |(s, r, f)| pair(
                format!("{s} matches {r}"),
                format!("{s} not matches {r}"),
                f,
                s
            )),
            (sel, any::<bool>()).prop_map(move |(s, f)| pair(
                format!("{s} is empty"),
                format!("{s} is not empty"),
                f,
                s
            )),
        ]
    }

    fn match_expr() -> impl Strategy<Value = String> {
        match_pair().prop_map(|(m, _, _)| m)
    }

    /// Expressions of the grammar, compound parts always parenthesised, nesting well below
    /// the parser's limit.
    fn expr() -> impl Strategy<Value = String> {
        match_expr().prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| format!("not ({e})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ( {b} )")),
                inner.prop_map(|e| format!("( {e} )")),
            ]
        })
    }

    /// A JSON scalar or small container built from the same vocabulary as the expressions.
    fn field_value() -> impl Strategy<Value = Value> {
        let word = proptest::sample::select(
            &[
                "foo1", "bar", "passing", "critical", "v_2", "8000", "", "a b", "é", "raw\\n", "ss",
            ][..],
        )
        .prop_map(|s| json!(s));
        let scalar = prop_oneof![
            word,
            prop_oneof![Just(8000i64), Just(0), Just(-3), Just(1)].prop_map(|n| json!(n)),
            Just(json!(0.5)),
            proptest::bool::ANY.prop_map(|b| json!(b)),
            Just(Value::Null),
        ];
        scalar.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(
                    (
                        proptest::sample::select(
                            &[
                                "version",
                                "k8s-namespace",
                                "odd key",
                                "Status",
                                "foo1",
                                "Deeper"
                            ][..]
                        ),
                        inner
                    ),
                    0..4
                )
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    fn entry() -> impl Strategy<Value = Value> {
        let keys = proptest::sample::select(
            &["ID", "Port", "Tags", "Meta", "Checks", "Missing", "Flag"][..],
        );
        proptest::collection::vec((keys, field_value()), 0..7)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_string_never_panics(s in any::<String>()) {
            check_no_panic(&s);
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            check_no_panic(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn strings_of_grammar_pieces_never_panic(
            parts in proptest::collection::vec(
                prop_oneof![proptest::sample::select(PIECES), proptest::sample::select(VALID)],
                0..24,
            )
        ) {
            check_no_panic(&parts.concat());
        }

        #[test]
        fn mutated_valid_expressions_never_panic(
            seed in proptest::sample::select(VALID),
            edits in proptest::collection::vec(edit(), 1..6),
        ) {
            prop_assert!(Filter::parse(seed).is_ok(), "seed {seed:?} must parse");
            check_no_panic(&apply(seed, &edits));
        }

        #[test]
        fn generated_expressions_parse_and_not_negates(e in expr(), items in proptest::collection::vec(entry(), 1..6)) {
            let f = Filter::parse(&e).map_err(|err| TestCaseError::fail(format!("{e:?}: {err}")))?;
            let negated = format!("not ({e})");
            let n = Filter::parse(&negated)
                .map_err(|err| TestCaseError::fail(format!("{negated:?}: {err}")))?;
            let for_all = entries().into_iter().chain(items);
            for item in for_all {
                prop_assert_eq!(n.matches(&item), !f.matches(&item), "{} on {}", negated, item);
            }
        }

        #[test]
        fn and_or_combine_like_booleans(a in expr(), b in expr(), items in proptest::collection::vec(entry(), 1..6)) {
            let fa = Filter::parse(&a).unwrap();
            let fb = Filter::parse(&b).unwrap();
            let and = Filter::parse(&format!("({a}) and ({b})")).unwrap();
            let or = Filter::parse(&format!("({a})\tor\n({b})")).unwrap();
            for item in entries().into_iter().chain(items) {
                let (x, y) = (fa.matches(&item), fb.matches(&item));
                prop_assert_eq!(and.matches(&item), x && y, "{} and {} on {}", a, b, item);
                prop_assert_eq!(or.matches(&item), x || y, "{} or {} on {}", a, b, item);
            }
        }

        #[test]
        fn negated_matches_are_complements((m, flipped, sel) in match_pair(), items in proptest::collection::vec(entry(), 1..6)) {
            // The operator pairs (== / !=, in / not in, contains / not contains, matches /
            // not matches, is empty / is not empty) are complements on every entry.
            let f = Filter::parse(&m).unwrap();
            let g = Filter::parse(&flipped).map_err(|err| TestCaseError::fail(format!("{flipped:?}: {err}")))?;
            // Through an array a selector means "any element", and any-of is not complemented
            // by any-of the opposite test (bexpr's semantics), so those entries are left out.
            let route = route(sel);
            for item in entries().into_iter().chain(items).filter(|v| !crosses_array(v, &route)) {
                prop_assert_eq!(g.matches(&item), !f.matches(&item), "{} vs {} on {}", m, flipped, item);
            }
        }
    }

    /// A generated selector's path: `Meta["k"]` and `Meta[ `k` ]` are `Meta.k`.
    fn route(sel: &str) -> Vec<String> {
        sel.replace("[\"", ".")
            .replace("\"]", "")
            .replace("[ `", ".")
            .replace("` ]", "")
            .split('.')
            .map(str::to_string)
            .collect()
    }

    /// Whether the walk along `path` meets an array before the path's end.
    fn crosses_array(v: &Value, path: &[String]) -> bool {
        let Some((key, rest)) = path.split_first() else {
            return false;
        };
        match v {
            Value::Array(_) => true,
            Value::Object(map) => map.get(key).is_some_and(|child| crosses_array(child, rest)),
            _ => false,
        }
    }

    proptest! {
        // Large inputs: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn deep_nesting_is_an_error_not_a_stack_overflow(
            depth in (MAX_DEPTH + 1)..20_000usize,
            shape in 0..5u8,
        ) {
            let expr = match shape {
                0 => "(".repeat(depth),
                1 => format!("{}ID == x{}", "(".repeat(depth), ")".repeat(depth)),
                2 => format!("{}ID == x", "not ".repeat(depth)),
                3 => format!("{}ID == x{}", "not (".repeat(depth), ")".repeat(depth)),
                _ => format!("{}ID == x{}", "( not ".repeat(depth), ")".repeat(depth)),
            };
            prop_assert!(Filter::parse(&expr).is_err(), "shape {} depth {}", shape, depth);
        }
    }

    #[test]
    fn ten_thousand_open_parentheses_are_an_error() {
        let err = Filter::parse(&"(".repeat(10_000)).unwrap_err().0;
        assert!(err.contains("nested deeper"), "{err}");
        let err = Filter::parse(&"[".repeat(10_000)).unwrap_err().0;
        assert!(err.starts_with("1:1 (0)"), "{err}");
    }
}
