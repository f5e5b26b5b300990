//! Unit tests of the by-name router: a call goes to the service its path names, an unknown one
//! is UNIMPLEMENTED.

use super::*;
use beamline_contract::wire::header;

#[derive(Clone)]
struct Named(&'static str);

impl Service<http::Request<Body>> for Named {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<http::Response<Body>, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<Body>) -> Self::Future {
        let mut response = http::Response::new(Body::empty());
        response
            .headers_mut()
            .insert(header::SERVED_BY, http::HeaderValue::from_static(self.0));
        std::future::ready(Ok(response))
    }
}

async fn served_by(services: &Services, path: &str) -> String {
    let request = http::Request::builder()
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = services.clone().oneshot(request).await.unwrap();
    match response.headers().get(header::SERVED_BY) {
        Some(name) => name.to_str().unwrap().to_string(),
        None => format!("grpc-status {:?}", response.headers().get("grpc-status")),
    }
}

#[tokio::test]
async fn calls_go_to_the_service_their_path_names_and_unknown_ones_are_unimplemented() {
    let services = Services::default()
        .serve_named("a.v1.A", Named("a"))
        .serve_named("grpc.health.v1.Health", Named("health"));
    assert_eq!(served_by(&services, "/a.v1.A/Describe").await, "a");
    assert_eq!(
        served_by(&services, "/grpc.health.v1.Health/Check").await,
        "health"
    );
    // UNIMPLEMENTED is gRPC code 12.
    for path in ["/a.v1.AB/Describe", "/a.v1/A/Describe", "/", "/a.v1.A"] {
        assert_eq!(
            served_by(&services, path).await,
            "grpc-status Some(\"12\")",
            "{path}"
        );
    }
}
