//! The registry's error type, one variant per HTTP status it maps to (Consul's error bodies are
//! plain text, so each variant carries the exact message a client will read), and how a message
//! repeats caller input: quoted and cut ([`quote`]), so a 100 KB id or filter earns an error
//! body of a few hundred bytes, not a copy of itself.

use beamline_contract::quote::QUOTE_MAX_CHARS;

/// Caller input as an error message repeats it (at most 64 characters, escaped, `…` when cut).
pub use beamline_contract::quote::quote;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 400: the request is malformed or breaks a Consul rule.
    #[error("{0}")]
    BadRequest(String),
    /// 403: missing or wrong ACL token.
    #[error("Permission denied")]
    PermissionDenied,
    /// 404: an unknown service, check or key.
    #[error("{0}")]
    NotFound(String),
    /// 413: a body over the endpoint's limit.
    #[error("{0}")]
    TooLarge(String),
    /// 500: durable storage failed; the write was not applied.
    #[error("storage error: {0}")]
    Storage(#[from] super::persist::PersistError),
    /// 500 for anything Consul itself answers with 500 (e.g. an unknown datacenter).
    #[error("{0}")]
    Internal(String),
}

impl RegistryError {
    pub fn status_code(&self) -> u16 {
        match self {
            RegistryError::BadRequest(_) => 400,
            RegistryError::PermissionDenied => 403,
            RegistryError::NotFound(_) => 404,
            RegistryError::TooLarge(_) => 413,
            RegistryError::Storage(_) | RegistryError::Internal(_) => 500,
        }
    }
}

pub fn bad_request(msg: impl Into<String>) -> RegistryError {
    RegistryError::BadRequest(msg.into())
}

/// `text` (another library's message: serde's, a duration parser's) with every double-quoted
/// string in it longer than [`QUOTE_MAX_CHARS`] cut to that and marked `…`, as [`quote`] cuts
/// caller input. Those libraries quote the value they refused, and the value is caller input.
pub fn shorten_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1024));
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' {
            continue;
        }
        // Inside a quoted string, escapes as Rust's and JSON's `Debug` write them.
        let (mut kept, mut closed, mut escaped) = (0usize, false, false);
        // Whether the last character kept opens an escape: cut there, it would escape the
        // closing quote.
        let mut dangling = false;
        for c in chars.by_ref() {
            if !escaped && c == '"' {
                closed = true;
                break;
            }
            escaped = !escaped && c == '\\';
            if kept < QUOTE_MAX_CHARS {
                out.push(c);
                dangling = escaped;
            }
            kept += 1;
        }
        if kept > QUOTE_MAX_CHARS {
            if dangling {
                out.pop();
            }
            out.push_str("\"…");
        } else if closed {
            out.push('"');
        }
    }
    out
}

#[cfg(test)]
mod tests;
