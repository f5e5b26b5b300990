//! Where Consul is and how to talk to it: the address, the ACL token and the TLS settings, from
//! a command-line flag and Consul's own client variables, read with the meaning Consul's CLI
//! and api package give them (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_SSL`, `CONSUL_HTTP_TOKEN`,
//! `CONSUL_HTTP_TOKEN_FILE`, `CONSUL_CACERT`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`,
//! `CONSUL_TLS_SERVER_NAME`, `CONSUL_HTTP_SSL_VERIFY`).
//!
//! Parsing the variables ([`ConsulEnv::parse`]) is a pure function of their values; reading the
//! files they name happens once, in [`ConsulConfig::from_env`], so a bad file is a start-up
//! error naming its variable. It must not make requests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use beamline_tls::PemFile;

use super::tls::{self, TlsSettings};
use super::ConsulError;

/// Consul's default agent address.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8500";

/// Where Consul is and how to authenticate.
#[derive(Debug, Clone)]
pub struct ConsulConfig {
    /// Normalised base URL, e.g. `http://127.0.0.1:8500` (no trailing slash).
    pub addr: String,
    pub token: Option<String>,
    /// Timeout of non-blocking calls; blocking queries add their wait to it.
    pub timeout: Duration,
    /// The TLS client configuration for an `https://` address; `None`: reqwest's defaults
    /// (the public web roots, no client certificate).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `CONSUL_TLS_SERVER_NAME`: the name the server's certificate is verified against (in
    /// `tls`) and, when it is a DNS name, the SNI sent (the configured address is still dialled).
    pub tls_server_name: Option<String>,
}

impl ConsulConfig {
    /// `addr` as Consul's tools accept it: `host:port`, `http://host:port` or `https://…`.
    pub fn new(addr: &str) -> Result<ConsulConfig, ConsulError> {
        Ok(ConsulConfig {
            addr: normalize_addr(addr)?,
            token: None,
            timeout: Duration::from_secs(5),
            tls: None,
            tls_server_name: None,
        })
    }

    /// From Consul's client variables in this process's environment; `flag` (a command-line
    /// address) wins over `CONSUL_HTTP_ADDR`, the other variables apply to either.
    pub fn from_env_or(flag: Option<&str>) -> Result<ConsulConfig, ConsulError> {
        let env = ConsulEnv::parse(|name| std::env::var(name).ok())?;
        ConsulConfig::from_env(flag, &env)
    }

    /// From parsed variables: reads the token file and the PEM files they name.
    pub fn from_env(flag: Option<&str>, env: &ConsulEnv) -> Result<ConsulConfig, ConsulError> {
        let addr = flag
            .map(str::to_string)
            .or_else(|| env.addr.clone())
            .unwrap_or_else(|| DEFAULT_ADDR.to_string());
        let mut config = ConsulConfig::new(&addr)?;
        if env.ssl {
            // As Consul: CONSUL_HTTP_SSL=true makes the address https, even one written http://.
            if let Some(rest) = config.addr.strip_prefix("http://") {
                config.addr = format!("https://{rest}");
            }
        }
        config.token = env.token()?;
        if !env.tls.is_default() {
            if config.addr.starts_with("http://") {
                tracing::warn!(
                    consul = %config.addr,
                    "Consul TLS variables (CONSUL_CACERT, CONSUL_CLIENT_CERT, …) are set but the \
                     address is http://: they are not used (use https:// in CONSUL_HTTP_ADDR)"
                );
            }
            config.tls = Some(Arc::new(tls::client_config(&env.tls)?));
            // Not sent as SNI when nothing verifies against it.
            if !env.tls.skip_verify {
                config.tls_server_name = env.tls.server_name.clone();
            }
        }
        Ok(config)
    }
}

/// Consul's client variables, parsed; no file read yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsulEnv {
    /// `CONSUL_HTTP_ADDR`.
    pub addr: Option<String>,
    /// `CONSUL_HTTP_SSL=true`: https for an address given without a scheme.
    pub ssl: bool,
    /// `CONSUL_HTTP_TOKEN`.
    pub token: Option<String>,
    /// `CONSUL_HTTP_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
    pub tls: TlsSettings,
}

