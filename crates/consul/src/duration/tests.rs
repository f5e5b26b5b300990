use super::*;
use serde_json::json;

fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

#[test]
fn parses_go_durations() {
    let cases: &[(&str, Duration)] = &[
        ("10s", Duration::from_secs(10)),
        ("1m30s", Duration::from_secs(90)),
        ("1.5h", Duration::from_secs(5400)),
        ("250ms", Duration::from_millis(250)),
        ("300us", Duration::from_micros(300)),
        ("300µs", Duration::from_micros(300)),
        ("300\u{3bc}s", Duration::from_micros(300)),
        ("2ns", ns(2)),
        ("0", Duration::ZERO),
        ("+0", Duration::ZERO),
        ("-0", Duration::ZERO),
        ("0s", Duration::ZERO),
        ("-1s", Duration::ZERO),
        ("-1.5h", Duration::ZERO),
        ("+5s", Duration::from_secs(5)),
        (".5s", Duration::from_millis(500)),
        ("5.s", Duration::from_secs(5)),
        ("1h2m3s4ms5us6ns", ns(3_723_004_005_006)),
        ("1.000000001s", ns(1_000_000_001)),
        ("1.0000000001s", ns(1_000_000_000)),
        ("100.00100s", ns(100_001_000_000)),
        ("39h9m14.425s", ns(140_954_425_000_000)),
        ("9223372036854775807ns", ns(i64::MAX as u64)),
        ("9223372036854775.807us", ns(i64::MAX as u64)),
        ("0.100000000000000000000h", Duration::from_secs(360)),
        ("90m", Duration::from_secs(5400)),
    ];
    for (input, want) in cases {
        assert_eq!(parse_go(input), Ok(*want), "{input}");
    }
}

#[test]
fn rejects_what_go_rejects_with_gos_messages() {
    let invalid = [
        "",
        "nope",
        "-",
        "+",
        "s",
        ".",
        "-.",
        ".s",
        "+.s",
        "1x",
        "1.5",
        "3000000h",
        "9223372036854775808ns",
        "9223372036854775807ns1ns",
        "9999999999999999999h",
        "99999999999999999999999999999999s",
        "1s 2s",
        " 1s",
    ];
    for input in invalid {
        let err = parse_go(input).expect_err(input).0;
        assert!(err.starts_with("time: "), "{input}: {err}");
        assert!(err.ends_with(&format!("{input:?}")), "{input}: {err}");
    }
    assert_eq!(
        parse_go("nope").unwrap_err().to_string(),
        r#"time: invalid duration "nope""#
    );
    assert_eq!(
        parse_go("10").unwrap_err().0,
        r#"time: missing unit in duration "10""#
    );
    assert_eq!(
        parse_go("1x").unwrap_err().0,
        r#"time: unknown unit "x" in duration "1x""#
    );
    assert_eq!(
        parse_go("1 s").unwrap_err().0,
        r#"time: unknown unit " s" in duration "1 s""#
    );
    // Go's 2^63 limit: allowed negative (we clamp it to zero), refused positive.
    assert_eq!(parse_go("-9223372036854775808ns"), Ok(Duration::ZERO));
    assert!(parse_go("9223372036854775808ns").is_err());
    assert_eq!(
        DurationError::invalid("x").0,
        r#"time: invalid duration "x""#
    );
}

#[test]
fn formats_like_go() {
    let cases: &[(Duration, &str)] = &[
        (Duration::ZERO, "0s"),
        (ns(1), "1ns"),
        (ns(1_100), "1.1µs"),
        (ns(1_500), "1.5µs"),
        (Duration::from_micros(1), "1µs"),
        (ns(2_200_000), "2.2ms"),
        (Duration::from_millis(100), "100ms"),
        (Duration::from_millis(1_500), "1.5s"),
        (ns(3_300_000_000), "3.3s"),
        (Duration::from_secs(90), "1m30s"),
        (ns(4 * 60_000_000_000 + 5_000_000_000), "4m5s"),
        (ns(4 * 60_000_000_000 + 5_001_000_000), "4m5.001s"),
        (Duration::from_secs(3600), "1h0m0s"),
        (
            ns(5 * 3_600_000_000_000 + 6 * 60_000_000_000 + 7_001_000_000),
            "5h6m7.001s",
        ),
        (ns(8 * 3_600_000_000_000 + 1), "8h0m0.000000001s"),
        (ns(i64::MAX as u64), "2562047h47m16.854775807s"),
    ];
    for (d, want) in cases {
        assert_eq!(format_go(*d), *want, "{d:?}");
    }
}

