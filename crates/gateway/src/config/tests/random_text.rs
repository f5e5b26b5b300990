//! Random policy-like text for the property tests: TOML tokens, this file's keys and values
//! (right and odd ones), files of them in any order, and mutations of a valid file.

use proptest::prelude::*;

/// Pieces of TOML, and of this file's keys and values, for random text and mutations.
pub(super) const TOKENS: &[&str] = &[
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

pub(super) fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(TOKENS).prop_map(str::to_string),
        1 => "[a-z_.\"\\[\\]= \n0-9]{1,8}",
        1 => any::<char>().prop_map(String::from),
    ]
}

pub(super) fn toml_ish() -> impl Strategy<Value = String> {
    proptest::collection::vec(token(), 0..40).prop_map(|t| t.concat())
}

/// Keys: this file's, and odd ones (empty, blank, dotted, quoted, with a newline).
pub(super) fn key() -> impl Strategy<Value = String> {
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
pub(super) fn value() -> impl Strategy<Value = String> {
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
pub(super) fn policy_ish() -> impl Strategy<Value = String> {
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
pub(super) enum Mutation {
    Insert(prop::sample::Index, String),
    Delete(prop::sample::Index, usize),
    Replace(prop::sample::Index, usize, String),
    DuplicateLine(prop::sample::Index),
    SwapLines(prop::sample::Index, prop::sample::Index),
    DeleteLine(prop::sample::Index),
    Truncate(prop::sample::Index),
}

pub(super) fn mutation() -> impl Strategy<Value = Mutation> {
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
pub(super) fn mutate(text: &str, m: &Mutation) -> String {
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
