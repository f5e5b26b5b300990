//! A call the mesh failed, with what it had learnt of the call: the capability or task id it
//! read, and the instance it tried, so that the access log and metrics above the mesh describe
//! a failed call as fully as a successful one.
//!
//! Owns the error type the mesh's channel returns; what status a failure is stays the router's.

use std::fmt;
use std::sync::Arc;

use tonic::body::Body;
use tonic::Status;
use tower::BoxError;

use crate::{CallFacts, ServedBy};

/// The mesh's answer to a call it could not complete. Its source is the status (tonic's client
/// finds it there, so a `BeamlineAgentClient` over the mesh sees the status itself).
#[derive(Debug)]
pub struct CallFailed {
    pub status: Status,
    pub facts: CallFacts,
    /// The instance the failed attempt went to, when it went to one.
    pub instance: Option<Arc<str>>,
}

impl CallFailed {
    /// A failure of an attempt on `instance`.
    pub(crate) fn on(instance: &str, status: Status) -> BoxError {
        BoxError::from(CallFailed {
            status,
            facts: CallFacts::default(),
            instance: Some(Arc::from(instance)),
        })
    }

    /// Whatever the mesh failed with, as a `CallFailed` (a bare status, or any other error as
    /// UNAVAILABLE saying what it was).
    pub fn from_error(error: BoxError) -> CallFailed {
        let error = match error.downcast::<CallFailed>() {
            Ok(failed) => return *failed,
            Err(other) => other,
        };
        let status = match error.downcast::<Status>() {
            Ok(status) => *status,
            Err(other) => Status::unavailable(other.to_string()),
        };
        CallFailed {
            status,
            facts: CallFacts::default(),
            instance: None,
        }
    }

    /// The gRPC response of the failure, with the facts and the instance in its extensions.
    pub fn into_http(self) -> http::Response<Body> {
        let mut response = self.status.into_http::<Body>();
        response.extensions_mut().insert(self.facts);
        if let Some(instance) = self.instance {
            response.extensions_mut().insert(ServedBy(instance));
        }
        response
    }
}

impl fmt::Display for CallFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.code(), self.status.message())
    }
}

impl std::error::Error for CallFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.status)
    }
}
