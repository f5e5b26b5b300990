//! The gRPC services of one agent server, routed by the service name in the request path
//! (`/beamline.v1.BeamlineAgent/Describe` → `beamline.v1.BeamlineAgent`).
//!
//! tonic's own router is built on axum; an agent serves three services (its `BeamlineAgent`,
//! `grpc.health.v1.Health`, server reflection in both versions), and a lookup in a short list is
//! all that needs, without axum in every agent binary. Owns the routing by name only: what each
//! service does, and the layers around the server (draining), are not its business.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::util::{BoxCloneSyncService, Oneshot};
use tower::{Service, ServiceExt};

type Route = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// gRPC services by name; a path naming none of them is answered UNIMPLEMENTED.
#[derive(Clone, Default)]
pub struct Services {
    routes: Arc<Vec<(&'static str, Route)>>,
}

impl Services {
    /// `service` under its gRPC name.
    pub fn serve<S>(self, service: S) -> Services
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.serve_named(S::NAME, service)
    }

    /// `service` under `name` (for a service that answers under more than one name).
    pub fn serve_named<S>(self, name: &'static str, service: S) -> Services
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let mut routes = Arc::unwrap_or_clone(self.routes);
        routes.push((name, BoxCloneSyncService::new(service)));
        Services {
            routes: Arc::new(routes),
        }
    }

    fn route(&self, path: &str) -> Option<&Route> {
        let rest = path.strip_prefix('/')?;
        let (name, _method) = rest.split_once('/')?;
        self.routes
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, route)| route)
    }
}

impl Service<http::Request<Body>> for Services {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<
        Oneshot<Route, http::Request<Body>>,
        std::future::Ready<Result<http::Response<Body>, Infallible>>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each route is made ready for its own call (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.route(request.uri().path()) {
            Some(route) => Either::Left(route.clone().oneshot(request)),
            None => {
                let path = beamline_contract::quote::quote(request.uri().path());
                let status = tonic::Status::unimplemented(format!("no service for {path}"));
                Either::Right(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// An agent's own service behind the checks of what callers send: request bodies bounded (a
/// call whose request passes `max_message_bytes`, plus the gRPC frame header, fails
/// RESOURCE_EXHAUSTED as the bound is passed, before more is read or anything decoded), and a
/// request that does not decode answered INVALID_ARGUMENT (tonic says INTERNAL, as if the agent
/// were at fault, e.g. for params nested deeper than the decoder's recursion limit).
///
/// tonic's own decoding limit says OUT_OF_RANGE, which is not what gRPC prescribes for a message
/// too large, and fires first from the declared length: lift it on `service`.
#[derive(Clone)]
pub struct RequestGuard<S> {
    inner: S,
    max_message_bytes: usize,
}

impl<S> RequestGuard<S> {
    pub fn new(inner: S, max_message_bytes: usize) -> RequestGuard<S> {
        RequestGuard {
            inner,
            max_message_bytes,
        }
    }
}

/// The prefix of prost's decode errors in the statuses tonic makes of them.
const DECODE_FAILED: &str = "failed to decode Protobuf message";

impl<S> Service<http::Request<Body>> for RequestGuard<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let max = self.max_message_bytes;
        let request = request.map(|body| {
            let limited =
                http_body_util::Limited::new(body, max.saturating_add(5)).map_err(move |e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        tonic::Status::resource_exhausted(format!(
                            "the request message is larger than {max} bytes"
                        ))
                    } else {
                        tonic::Status::from_error(e)
                    }
                });
            Body::new(limited)
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            // A request that fails to decode is answered before any handler runs: trailers-only.
            let internal =
                response.headers().get("grpc-status").map(|v| v.as_bytes()) == Some(b"13");
            let undecodable = internal
                .then(|| tonic::Status::from_header_map(response.headers()))
                .flatten()
                .filter(|s| s.message().starts_with(DECODE_FAILED));
            if let Some(failed) = undecodable {
                let status = tonic::Status::invalid_argument(format!(
                    "the request does not decode: {}",
                    failed.message()
                ));
                let headers = response.headers_mut();
                headers.remove("grpc-status");
                headers.remove("grpc-message");
                let _ = status.add_header(headers);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests;
