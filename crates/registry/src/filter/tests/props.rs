//! Property tests (proptest): the parser never panics on any input, deep nesting is an error
//! rather than a stack overflow, and expressions from a small generator of the grammar parse
//! and evaluate as the boolean algebra they spell (`not`, `and`, `or`).

use super::*;
use proptest::prelude::*;

/// Valid expressions from the example tests, the seeds of the mutation property.
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
    let keys =
        proptest::sample::select(&["ID", "Port", "Tags", "Meta", "Checks", "Missing", "Flag"][..]);
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