impl ConsulEnv {
    /// The variables as `var` gives them (unset and empty mean the same, as in Consul).
    pub fn parse(var: impl Fn(&str) -> Option<String>) -> Result<ConsulEnv, ConsulError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let ca = get("CONSUL_CACERT").map(|p| PemFile::new("CONSUL_CACERT", p));
        if ca.is_none() && get("CONSUL_CAPATH").is_some() {
            // Consul would read a directory of CAs; silently trusting the public roots instead
            // would fail every handshake with a misleading hint.
            return Err(ConsulError::Env {
                var: "CONSUL_CAPATH",
                reason: "a directory of CAs is not supported: put the CA certificates in one \
                         PEM file and name it in CONSUL_CACERT"
                    .into(),
            });
        }
        let identity = match (get("CONSUL_CLIENT_CERT"), get("CONSUL_CLIENT_KEY")) {
            (Some(cert), Some(key)) => Some((
                PemFile::new("CONSUL_CLIENT_CERT", cert),
                PemFile::new("CONSUL_CLIENT_KEY", key),
            )),
            (None, None) => None,
            (Some(_), None) => return Err(both("CONSUL_CLIENT_KEY", "CONSUL_CLIENT_CERT")),
            (None, Some(_)) => return Err(both("CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY")),
        };
        let skip_verify = match get("CONSUL_HTTP_SSL_VERIFY") {
            Some(v) => !go_bool("CONSUL_HTTP_SSL_VERIFY", &v)?,
            None => false,
        };
        let ssl = match get("CONSUL_HTTP_SSL") {
            Some(v) => go_bool("CONSUL_HTTP_SSL", &v)?,
            None => false,
        };
        Ok(ConsulEnv {
            addr: get("CONSUL_HTTP_ADDR"),
            ssl,
            token: get("CONSUL_HTTP_TOKEN"),
            token_file: get("CONSUL_HTTP_TOKEN_FILE").map(PathBuf::from),
            tls: TlsSettings {
                ca,
                identity,
                server_name: get("CONSUL_TLS_SERVER_NAME").map(|n| strip_port(n.trim())),
                skip_verify,
            },
        })
    }

    /// The token to send. As Consul's api package: a token file, when set and not blank,
    /// wins over `CONSUL_HTTP_TOKEN` (its content trimmed); an unreadable one is an error.
    pub fn token(&self) -> Result<Option<String>, ConsulError> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| ConsulError::Env {
                var: "CONSUL_HTTP_TOKEN_FILE",
                reason: format!("{}: cannot read it: {e}", path.display()),
            })?;
            let token = text.trim();
            if !token.is_empty() {
                return Ok(Some(token.to_string()));
            }
        }
        Ok(self.token.clone())
    }
}

fn both(missing: &'static str, set: &str) -> ConsulError {
    ConsulError::Env {
        var: missing,
        reason: format!("{set} is set but {missing} is not: a client certificate needs both"),
    }
}

/// A boolean as Go's `strconv.ParseBool` reads it. Unlike Consul (which logs and carries on,
/// turning verification off for `CONSUL_HTTP_SSL_VERIFY=ture`), a typo is an error.
fn go_bool(var: &'static str, value: &str) -> Result<bool, ConsulError> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(ConsulError::Env {
            var,
            reason: format!("{other:?} is not a boolean (true or false)"),
        }),
    }
}

/// `consul.example:8501` → `consul.example`; `[::1]:8501` → `::1`; a bare name or IPv6
/// address unchanged (Consul drops the port the same way).
fn strip_port(name: &str) -> String {
    if let Some(rest) = name.strip_prefix('[') {
        return rest
            .split_once(']')
            .map_or(rest, |(host, _)| host)
            .to_string();
    }
    match name.split_once(':') {
        Some((host, port)) if !port.contains(':') => host.to_string(),
        _ => name.to_string(),
    }
}

/// `127.0.0.1:8500` → `http://127.0.0.1:8500`; keeps `http(s)://`, drops a trailing `/`.
pub fn normalize_addr(addr: &str) -> Result<String, ConsulError> {
    let bad = |reason| ConsulError::InvalidAddress {
        addr: addr.to_string(),
        reason,
    };
    let trimmed = addr.trim();
    let with_scheme = match trimmed.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => {
            let rest = rest.trim_end_matches('/');
            if rest.is_empty() {
                return Err(bad("it has no host"));
            }
            format!("{scheme}://{rest}")
        }
        Some(_) => return Err(bad("only http:// and https:// are supported")),
        None if trimmed.trim_end_matches('/').is_empty() => return Err(bad("it is empty")),
        None => format!("http://{}", trimmed.trim_end_matches('/')),
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|_| bad("it is not host:port or a URL"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(bad("it must not have a path or query"));
    }
    Ok(with_scheme)
}

#[cfg(test)]
mod tests;
