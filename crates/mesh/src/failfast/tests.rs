use super::*;
use tower::ServiceExt;

#[tokio::test(start_paused = true)]
async fn a_never_ready_service_fails_after_the_bound() {
    let never = tower::service_fn(|(): ()| async { Ok::<_, BoxError>(()) });
    /// A service that is never ready, like a balancer with no endpoint.
    struct Never<S>(S);
    impl<S: Service<()>> Service<()> for Never<S> {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            Poll::Pending
        }
        fn call(&mut self, r: ()) -> S::Future {
            self.0.call(r)
        }
    }
    let why: Why = Arc::new(|| tonic::Status::unavailable("no healthy instance of beamline x"));
    let mut svc = FailFast::new(Never(never), Duration::from_secs(3), why);
    let started = tokio::time::Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    let status = err.downcast::<tonic::Status>().unwrap();
    assert_eq!(status.code(), tonic::Code::Unavailable);
}
