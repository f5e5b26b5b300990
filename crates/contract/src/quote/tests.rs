use super::*;

#[test]
fn long_input_is_cut_and_marked_and_short_input_is_whole() {
    assert_eq!(quote("5.3.1"), "\"5.3.1\"");
    assert_eq!(quote(""), "\"\"");
    let long = "x".repeat(10_000);
    let quoted = quote(&long);
    assert_eq!(quoted, format!("\"{}\"…", "x".repeat(QUOTE_MAX_CHARS)));
    // Characters, not bytes: a multi-byte character is never split.
    assert_eq!(quote(&"é".repeat(100)).chars().count(), QUOTE_MAX_CHARS + 3);
    // Control characters are escaped, never written raw.
    assert_eq!(quote("a\nb"), "\"a\\nb\"");
}

/// Property tests: `quote` on any string (proptest, 256 cases each).
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Reads back a string as `{:?}` writes it: the text between the opening quote and its
    /// closing quote, and what follows that quote. `None` if it is not such a string.
    fn unescape_debug(quoted: &str) -> Option<(String, &str)> {
        let mut chars = quoted.char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((out, &quoted[i + 1..])),
                '\\' => match chars.next()?.1 {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    '0' => out.push('\0'),
                    c @ ('\\' | '"' | '\'') => out.push(c),
                    'u' => {
                        if chars.next()?.1 != '{' {
                            return None;
                        }
                        let mut hex = String::new();
                        loop {
                            match chars.next()?.1 {
                                '}' => break,
                                h => hex.push(h),
                            }
                        }
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    _ => return None,
                },
                // Nothing raw that could end a header line or hide in a log line.
                c if c.is_control() => return None,
                c => out.push(c),
            }
        }
        None
    }

    /// Any text, biased towards what an escaper must get right: quotes, backslashes,
    /// controls, multi-byte and combining characters, and `…` itself.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            proptest::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('\n'),
                    Just('\0'),
                    Just('\u{7f}'),
                    Just('\''),
                    Just('é'),
                    Just('\u{301}'),
                    Just('…'),
                    Just('\u{1F600}'),
                    Just('\u{202E}'),
                    any::<char>(),
                    proptest::char::range('a', 'z'),
                ],
                0..200,
            )
            .prop_map(|cs| cs.into_iter().collect()),
        ]
    }

    proptest! {
        #[test]
        fn quotes_at_most_the_limit_and_reads_back(input in text()) {
            let quoted = quote(&input);
            let (inside, after) = unescape_debug(&quoted)
                .unwrap_or_else(|| panic!("not a quoted string: {quoted}"));
            let n = input.chars().count();
            // Exactly the first QUOTE_MAX_CHARS characters of the input, whole.
            let head: String = input.chars().take(QUOTE_MAX_CHARS).collect();
            prop_assert_eq!(&inside, &head);
            prop_assert!(inside.chars().count() <= QUOTE_MAX_CHARS);
            // Marked as cut exactly when it is.
            prop_assert_eq!(after, if n > QUOTE_MAX_CHARS { "…" } else { "" });
            if n <= QUOTE_MAX_CHARS {
                prop_assert_eq!(&inside, &input);
            }
        }

        #[test]
        fn a_long_input_shows_only_its_start(
            start in proptest::collection::vec(any::<char>(), QUOTE_MAX_CHARS),
            rest in "\\PC{1,300}",
        ) {
            let start: String = start.into_iter().collect();
            let quoted = quote(&format!("{start}{rest}"));
            prop_assert_eq!(quoted, format!("{start:?}…"));
        }
    }
}
