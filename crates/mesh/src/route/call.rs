//! One call before it is sent: what can be decided without awaiting anything (the metadata's
//! size against an agent's limit, the default deadline an agent is told, the caller's deadline
//! counted from the call's arrival, the call's one timer), and how reading its request fails.
//! Sending it, and again where that is safe, is the route's (`mod.rs`).

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::Status;
use tower::BoxError;

use super::{later, request, Request, Route};
use crate::deadline;
use crate::wire::grpc_timeout;
use beamline_contract::wire::Rpc;

impl Route {
    /// The call `request` makes, or why it fails before it is sent.
    pub(super) fn prepare(&self, request: Request) -> Result<Call, BoxError> {
        let (mut parts, body) = request.into_parts();
        // Refused here, for this call alone: an agent that got it would close the connection
        // every caller of this instance shares (HTTP/2's header limit is per connection).
        let header_bytes = request::header_list_size(&parts.headers);
        // h2 counts a list of exactly the limit as over it.
        if header_bytes >= request::MAX_HEADER_LIST_BYTES {
            return Err(BoxError::from(Status::resource_exhausted(format!(
                "the request's metadata is {header_bytes} bytes, more than the {} an agent \
                 accepts",
                request::MAX_HEADER_LIST_BYTES
            ))));
        }
        let rpc = Rpc::of_path(parts.uri.path());
        let caller_deadline = grpc_timeout(&parts.headers);
        if caller_deadline.is_none() && !rpc.is_some_and(Rpc::is_stream) {
            // The agent enforces the default too, so an abandoned unary call does not run on.
            let header = format!("{}m", self.settings.unary_timeout.as_millis());
            if let Ok(value) = http::HeaderValue::from_str(&header) {
                parts.headers.insert("grpc-timeout", value);
            }
        }
        // Answer a little before the caller's deadline, counted from the call's arrival: a
        // server in front of the mesh (the gateway) expires at the deadline itself, with tonic's
        // CANCELLED instead of DEADLINE_EXCEEDED.
        let caller_deadline = caller_deadline.map(deadline::answer_by);
        let now = Instant::now();
        // The server's extensions (the gateway's caller, connection info, router params…) are
        // its business, not the agent's: h2 sends none of them, and cloning them per attempt
        // was 8 allocations a call. The one the mesh reads, the arrival, is taken here.
        let started = std::mem::take(&mut parts.extensions)
            .remove::<deadline::Arrival>()
            .map_or(now, |arrival| arrival.0);
        let body_deadline = caller_deadline.map(|d| later(started, d));
        if body_deadline.is_some_and(|at| at <= now) {
            // Said now, not at the next timer tick, where tonic's own expiry may come first.
            return Err(BoxError::from(Status::deadline_exceeded(format!(
                "beamline {}: the caller's deadline passed before the call could be sent",
                self.beamline
            ))));
        }
        let bound = match (caller_deadline, rpc.is_some_and(Rpc::is_stream)) {
            (Some(d), true) => d.min(self.settings.first_message_timeout),
            (Some(d), false) => d,
            (None, true) => self.settings.first_message_timeout,
            (None, false) => self.settings.unary_timeout,
        };
        // One timer per call: it bounds reading the request and the attempts, then (moved if a
        // stream's deadline is later) the response body. Registering a timer can wake the
        // thread parked on the runtime's timer driver (a syscall), so a call registers one, not
        // one per bound.
        let timer = Box::pin(tokio::time::sleep_until(later(started, bound)));
        Ok(Call {
            head: Some(parts),
            body: Some(body),
            rpc,
            bound,
            body_deadline,
            timer,
        })
    }
}

/// One call, prepared: what [`Route::run`] uses in place.
pub(super) struct Call {
    /// The request's head, without the server's extensions; taken by the last attempt.
    pub(super) head: Option<http::request::Parts>,
    pub(super) body: Option<Body>,
    pub(super) rpc: Option<Rpc>,
    /// How long the call may take to answer.
    pub(super) bound: Duration,
    /// When the response body must have ended (the caller's deadline), if the caller set one.
    pub(super) body_deadline: Option<Instant>,
    /// The call's one timer (see [`Route::prepare`]).
    pub(super) timer: Pin<Box<Sleep>>,
}

/// What reading the request failed with: RESOURCE_EXHAUSTED past `max_message`, else the
/// caller went away.
pub(super) fn read_failed(
    error: &(dyn std::error::Error + Send + Sync + 'static),
    max_message: usize,
) -> Status {
    if error.is::<http_body_util::LengthLimitError>() {
        Status::resource_exhausted(format!(
            "the request message is larger than {max_message} bytes"
        ))
    } else {
        Status::cancelled(format!("reading the request: {error}"))
    }
}
