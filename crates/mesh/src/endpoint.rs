//! One instance as the mesh sees it: a lazily opened connection and a readiness gate driven by
//! a grpc.health.v1 `Watch` over that connection. The gate closes on NOT_SERVING (an agent
//! starting to drain says so before Consul notices) and on any stream error (a dead instance),
//! and reopens once the instance answers SERVING again. An endpoint no call used for
//! [`EndpointSettings::idle_after`] lets its connection and Watch go and trusts Consul's check
//! until the next call (`idle`).
//!
//! Owns per-instance connection and health; choosing between instances is the balancer's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tower::load::Load;
use tower::Service;

mod health;
mod idle;

use super::connection::{Connection, ConnectionSettings, TlsDial};
use beamline_consul::backoff::{jitter, Backoff};
use beamline_contract::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_contract::proto::{AgentCard, DescribeRequest};

/// The health service name every beamline agent reports.

#[derive(Debug, Clone)]
pub struct EndpointSettings {
    pub connect_timeout: Duration,
    pub http2_keepalive: Duration,
    /// See `ConnectionSettings::unresponsive_after`.
    pub unresponsive_after: Duration,
    /// Health-watch reconnect backoff, doubled up to the max, with jitter.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// A connection that carried no call this long is closed, with its health Watch, until
    /// the next call opens it again (or the instance leaves discovery: then whether it still
    /// answers is watched until it stops); `None` or zero keeps connections for the endpoint's
    /// life.
    pub idle_after: Option<Duration>,
}

/// The default of [`EndpointSettings::idle_after`], and nginx's for its upstream keepalive
/// connections (`keepalive_timeout`).
pub const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(60);

impl Default for EndpointSettings {
    fn default() -> Self {
        EndpointSettings {
            connect_timeout: Duration::from_secs(1),
            http2_keepalive: Duration::from_secs(10),
            unresponsive_after: Duration::from_secs(1),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            idle_after: Some(DEFAULT_IDLE_AFTER),
        }
    }
}

impl EndpointSettings {
    fn connection(&self) -> ConnectionSettings {
        ConnectionSettings {
            connect_timeout: self.connect_timeout,
            http2_keepalive: self.http2_keepalive,
            unresponsive_after: self.unresponsive_after,
        }
    }
}

/// One instance's connection and gate. Dropping it stops its health watch.
pub struct Endpoint {
    pub id: String,
    pub addr: String,
    pub connection: Connection,
    gate: watch::Receiver<bool>,
    /// The health Watch stream is open (whatever it says): the instance answers. A draining
    /// agent says NOT_SERVING and keeps the stream until it stops.
    alive: watch::Receiver<bool>,
    /// Why the health Watch last failed to open (a refused connection, a TLS handshake that
    /// failed), until it opens again: what a call that found no instance ready is told.
    failure: watch::Receiver<Option<Arc<str>>>,
    /// The instance's AgentCard, once it answered Describe (what its capabilities allow). The
    /// channel is made when the first keyed Execute routed here wants the card: only then is
    /// the card worth a Describe (and its channel and task worth their memory: an endpoint
    /// that never needs it holds neither).
    card: std::sync::OnceLock<watch::Receiver<Option<Arc<AgentCard>>>>,
    /// Whether wanting the card describes the instance (not for a test endpoint).
    learns_card: bool,
    /// Set when the instance leaves discovery: its connection is kept from then on.
    held: watch::Sender<bool>,
    health_task: tokio::task::JoinHandle<()>,
    card_task: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.health_task.abort();
        if let Some(task) = self.card_task.get() {
            task.abort();
        }
    }
}

impl Endpoint {
    /// A new endpoint (connects lazily, over `tls` if given); `None` when `addr` is not a valid
    /// address.
    pub fn new(
        id: &str,
        addr: &str,
        settings: &EndpointSettings,
        tls: Option<TlsDial>,
    ) -> Option<Endpoint> {
        let connection = Connection::new(addr, settings.connection(), tls)?;
        let (tx, gate) = watch::channel(false);
        let (alive_tx, alive) = watch::channel(false);
        let (failure_tx, failure) = watch::channel(None);
        let (held, held_rx) = watch::channel(false);
        let health_task = tokio::spawn(health::watch(
            connection.clone(),
            health::Health {
                gate: tx,
                alive: alive_tx,
                failure: failure_tx,
                held: held_rx,
            },
            id.to_string(),
            settings.clone(),
        ));
        Some(Endpoint {
            id: id.to_string(),
            addr: addr.to_string(),
            connection,
            gate,
            alive,
            failure,
            card: std::sync::OnceLock::new(),
            learns_card: true,
            held,
            health_task,
            card_task: std::sync::OnceLock::new(),
        })
    }

    /// An endpoint whose gate is `gate` (driven by the test), for balancer tests without I/O:
    /// it starts no health watch and never connects unless called.
    #[cfg(test)]
    pub fn with_gate(id: &str, addr: &str, gate: watch::Receiver<bool>) -> Endpoint {
        let alive = gate.clone();
        Endpoint::with_signals(id, addr, gate, alive)
    }

