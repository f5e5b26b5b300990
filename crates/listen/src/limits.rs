//! The bounds of one listener ([`Limits`]): their defaults, the environment variables that
//! override them, and fitting the connection cap under the descriptor limit.
//!
//! Owns the numbers; it must not accept connections.

use std::time::Duration;

/// Overrides [`Limits::max_connections`] (a positive integer).
pub const MAX_CONNECTIONS_ENV: &str = "BEAMLINE_MESH_MAX_CONNECTIONS";
/// Overrides [`Limits::handshake_timeout`] (`10s`, `500ms`, `1m`, or plain seconds).
pub const HANDSHAKE_TIMEOUT_ENV: &str = "BEAMLINE_MESH_HANDSHAKE_TIMEOUT";

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once (handshaking or served); one more is closed at once.
    pub max_connections: usize,
    /// A connection's first bytes (the HTTP/2 preface, or the TLS ClientHello) must arrive
    /// within this, or it is closed.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("{name}={value:?}: {why}")]
    Env {
        name: &'static str,
        value: String,
        why: &'static str,
    },
}

impl Limits {
    /// These limits with [`MAX_CONNECTIONS_ENV`] and [`HANDSHAKE_TIMEOUT_ENV`] applied where set.
    pub fn with_env(self) -> Result<Limits, LimitsError> {
        self.with_vars(|name| std::env::var(name).ok())
    }

    fn with_vars(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Limits, LimitsError> {
        if let Some(value) = var(MAX_CONNECTIONS_ENV) {
            self.max_connections = match value.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(env_error(
                        MAX_CONNECTIONS_ENV,
                        value,
                        "not a positive integer",
                    ))
                }
            };
        }
        if let Some(value) = var(HANDSHAKE_TIMEOUT_ENV) {
            self.handshake_timeout = match parse_duration(value.trim()) {
                Some(d) if !d.is_zero() => d,
                _ => {
                    return Err(env_error(
                        HANDSHAKE_TIMEOUT_ENV,
                        value,
                        "not a positive duration (10s, 500ms, 1m)",
                    ))
                }
            };
        }
        Ok(self)
    }

    /// These limits with the cap lowered, if need be, to the soft descriptor limit now in force
    /// less `kept` descriptors (for everything but connections), with a WARN line when lowered.
    /// Past the descriptor limit accept() fails and clients wait unanswered; under the cap they
    /// are refused at once.
    pub fn fit_to_descriptors(mut self, kept: u64) -> Limits {
        let Ok((nofile, _)) = crate::nofile_limit() else {
            return self;
        };
        let fit = crate::fit_cap(self.max_connections, nofile, kept);
        if fit < self.max_connections {
            tracing::warn!(
                max_connections = self.max_connections,
                nofile,
                lowered_to = fit,
                "the connection cap exceeds the descriptor limit"
            );
            self.max_connections = fit;
        }
        self
    }
}

fn env_error(name: &'static str, value: String, why: &'static str) -> LimitsError {
    LimitsError::Env { name, value, why }
}

/// `1.5s`, `500ms`, `2m`, or plain seconds (`10`).
fn parse_duration(s: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(value * scale).ok()
}

#[cfg(test)]
mod tests;
