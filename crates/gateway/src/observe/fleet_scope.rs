//! Which beamline a Fleet control RPC (Halt, Resume, Lock, Unlock) is about, for its access-log
//! line: read from the request's message as it passes to the Fleet service (field 1, or `*` for
//! a halt or resume of every beamline). Only those four RPCs' requests are watched; the agents'
//! calls never are.
//!
//! Owns that reading; it must not change, delay or buffer the request: a message that does not
//! come whole in its first frame, or does not decode, or names an invalid id, leaves the
//! beamline unknown (empty in the line; the Fleet service's own log line names it).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prost::Message;
use tonic::body::Body;

use beamline_contract::beamline::BeamlineId;
use beamline_contract::proto::{HaltRequest, LockRequest, ResumeRequest, UnlockRequest};
use beamline_contract::wire::FleetRpc;

/// The beamline a control RPC names, once its message has passed.
pub(super) type Scope = Arc<OnceLock<String>>;

/// Watches the message of `request` when it is a Fleet control RPC; the scope it will name.
pub(super) fn watch(request: &mut http::Request<Body>) -> Option<Scope> {
    let rpc = FleetRpc::of_path(request.uri().path()).filter(|rpc| rpc.is_control())?;
    let scope = Scope::default();
    let inner = std::mem::replace(request.body_mut(), Body::empty());
    *request.body_mut() = Body::new(Watched {
        inner,
        rpc,
        scope: Some(scope.clone()),
    });
    Some(scope)
}

/// The scope named by one whole control message (`*` for every beamline).
fn scope_of(rpc: FleetRpc, message: &[u8]) -> Option<String> {
    let (beamline, all) = match rpc {
        FleetRpc::Halt => HaltRequest::decode(message).map(|r| (r.beamline, r.all)),
        FleetRpc::Resume => ResumeRequest::decode(message).map(|r| (r.beamline, r.all)),
        FleetRpc::Lock => LockRequest::decode(message).map(|r| (r.beamline, false)),
        FleetRpc::Unlock => UnlockRequest::decode(message).map(|r| (r.beamline, false)),
        _ => return None,
    }
    .ok()?;
    if all {
        return Some("*".to_string());
    }
    BeamlineId::parse(&beamline).ok().map(|id| id.to_string())
}

/// A request body that reads the scope from its first frame and passes every frame on as is.
struct Watched {
    inner: Body,
    rpc: FleetRpc,
    /// Until the first data frame.
    scope: Option<Scope>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        // `Body` is Unpin, so no pin projection is needed.
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let (Some(data), Some(scope)) = (frame.data_ref(), this.scope.take()) {
                let whole = data.split_first_chunk::<5>().and_then(|(header, rest)| {
                    let [0, a, b, c, d] = *header else {
                        return None;
                    };
                    rest.get(..u32::from_be_bytes([a, b, c, d]) as usize)
                });
                if let Some(found) = whole.and_then(|m| scope_of(this.rpc, m)) {
                    let _ = scope.set(found);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
