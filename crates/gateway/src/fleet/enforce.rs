//! The kill switch and the lock on the data path: a tower layer in front of the router that
//! refuses actuating calls while the control state (`beamline_contract::control`) says a
//! beamline is halted or locked, or cannot be read (fail closed).
//!
//! Per request it reads one thing: the control view, borrowed from the watch the facility
//! follows (no clone, no allocation), and only for Execute and Cancel. When no halt, lock or
//! outage applies, the request goes on untouched: its body is not read. Only when one applies
//! is the request's one message read (bounded by the mesh's message limit) to learn what it is
//! for:
//! - Execute: the capability, which the catalog says actuates or not. Actuating (or not known:
//!   fail closed) is refused FAILED_PRECONDITION with the refusal's words (who halted, when and
//!   why; the lock's holder, note and expiry); read-only goes on with the body as read.
//! - Cancel: refused only by a lock held by someone else (a halt or an outage stops work, so
//!   cancels go on), and only when the task's capability actuates (or cannot be learnt): the
//!   task is read with a GetTask through the mesh; a task the agent does not have goes on, for
//!   the agent to answer NOT_FOUND.
//!
//! A refused response carries a [`Refused`] extension for the observer (access log, metrics).
//! Owns that decision and its wire handling; the refusal rule and its words are the contract's,
//! whether a capability actuates is the catalog's, who may halt or lock is the Fleet service's.
//! It must not write the control state nor refuse reads (Describe, GetTask, Subscribe).

mod message;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, Either};
use tokio::sync::watch;
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

use beamline_consul::control::ControlView;
use beamline_contract::beamline::BeamlineId;
use beamline_contract::control::Refusal;
use beamline_contract::proto::{CancelRequest, ExecuteRequest, GetTaskRequest, Task};
use beamline_contract::wire::Rpc;
use beamline_mesh_client::{CallFacts, Mesh};

use super::catalog::CapabilityKind;
use super::Facility;
use crate::caller::Caller;

/// What a refusal was for: the label of the refusal metric and the access log's `refused` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusedBy {
    Halt,
    Lock,
    /// The control state cannot be read (fail closed).
    Unreadable,
}

impl RefusedBy {
    pub fn of(refusal: &Refusal) -> RefusedBy {
        match refusal {
            Refusal::Halted { .. } => RefusedBy::Halt,
            Refusal::Locked { .. } => RefusedBy::Lock,
            Refusal::Unreadable { .. } => RefusedBy::Unreadable,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            RefusedBy::Halt => "halt",
            RefusedBy::Lock => "lock",
            RefusedBy::Unreadable => "unreadable",
        }
    }
}

/// In a response's extensions: this layer refused the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub by: RefusedBy,
}

/// Whether a capability of a beamline actuates (the catalog's answer).
pub type Kinds = Arc<dyn Fn(&str, &str) -> CapabilityKind + Send + Sync>;
/// Reads a task of a beamline (a GetTask through the mesh).
pub type Tasks =
    Arc<dyn Fn(BeamlineId, String) -> BoxFuture<'static, Result<Task, Status>> + Send + Sync>;

/// How long the Cancel check waits for the GetTask that says what the task is.
const TASK_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refusal waits for the request's message (a caller that sends headers and no
/// body holds only its own stream, and not forever).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the layer decides from: the control view, the catalog, the tasks, the message limit.
struct Rules {
    view: watch::Receiver<Arc<ControlView>>,
    kinds: Kinds,
    tasks: Tasks,
    max_message_bytes: usize,
}

/// Refuses actuating calls while a halt, a lock or an outage of the control state applies.
#[derive(Clone)]
pub struct EnforceLayer {
    rules: Arc<Rules>,
}

impl EnforceLayer {
    /// The layer over the facility's control state and catalog; tasks are read through `mesh`,
    /// and a request message is read up to `max_message_bytes` (the mesh's limit).
    pub fn new(facility: &Facility, mesh: Mesh, max_message_bytes: usize) -> EnforceLayer {
        let catalog = facility.catalog.clone();
        let kinds: Kinds = Arc::new(move |beamline, name| catalog.capability(beamline, name));
        let tasks: Tasks = Arc::new(move |beamline: BeamlineId, task_id| {
            let mesh = mesh.clone();
            Box::pin(async move {
                let mut client = mesh.agent(beamline.as_str())?;
                let mut request = tonic::Request::new(GetTaskRequest { task_id });
                request.set_timeout(TASK_LOOKUP_TIMEOUT);
                Ok(client.get_task(request).await?.into_inner())
            })
        });
        EnforceLayer::from_parts(
            facility.control.subscribe(),
            kinds,
            tasks,
            max_message_bytes,
        )
    }

    /// The layer over any view, catalog and task source (tests).
    pub fn from_parts(
        view: watch::Receiver<Arc<ControlView>>,
        kinds: Kinds,
        tasks: Tasks,
        max_message_bytes: usize,
    ) -> EnforceLayer {
        EnforceLayer {
            rules: Arc::new(Rules {
                view,
                kinds,
                tasks,
                max_message_bytes,
            }),
        }
    }
}

