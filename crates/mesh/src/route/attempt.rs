//! One attempt of a call and what its result means: done, or worth sending again (a connection
//! that failed before the request was written, an instance that refused it as never started or
//! was draining, an idempotent read, a keyed Execute of an idempotent capability that failed
//! before its first event). Says why in the status; the retry loop and its budget are the
//! route's.

use std::sync::Arc;

use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{BoxError, ServiceExt};

use super::request::CallFacts;
use super::target::Target;
use super::{Outcome, Request, Response, Route};
use crate::connection::never_sent;
use crate::endpoint::ServedBy;
use crate::failed::CallFailed;
use crate::wire::{status_of, trailers_only_status};
use beamline_contract::causes::chain;
use beamline_contract::proto;
use beamline_contract::quote::quote;
use beamline_contract::wire::Rpc;

impl Route {
    pub(super) async fn attempt(
        &self,
        rpc: Option<Rpc>,
        message: &[u8],
        request: Request,
        tried: &mut Vec<String>,
    ) -> Outcome {
        let idempotent = rpc.is_some_and(Rpc::is_idempotent);
        let stream = rpc.is_some_and(Rpc::is_stream);
        let target = match self.target(rpc, message, tried) {
            Ok(target) => target,
            Err(status) => return Outcome::Done(Err(BoxError::from(status))),
        };
        // A keyed Execute of a capability its instance's card says is idempotent may go to
        // another instance if it fails before its first event.
        let mut repeatable = false;
        let (instance, result) = match target {
            Target::Instance(endpoint) => {
                if rpc == Some(Rpc::Execute) {
                    repeatable = proto::ExecuteRequest::decode(message)
                        .is_ok_and(|r| endpoint.is_idempotent(&r.capability));
                }
                let result = endpoint.connection.clone().oneshot(request).await;
                let result = result.map(|mut response| {
                    response
                        .extensions_mut()
                        .insert(ServedBy(Arc::from(endpoint.id.as_str())));
                    response
                });
                (Some(endpoint.id.clone()), result.map_err(BoxError::from))
            }
            Target::Balanced => (None, self.balanced(request).await),
        };
        match result {
            Ok(response) => match trailers_only_status(&response) {
                Some((Code::Unavailable, true)) => {
                    Outcome::Retry(BoxError::from(Status::unavailable(format!(
                        "beamline {}: every instance tried was draining",
                        self.beamline
                    ))))
                }
                Some((Code::Unavailable, false)) if idempotent => {
                    Outcome::Retry(BoxError::from(status_of(&response)))
                }
                // A unary read is read whole here: an instance that dies between its response
                // headers and its trailers (a kill -9 at that moment) fails a call that can be
                // sent again, rather than one whose body breaks in the caller's hands.
                _ if idempotent && !stream => {
                    match read_whole(response, self.settings.max_message_bytes).await {
                        Ok(response) => Outcome::Done(Ok(response)),
                        Err(error) => {
                            let status = Status::unavailable(format!(
                                "beamline {} instance {}: the response broke off: {}",
                                self.beamline,
                                instance.as_deref().unwrap_or("(balanced)"),
                                chain(error.as_ref())
                            ));
                            Outcome::Retry(match &instance {
                                Some(id) => CallFailed::on(id, status),
                                None => BoxError::from(status),
                            })
                        }
                    }
                }
                _ => Outcome::Done(Ok(response)),
            },
            Err(error) => {
                if let Some(status) = error.downcast_ref::<Status>() {
                    // Failfast and routing answers are final.
                    return Outcome::Done(Err(BoxError::from(status.clone())));
                }
                let sent = !never_sent(error.as_ref());
                let retry = !sent || idempotent || repeatable;
                // An Execute that may have reached the agent and will not be sent again: the
                // caller must know its task may run, and how to find it.
                let may_have_started = match (rpc, retry) {
                    (Some(Rpc::Execute), false) => match proto::ExecuteRequest::decode(message) {
                        Ok(r) if !r.idempotency_key.is_empty() => format!(
                            "; the task may have started: Execute again with idempotency key {} \
                             to reach it",
                            quote(&r.idempotency_key)
                        ),
                        _ => "; the task may have started (no idempotency key to find it by)"
                            .to_string(),
                    },
                    _ => String::new(),
                };
                let status = Status::unavailable(format!(
                    "beamline {} instance {}: {}{may_have_started}",
                    self.beamline,
                    instance.as_deref().unwrap_or("(balanced)"),
                    chain(error.as_ref())
                ));
                let status = match &instance {
                    Some(id) => {
                        tried.push(id.clone());
                        CallFailed::on(id, status)
                    }
                    None => BoxError::from(status),
                };
                if retry {
                    Outcome::Retry(status)
                } else {
                    Outcome::Done(Err(status))
                }
            }
        }
    }
}

/// `response` with its body read to the end: its data and trailers, replayed from memory.
/// At most `max_message` bytes of message (and its 5-byte gRPC frame header): an instance that
/// answers more is not buffered without bound.
async fn read_whole(response: Response, max_message: usize) -> Result<Response, BoxError> {
    let (parts, body) = response.into_parts();
    let limited = http_body_util::Limited::new(body, max_message.saturating_add(5));
    let collected = limited.collect().await?;
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    let frames = [
        Some(http_body::Frame::data(data)),
        trailers.map(http_body::Frame::trailers),
    ];
    let body = http_body_util::StreamBody::new(futures::stream::iter(
        frames.into_iter().flatten().map(Ok::<_, Status>),
    ));
    Ok(http::Response::from_parts(parts, Body::new(body)))
}

/// `error` as the mesh's [`CallFailed`], with what the call turned out to be.
pub(super) fn failed(error: BoxError, facts: Option<&CallFacts>) -> BoxError {
    let mut failed = CallFailed::from_error(error);
    if let Some(facts) = facts {
        failed.facts = facts.clone();
    }
    BoxError::from(failed)
}
