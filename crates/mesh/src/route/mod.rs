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

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::Status;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{BoxError, Service};

use super::deadline;
use super::failfast::FailFast;
use super::pool::Endpoints;
use super::wire::grpc_timeout;
use super::MeshSettings;
use crate::discovery::{BeamlineWatch, Snapshot};
use beamline_contract::beamline::BeamlineId;
use beamline_contract::wire::Rpc;

mod attempt;
mod request;
mod target;

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

    /// Routes one call, with retries and deadlines.
    pub async fn dispatch(self: Arc<Self>, request: Request) -> Result<Response, BoxError> {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_used.store(now, Ordering::Relaxed);
        let (mut parts, body) = request.into_parts();
        // Refused here, for this call alone: an agent that got it would close the connection
        // every caller of this instance shares (HTTP/2's header limit is per connection).
        let header_bytes = request::header_list_size(&parts.headers);
        // h2 counts a list of exactly the limit as over it.
        if header_bytes >= request::MAX_HEADER_LIST_BYTES {
            return Err(BoxError::from(Status::resource_exhausted(format!(
                "the request's metadata is {header_bytes} bytes, more than the {} an agent \
                 accepts",
                request::MAX_HEADER_LIST_BYTES
            ))));
        }
        let rpc = Rpc::of_path(parts.uri.path());
        let caller_deadline = grpc_timeout(&parts.headers);
        if caller_deadline.is_none() && !rpc.is_some_and(Rpc::is_stream) {
            // The agent enforces the default too, so an abandoned unary call does not run on.
            let header = format!("{}m", self.settings.unary_timeout.as_millis());
            if let Ok(value) = http::HeaderValue::from_str(&header) {
                parts.headers.insert("grpc-timeout", value);
            }
        }
        // Answer a little before the caller's deadline, counted from the call's arrival: a
        // server in front of the mesh (the gateway) expires at the deadline itself, with tonic's
        // CANCELLED instead of DEADLINE_EXCEEDED.
        let caller_deadline = caller_deadline.map(deadline::answer_by);
        let now = Instant::now();
        let started = parts
            .extensions
            .get::<deadline::Arrival>()
            .map_or(now, |arrival| arrival.0);
        let body_deadline = caller_deadline.map(|d| later(started, d));
        if body_deadline.is_some_and(|at| at <= now) {
            // Said now, not at the next timer tick, where tonic's own expiry may come first.
            return Err(BoxError::from(Status::deadline_exceeded(format!(
                "beamline {}: the caller's deadline passed before the call could be sent",
                self.beamline
            ))));
        }
        let bound = match (caller_deadline, rpc.is_some_and(Rpc::is_stream)) {
            (Some(d), true) => d.min(self.settings.first_message_timeout),
            (Some(d), false) => d,
            (None, true) => self.settings.first_message_timeout,
            (None, false) => self.settings.unary_timeout,
        };
        let beamline = self.beamline.clone();
        // One timer per call: it bounds reading the request and the attempts, then (moved if a
        // stream's deadline is later) the response body. Registering a timer can wake the
        // thread parked on the runtime's timer driver (a syscall), so a call registers one, not
        // one per bound.
        let mut timer = Box::pin(tokio::time::sleep_until(later(started, bound)));
        let max_message = self.settings.max_message_bytes;
        // What the call turned out to be, for the error if it fails.
        let seen = std::sync::OnceLock::new();
        let call = async {
            // Read under a bound: past it, RESOURCE_EXHAUSTED with nothing more buffered (the
            // gRPC frame's 5-byte header is not the message's).
            let bytes = http_body_util::Limited::new(body, max_message.saturating_add(5))
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        Status::resource_exhausted(format!(
                            "the request message is larger than {max_message} bytes"
                        ))
                    } else {
                        Status::cancelled(format!("reading the request: {e}"))
                    }
                })?
                .to_bytes();
            let facts = CallFacts::of(rpc, bytes.get(5..).unwrap_or_default());
            let _ = seen.set(facts.clone());
            self.budget.deposit();
            let response = Arc::clone(&self).attempts(rpc, parts, bytes).await?;
            Ok::<_, BoxError>((response, facts))
        };
        let mut call = std::pin::pin!(call);
        let answered = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = call.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            timer.as_mut().poll(cx).map(|()| None)
        })
        .await;
        match answered {
            Some(Ok((mut response, facts))) => {
                deadline::fix_timeout_status(response.headers_mut());
                response.extensions_mut().insert(facts);
                Ok(match body_deadline {
                    Some(at) => {
                        response.map(|body| Body::new(deadline::DeadlineBody::new(body, timer, at)))
                    }
                    None => response,
                })
            }
            Some(Err(e)) => Err(attempt::failed(e, seen.get())),
            None => Err(attempt::failed(
                BoxError::from(Status::deadline_exceeded(format!(
                    "beamline {beamline}: no answer within {bound:?}"
                ))),
                seen.get(),
            )),
        }
    }

    async fn attempts(
        self: Arc<Self>,
        rpc: Option<Rpc>,
        parts: http::request::Parts,
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
            let request = http::Request::from_parts(parts.clone(), replay(&bytes));
            match self.attempt(rpc, &message, request, &mut tried).await {
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
