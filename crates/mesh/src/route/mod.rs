//! One beamline's route: discovery, endpoints, the p2c balancer, and the router beside it.
//!
//! Every BeamlineAgent RPC has a unary request, so the router buffers it as bytes — which makes
//! it replayable for retries — and decodes the routing key with prost: GetTask, Subscribe and
//! Cancel go to the instance that owns the task id (healthy, or draining: deregistered but still
//! answering, so a task can be read and cancelled through a deploy), an Execute with an
//! idempotency key to the instance rendezvous hashing picks, everything else through tower's p2c
//! (which picks in `poll_ready`, before it sees a request, so keyed routing cannot live inside
//! it).
//!
//! Retries only where they cannot repeat an effect: a connection that failed before the request
//! was written, an Execute a draining agent refused as never started, the idempotent reads
//! (Describe, GetTask, Subscribe before its first message), and a keyed Execute of a capability
//! its instance's card marks idempotent that failed before its first event (to another
//! instance), within a budget of a fraction of recent requests plus a small floor. Deadlines: the caller's grpc-timeout bounds everything; a
//! default applies to unary calls only; streams get a bound on the time to the response headers.

use std::future::{Future, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, Either};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::Status;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{BoxError, Service};

use super::deadline;
use super::failfast::FailFast;
use super::pool::Endpoints;
use super::MeshSettings;
use crate::discovery::{BeamlineWatch, Snapshot};
use beamline_contract::beamline::BeamlineId;
use beamline_contract::wire::Rpc;

mod attempt;
mod call;
mod request;
mod target;
mod whole;

use call::{read_failed, Call};
pub use request::CallFacts;

pub type Request = http::Request<Body>;
pub type Response = http::Response<Body>;
/// tower's p2c behind failfast. Callers take turns with an async (FIFO) lock and drive it in
/// their own task: a worker task (tower's `Buffer`) would add a hop to every call, and a plain
/// mutex would leave waiters unwoken (a service wakes only the last task that polled it).
pub type Balancer =
    Arc<tokio::sync::Mutex<FailFast<tower::balance::p2c::Balance<super::pool::Discover, Request>>>>;

/// Applies discovery to the balancer whether or not calls flow: on every change of the pool's
/// endpoints, polls the balancer's readiness once (as linkerd2-proxy's balancer worker does
/// from its own task), so that tower's p2c drains its `Discover` stream, drops services of
/// instances that left and takes in new ones. Callers still drive the balancer in their own
/// task; this only makes sure an idle balancer never holds a stale set. Returns when the pool
/// ends.
pub(super) async fn apply_discovery(balancer: Balancer, mut endpoints: watch::Receiver<Endpoints>) {
    while endpoints.changed().await.is_ok() {
        let mut p2c = balancer.lock().await;
        // One poll of the balancer itself (not failfast's clock): readiness is not the point,
        // its result is for whichever call comes next.
        std::future::poll_fn(|cx| {
            let _ = p2c.get_mut().poll_ready(cx);
            Poll::Ready(())
        })
        .await;
    }
}

pub struct Route {
    pub(super) beamline: BeamlineId,
    /// Follows this beamline in the fleet; dropping the route ends it.
    pub(super) watch: BeamlineWatch,
    pub(super) endpoints: watch::Receiver<Endpoints>,
    /// Instances that left discovery but still answer (draining): task-owner calls only.
    pub(super) departed: watch::Receiver<Endpoints>,
    /// The endpoints the balancer holds now (its services; each is used while its gate is open).
    pub(super) balanced: watch::Receiver<Endpoints>,
    pub(super) pool_task: tokio::task::JoinHandle<()>,
    /// [`apply_discovery`] on this route's balancer.
    pub(super) discovery_task: tokio::task::JoinHandle<()>,
    pub(super) balancer: Balancer,
    pub(super) budget: TpsBudget,
    pub(super) settings: Arc<MeshSettings>,
    /// Milliseconds since `epoch` of the last call, for idle expiry.
    pub(super) last_used: AtomicU64,
    pub(super) epoch: Instant,
}

