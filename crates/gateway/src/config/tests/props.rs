//! Property tests of the policy parser (proptest): it never panics on any text, every refusal
//! names the file, a line of it and a field, and what it accepts is what the file says.

use std::collections::BTreeSet;

use beamline_contract::beamline::BeamlineId;
use proptest::prelude::*;

use super::random_text::{mutate, mutation, policy_ish, toml_ish};
use super::valid_policy::{policy, render};
use super::*;

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
        prop_assume!(bad != "\"operator\"" && bad != "\"observer\"" && bad != "\"safety\"");
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
