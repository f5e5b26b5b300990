//! The gateway's policy file (`--auth-file`, TOML): callers with their API key digests, roles and
//! beamlines; JWT settings; rate limits. A bad file is refused at start with a message naming the
//! line and the field.
//!
//! Owns the file's shape and validation; enforcing it is the layers'.
//!
//! The file is walked as toml's spanned document tree (`toml::de::DeTable`) rather than through
//! serde derive: serde's errors know neither the line nor the path of the offending key, and an
//! operator fixing a refused file at start-up needs both. Fields are named like
//! `caller[2].role`, counting `[[caller]]` entries from 1 as a person reading the file does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::caller::Role;

mod parse;

/// One `[[caller]]` entry.
#[derive(Debug, Clone)]
pub struct CallerConfig {
    pub name: String,
    /// SHA-256 of the API key, lower-case hex.
    pub api_key_sha256: String,
    pub role: Role,
    /// Beamline ids, or `["*"]` for all.
    pub beamlines: Vec<String>,
}

/// `[jwt]`: how bearer JWTs are verified. Exactly one key source is set.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: String,
    pub hs256_secret_file: Option<PathBuf>,
    /// Name of an environment variable holding the HS256 secret.
    pub hs256_secret_env: Option<String>,
    pub rs256_public_key_file: Option<PathBuf>,
    pub es256_public_key_file: Option<PathBuf>,
    /// Leeway for exp/nbf, in seconds.
    pub leeway_secs: u64,
    /// The policy file this came from and the line of the key source, so that a key that
    /// cannot be loaded later (by the authenticator) is reported like any other bad field.
    pub file: String,
    pub key_line: usize,
}

/// A token bucket: `rate` calls per second, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: u32,
}

/// `[limits]`.
#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    pub per_beamline: Option<Limit>,
    pub per_caller: Option<Limit>,
    /// `[limits.beamline."8.3.2"]` overrides of `per_beamline`.
    pub beamline: BTreeMap<String, Limit>,
}

/// The whole file.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    pub callers: Vec<CallerConfig>,
    pub jwt: Option<JwtConfig>,
    pub limits: LimitsConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `line` is 1-based; `field` names the offending key (e.g. `caller[2].role`).
    #[error("{path}:{line}: {field}: {message}")]
    Invalid {
        path: String,
        line: usize,
        field: String,
        message: String,
    },
}

/// The default leeway for `exp`/`nbf`: clocks of the issuer and the gateway drift a little.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

const JWT_KEY_SOURCES: [&str; 4] = [
    "hs256_secret_file",
    "hs256_secret_env",
    "rs256_public_key_file",
    "es256_public_key_file",
];

impl PolicyConfig {
    /// Reads and validates the policy file at `path`. Relative key file paths in `[jwt]` are
    /// taken relative to the policy file's directory, so a file and its keys can move together.
    pub fn load(path: &Path) -> Result<PolicyConfig, ConfigError> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: label.clone(),
            source,
        })?;
        let mut config = PolicyConfig::parse(&text, &label)?;
        if let (Some(jwt), Some(dir)) = (config.jwt.as_mut(), path.parent()) {
            for file in [
                &mut jwt.hs256_secret_file,
                &mut jwt.rs256_public_key_file,
                &mut jwt.es256_public_key_file,
            ]
            .into_iter()
            .flatten()
            {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(config)
    }

    /// Parses and validates a policy file's text; `path_label` names it in errors. An empty
    /// text is a valid policy with no callers, no JWT and no limits.
    pub fn parse(text: &str, path_label: &str) -> Result<PolicyConfig, ConfigError> {
        parse::policy(text, path_label)
    }
}

/// Whether `name` may name a caller: non-empty printable ASCII, no surrounding spaces (it is
/// sent as the `x-caller` header and written to logs).
pub fn is_caller_name(name: &str) -> bool {
    !name.is_empty() && name.trim() == name && name.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests;
