//! Failfast in front of the balancer: tower's `Balance` stays Pending while no endpoint is ready
//! (an empty set waits forever), so after `timeout` of unreadiness this layer turns ready and
//! fails each call at once with the status `why` builds (NOT_FOUND or UNAVAILABLE, saying
//! why), until an endpoint is ready again. As in linkerd2-proxy, a call never hangs on an
//! instance that is not there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{BoxError, Service};

type Why = Arc<dyn Fn() -> tonic::Status + Send + Sync>;

pub struct FailFast<S> {
    inner: S,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    failing: bool,
    why: Why,
}

impl<S> FailFast<S> {
    pub fn new(inner: S, timeout: Duration, why: Why) -> FailFast<S> {
        FailFast {
            inner,
            timeout,
            sleep: None,
            failing: false,
            why,
        }
    }

    /// The service behind failfast, to drive it without starting failfast's clock.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S, Req> Service<Req> for FailFast<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(result) => {
                self.sleep = None;
                self.failing = false;
                Poll::Ready(result.map_err(Into::into))
            }
            Poll::Pending if self.failing => Poll::Ready(Ok(())),
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.failing = true;
                        Poll::Ready(Ok(()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        if self.failing {
            let status = (self.why)();
            return Box::pin(async move { Err(BoxError::from(status)) });
        }
        let future = self.inner.call(request);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests;
