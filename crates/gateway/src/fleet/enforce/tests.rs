//! The layer around a stand-in router: what passes untouched (body never polled), what is
//! refused and with what, what goes on with its message as read, and bad messages as the caller
//! sees them (the framing's own cases are `message`'s tests). The fixtures and the fast path are
//! here; the refusals in `refusals`.

mod refusals;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use tonic::Code;
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::caller::{Beamlines, Caller, Role};
use beamline_contract::control::{ControlState, Halt, HeldLock, Lock};
use beamline_contract::wire::header;

const BEAMLINE: &str = "5.3.1";
const OTHER: &str = "7.0.1";

fn since() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000)
}

fn halt() -> Halt {
    Halt {
        by: "control-room".to_string(),
        reason: "sample on fire".to_string(),
        since: since(),
    }
}

fn lock(holder: &str, expires: SystemTime) -> HeldLock {
    HeldLock {
        lock: Lock {
            holder: holder.to_string(),
            note: "aligning by hand".to_string(),
            since: since(),
            expires,
        },
        modify_index: 7,
    }
}

fn far_future() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

fn readable(state: ControlState) -> ControlView {
    ControlView {
        state,
        unreadable: None,
        index: 3,
    }
}

fn halted(beamline: &str) -> ControlView {
    let mut state = ControlState::default();
    state.halts.insert(beamline.to_string(), halt());
    readable(state)
}

fn locked_by(holder: &str, expires: SystemTime) -> ControlView {
    let mut state = ControlState::default();
    state
        .locks
        .insert(BEAMLINE.to_string(), lock(holder, expires));
    readable(state)
}

/// What the stand-in router saw.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    bodies: Mutex<Vec<Bytes>>,
}

/// Answers OK at once; reads the body only when told to (to show what it was given).
#[derive(Clone)]
struct Router {
    seen: Arc<Seen>,
    read_body: bool,
}

impl Service<http::Request<Body>> for Router {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let seen = self.seen.clone();
        let read_body = self.read_body;
        Box::pin(async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            if read_body {
                let bytes = request.into_body().collect().await.unwrap().to_bytes();
                seen.bodies.lock().unwrap().push(bytes);
            }
            Ok(Status::ok("").into_http())
        })
    }
}

/// A body that counts how often it is polled and never ends (a caller still sending).
struct Watched(Arc<AtomicUsize>);

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = Status;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }
}

/// The tasks the stand-in agent knows: task id → capability.
fn tasks(known: &[(&str, &str)]) -> Tasks {
    let known: BTreeMap<String, String> = known
        .iter()
        .map(|(t, c)| (t.to_string(), c.to_string()))
        .collect();
    Arc::new(move |_beamline, task_id: String| {
        let found = match task_id.as_str() {
            "broken/1" => Err(Status::unavailable("no healthy instance")),
            id => known
                .get(id)
                .map(|capability| Task {
                    task_id: task_id.clone(),
                    capability: capability.clone(),
                    ..Task::default()
                })
                .ok_or_else(|| Status::not_found("no such task")),
        };
        Box::pin(std::future::ready(found))
    })
}

/// The catalog: `read_pv` reads, `move_motor` actuates, anything else is not known.
fn kinds() -> Kinds {
    Arc::new(|_beamline, name| match name {
        "read_pv" => CapabilityKind::ReadOnly,
        "move_motor" => CapabilityKind::Actuating,
        _ => CapabilityKind::Unknown,
    })
}

struct Fixture {
    layer: EnforceLayer,
    seen: Arc<Seen>,
    _tx: watch::Sender<Arc<ControlView>>,
}

fn fixture(view: ControlView) -> Fixture {
    let (tx, rx) = watch::channel(Arc::new(view));
    let layer = EnforceLayer::from_parts(
        rx,
        kinds(),
        tasks(&[
            ("a/1", "move_motor"),
            ("a/2", "read_pv"),
            ("a/3", "gone_capability"),
        ]),
        64,
    );
    Fixture {
        layer,
        seen: Arc::default(),
        _tx: tx,
    }
}

impl Fixture {
    fn service(&self, read_body: bool) -> Enforce<Router> {
        self.layer.layer(Router {
            seen: self.seen.clone(),
            read_body,
        })
    }

