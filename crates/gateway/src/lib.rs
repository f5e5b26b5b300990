//! The gateway: the front door for callers in any language. It serves
//! `beamline.v1.BeamlineAgent` and routes each call by the gRPC metadata key `x-beamline`
//! through the mesh, as an HTTP/2 proxy: the request is not decoded here (the mesh reads only
//! the routing keys it needs), streams are forwarded as they come, and the caller's deadline and
//! cancellation reach the agent (dropping the caller's stream drops the upstream one).
//!
//! Owns the routing key and turning mesh errors into gRPC statuses; authentication, limits and
//! metrics are tower layers added in front of it (they must not live in here).

pub mod auth;
pub mod caller;
pub mod config;
pub mod fleet;
pub mod limits;
pub mod observe;
pub mod server;
pub mod status;
mod trailers;

pub use server::{bind, serve, GatewayError, GatewayOptions, TlsFiles};

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;
use tower::{BoxError, Service};

use beamline_contract::beamline::BeamlineId;
use beamline_contract::wire::{header, Rpc};
use beamline_mesh_client::{CallFailed, Mesh};

/// `beamline.v1.BeamlineAgent` for every beamline, through the mesh.
#[derive(Clone)]
pub struct GatewayService {
    mesh: Mesh,
}

impl GatewayService {
    pub fn new(mesh: Mesh) -> GatewayService {
        GatewayService { mesh }
    }
}

impl NamedService for GatewayService {
    const NAME: &'static str = Rpc::SERVICE;
}

/// The beamline a request is for, or INVALID_ARGUMENT saying what is wrong. Parsed once per
/// call: the first layer to ask keeps the id in the request's extensions for the layers after
/// it (access log, auth, limits, routing).
pub fn beamline_of<B>(request: &mut http::Request<B>) -> Result<BeamlineId, Status> {
    if let Some(beamline) = request.extensions().get::<BeamlineId>() {
        return Ok(beamline.clone());
    }
    let value = request.headers().get(header::BEAMLINE).ok_or_else(|| {
        Status::invalid_argument(format!(
            "missing {} metadata naming the beamline",
            header::BEAMLINE
        ))
    })?;
    let text = value
        .to_str()
        .map_err(|_| Status::invalid_argument(format!("{} is not text", header::BEAMLINE)))?;
    let beamline = BeamlineId::parse(text).map_err(|e| Status::invalid_argument(e.to_string()))?;
    request.extensions_mut().insert(beamline.clone());
    Ok(beamline)
}

/// The future of a call through [`GatewayService`]: the mesh's answer, its body ending in
/// trailers, or its failure as a gRPC status. A concrete type, not a box of its own: the mesh's
/// future is already one allocation per call.
pub enum Routed {
    /// Answered without the mesh (a bad routing key); taken when polled.
    Answered(Option<http::Response<Body>>),
    Routing(BoxFuture<'static, Result<http::Response<Body>, BoxError>>),
}

impl Future for Routed {
    type Output = Result<http::Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are `Unpin`.
        Poll::Ready(Ok(match self.get_mut() {
            Routed::Answered(response) => response
                .take()
                .unwrap_or_else(|| Status::internal("polled after its answer").into_http()),
            Routed::Routing(future) => match ready!(future.as_mut().poll(cx)) {
                Ok(response) => response.map(|body| Body::new(trailers::StatusTrailers::new(body))),
                // With what the mesh learnt of the call, for the access log and metrics.
                Err(error) => CallFailed::from_error(error).into_http(),
            },
        }))
    }
}

impl Service<http::Request<Body>> for GatewayService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Routed;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The identity an agent trusts is the gateway's word: only the auth layer writes it.
        // Without one (`--insecure-no-auth`) a client's own `x-caller`/`x-role` go no further.
        if request.extensions().get::<caller::Caller>().is_none() {
            request.headers_mut().remove(header::CALLER);
            request.headers_mut().remove(header::ROLE);
        }
        let beamline = match beamline_of(&mut request) {
            Ok(beamline) => beamline,
            Err(status) => return Routed::Answered(Some(status.into_http())),
        };
        // A mesh channel is always ready (`poll_ready` is `Ready(Ok)`): readiness is decided
        // per call, inside the route.
        Routed::Routing(self.mesh.channel(&beamline).call(request))
    }
}

#[cfg(test)]
mod tests;
