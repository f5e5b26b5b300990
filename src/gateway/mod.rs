//! The gateway (framework-api): the front door for callers in any language. It serves
//! `beamline.v1.BeamlineAgent` and routes each call by the gRPC metadata key `x-beamline`
//! through the mesh, as an HTTP/2 proxy: the request is not decoded here (the mesh reads only
//! the routing keys it needs), streams are forwarded as they come, and the caller's deadline and
//! cancellation reach the agent (dropping the caller's stream drops the upstream one).
//!
//! Owns the routing key and turning mesh errors into gRPC statuses; authentication, limits and
//! metrics are tower layers added in front of it (they must not live in here).

pub mod access_line;
pub mod access_log;
pub mod auth;
pub mod caller;
pub mod config;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod status;

pub use server::{bind, serve, GatewayError, GatewayOptions, TlsFiles};

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;
use tower::{BoxError, Service, ServiceExt};

use crate::beamline::BeamlineId;
use crate::mesh::Mesh;

/// The metadata key that names the beamline of a call.
pub const ROUTING_KEY: &str = "x-beamline";

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
    const NAME: &'static str = "beamline.v1.BeamlineAgent";
}

/// The beamline a request is for, or INVALID_ARGUMENT saying what is wrong.
pub fn beamline_of<B>(request: &http::Request<B>) -> Result<BeamlineId, Status> {
    let value = request.headers().get(ROUTING_KEY).ok_or_else(|| {
        Status::invalid_argument(format!(
            "missing {ROUTING_KEY} metadata naming the beamline"
        ))
    })?;
    let text = value
        .to_str()
        .map_err(|_| Status::invalid_argument(format!("{ROUTING_KEY} is not text")))?;
    BeamlineId::parse(text).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A mesh error as the status the caller gets.
fn status_of(error: BoxError) -> Status {
    match error.downcast::<Status>() {
        Ok(status) => *status,
        Err(other) => Status::unavailable(other.to_string()),
    }
}

impl Service<http::Request<Body>> for GatewayService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let beamline = match beamline_of(&request) {
            Ok(beamline) => beamline,
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
        };
        let channel = self.mesh.channel(&beamline);
        Box::pin(async move {
            match channel.oneshot(request).await {
                Ok(response) => Ok(response),
                Err(error) => Ok(status_of(error).into_http()),
            }
        })
    }
}
