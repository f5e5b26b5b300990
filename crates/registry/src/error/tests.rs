use super::*;

#[test]
fn short_quoted_strings_are_kept_whole() {
    let text = r#"invalid type: string "abc", expected u16"#;
    assert_eq!(shorten_quoted(text), text);
    assert_eq!(shorten_quoted("no quotes"), "no quotes");
    assert_eq!(shorten_quoted(r#"a "b\"c" d"#), r#"a "b\"c" d"#);
}

#[test]
fn long_quoted_strings_are_cut_and_marked() {
    let long = "x".repeat(100_000);
    let text = format!(r#"invalid type: string "{long}", expected u16"#);
    let short = shorten_quoted(&text);
    let kept = "x".repeat(QUOTE_MAX_CHARS);
    assert_eq!(
        short,
        format!(r#"invalid type: string "{kept}"…, expected u16"#)
    );
}

#[test]
fn a_cut_never_leaves_an_escaped_closing_quote_or_an_unclosed_string() {
    let text = format!(r#""{}\"tail"#, "y".repeat(QUOTE_MAX_CHARS - 1));
    let short = shorten_quoted(&format!("{text}{}\"", "z".repeat(100)));
    assert!(short.ends_with("\"…"), "{short}");
    assert!(!short.ends_with("\\\"…"), "{short}");
    let unterminated = format!("\"{}", "u".repeat(1000));
    assert!(shorten_quoted(&unterminated).len() < 100);
}

#[test]
fn quote_is_the_contracts() {
    assert_eq!(quote("web-1"), "\"web-1\"");
    assert!(quote(&"k".repeat(100_000)).len() < 100);
}
