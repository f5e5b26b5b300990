//! go-bexpr's error texts, deep nesting as an error rather than a stack overflow, and a
//! garbage-input sweep (the parser must never panic).

use super::*;

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
