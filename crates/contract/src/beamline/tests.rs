use super::*;

#[test]
fn ids_follow_the_rule() {
    for ok in ["5.3.1", "12.3.1", "SST-1", "a", "A1-b2.c3"] {
        assert!(BeamlineId::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        ".5",
        "5.",
        "5..3",
        "5.-3",
        "5 3",
        "5/3",
        "é",
        &"1".repeat(33),
    ] {
        assert!(BeamlineId::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn service_name_is_lower_case_with_dashes() {
    assert_eq!(
        BeamlineId::parse("5.3.1").unwrap().service_name(),
        "beamline-5-3-1"
    );
    assert_eq!(
        BeamlineId::parse("SST-1").unwrap().service_name(),
        "beamline-sst-1"
    );
}

/// Property tests of the id rule (proptest, 256 cases each), against an oracle written
/// independently of `parse`.
mod props {
    use super::*;
    use crate::quote::quote;
    use proptest::prelude::*;

    /// [`PATTERN`] and [`MAX_LEN`] said another way: non-empty, at most 32 bytes, and
    /// split at every '.' and '-' into non-empty runs of ASCII letters and digits.
    fn oracle(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_LEN
            && s.split(['.', '-'])
                .all(|run| !run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric()))
    }

    /// Ids [`PATTERN`] matches, of any length (some past [`MAX_LEN`]).
    fn pattern_match() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]{1,6}([.-][A-Za-z0-9]{1,6}){0,8}"
    }

    /// Strings near the rule: its alphabet plus a few characters it refuses.
    fn near_miss() -> impl Strategy<Value = String> {
        "[A-Za-z0-9.\\-]{0,40}|[A-Za-z0-9.\\- _/é\\x00+]{0,40}"
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![pattern_match(), near_miss(), any::<String>(), "\\PC{30,80}"]
    }

    proptest! {
        #[test]
        fn accepts_exactly_the_pattern_up_to_the_limit(s in any_text()) {
            let parsed = BeamlineId::parse(&s);
            prop_assert_eq!(parsed.is_ok(), oracle(&s), "{:?}: {:?}", s, parsed);
            match parsed {
                Ok(id) => {
                    prop_assert_eq!(id.as_str(), s.as_str());
                    prop_assert_eq!(&id, &s.parse::<BeamlineId>().unwrap());
                }
                Err(e) => {
                    // The input, quoted and cut to QUOTE_MAX_CHARS characters.
                    prop_assert_eq!(&e.id, &quote(&s));
                    let shown = e.to_string();
                    let prefix = format!("invalid beamline id {}: ", quote(&s));
                    prop_assert!(shown.starts_with(&prefix), "{}", shown);
                    let suffix =
                        format!("(expected {PATTERN}, at most {MAX_LEN} characters)");
                    prop_assert!(shown.ends_with(&suffix), "{}", shown);
                }
            }
        }

        #[test]
        fn pattern_matches_within_the_limit_parse(s in pattern_match()) {
            prop_assert_eq!(BeamlineId::parse(&s).is_ok(), s.len() <= MAX_LEN, "{:?}", s);
        }

        #[test]
        fn service_name_is_beamline_and_the_id_lowered_with_dashes(
            // At most 4 + 6 × 4 = 28 characters: always within MAX_LEN.
            s in "[A-Za-z0-9]{1,4}([.-][A-Za-z0-9]{1,3}){0,6}"
        ) {
            let name = BeamlineId::parse(&s).unwrap().service_name();
            let want: String = s
                .chars()
                .map(|c| if c == '.' { '-' } else { c.to_ascii_lowercase() })
                .collect();
            prop_assert_eq!(&name, &format!("beamline-{want}"));
            // A DNS label's alphabet, as Consul needs for its DNS interface.
            prop_assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        }

        #[test]
        fn a_long_bad_id_is_quoted_cut(s in "\\PC{65,400}") {
            let e = BeamlineId::parse(&s).unwrap_err();
            let head: String = s.chars().take(crate::quote::QUOTE_MAX_CHARS).collect();
            prop_assert_eq!(e.id, format!("{head:?}…"));
        }
    }
}
