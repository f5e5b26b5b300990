//! The auth file's parser: the documented shape, and errors that name the line and the field.

use super::*;

const DIGEST: &str = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";

fn full() -> String {
    format!(
        r#"
[[caller]]
name = "ops-console"
api_key_sha256 = "{DIGEST}"
role = "operator"
beamlines = ["*"]

[[caller]]
name = "bl531-team"
api_key_sha256 = "{}"
role = "observer"
beamlines = ["5.3.1", "SST-1"]

[jwt]
issuer = "https://login.example"
audience = "beamline-mesh"
hs256_secret_file = "/run/secrets/jwt"

[limits]
per_beamline = {{ rate = 50, burst = 100 }}
per_caller = {{ rate = 0.5, burst = 40 }}
[limits.beamline."8.3.2"]
rate = 5
burst = 5
"#,
        "ab".repeat(32)
    )
}

/// The error for `text`, as (line, field, message).
fn error(text: &str) -> (usize, String, String) {
    match PolicyConfig::parse(text, "policy.toml") {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(ConfigError::Invalid {
            path,
            line,
            field,
            message,
        }) => {
            assert_eq!(path, "policy.toml");
            (line, field, message)
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn parses_the_documented_shape() {
    let config = PolicyConfig::parse(&full(), "policy.toml").unwrap();
    assert_eq!(config.callers.len(), 2);
    let ops = &config.callers[0];
    assert_eq!(ops.name, "ops-console");
    assert_eq!(ops.api_key_sha256, DIGEST.to_ascii_lowercase());
    assert_eq!(ops.role, Role::Operator);
    assert_eq!(ops.beamlines, ["*"]);
    assert_eq!(config.callers[1].role, Role::Observer);
    assert_eq!(config.callers[1].beamlines, ["5.3.1", "SST-1"]);
    let jwt = config.jwt.unwrap();
    assert_eq!(jwt.issuer, "https://login.example");
    assert_eq!(jwt.audience, "beamline-mesh");
    assert_eq!(
        jwt.hs256_secret_file,
        Some(PathBuf::from("/run/secrets/jwt"))
    );
    assert_eq!(jwt.leeway_secs, DEFAULT_LEEWAY_SECS);
    assert_eq!((jwt.file.as_str(), jwt.key_line), ("policy.toml", 17));
    let limits = config.limits;
    assert_eq!(
        limits.per_beamline,
        Some(Limit {
            rate: 50.0,
            burst: 100
        })
    );
    assert_eq!(
        limits.per_caller,
        Some(Limit {
            rate: 0.5,
            burst: 40
        })
    );
    assert_eq!(
        limits.beamline["8.3.2"],
        Limit {
            rate: 5.0,
            burst: 5
        }
    );
}

#[test]
fn empty_file_is_valid() {
    let config = PolicyConfig::parse("", "policy.toml").unwrap();
    assert!(config.callers.is_empty() && config.jwt.is_none());
    assert!(config.limits.per_beamline.is_none() && config.limits.beamline.is_empty());
    PolicyConfig::parse("# nothing yet\n\n", "policy.toml").unwrap();
}

#[test]
fn bad_role_names_line_and_field() {
    let text = full().replace("role = \"observer\"", "role = \"admin\"");
    let (line, field, message) = error(&text);
    assert_eq!((line, field.as_str()), (11, "caller[2].role"));
    assert_eq!(message, r#"expected "operator" or "observer", got "admin""#);
    let shown = PolicyConfig::parse(&text, "policy.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        shown,
        r#"policy.toml:11: caller[2].role: expected "operator" or "observer", got "admin""#
    );
}

#[test]
fn unknown_keys_are_refused_everywhere() {
    let (line, field, _) = error(&full().replace("role = \"operator\"", "rol = \"operator\""));
    assert_eq!((line, field.as_str()), (5, "caller[1].rol"));
    let (line, field, _) = error(&format!("{}\nextra = 1\n", full()));
    // A key after [limits.beamline."8.3.2"] belongs to that table.
    assert_eq!(
        (line, field.as_str()),
        (26, r#"limits.beamline."8.3.2".extra"#)
    );
    let (line, field, _) = error("callers = []\n");
    assert_eq!((line, field.as_str()), (1, "callers"));
    let (line, field, _) = error(&full().replace("audience =", "audiences ="));
    assert_eq!((line, field.as_str()), (16, "jwt.audiences"));
    let (line, field, _) = error(&full().replace("burst = 100 }", "burst = 100, x = 1 }"));
    assert_eq!((line, field.as_str()), (20, "limits.per_beamline.x"));
}

#[test]
fn syntax_errors_name_the_line() {
    let (line, field, message) = error("[[caller]]\nname = \"a\"\nrole = \n");
    assert_eq!((line, field.as_str()), (3, "(syntax)"), "{message}");
    let (line, _, message) = error("[[caller]]\nname = \"a\"\nname = \"b\"\n");
    assert_eq!(line, 3, "{message}");
}

#[test]
fn caller_fields_are_validated() {
    let caller = |name: &str, digest: &str, beamlines: &str| {
        format!(
            "[[caller]]\nname = {name}\napi_key_sha256 = {digest}\nrole = \"observer\"\n\
             beamlines = {beamlines}\n"
        )
    };
    let d = format!("\"{DIGEST}\"");
    let (line, field, message) = error(&caller("\"\"", &d, "[\"*\"]"));
    assert_eq!((line, field.as_str()), (2, "caller[1].name"));
    assert!(message.contains("empty"), "{message}");
    let (line, field, _) = error(&caller("\"a\"", "\"abc\"", "[\"*\"]"));
    assert_eq!((line, field.as_str()), (3, "caller[1].api_key_sha256"));
    let (_, field, _) = error(&caller(
        "\"a\"",
        &format!("\"{}\"", "g".repeat(64)),
        "[\"*\"]",
    ));
    assert_eq!(field, "caller[1].api_key_sha256");
    let (line, field, _) = error(&caller("\"a\"", &d, "[]"));
    assert_eq!((line, field.as_str()), (5, "caller[1].beamlines"));
    let (_, field, message) = error(&caller("\"a\"", &d, "[\"5.3.1\", \"5..3\"]"));
    assert_eq!(field, "caller[1].beamlines[2]");
    assert!(message.contains("invalid beamline id"), "{message}");
    let (_, field, _) = error(&caller("\"a\"", &d, "[\"*\", \"5.3.1\"]"));
    assert_eq!(field, "caller[1].beamlines[1]");
    let (_, field, _) = error(&caller("\"a\"", &d, "\"*\""));
    assert_eq!(field, "caller[1].beamlines");
    let (_, field, _) = error(&caller("7", &d, "[\"*\"]"));
    assert_eq!(field, "caller[1].name");

    let missing = "[[caller]]\nname = \"a\"\nrole = \"observer\"\nbeamlines = [\"*\"]\n";
    let (line, field, message) = error(missing);
    assert_eq!((line, field.as_str()), (1, "caller[1].api_key_sha256"));
    assert!(message.contains("missing"), "{message}");
}

#[test]
fn caller_names_and_keys_are_unique() {
    let two = full().replace("bl531-team", "ops-console");
    let (line, field, message) = error(&two);
    assert_eq!((line, field.as_str()), (9, "caller[2].name"));
    assert!(message.contains("duplicate"), "{message}");
    let same_key = full().replace(&"ab".repeat(32), &DIGEST.to_ascii_lowercase());
    let (line, field, message) = error(&same_key);
    assert_eq!((line, field.as_str()), (10, "caller[2].api_key_sha256"));
    assert!(message.contains("ops-console"), "{message}");
}

#[test]
fn jwt_needs_exactly_one_key_source() {
    let none = "[jwt]\nissuer = \"i\"\naudience = \"a\"\n";
    let (line, field, message) = error(none);
    assert_eq!((line, field.as_str()), (1, "jwt"));
    assert!(message.contains("exactly one key source"), "{message}");
    let two = format!("{none}hs256_secret_env = \"S\"\nes256_public_key_file = \"k.pem\"\n");
    let (line, field, _) = error(&two);
    assert_eq!((line, field.as_str()), (5, "jwt.es256_public_key_file"));
    let (_, field, _) = error("[jwt]\naudience = \"a\"\nhs256_secret_env = \"S\"\n");
    assert_eq!(field, "jwt.issuer");
    let ok = format!("{none}hs256_secret_env = \"S\"\nleeway_secs = 5\n");
    let jwt = PolicyConfig::parse(&ok, "p").unwrap().jwt.unwrap();
    assert_eq!(jwt.hs256_secret_env.as_deref(), Some("S"));
    assert_eq!((jwt.leeway_secs, jwt.key_line), (5, 4));
    let (_, field, _) = error(&format!(
        "{none}hs256_secret_env = \"S\"\nleeway_secs = -1\n"
    ));
    assert_eq!(field, "jwt.leeway_secs");
}

#[test]
fn limits_are_validated() {
    let (line, field, _) = error("[limits]\nper_caller = { rate = 0, burst = 1 }\n");
    assert_eq!((line, field.as_str()), (2, "limits.per_caller.rate"));
    let (_, field, _) = error("[limits]\nper_caller = { rate = 1, burst = 0 }\n");
    assert_eq!(field, "limits.per_caller.burst");
    let (_, field, _) = error("[limits]\nper_caller = { rate = 1, burst = 1.5 }\n");
    assert_eq!(field, "limits.per_caller.burst");
    let (_, field, _) = error("[limits]\nper_caller = { rate = \"fast\", burst = 1 }\n");
    assert_eq!(field, "limits.per_caller.rate");
    let (_, field, _) = error("[limits]\nper_caller = { rate = 1 }\n");
    assert_eq!(field, "limits.per_caller.burst");
    let (line, field, message) = error("[limits.beamline.\"8..3\"]\nrate = 1\nburst = 1\n");
    assert_eq!((line, field.as_str()), (1, r#"limits.beamline."8..3""#));
    assert!(message.contains("invalid beamline id"), "{message}");
    let (line, field, _) = error("\n[limits.beamline.\"8.3.2\"]\nrate = 1\nburst = -3\n");
    assert_eq!(
        (line, field.as_str()),
        (4, r#"limits.beamline."8.3.2".burst"#)
    );
}

#[test]
fn load_reads_the_file_and_resolves_key_paths_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "[jwt]\nissuer = \"i\"\naudience = \"a\"\nes256_public_key_file = \"keys/es.pem\"\n",
    )
    .unwrap();
    let jwt = PolicyConfig::load(&path).unwrap().jwt.unwrap();
    assert_eq!(
        jwt.es256_public_key_file,
        Some(dir.path().join("keys/es.pem"))
    );
    let missing = PolicyConfig::load(&dir.path().join("nope.toml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
}

#[test]
fn odd_keys_are_named_quoted() {
    // Found by the property tests below: an empty key's error named no field.
    let (line, field, _) = error("\"\" = \"operator\"");
    assert_eq!((line, field.as_str()), (1, r#""""#));
    let (_, field, _) = error("\" \" = 1\n");
    assert_eq!(field, r#"" ""#);
    let (line, field, _) = error("[[caller]]\n\"a\\nb\" = 1\n");
    assert_eq!((line, field.as_str()), (2, r#"caller[1]."a\nb""#));
    let (_, field, _) = error("[limits]\n\"per_caller.rate\" = 1\n");
    assert_eq!(field, r#"limits."per_caller.rate""#);
}

/// Property tests of the policy parser (proptest): it never panics on any text, every refusal
/// names the file, a line of it and a field, and what it accepts is what the file says.
mod props {
    use std::collections::BTreeSet;

    use super::*;
    use beamline_contract::beamline::BeamlineId;
    use proptest::prelude::*;

    /// Checks `text`'s outcome: a refusal names the file, a line inside the text (1-based; one
    /// past the last line for an error at the very end) and a non-empty field; an acceptance
    /// holds only valid settings.
    fn check(text: &str) -> Result<Result<PolicyConfig, (usize, String)>, TestCaseError> {
        match PolicyConfig::parse(text, "policy.toml") {
            Ok(config) => {
                check_valid(&config)?;
                Ok(Ok(config))
            }
            Err(e @ ConfigError::Invalid { .. }) => {
                let shown = e.to_string();
                let ConfigError::Invalid {
                    path,
                    line,
                    field,
                    message,
                } = e
                else {
                    unreachable!()
                };
                prop_assert_eq!(path, "policy.toml");
                let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
                prop_assert!(
                    (1..=lines).contains(&line),
                    "line {} of {}: {}",
                    line,
                    lines,
                    shown
                );
                prop_assert!(!field.trim().is_empty(), "no field named: {}", shown);
                // One line of a log, whatever the keys hold.
                prop_assert!(!field.chars().any(char::is_control), "{}", shown);
                prop_assert!(!message.trim().is_empty(), "no message: {}", shown);
                let prefix = format!("policy.toml:{line}: {field}: ");
                prop_assert!(shown.starts_with(&prefix), "{}", shown);
                Ok(Err((line, field)))
            }
            Err(other) => Err(TestCaseError::fail(format!("not a parse error: {other}"))),
        }
    }

    fn check_valid(config: &PolicyConfig) -> Result<(), TestCaseError> {
        let mut names = BTreeSet::new();
        let mut digests = BTreeSet::new();
        for caller in &config.callers {
            prop_assert!(is_caller_name(&caller.name), "{:?}", caller.name);
            prop_assert!(names.insert(&caller.name), "duplicate {:?}", caller.name);
            let d = &caller.api_key_sha256;
            prop_assert!(d.len() == 64, "{:?}", d);
            prop_assert!(d
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            prop_assert!(digests.insert(d), "duplicate digest {:?}", d);
            prop_assert!(!caller.beamlines.is_empty());
            if caller.beamlines != ["*"] {
                for id in &caller.beamlines {
                    prop_assert!(BeamlineId::parse(id).is_ok(), "{:?}", id);
                }
            }
        }
        if let Some(jwt) = &config.jwt {
            prop_assert!(!jwt.issuer.trim().is_empty() && !jwt.audience.trim().is_empty());
            prop_assert!(jwt.leeway_secs <= 3600);
            let sources = [
                jwt.hs256_secret_file.is_some(),
                jwt.hs256_secret_env.is_some(),
                jwt.rs256_public_key_file.is_some(),
                jwt.es256_public_key_file.is_some(),
            ];
            prop_assert_eq!(sources.iter().filter(|&&s| s).count(), 1);
            prop_assert!(jwt.key_line >= 1);
        }
        let limits = &config.limits;
        let all = limits.per_beamline.iter().chain(&limits.per_caller);
        for limit in all.chain(limits.beamline.values()) {
            prop_assert!(limit.rate.is_finite() && limit.rate > 0.0, "{:?}", limit);
            prop_assert!(limit.burst >= 1, "{:?}", limit);
        }
        for id in limits.beamline.keys() {
            prop_assert!(BeamlineId::parse(id).is_ok(), "{:?}", id);
        }
        Ok(())
    }

    /// Pieces of TOML, and of this file's keys and values, for random text and mutations.
    const TOKENS: &[&str] = &[
        "\n",
        " ",
        "=",
        "\"",
        "'",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        ",",
        ".",
        "#",
        "\\",
        "\"\"\"",
        "[[caller]]",
        "[jwt]",
        "[limits]",
        "[limits.beamline.\"8.3.2\"]",
        "[limits.beamline]",
        "caller",
        "jwt",
        "limits",
        "name",
        "api_key_sha256",
        "role",
        "beamlines",
        "issuer",
        "audience",
        "leeway_secs",
        "hs256_secret_env",
        "rs256_public_key_file",
        "per_caller",
        "per_beamline",
        "beamline",
        "rate",
        "burst",
        "\"*\"",
        "\"5.3.1\"",
        "\"5..3\"",
        "\"\"",
        "\"operator\"",
        "0",
        "-1",
        "1.5",
        "1e400",
        "-0.0",
        "inf",
        "nan",
        "+inf",
        "0x10",
        "1_000",
        "9223372036854775808",
        "4294967296",
        "true",
        "1979-05-27",
        "[]",
        "{}",
        "\"é\"",
        "\u{0}",
        "\r\n",
        "\t",
        "\u{FEFF}",
        "\u{1F600}",
    ];

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(TOKENS).prop_map(str::to_string),
            1 => "[a-z_.\"\\[\\]= \n0-9]{1,8}",
            1 => any::<char>().prop_map(String::from),
        ]
    }

    fn toml_ish() -> impl Strategy<Value = String> {
        proptest::collection::vec(token(), 0..40).prop_map(|t| t.concat())
    }

    /// Keys: this file's, and odd ones (empty, blank, dotted, quoted, with a newline).
    fn key() -> impl Strategy<Value = String> {
        const KEYS: &[&str] = &[
            "caller",
            "jwt",
            "limits",
            "name",
            "api_key_sha256",
            "role",
            "beamlines",
            "issuer",
            "audience",
            "leeway_secs",
            "hs256_secret_file",
            "hs256_secret_env",
            "rs256_public_key_file",
            "es256_public_key_file",
            "per_beamline",
            "per_caller",
            "beamline",
            "rate",
            "burst",
            "\"\"",
            "\" \"",
            "\"a.b\"",
            "\"a\\nb\"",
            "''",
            "a.b",
            "limits.beamline.\"8.3.2\"",
            "\"8.3.2\"",
            "\"5..3\"",
            "\"*\"",
        ];
        prop_oneof![
            4 => proptest::sample::select(KEYS).prop_map(str::to_string),
            1 => "[a-z_]{1,6}",
        ]
    }

    /// Values: right and wrong types, edge numbers, empty and odd strings, tables, arrays.
    fn value() -> impl Strategy<Value = String> {
        const VALUES: &[&str] = &[
            "\"operator\"",
            "\"observer\"",
            "\"admin\"",
            "\"\"",
            "\" \"",
            "\"*\"",
            "[\"*\"]",
            "[\"5.3.1\", \"SST-1\"]",
            "[\"*\", \"5.3.1\"]",
            "[\"5..3\"]",
            "[]",
            "[1]",
            "\"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\"",
            "\"abababababababababababababababababababababababababababababababab\"",
            "0",
            "1",
            "-1",
            "3600",
            "3601",
            "4294967295",
            "4294967296",
            "9223372036854775807",
            "0x7fffffffffffffff",
            "0o777",
            "0b1",
            "1_000",
            "1.5",
            "0.0",
            "-0.0",
            "1e400",
            "inf",
            "-inf",
            "nan",
            "true",
            "1979-05-27T07:32:00Z",
            "{}",
            "{ rate = 1, burst = 1 }",
            "{ rate = 0, burst = 1 }",
            "{ rate = 1 }",
            "{ rate = nan, burst = 1 }",
            "{ rate = 1e-320, burst = 4294967295 }",
            "{ \"\" = 1 }",
            "\"\"\"\nmulti\"\"\"",
            "'lit\\eral'",
            "\"\\u00e9\"",
            "\"tab\\there\"",
        ];
        prop_oneof![
            6 => proptest::sample::select(VALUES).prop_map(str::to_string),
            1 => "\"[ -~&&[^\"\\\\]]{0,12}\"",
        ]
    }

    /// A file of table headers and `key = value` lines, in any order.
    fn policy_ish() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            1 => key().prop_map(|k| format!("[{k}]")),
            1 => key().prop_map(|k| format!("[[{k}]]")),
            1 => proptest::sample::select(
                &["[[caller]]", "[jwt]", "[limits]", "[limits.beamline.\"8.3.2\"]"][..]
            )
            .prop_map(str::to_string),
            6 => (key(), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        ];
        proptest::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Insert(prop::sample::Index, String),
        Delete(prop::sample::Index, usize),
        Replace(prop::sample::Index, usize, String),
        DuplicateLine(prop::sample::Index),
        SwapLines(prop::sample::Index, prop::sample::Index),
        DeleteLine(prop::sample::Index),
        Truncate(prop::sample::Index),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        use prop::sample::Index;
        prop_oneof![
            (any::<Index>(), token()).prop_map(|(i, t)| Mutation::Insert(i, t)),
            (any::<Index>(), 1usize..12).prop_map(|(i, n)| Mutation::Delete(i, n)),
            (any::<Index>(), 1usize..6, token()).prop_map(|(i, n, t)| Mutation::Replace(i, n, t)),
            any::<Index>().prop_map(Mutation::DuplicateLine),
            (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
            any::<Index>().prop_map(Mutation::DeleteLine),
            any::<Index>().prop_map(Mutation::Truncate),
        ]
    }

    /// `text` after `m`, cut at character boundaries only (the file is UTF-8 by the time the
    /// parser sees it).
    fn mutate(text: &str, m: &Mutation) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
        let at = |i: &prop::sample::Index, len: usize| if len == 0 { 0 } else { i.index(len) };
        match m {
            Mutation::Insert(i, t) => {
                let p = at(i, chars.len() + 1);
                chars.splice(p..p, t.chars());
            }
            Mutation::Delete(i, n) => {
                let p = at(i, chars.len());
                chars.drain(p..(p + n).min(chars.len()));
            }
            Mutation::Replace(i, n, t) => {
                let p = at(i, chars.len());
                chars.splice(p..(p + n).min(chars.len()), t.chars());
            }
            Mutation::DuplicateLine(i) => {
                let l = at(i, lines.len());
                if let Some(&line) = lines.get(l) {
                    lines.insert(l, line);
                }
                return lines.concat();
            }
            Mutation::SwapLines(a, b) => {
                let (a, b) = (at(a, lines.len()), at(b, lines.len()));
                if !lines.is_empty() {
                    lines.swap(a, b);
                }
                return lines.concat();
            }
            Mutation::DeleteLine(i) => {
                let l = at(i, lines.len());
                if l < lines.len() {
                    lines.remove(l);
                }
                return lines.concat();
            }
            Mutation::Truncate(i) => chars.truncate(at(i, chars.len() + 1)),
        }
        chars.into_iter().collect()
    }

    /// A valid policy, as the values it holds.
    #[derive(Debug, Clone)]
    struct Policy {
        callers: Vec<(String, String, Role, Vec<String>)>,
        jwt: Option<(String, String, usize, String, Option<u64>)>,
        per_caller: Option<(f64, u32)>,
        overrides: Vec<(String, f64, u32)>,
    }

    fn beamline_id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]{1,4}([.-][A-Za-z0-9]{1,4}){0,3}"
    }

    fn limit() -> impl Strategy<Value = (f64, u32)> {
        (
            prop_oneof![
                (1u32..10_000).prop_map(f64::from),
                1e-9f64..1e9,
                Just(f64::MIN_POSITIVE)
            ],
            prop_oneof![1u32..100, Just(u32::MAX)],
        )
    }

    fn policy() -> impl Strategy<Value = Policy> {
        let caller = (
            // Printable ASCII, no spaces at either end; quotes and backslashes included.
            "[!-~]([ -~]{0,10}[!-~])?",
            "[0-9a-fA-F]{64}",
            prop_oneof![Just(Role::Operator), Just(Role::Observer)],
            prop_oneof![
                Just(vec!["*".to_string()]),
                proptest::collection::vec(beamline_id(), 1..4)
            ],
        );
        let jwt = (
            "[ -~]*[!-~][ -~]*",
            "[!-~]{1,20}",
            0usize..4,
            "[A-Za-z0-9_./-]{1,20}",
            proptest::option::of(0u64..=3600),
        );
        let callers = proptest::collection::vec(caller, 0..4).prop_map(|mut callers| {
            // Names and keys are unique in a valid file.
            let mut seen = BTreeSet::new();
            callers.retain(|(name, digest, _, _)| {
                seen.insert(name.clone()) && seen.insert(digest.to_ascii_lowercase())
            });
            callers
        });
        let overrides = proptest::collection::btree_map(beamline_id(), limit(), 0..3);
        (
            callers,
            proptest::option::of(jwt),
            proptest::option::of(limit()),
            overrides,
        )
            .prop_map(|(callers, jwt, per_caller, overrides)| Policy {
                callers,
                jwt,
                per_caller,
                overrides: overrides
                    .into_iter()
                    .map(|(id, (r, b))| (id, r, b))
                    .collect(),
            })
    }

    /// A TOML string for `s` (printable ASCII): Rust's escapes for `"` and `\` are TOML's.
    fn string(s: &str) -> String {
        format!("{s:?}")
    }

    fn render(p: &Policy) -> String {
        let mut text = String::from("# generated\n");
        for (name, digest, role, beamlines) in &p.callers {
            let role = if *role == Role::Operator {
                "operator"
            } else {
                "observer"
            };
            let beamlines: Vec<String> = beamlines.iter().map(|b| string(b)).collect();
            text.push_str(&format!(
                "\n[[caller]]\nname = {}\napi_key_sha256 = {}\nrole = {}\nbeamlines = [{}]\n",
                string(name),
                string(digest),
                string(role),
                beamlines.join(", ")
            ));
        }
        if let Some((issuer, audience, source, key, leeway)) = &p.jwt {
            text.push_str(&format!(
                "\n[jwt]\nissuer = {}\naudience = {}\n{} = {}\n",
                string(issuer),
                string(audience),
                JWT_KEY_SOURCES[*source],
                string(key)
            ));
            if let Some(leeway) = leeway {
                text.push_str(&format!("leeway_secs = {leeway}\n"));
            }
        }
        text.push_str("\n[limits]\n");
        if let Some((rate, burst)) = p.per_caller {
            text.push_str(&format!(
                "per_caller = {{ rate = {rate:?}, burst = {burst} }}\n"
            ));
        }
        for (id, rate, burst) in &p.overrides {
            text.push_str(&format!(
                "[limits.beamline.{}]\nrate = {rate:?}\nburst = {burst}\n",
                string(id)
            ));
        }
        text
    }

    proptest! {
        #[test]
        fn any_text_is_a_policy_or_an_error_naming_line_and_field(
            text in prop_oneof![any::<String>(), toml_ish(), policy_ish(), policy_ish()]
        ) {
            check(&text)?.ok();
        }

        #[test]
        fn a_mutated_policy_is_a_policy_or_an_error_naming_line_and_field(
            mutations in proptest::collection::vec(mutation(), 1..5)
        ) {
            let text = mutations.iter().fold(full(), |text, m| mutate(&text, m));
            check(&text)?.ok();
        }

        #[test]
        fn a_valid_policy_reads_as_written(p in policy()) {
            let text = render(&p);
            let config = match check(&text)? {
                Ok(config) => config,
                Err(e) => return Err(TestCaseError::fail(format!("{e:?} refused:\n{text}"))),
            };
            prop_assert_eq!(config.callers.len(), p.callers.len());
            for (got, (name, digest, role, beamlines)) in config.callers.iter().zip(&p.callers) {
                prop_assert_eq!(&got.name, name);
                prop_assert_eq!(&got.api_key_sha256, &digest.to_ascii_lowercase());
                prop_assert_eq!(got.role, *role);
                prop_assert_eq!(&got.beamlines, beamlines);
            }
            match (&config.jwt, &p.jwt) {
                (None, None) => {}
                (Some(got), Some((issuer, audience, source, key, leeway))) => {
                    prop_assert_eq!(&got.issuer, issuer);
                    prop_assert_eq!(&got.audience, audience);
                    prop_assert_eq!(got.leeway_secs, leeway.unwrap_or(DEFAULT_LEEWAY_SECS));
                    let set = match *source {
                        0 => got.hs256_secret_file.as_ref().map(|p| p.display().to_string()),
                        1 => got.hs256_secret_env.clone(),
                        2 => got.rs256_public_key_file.as_ref().map(|p| p.display().to_string()),
                        _ => got.es256_public_key_file.as_ref().map(|p| p.display().to_string()),
                    };
                    prop_assert_eq!(set.as_ref(), Some(key));
                    let line = text.lines().position(|l| l.starts_with(JWT_KEY_SOURCES[*source]));
                    prop_assert_eq!(Some(got.key_line), line.map(|l| l + 1));
                }
                (got, want) => prop_assert!(false, "jwt {:?}, wrote {:?}", got, want),
            }
            prop_assert_eq!(config.limits.per_beamline, None);
            prop_assert_eq!(
                config.limits.per_caller,
                p.per_caller.map(|(rate, burst)| Limit { rate, burst })
            );
            let overrides: BTreeMap<String, Limit> = p
                .overrides
                .iter()
                .map(|(id, rate, burst)| (id.clone(), Limit { rate: *rate, burst: *burst }))
                .collect();
            prop_assert_eq!(&config.limits.beamline, &overrides);
        }

        /// One bad value in an otherwise valid file: refused at its line, under its field.
        #[test]
        fn a_bad_value_is_refused_at_its_line_and_field(
            p in policy(),
            which in any::<prop::sample::Index>(),
            bad in prop_oneof![
                Just("\"admin\"".to_string()),
                Just("7".to_string()),
                Just("[]".to_string()),
                "\"[a-z ]{0,8}\"",
            ],
        ) {
            let mut p = p;
            if p.callers.is_empty() {
                let caller = ("a".to_string(), "ab".repeat(32), Role::Observer, vec!["*".into()]);
                p.callers.push(caller);
            }
            prop_assume!(bad != "\"operator\"" && bad != "\"observer\"");
            let text = render(&p);
            let i = which.index(p.callers.len());
            // Line of the (i+1)th `role = ` line.
            let (line_index, _) = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.starts_with("role = "))
                .nth(i)
                .unwrap();
            let bad_text: String = text
                .lines()
                .enumerate()
                .map(|(n, l)| match n == line_index {
                    true => format!("role = {bad}\n"),
                    false => format!("{l}\n"),
                })
                .collect();
            let (line, field) = match check(&bad_text)? {
                Ok(_) => return Err(TestCaseError::fail(format!("accepted:\n{bad_text}"))),
                Err(e) => e,
            };
            prop_assert_eq!(line, line_index + 1);
            prop_assert_eq!(field, format!("caller[{}].role", i + 1));
        }
    }
}