impl Drop for Route {
    fn drop(&mut self) {
        self.pool_task.abort();
        self.discovery_task.abort();
    }
}

impl Route {
    pub fn resolution(&self) -> Snapshot {
        self.watch.current()
    }

    /// Whether instances that left discovery are still followed for their tasks.
    pub(super) fn follows_departed(&self) -> bool {
        !self.departed.borrow().is_empty()
    }

    /// The instances the balancer will use now: those it holds whose health gate is open.
    pub fn routable(&self) -> std::collections::BTreeSet<String> {
        self.balanced
            .borrow()
            .values()
            .filter(|e| e.is_open())
            .map(|e| e.id.clone())
            .collect()
    }

    pub(super) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Routes one call, with retries and deadlines. What can be decided before anything is
    /// awaited (the metadata's size, the deadline, an expired one) is decided first
    /// (`Route::prepare`, in `call.rs`); the rest is [`Route::run`]'s future.
    pub fn dispatch(
        self: Arc<Self>,
        request: Request,
    ) -> Either<Ready<Result<Response, BoxError>>, impl Future<Output = Result<Response, BoxError>>>
    {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_used.store(now, Ordering::Relaxed);
        match self.prepare(request) {
            Ok(call) => Either::Right(self.run(call)),
            Err(error) => Either::Left(std::future::ready(Err(error))),
        }
    }