#[test]
fn format_and_parse_round_trip() {
    for n in [
        1,
        999,
        1_000,
        1_234_567,
        1_000_000_000,
        59_999_999_999,
        86_400_000_000_123,
    ] {
        assert_eq!(parse_go(&format_go(ns(n))), Ok(ns(n)), "{n}");
    }
}

#[test]
fn reads_json_strings_and_nanoseconds() {
    assert_eq!(from_json(&json!("1m30s")), Ok(Duration::from_secs(90)));
    assert_eq!(
        from_json(&json!(10_000_000_000u64)),
        Ok(Duration::from_secs(10))
    );
    assert_eq!(from_json(&json!(0)), Ok(Duration::ZERO));
    assert_eq!(from_json(&json!(-5)), Ok(Duration::ZERO));
    assert_eq!(from_json(&json!(1500.9)), Ok(ns(1500)));
    assert_eq!(from_json(&json!(-1.5)), Ok(Duration::ZERO));
    assert_eq!(from_json(&json!(1e10)), Ok(Duration::from_secs(10)));
    assert!(from_json(&json!("nope")).is_err());
    assert!(from_json(&json!("10")).is_err());
    assert!(from_json(&json!(u64::MAX)).is_err());
    assert!(from_json(&json!(1e300)).is_err());
    for bad in [json!(null), json!(true), json!([]), json!({"s": 1})] {
        let err = from_json(&bad).expect_err("non-duration JSON");
        assert!(err.0.starts_with("time: invalid duration"), "{err}");
    }
}