    fn calls(&self) -> usize {
        self.seen.calls.load(Ordering::SeqCst)
    }

    /// A request of `rpc` with `body` through the layer to a router that reads what it is
    /// given.
    async fn send(&self, rpc: Rpc, beamline: &str, caller: Option<&str>, body: Body) -> Answer {
        let response = self
            .service(true)
            .oneshot(request(rpc, beamline, caller, body))
            .await
            .unwrap();
        let status = Status::from_header_map(response.headers()).expect("a trailers-only status");
        let extensions = response.extensions();
        Answer {
            code: status.code(),
            message: status.message().to_string(),
            refused: extensions.get::<Refused>().map(|r| r.by),
            facts: extensions.get::<CallFacts>().cloned().unwrap_or_default(),
        }
    }

    /// The request of `rpc` with a body that counts its polls, through the layer to a router
    /// that does not read it: whether the layer took its fast path (no future of its own), and
    /// how often the body was polled.
    async fn untouched(&self, rpc: Rpc, caller: Option<&str>) -> (bool, usize) {
        let polls = Arc::new(AtomicUsize::new(0));
        let body = Body::new(Watched(polls.clone()));
        let mut service = self.service(false);
        let future = service.call(request(rpc, BEAMLINE, caller, body));
        let fast = matches!(future, Either::Left(_));
        let response = future.await.unwrap();
        assert_eq!(response.headers()["grpc-status"], "0", "{rpc}");
        (fast, polls.load(Ordering::SeqCst))
    }
}

/// What the caller got.
struct Answer {
    code: Code,
    message: String,
    refused: Option<RefusedBy>,
    facts: CallFacts,
}

fn frame(message: &impl Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    out.extend_from_slice(&encoded);
    out.into()
}

fn execute(capability: &str) -> Bytes {
    frame(&ExecuteRequest {
        capability: capability.to_string(),
        ..ExecuteRequest::default()
    })
}

fn cancel(task_id: &str) -> Bytes {
    frame(&CancelRequest {
        task_id: task_id.to_string(),
    })
}

fn request(rpc: Rpc, beamline: &str, caller: Option<&str>, body: Body) -> http::Request<Body> {
    let mut request = http::Request::builder()
        .uri(rpc.path())
        .header(header::BEAMLINE, beamline)
        .body(body)
        .unwrap();
    if let Some(name) = caller {
        request.extensions_mut().insert(Caller {
            name: name.into(),
            role: Role::Operator,
            beamlines: Beamlines::All.into(),
        });
    }
    request
}

fn whole(bytes: impl Into<Bytes>) -> Body {
    Body::new(http_body_util::Full::new(bytes.into()))
}

/// `bytes` in chunks of `size` bytes.
fn chunked(bytes: Bytes, size: usize) -> Body {
    let chunks: Vec<Result<Frame<Bytes>, Status>> = bytes
        .chunks(size)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    Body::new(http_body_util::StreamBody::new(futures::stream::iter(
        chunks,
    )))
}

/// Every RPC through an empty view, and every RPC but Execute and Cancel under a halt: the
/// router gets the request at once, its body never polled, with no future of the layer's own.
#[tokio::test]
async fn without_a_refusal_the_request_passes_untouched() {
    for (view, rpcs) in [
        (readable(ControlState::default()), &Rpc::ALL[..]),
        (
            halted(BEAMLINE),
            &[Rpc::Describe, Rpc::GetTask, Rpc::Subscribe, Rpc::Cancel][..],
        ),
        (halted(OTHER), &Rpc::ALL[..]),
    ] {
        let f = fixture(view);
        for &rpc in rpcs {
            assert_eq!(f.untouched(rpc, None).await, (true, 0), "{rpc}");
        }
        assert_eq!(f.calls(), rpcs.len());
    }
}

#[test]
fn the_check_asks_the_clock_only_when_something_is_halted_or_locked() {
    let empty = readable(ControlState::default());
    let check = check(&empty, Rpc::Execute, BEAMLINE, None, || {
        panic!("the clock was read")
    });
    assert_eq!(check, Check::Pass);
}
