//! How a call on a connection to an instance fails, and the one fact retries depend on:
//! whether the instance can have seen the request.

use std::sync::Arc;

/// Why a call on a connection failed, and whether its request can have reached the instance.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// No connection could be opened: nothing was written.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The connection ended, or refused the stream, before the request was processed.
    #[error("the connection to {addr} closed before the request was sent: {source}")]
    Unsent {
        addr: String,
        #[source]
        source: h2::Error,
    },
    /// The request went out (or may have): the stream failed.
    #[error("HTTP/2 stream to {addr} failed: {source}")]
    Stream {
        addr: String,
        #[source]
        source: h2::Error,
    },
    /// The request cannot be written as HTTP/2 (e.g. a header HTTP/2 forbids).
    #[error("request not sendable to {addr}: {source}")]
    Request {
        addr: String,
        #[source]
        source: h2::Error,
    },
}

impl ConnectionError {
    /// Whether the instance cannot have seen the request, so sending it again repeats nothing.
    pub fn never_sent(&self) -> bool {
        match self {
            ConnectionError::Connect { .. }
            | ConnectionError::Unsent { .. }
            | ConnectionError::Request { .. } => true,
            // RFC 9113 §8.7: REFUSED_STREAM means the stream was not processed.
            ConnectionError::Stream { source, .. } => {
                source.reason() == Some(h2::Reason::REFUSED_STREAM)
            }
        }
    }
}

/// Whether `error` (or one it wraps) says the instance cannot have seen the request, so
/// sending it again repeats nothing.
pub fn never_sent(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |&e| e.source()).any(|e| {
        e.downcast_ref::<ConnectionError>()
            .is_some_and(ConnectionError::never_sent)
    })
}