/// Property tests of `parse_go` and `format_go` (proptest, 256 cases each).
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Go's largest duration, i64::MAX nanoseconds.
    const MAX_NS: u64 = i64::MAX as u64;

    const UNITS: [(&str, u64); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("\u{b5}s", 1_000),
        ("\u{3bc}s", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];

    fn unit() -> impl Strategy<Value = (&'static str, u64)> {
        proptest::sample::select(&UNITS[..])
    }

    /// Nanosecond counts spread over every magnitude up to `max`, not only the top one.
    fn nanos(max: u64) -> impl Strategy<Value = u64> {
        (0u32..64, any::<u64>()).prop_map(move |(bits, n)| {
            let n = if bits == 0 { 0 } else { n >> (64 - bits) };
            n.min(max)
        })
    }

    /// Text in the syntax's alphabet, where the interesting mistakes are.
    fn near_duration() -> impl Strategy<Value = String> {
        concat!(
            "[-+]?([0-9]{0,22}(\\.[0-9]{0,22})?",
            "(ns|us|\u{b5}s|\u{3bc}s|ms|s|m|h|x| |\u{b5}|\u{3bc})?){0,4}"
        )
    }

    /// What every refusal looks like: one of Go's texts, ending with the input as Go quotes
    /// it (as Rust's `{:?}` does for printable ASCII).
    fn check_error(input: &str, err: &DurationError) -> Result<(), TestCaseError> {
        prop_assert!(err.0.starts_with("time: "), "{}", err);
        if input.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            prop_assert!(err.0.ends_with(&format!("{input:?}")), "{}", err);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn never_panics_and_refuses_with_go_texts(
            s in prop_oneof![any::<String>(), near_duration()]
        ) {
            match parse_go(&s) {
                // Whatever it reads is a Go duration, and reads back the same.
                Ok(d) => {
                    prop_assert!(d.as_nanos() <= u128::from(MAX_NS));
                    prop_assert_eq!(parse_go(&format_go(d)), Ok(d));
                }
                Err(e) => check_error(&s, &e)?,
            }
        }

        /// Exact to the nanosecond over Go's whole range (0 to i64::MAX ns).
        #[test]
        fn format_then_parse_is_the_identity_in_gos_range(n in nanos(MAX_NS)) {
            let d = Duration::from_nanos(n);
            let text = format_go(d);
            prop_assert_eq!(parse_go(&text), Ok(d), "{}", text);
        }

        /// Past Go's range, formatting still works and parsing refuses it.
        #[test]
        fn durations_past_gos_range_format_but_do_not_parse(
            n in prop_oneof![
                (MAX_NS + 1..=u64::MAX).prop_map(u128::from),
                Just(Duration::MAX.as_nanos()),
                (0..u128::from(u64::MAX)).prop_map(|n| Duration::MAX.as_nanos() - n),
            ]
        ) {
            let d = Duration::new(
                (n / 1_000_000_000) as u64,
                (n % 1_000_000_000) as u32,
            );
            let text = format_go(d);
            let err = parse_go(&text).unwrap_err();
            prop_assert_eq!(err, DurationError::invalid(&text));
        }

        /// Whole numbers of units: the exact sum, refused past i64::MAX ns; a '+' changes
        /// nothing, a '-' reads as zero (Consul's "unset") up to Go's negative limit 2^63.
        #[test]
        fn whole_components_sum_exactly_and_overflow_is_an_error(
            parts in proptest::collection::vec(
                (prop_oneof![0u64..1000, nanos(u64::MAX)], 0usize..3, unit()),
                1..5,
            )
        ) {
            let mut text = String::new();
            let mut exact: u128 = 0;
            for (n, zeros, (unit, unit_ns)) in &parts {
                text.push_str(&format!("{}{n}{unit}", "0".repeat(*zeros)));
                exact += u128::from(*n) * u128::from(*unit_ns);
            }
            match parse_go(&text) {
                Ok(d) => prop_assert_eq!(d.as_nanos(), exact, "{}", text),
                Err(e) => {
                    prop_assert!(exact > u128::from(MAX_NS), "{} refused: {}", text, e);
                    prop_assert_eq!(e, DurationError::invalid(&text));
                }
            }
            prop_assert_eq!(parse_go(&format!("+{text}")), parse_go(&text).map_err(|_| {
                DurationError::invalid(&format!("+{text}"))
            }));
            let negative = format!("-{text}");
            if exact <= u128::from(MAX_NS) + 1 {
                prop_assert_eq!(parse_go(&negative), Ok(Duration::ZERO));
            } else {
                prop_assert_eq!(parse_go(&negative), Err(DurationError::invalid(&negative)));
            }
        }

        /// Decimals: between the whole part and the next whole unit; exact when the
        /// fraction's digits divide the unit; and a sum of components reads as the sum of
        /// each read alone (Go converts each component on its own).
        #[test]
        fn decimal_components_are_bounded_exact_and_additive(
            parts in proptest::collection::vec(
                ("[0-9]{0,6}", "[0-9]{0,14}", unit()),
                1..4,
            )
        ) {
            let mut text = String::new();
            let mut sum: Option<u128> = Some(0);
            for (whole, frac, (unit, unit_ns)) in &parts {
                let component = format!("{whole}.{frac}{unit}");
                text.push_str(&component);
                let read = parse_go(&component);
                if whole.is_empty() && frac.is_empty() {
                    prop_assert_eq!(read, Err(DurationError::invalid(&component)));
                    sum = None;
                    continue;
                }
                let v = read.unwrap().as_nanos();
                let w: u128 = whole.parse().unwrap_or(0);
                let unit_ns = u128::from(*unit_ns);
                let (low, high) = (w * unit_ns, (w + 1) * unit_ns);
                prop_assert!(low <= v && v <= high, "{} = {}", component, v);
                let scale = 10u128.pow(frac.len() as u32);
                if unit_ns % scale == 0 {
                    let f: u128 = frac.parse().unwrap_or(0);
                    prop_assert_eq!(v, w * unit_ns + f * (unit_ns / scale), "{}", component);
                }
                sum = sum.map(|s| s + v);
            }
            match sum {
                Some(sum) => prop_assert_eq!(parse_go(&text).unwrap().as_nanos(), sum),
                None => prop_assert_eq!(parse_go(&text), Err(DurationError::invalid(&text))),
            }
        }
    }
}
