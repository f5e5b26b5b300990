//! One attempt of a call and what its result means: done, or worth sending again (a connection
//! that failed before the request was written, an instance that refused it as never started or
//! was draining, an idempotent read, a keyed Execute of an idempotent capability that failed
//! before its first event). Says why in the status; the retry loop and its budget are the
//! route's.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use prost::Message;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{BoxError, Service};

use super::request::CallFacts;
use super::target::Target;
use super::{Outcome, Request, Response, Route};
use crate::connection::{never_sent, ConnectionError};
use crate::endpoint::{Endpoint, ServedBy};
use crate::failed::CallFailed;
use crate::wire::{status_of, trailers_only_status};
use beamline_contract::causes::chain;
use beamline_contract::proto;
use beamline_contract::quote::quote;
use beamline_contract::wire::Rpc;

/// One attempt handed to its instance or to the balancer: its response to come, and what its
/// failure would mean.
pub(super) struct Sent {
    /// The instance a keyed or task-owner attempt went to; `None` through the balancer.
    endpoint: Option<Arc<Endpoint>>,
    /// A keyed Execute of a capability its instance's card says is idempotent: it may go to
    /// another instance if it fails before its first event.
    repeatable: bool,
    response: Pending,
}

enum Pending {
    Instance(BoxFuture<'static, Result<Response, ConnectionError>>),
    Balanced(BoxFuture<'static, Result<Response, BoxError>>),
}

impl Route {
    /// Sends one attempt: picks where it goes and hands the request over before anything is
    /// awaited, so that the call's future never carries the request.
    pub(super) fn send(
        &self,
        rpc: Option<Rpc>,
        message: &[u8],
        request: Request,
        tried: &[String],
    ) -> Result<Sent, Status> {
        Ok(match self.target(rpc, message, tried)? {
            Target::Instance(endpoint) => {
                let repeatable = rpc == Some(Rpc::Execute)
                    && proto::ExecuteRequest::decode(message)
                        .is_ok_and(|r| endpoint.is_idempotent(&r.capability));
                // A connection is always ready (`poll_ready` is `Ready(Ok)`): the endpoint's
                // health gate, not the connection, decides whether it gets calls.
                let response = endpoint.connection.clone().call(request);
                Sent {
                    endpoint: Some(endpoint),
                    repeatable,
                    response: Pending::Instance(response),
                }
            }
            Target::Balanced => Sent {
                endpoint: None,
                repeatable: false,
                response: Pending::Balanced(self.balanced(request)),
            },
        })
    }

    /// What the attempt `sent` came to.
    pub(super) async fn attempt(
        &self,
        rpc: Option<Rpc>,
        message: &[u8],
        sent: Sent,
        tried: &mut Vec<String>,
    ) -> Outcome {
        let Sent {
            endpoint,
            repeatable,
            response,
        } = sent;
        let result = match response {
            Pending::Instance(response) => response
                .await
                .map(|mut response| {
                    if let Some(endpoint) = &endpoint {
                        response
                            .extensions_mut()
                            .insert(ServedBy(Arc::from(endpoint.id.as_str())));
                    }
                    response
                })
                .map_err(BoxError::from),
            Pending::Balanced(response) => response.await,
        };
        let instance = endpoint.as_ref().map(|e| e.id.as_str());
        // Judged without awaiting, and the response moved into the read: the future holds
        // neither the result nor the response while it reads.
        let reading = match self.judge(rpc, message, instance, repeatable, result, tried) {
            Judged::Done(outcome) => return outcome,
            Judged::ReadWhole(response) => read_whole(response, self.settings.max_message_bytes),
        };
        match reading.await {
            Ok(response) => Outcome::Done(Ok(response)),
            Err(error) => {
                let status = Status::unavailable(format!(
                    "beamline {} instance {}: the response broke off: {}",
                    self.beamline,
                    instance.unwrap_or("(balanced)"),
                    chain(error.as_ref())
                ));
                Outcome::Retry(match instance {
                    Some(id) => CallFailed::on(id, status),
                    None => BoxError::from(status),
                })
            }
        }
    }

    /// What an attempt's result means, short of reading a response whole.
    fn judge(
        &self,
        rpc: Option<Rpc>,
        message: &[u8],
        instance: Option<&str>,
        repeatable: bool,
        result: Result<Response, BoxError>,
        tried: &mut Vec<String>,
    ) -> Judged {
        let idempotent = rpc.is_some_and(Rpc::is_idempotent);
        let stream = rpc.is_some_and(Rpc::is_stream);
        let outcome = match result {
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
                // A unary read is read whole: an instance that dies between its response
                // headers and its trailers (a kill -9 at that moment) fails a call that can be
                // sent again, rather than one whose body breaks in the caller's hands.
                _ if idempotent && !stream => return Judged::ReadWhole(response),
                _ => Outcome::Done(Ok(response)),
            },
            Err(error) => {
                if let Some(status) = error.downcast_ref::<Status>() {
                    // Failfast and routing answers are final.
                    return Judged::Done(Outcome::Done(Err(BoxError::from(status.clone()))));
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
                    instance.unwrap_or("(balanced)"),
                    chain(error.as_ref())
                ));
                let status = match instance {
                    Some(id) => {
                        tried.push(id.to_string());
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
        };
        Judged::Done(outcome)
    }
}

/// An attempt's result, judged: its outcome, or a response to read whole first.
enum Judged {
    Done(Outcome),
    ReadWhole(Response),
}

/// `response` with its body read to the end: its data and trailers, replayed from memory.
/// At most `max_message` bytes of message (and its 5-byte gRPC frame header): an instance that
/// answers more is not buffered without bound.
fn read_whole(
    response: Response,
    max_message: usize,
) -> impl Future<Output = Result<Response, BoxError>> {
    // Split before the future starts: it holds the head and the collecting body, not the
    // response they came from as well.
    let (parts, body) = response.into_parts();
    let reading = super::whole::read(body, max_message.saturating_add(5));
    async move {
        let whole = reading.await?;
        let frames = [
            Some(http_body::Frame::data(whole.data)),
            whole.trailers.map(http_body::Frame::trailers),
        ];
        let body = http_body_util::StreamBody::new(futures::stream::iter(
            frames.into_iter().flatten().map(Ok::<_, Status>),
        ));
        Ok(http::Response::from_parts(parts, Body::new(body)))
    }
}

/// `error` as the mesh's [`CallFailed`], with what the call turned out to be.
pub(super) fn failed(error: BoxError, facts: Option<&CallFacts>) -> BoxError {
    let mut failed = CallFailed::from_error(error);
    if let Some(facts) = facts {
        failed.facts = facts.clone();
    }
    BoxError::from(failed)
}
