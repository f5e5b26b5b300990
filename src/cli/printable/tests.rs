use super::*;

#[test]
fn plain_text_is_kept_as_it_is() {
    let text = "5.3.1 Fährt den Motor — µm ✓";
    assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
}

#[test]
fn escape_sequences_line_breaks_and_c1_controls_are_escaped() {
    assert_eq!(
        printable("\u{1b}[2J\u{1b}]0;owned\u{7}moves"),
        "\\u{1b}[2J\\u{1b}]0;owned\\u{7}moves"
    );
    assert_eq!(printable("a\nHALTED by x\rb\tc"), "a\\nHALTED by x\\rb\\tc");
    // CSI as one C1 character, and DEL.
    assert_eq!(printable("\u{9b}31m\u{7f}"), "\\u{9b}31m\\u{7f}");
}

#[test]
fn bidirectional_overrides_are_escaped() {
    assert_eq!(
        printable("note\u{202e}kcol\u{2066}"),
        "note\\u{202e}kcol\\u{2066}"
    );
}