impl<S> Layer<S> for EnforceLayer {
    type Service = Enforce<S>;
    fn layer(&self, inner: S) -> Enforce<S> {
        Enforce {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The service of [`EnforceLayer`].
#[derive(Clone)]
pub struct Enforce<S> {
    inner: S,
    rules: Arc<Rules>,
}

/// What a request needs, decided from the view alone.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    Pass,
    /// An Execute under this refusal: refused unless its capability is read-only.
    Execute(Refusal),
    /// A Cancel under this lock's refusal: refused when its task's capability actuates.
    Cancel(Refusal),
}

/// Nothing halted or locked anywhere, and the state readable: the usual case, decided with no
/// lookup and no clock.
fn is_clear(view: &ControlView) -> bool {
    let state = &view.state;
    view.unreadable.is_none()
        && state.all.is_none()
        && state.halts.is_empty()
        && state.locks.is_empty()
}

/// The check of `rpc` by `caller` on `beamline` under `view`; `now` is asked only when a lock
/// may apply. I/O-free.
fn check(
    view: &ControlView,
    rpc: Rpc,
    beamline: &str,
    caller: Option<&str>,
    now: impl FnOnce() -> SystemTime,
) -> Check {
    let state = &view.state;
    if is_clear(view) {
        return Check::Pass;
    }
    match rpc {
        Rpc::Execute => view
            .refusal(beamline, caller, now())
            .map_or(Check::Pass, Check::Execute),
        // A halt does not stop cancels (nor does an outage: a cancel only stops work); a lock
        // stops its holder's competitors, halted or not.
        Rpc::Cancel => {
            let Some(lock) = state.lock(beamline, now()) else {
                return Check::Pass;
            };
            if caller.is_some_and(|c| !lock.holder.is_empty() && c == lock.holder) {
                return Check::Pass;
            }
            Check::Cancel(Refusal::Locked {
                beamline: beamline.to_string(),
                lock: lock.clone(),
            })
        }
        _ => Check::Pass,
    }
}

impl<S> Enforce<S> {
    /// The check of `request`, when it is not a plain pass: None for every RPC but Execute and
    /// Cancel, for every request while nothing is halted, locked or unreadable (asked first, so
    /// that the usual call reads nothing more), and for a request without a valid beamline (the
    /// router answers that).
    fn check(&self, request: &mut http::Request<Body>) -> Option<(Check, BeamlineId)> {
        let rpc @ (Rpc::Execute | Rpc::Cancel) = Rpc::of_path(request.uri().path())? else {
            return None;
        };
        // Borrowed, not cloned, and released before anything awaits.
        let view = self.rules.view.borrow();
        if is_clear(&view) {
            return None;
        }
        let beamline = crate::beamline_of(request).ok()?;
        let caller = request.extensions().get::<Caller>().map(|c| &*c.name);
        match check(&view, rpc, beamline.as_str(), caller, SystemTime::now) {
            Check::Pass => None,
            check => Some((check, beamline)),
        }
    }
}

/// The refusal as a trailers-only FAILED_PRECONDITION, marked for the observer, with what the
/// call was for (capability or task) for its log line.
fn refuse(refusal: &Refusal, facts: CallFacts) -> http::Response<Body> {
    let mut response = Status::failed_precondition(refusal.to_string()).into_http();
    let extensions = response.extensions_mut();
    extensions.insert(Refused {
        by: RefusedBy::of(refusal),
    });
    extensions.insert(facts);
    response
}

/// The answer to a request under `check`, given its message: a refusal (or INVALID_ARGUMENT
/// for a message that cannot be read), or None when it goes on.
async fn judge(
    check: &Check,
    beamline: &BeamlineId,
    bytes: &bytes::Bytes,
    rules: &Rules,
) -> Option<http::Response<Body>> {
    let (refusal, facts) = match check {
        Check::Pass => return None,
        Check::Execute(refusal) => match message::decode::<ExecuteRequest>(bytes) {
            Err(status) => return Some(status.into_http()),
            // Compressed: what it asks for is not known here (fail closed).
            Ok(None) => (refusal, CallFacts::default()),
            Ok(Some(execute)) => {
                if (rules.kinds)(beamline.as_str(), &execute.capability) == CapabilityKind::ReadOnly
                {
                    return None;
                }
                let facts = CallFacts {
                    capability: Some(execute.capability),
                    task_id: None,
                };
                (refusal, facts)
            }
        },
        Check::Cancel(refusal) => match message::decode::<CancelRequest>(bytes) {
            Err(status) => return Some(status.into_http()),
            Ok(None) => (refusal, CallFacts::default()),
            Ok(Some(cancel)) => {
                let kind = match (rules.tasks)(beamline.clone(), cancel.task_id.clone()).await {
                    Ok(task) => (rules.kinds)(beamline.as_str(), &task.capability),
                    // No such task: the agent says so itself.
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        CapabilityKind::ReadOnly
                    }
                    // What the task is cannot be learnt (fail closed).
                    Err(_) => CapabilityKind::Unknown,
                };
                if kind == CapabilityKind::ReadOnly {
                    return None;
                }
                let facts = CallFacts {
                    capability: None,
                    task_id: Some(cancel.task_id),
                };
                (refusal, facts)
            }
        },
    };
    Some(refuse(refusal, facts))
}

impl<S> Service<http::Request<Body>> for Enforce<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<http::Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let Some((check, beamline)) = self.check(&mut request) else {
            return Either::Left(self.inner.call(request));
        };
        // The clone that was driven to readiness serves this call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let rules = self.rules.clone();
        Either::Right(Box::pin(async move {
            let (parts, body) = request.into_parts();
            let read =
                tokio::time::timeout(READ_TIMEOUT, message::read(body, rules.max_message_bytes))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Status::deadline_exceeded(format!(
                            "the request message did not arrive within {READ_TIMEOUT:?}"
                        )))
                    });
            let bytes = match read {
                Ok(bytes) => bytes,
                Err(status) => return Ok(status.into_http()),
            };
            if let Some(refused) = judge(&check, &beamline, &bytes, &rules).await {
                return Ok(refused);
            }
            let request = http::Request::from_parts(parts, message::replay(bytes));
            inner.call(request).await
        }))
    }
}

#[cfg(test)]
mod tests;
