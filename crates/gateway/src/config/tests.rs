//! The policy file's parser: the documented shape and loading (`shape`), refusals that name
//! the line and the field (`refusals`), and property tests over random and mutated text
//! (`props`, with its generators `random_text` and `valid_policy`). The fixtures they share
//! are here.

mod props;
mod random_text;
mod refusals;
mod shape;
mod valid_policy;

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