    /// The call's future: reads the request, sends it (again where that is safe), and answers
    /// within its bound. The call is used in place, never moved into a nested future: this
    /// future is allocated and moved once per call, so its size is a per-call cost.
    // Not an `async fn`: one moves its arguments into locals and holds both, here the whole
    // prepared call twice.
    #[allow(clippy::manual_async_fn)]
    fn run(
        self: Arc<Self>,
        mut call: Call,
    ) -> impl Future<Output = Result<Response, BoxError>> + Send + 'static {
        async move {
            let max_message = self.settings.max_message_bytes;
            // What the call turned out to be, for the error if it fails.
            let mut seen = None;
            let answered = {
                let work = async {
                    // Read under a bound: past it, RESOURCE_EXHAUSTED with nothing more
                    // buffered (the gRPC frame's 5-byte header is not the message's).
                    let body = call.body.take().unwrap_or_default();
                    let bytes = whole::read(body, max_message.saturating_add(5))
                        .await
                        .map_err(|e| read_failed(e.as_ref(), max_message))?
                        .data;
                    seen = Some(CallFacts::of(call.rpc, bytes.get(5..).unwrap_or_default()));
                    self.budget.deposit();
                    let response = self.attempts(call.rpc, &mut call.head, bytes).await?;
                    Ok::<_, BoxError>(response)
                };
                let mut work = std::pin::pin!(work);
                let timer = &mut call.timer;
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(result) = work.as_mut().poll(cx) {
                        return Poll::Ready(Some(result));
                    }
                    timer.as_mut().poll(cx).map(|()| None)
                })
                .await
            };
            match answered {
                Some(Ok(mut response)) => {
                    deadline::fix_timeout_status(response.headers_mut());
                    // A call with nothing to tell (a Describe) adds no extension: it would be
                    // an allocation per call to say what the default says.
                    if let Some(facts) = seen.filter(|facts| *facts != CallFacts::default()) {
                        response.extensions_mut().insert(facts);
                    }
                    Ok(match call.body_deadline {
                        Some(at) => response.map(|body| {
                            Body::new(deadline::DeadlineBody::new(body, call.timer, at))
                        }),
                        None => response,
                    })
                }
                Some(Err(e)) => Err(attempt::failed(e, seen.as_ref())),
                None => Err(attempt::failed(
                    BoxError::from(Status::deadline_exceeded(format!(
                        "beamline {}: no answer within {:?}",
                        self.beamline, call.bound
                    ))),
                    seen.as_ref(),
                )),
            }
        }
    }

    /// Sends the call until an attempt is done or no retry is allowed. h2 takes the head it
    /// sends, so an attempt that may be followed by another sends a copy; the last one the
    /// settings allow sends `head` itself (with no retries configured, no copy is ever made).
    async fn attempts(
        &self,
        rpc: Option<Rpc>,
        head: &mut Option<http::request::Parts>,
        bytes: Bytes,
    ) -> Result<Response, BoxError> {
        let message = if bytes.len() >= 5 {
            bytes.slice(5..)
        } else {
            Bytes::new()
        };
        let mut attempt = 0;
        // Instances a keyed Execute failed on: its retry goes elsewhere.
        let mut tried = Vec::new();
        loop {
            attempt += 1;
            // Built and handed over in one statement: the head is never held across an await.
            let sent = self
                .request(head, attempt, &bytes)
                .and_then(|request| self.send(rpc, &message, request, &tried));
            let outcome = match sent {
                Ok(sent) => self.attempt(rpc, &message, sent, &mut tried).await,
                Err(status) => Outcome::Done(Err(BoxError::from(status))),
            };
            match outcome {
                Outcome::Done(result) => return result,
                Outcome::Retry(last) => {
                    if attempt > self.settings.max_retries || !self.budget.withdraw() {
                        return Err(last);
                    }
                    tracing::debug!(beamline = %self.beamline, ?rpc, attempt, "retrying");
                }
            }
        }
    }

    /// The request of attempt number `attempt`: a copy of `head` while another attempt may
    /// follow, `head` itself for the last one.
    fn request(
        &self,
        head: &mut Option<http::request::Parts>,
        attempt: usize,
        bytes: &Bytes,
    ) -> Result<Request, Status> {
        let parts = if attempt > self.settings.max_retries {
            head.take()
        } else {
            head.clone()
        };
        let parts = parts.ok_or_else(|| Status::internal("no request head left to send"))?;
        Ok(http::Request::from_parts(parts, replay(bytes)))
    }

    /// Through p2c: whoever holds the lock waits for readiness (failfast bounds it), dispatches,
    /// and lets the next caller in before awaiting the response. Boxed in a plain fn: awaiting
    /// the balancer's future inline trips a rustc limitation with higher-ranked lifetimes on its
    /// error conversion.
    fn balanced(&self, request: Request) -> BoxFuture<'static, Result<Response, BoxError>> {
        let balancer = self.balancer.clone();
        Box::pin(async move {
            let response = {
                let mut p2c = balancer.lock().await;
                let ready = std::future::poll_fn(|cx| p2c.poll_ready(cx)).await;
                let response = ready.map(|()| p2c.call(request));
                forget_caller(&mut p2c);
                response?
            };
            response.await
        })
    }
}

/// Polls the balancer once more with a waker that does nothing, so that it keeps no waker of
/// the caller's task: a waker left in its discovery stream or its ready cache holds the whole
/// task's allocation until the beamline's next call (the fleet catalog's Describes, 1.6 KB
/// each, were 1.6 MB at 1,000 idle routes, held for calls long finished). No wake-up is lost:
/// the route's discovery task polls the balancer (with its own waker) on every change, and a
/// caller that has to wait polls with its own.
fn forget_caller(p2c: &mut FailFast<tower::balance::p2c::Balance<super::pool::Discover, Request>>) {
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    // The inner balancer, not the failfast layer: its timer is the waiting caller's business.
    let _ = p2c.get_mut().poll_ready(&mut cx);
}

/// What one attempt came to.
enum Outcome {
    Done(Result<Response, BoxError>),
    Retry(BoxError),
}

/// `d` after `at`; a deadline too far to represent is as good as none (never a panic).
fn later(at: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(d.min(CENTURY))
        .unwrap_or_else(|| at + Duration::from_secs(24 * 3600))
}

fn replay(bytes: &Bytes) -> Body {
    Body::new(http_body_util::Full::new(bytes.clone()))
}

#[cfg(test)]
mod tests;
