//! The connection to one instance: one HTTP/2 connection (hyper-util's pooled client), opened on
//! first use and reopened after it breaks, that a caller's task drives itself.
//!
//! Why not a tonic `Channel`: a `Channel` puts a `tower::Buffer` in front of its connection, so
//! every call is handed to a worker task first — one more task wake-up per call, which on a
//! loopback call of ~120 µs was the larger part of what the mesh added. Here the caller's task
//! writes to the connection task directly, as hyper's own client does. Readiness is not this
//! module's business (the connection is always ready; the endpoint's health gate decides), and
//! neither is choosing an instance.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{MapOk, TryFutureExt};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tonic::body::Body;
use tower::Service;

/// How a connection is opened and kept.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval, and how long an unanswered PING may wait before the connection
    /// is closed (a dead host that sends no RST is noticed within about twice this).
    pub http2_keepalive: Duration,
}

/// A cheap-to-clone handle on the connection to one instance; clones share the connection.
#[derive(Clone)]
pub struct Connection {
    client: Client<HttpConnector, Body>,
    origin: http::uri::Authority,
}

impl Connection {
    /// A connection to `addr` (`host:port`), opened on the first call; `None` when `addr` is
    /// not an authority.
    pub fn new(addr: &str, settings: ConnectionSettings) -> Option<Connection> {
        let origin = addr.parse::<http::uri::Authority>().ok()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            // The health watch keeps the connection busy; an idle timeout would only close it
            // between calls of an agent that has none (the PINGs find dead ones).
            .pool_idle_timeout(None::<Duration>)
            .http2_keep_alive_interval(settings.http2_keepalive)
            .http2_keep_alive_timeout(settings.http2_keepalive)
            .http2_keep_alive_while_idle(true)
            .build(connector);
        Some(Connection { client, origin })
    }

    /// The request's path on this instance's origin.
    fn target(&self, uri: &http::Uri) -> Result<http::Uri, http::Error> {
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        http::Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(self.origin.clone())
            .path_and_query(path)
            .build()
    }
}

type ToBody = fn(http::Response<Incoming>) -> http::Response<Body>;

impl Service<http::Request<Body>> for Connection {
    type Response = http::Response<Body>;
    type Error = Error;
    type Future = MapOk<ResponseFuture, ToBody>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The path came from a gRPC client or a server's request line, so it is a valid path;
        // on the impossible failure the request keeps its URI and hyper-util refuses it.
        if let Ok(uri) = self.target(request.uri()) {
            *request.uri_mut() = uri;
        }
        *request.version_mut() = http::Version::HTTP_2;
        let to_body: ToBody = |response| response.map(Body::new);
        self.client.request(request).map_ok(to_body)
    }
}

/// Whether `error` (or one it wraps) is hyper-util's "could not connect": the request was not
/// written.
pub fn is_connect_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<Error>().is_some_and(Error::is_connect) {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ConnectionSettings {
        ConnectionSettings {
            connect_timeout: Duration::from_millis(500),
            http2_keepalive: Duration::from_secs(10),
        }
    }

    #[test]
    fn requests_go_to_the_instance_whatever_origin_they_came_with() {
        let connection = Connection::new("127.0.0.1:7001", settings()).unwrap();
        for from in [
            "/beamline.v1.BeamlineAgent/Describe",
            "http://gateway:8080/beamline.v1.BeamlineAgent/Describe",
        ] {
            let uri = connection.target(&from.parse().unwrap()).unwrap();
            assert_eq!(
                uri.to_string(),
                "http://127.0.0.1:7001/beamline.v1.BeamlineAgent/Describe"
            );
        }
        assert!(Connection::new("not an address", settings()).is_none());
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        // A port nothing listens on: bind one, note it, close it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let mut connection = Connection::new(&addr, settings()).unwrap();
        let request = http::Request::builder()
            .uri("/beamline.v1.BeamlineAgent/Describe")
            .body(Body::empty())
            .unwrap();
        let error = tokio::time::timeout(Duration::from_secs(5), connection.call(request))
            .await
            .expect("a refused connect answers at once")
            .unwrap_err();
        assert!(is_connect_error(&error), "{error:?}");
    }
}
