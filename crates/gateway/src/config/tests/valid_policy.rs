//! Random valid policies for the property tests, as the values they hold, and their text.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

/// A valid policy, as the values it holds.
#[derive(Debug, Clone)]
pub(super) struct Policy {
    pub(super) callers: Vec<(String, String, Role, Vec<String>)>,
    pub(super) jwt: Option<(String, String, usize, String, Option<u64>)>,
    pub(super) per_caller: Option<(f64, u32)>,
    pub(super) overrides: Vec<(String, f64, u32)>,
}

pub(super) fn beamline_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,4}([.-][A-Za-z0-9]{1,4}){0,3}"
}

pub(super) fn limit() -> impl Strategy<Value = (f64, u32)> {
    (
        prop_oneof![
            (1u32..10_000).prop_map(f64::from),
            1e-9f64..1e9,
            Just(f64::MIN_POSITIVE)
        ],
        prop_oneof![1u32..100, Just(u32::MAX)],
    )
}

pub(super) fn policy() -> impl Strategy<Value = Policy> {
    let caller = (
        // Printable ASCII, no spaces at either end; quotes and backslashes included.
        "[!-~]([ -~]{0,10}[!-~])?",
        "[0-9a-fA-F]{64}",
        prop_oneof![
            Just(Role::Operator),
            Just(Role::Observer),
            Just(Role::Safety)
        ],
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
pub(super) fn string(s: &str) -> String {
    format!("{s:?}")
}

pub(super) fn render(p: &Policy) -> String {
    let mut text = String::from("# generated\n");
    for (name, digest, role, beamlines) in &p.callers {
        let role = role.as_str();
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
