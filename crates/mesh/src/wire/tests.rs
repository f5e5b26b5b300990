use super::*;

#[test]
fn grpc_timeouts_parse_like_grpc() {
    let mut h = http::HeaderMap::new();
    for (v, d) in [
        ("100m", Duration::from_millis(100)),
        ("2S", Duration::from_secs(2)),
        ("1H", Duration::from_secs(3600)),
        ("5u", Duration::from_micros(5)),
    ] {
        h.insert("grpc-timeout", http::HeaderValue::from_static(v));
        assert_eq!(grpc_timeout(&h), Some(d), "{v}");
    }
    assert_eq!(
        grpc_timeout(&{
            let mut h = http::HeaderMap::new();
            h.insert("grpc-timeout", http::HeaderValue::from_static("99999999H"));
            h
        }),
        Some(Duration::from_secs(99_999_999 * 3600)),
        "8 digits of hours is the longest timeout gRPC can say"
    );
    for bad in [
        "",
        "m",
        "10x",
        "-1S",
        "+1S",
        "123456789S",
        "18446744073709551615H",
    ] {
        h.insert("grpc-timeout", http::HeaderValue::from_str(bad).unwrap());
        assert_eq!(grpc_timeout(&h), None, "{bad:?}");
    }
}

/// Property tests of `grpc_timeout` (proptest, 256 cases each): the gRPC spec's
/// `TimeoutValue TimeoutUnit` (1 to 8 ASCII digits, then one of H M S m u n) is a deadline,
/// anything else is none.
mod props {
    use super::*;
    use proptest::prelude::*;

    fn headers(value: http::HeaderValue) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-timeout", value);
        h
    }

    /// What the spec says `value` means, worked out apart from `grpc_timeout`.
    fn spec(value: &[u8]) -> Option<Duration> {
        let (&unit, digits) = value.split_last()?;
        if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = digits
            .iter()
            .fold(0u128, |n, d| n * 10 + u128::from(d - b'0'));
        let unit_ns: u128 = match unit {
            b'H' => 3_600_000_000_000,
            b'M' => 60_000_000_000,
            b'S' => 1_000_000_000,
            b'm' => 1_000_000,
            b'u' => 1_000,
            b'n' => 1,
            _ => return None,
        };
        let ns = n * unit_ns;
        Some(Duration::new(
            (ns / 1_000_000_000) as u64,
            (ns % 1_000_000_000) as u32,
        ))
    }

    /// Header values near the syntax: digits, units, and what is easily mistaken for them.
    fn near_timeout() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => proptest::char::range('0', '9').prop_map(|c| c as u8),
            2 => proptest::sample::select(b"HMSmun".to_vec()),
            1 => proptest::sample::select(b" \t+-.xhsU_\x80\xff".to_vec()),
            1 => any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..12)
    }

    proptest! {
        #[test]
        fn any_header_value_is_the_spec_s_deadline_or_none(
            value in prop_oneof![near_timeout(), proptest::collection::vec(any::<u8>(), 0..16)]
        ) {
            // Bytes a header value cannot hold (controls but tab) never reach the mesh.
            let Ok(header) = http::HeaderValue::from_bytes(&value) else {
                return Ok(());
            };
            prop_assert_eq!(grpc_timeout(&headers(header)), spec(&value), "{:?}", value);
        }

        #[test]
        fn digits_and_a_unit_are_that_many_units(
            n in prop_oneof![0u64..100, 0u64..=99_999_999],
            zeros in 0usize..3,
            unit in proptest::sample::select(&["H", "M", "S", "m", "u", "n"][..]),
        ) {
            let text = format!("{}{n}{unit}", "0".repeat(zeros));
            let want = match unit {
                "H" => Duration::from_secs(n * 3600),
                "M" => Duration::from_secs(n * 60),
                "S" => Duration::from_secs(n),
                "m" => Duration::from_millis(n),
                "u" => Duration::from_micros(n),
                _ => Duration::from_nanos(n),
            };
            let got = grpc_timeout(&headers(http::HeaderValue::from_str(&text).unwrap()));
            if text.len() <= 9 {
                prop_assert_eq!(got, Some(want), "{}", text);
            } else {
                // Nine digits or more is malformed, even when they are leading zeros.
                prop_assert_eq!(got, None, "{}", text);
            }
        }
    }

    #[test]
    fn no_header_is_no_deadline() {
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }
}
