//! The registry's error type, one variant per HTTP status it maps to (Consul's error bodies are
//! plain text, so each variant carries the exact message a client will read).

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