    /// As [`Endpoint::with_gate`], with the health stream's liveness driven by the test too.
    #[cfg(test)]
    pub fn with_signals(
        id: &str,
        addr: &str,
        gate: watch::Receiver<bool>,
        alive: watch::Receiver<bool>,
    ) -> Endpoint {
        let settings = EndpointSettings::default();
        Endpoint {
            id: id.to_string(),
            addr: addr.to_string(),
            connection: Connection::new(addr, settings.connection(), None).expect("a host:port"),
            gate,
            alive,
            failure: watch::channel(None).1,
            card: std::sync::OnceLock::new(),
            learns_card: false,
            held: watch::channel(false).0,
            health_task: tokio::spawn(std::future::pending()),
            card_task: std::sync::OnceLock::new(),
        }
    }

    /// Asks for the instance's card (once; a keyed Execute's retry needs it). The mesh sends no
    /// call of its own to an instance that never gets one.
    pub fn want_card(&self) {
        self.card_task.get_or_init(|| {
            let (card_tx, card) = watch::channel(None);
            let _ = self.card.set(card);
            if self.learns_card {
                tokio::spawn(learn_card(
                    self.connection.clone(),
                    self.gate.clone(),
                    card_tx,
                ))
            } else {
                // A test endpoint: nothing to learn.
                tokio::spawn(async {})
            }
        });
    }

    /// Whether the instance's card says `capability` may run twice to the effect of once. An
    /// instance whose card is not known yet, or an older SDK's (no such field): no.
    pub fn is_idempotent(&self, capability: &str) -> bool {
        self.card.get().is_some_and(|card| {
            card.borrow().as_ref().is_some_and(|card| {
                card.capabilities
                    .iter()
                    .any(|c| c.name == capability && c.idempotent)
            })
        })
    }

    /// Whether the instance answers its health Watch now (serving or not); an endpoint that let
    /// its idle connection go counts as answering (as it did when it let go) until
    /// [`Endpoint::hold`] looks again.
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// The instance left discovery: keep (or open again) its connection and health Watch, so
    /// that whether it still answers is known while its tasks may still be asked about.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Resolves once the health Watch is no longer open: the instance stopped answering.
    pub async fn gone(&self) {
        let mut alive = self.alive.clone();
        // An error means the health task ended: gone too.
        let _ = alive.wait_for(|alive| !alive).await;
    }

    /// Why the instance's health Watch last failed to open, while it has not opened since.
    pub fn failure(&self) -> Option<Arc<str>> {
        self.failure.borrow().clone()
    }

    pub fn is_open(&self) -> bool {
        *self.gate.borrow()
    }

    pub fn gate(&self) -> watch::Receiver<bool> {
        self.gate.clone()
    }
}

/// Learns the instance's AgentCard with one Describe once the instance serves (again after a
/// backoff while it does not answer); an instance's card does not change while it lives (a new
/// card is a new deploy: a new instance, a new endpoint). Spawned when the card is wanted.
async fn learn_card(
    connection: Connection,
    mut gate: watch::Receiver<bool>,
    card: watch::Sender<Option<Arc<AgentCard>>>,
) {
    const BOUND: Duration = Duration::from_secs(5);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        let mut client = BeamlineAgentClient::new(connection.clone());
        let described = tokio::time::timeout(BOUND, client.describe(DescribeRequest {})).await;
        if let Ok(Ok(answer)) = described {
            card.send_replace(Some(Arc::new(answer.into_inner())));
            return;
        }
        tokio::time::sleep(backoff.next(jitter())).await;
    }
}

/// A service behind a readiness gate: while the gate is closed, `poll_ready` is Pending (never an
/// error: tower's balancer drops an endpoint whose readiness fails, and discovery would not add
/// it back), and the waker fires when the gate opens.
pub struct Gated<S> {
    inner: S,
    gate: WatchStream<bool>,
    open: bool,
}

impl<S> Gated<S> {
    pub fn new(inner: S, gate: watch::Receiver<bool>) -> Gated<S> {
        Gated {
            inner,
            gate: WatchStream::new(gate),
            open: false,
        }
    }
}

impl<S, Req> Service<Req> for Gated<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        loop {
            match Pin::new(&mut self.gate).poll_next(cx) {
                Poll::Ready(Some(open)) => self.open = open,
                // The endpoint was dropped: stay closed; discovery removes this service.
                Poll::Ready(None) => {
                    self.open = false;
                    return Poll::Pending;
                }
                Poll::Pending => break,
            }
        }
        if !self.open {
            return Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> S::Future {
        self.inner.call(request)
    }
}

impl<S: Load> Load for Gated<S> {
    type Metric = S::Metric;
    fn load(&self) -> S::Metric {
        self.inner.load()
    }
}

/// The instance that answered a call, in the response's extensions (for access logs and
/// metrics above the mesh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy(pub Arc<str>);

/// A channel that marks its responses with the instance they came from.
#[derive(Clone)]
pub struct Tagged<S> {
    inner: S,
    id: Arc<str>,
}

impl<S> Tagged<S> {
    pub fn new(inner: S, id: &str) -> Tagged<S> {
        Tagged {
            inner,
            id: Arc::from(id),
        }
    }
}

impl<S, Req, B> Service<Req> for Tagged<S>
where
    S: Service<Req, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let id = self.id.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            response.extensions_mut().insert(ServedBy(id));
            Ok(response)
        })
    }
}
