//! The endpoints of one beamline: a task that follows discovery's snapshots (with or without
//! traffic) and keeps one [`Endpoint`] per healthy instance — so health gates are warm before
//! the first call (and, once an endpoint went idle, Consul's check alone gates it) — and the `Discover` stream that feeds those endpoints to tower's p2c.
//!
//! An endpoint's identity is the [`Endpoint`] itself (its connection and health watch), not its
//! id and address: an instance that leaves and comes back gets a new endpoint, and the balancer
//! must swap the old service (whose gate died with the old health watch) for the new one, even
//! when it sees both changes at once. `Discover` also publishes the endpoints the balancer holds,
//! so status pages and metrics report what the balancer does, not what Consul says.
//!
//! Owns endpoint lifetimes; routing decisions are the router's and the balancer's.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tower::discover::Change;

use super::connection::Connection;
use super::endpoint::{Endpoint, Gated, Tagged};
use super::load::PeakEwma;
use crate::discovery::{self, Snapshot};

/// Healthy endpoints by instance id.
pub type Endpoints = Arc<BTreeMap<String, Arc<Endpoint>>>;

/// Why the endpoints that are not ready failed their last health Watch (`instance a: cannot
/// connect to …`), at most a few; `None` when none says.
pub fn failures(endpoints: &Endpoints) -> Option<String> {
    const SHOWN: usize = 3;
    let failures: Vec<String> = endpoints
        .values()
        .filter(|endpoint| !endpoint.is_open())
        .filter_map(|endpoint| Some(format!("instance {}: {}", endpoint.id, endpoint.failure()?)))
        .collect();
    let mut text = failures[..failures.len().min(SHOWN)].join("; ");
    if failures.len() > SHOWN {
        text.push_str(&format!("; and {} more", failures.len() - SHOWN));
    }
    (!failures.is_empty()).then_some(text)
}

/// Where [`follow`] publishes.
pub struct Published {
    /// The endpoints of the healthy instances: what new calls may go to.
    pub endpoints: watch::Sender<Endpoints>,
    /// Instances that left discovery (deregistered, or no longer passing) but still answer
    /// their health Watch: a draining agent serves the tasks it owns until it stops, so calls
    /// about those tasks still go there. Each is dropped when its Watch ends, or after
    /// `drain_bound`.
    pub departed: watch::Sender<Endpoints>,
    pub drain_bound: Duration,
}

/// Keeps the published endpoints in step with `snapshots` until the snapshot sender goes away;
/// `connect` makes the endpoint of an instance id and address (`Endpoint::new` but in tests),
/// `None` for an unusable address.
pub async fn follow(
    mut snapshots: watch::Receiver<Snapshot>,
    published: Published,
    connect: impl Fn(&str, &str) -> Option<Endpoint>,
) {
    let Published {
        endpoints,
        departed,
        drain_bound,
    } = published;
    // Departed endpoints, each until it stops answering (or the bound).
    let mut leaving = FuturesUnordered::new();
    loop {
        let healthy = discovery::healthy(&snapshots.borrow_and_update());
        let current = endpoints.borrow().clone();
        let changes = discovery::diff(
            &current
                .iter()
                .map(|(id, e)| (id.clone(), e.addr.clone()))
                .collect(),
            &healthy,
        );
        if !changes.is_empty() {
            let mut next = (*current).clone();
            let mut gone = (*departed.borrow().clone()).clone();
            for change in changes {
                match change {
                    Change::Remove(id) => {
                        let Some(endpoint) = next.remove(&id) else {
                            continue;
                        };
                        // An endpoint that let its idle connection go opens it again to
                        // learn whether the instance still answers.
                        endpoint.hold();
                        if endpoint.is_alive() {
                            leaving.push(until_gone(endpoint.clone(), drain_bound));
                            gone.insert(id, endpoint);
                        }
                    }
                    Change::Insert(id, addr) => match connect(&id, &addr) {
                        Some(endpoint) => {
                            // Back (or a new instance under the same id): routed as new.
                            gone.remove(&id);
                            next.insert(id, Arc::new(endpoint));
                        }
                        None => tracing::warn!(instance = %id, %addr, "unusable address"),
                    },
                }
            }
            endpoints.send_replace(Arc::new(next));
            departed.send_replace(Arc::new(gone));
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some(left) = leaving.next(), if !leaving.is_empty() => {
                departed.send_modify(|gone| {
                    // Only this very endpoint: the id may have come back as another since.
                    if gone.get(&left.id).is_some_and(|e| Arc::ptr_eq(e, &left)) {
                        Arc::make_mut(gone).remove(&left.id);
                    }
                });
            }
        }
    }
}

/// Resolves with `endpoint` once it stops answering its health Watch, or after `bound`.
async fn until_gone(endpoint: Arc<Endpoint>, bound: Duration) -> Arc<Endpoint> {
    let _ = tokio::time::timeout(bound, endpoint.gone()).await;
    endpoint
}

/// The service p2c balances over: a gated, load-measured connection to one instance.
pub type Balanced = Gated<PeakEwma<Tagged<Connection>>>;

/// The endpoints as tower `Change`s, for `tower::balance::p2c::Balance`.
pub struct Discover {
    endpoints: WatchStream<Endpoints>,
    /// The endpoints handed to the balancer (it drains this stream whenever it polls it).
    known: BTreeMap<String, Arc<Endpoint>>,
    /// `known`, published for readers outside the balancer.
    balanced: watch::Sender<Endpoints>,
    pending: VecDeque<Change<String, Balanced>>,
    initial_rtt: Duration,
    decay: Duration,
    floor: Duration,
}

impl Discover {
    /// A stream over `endpoints`; `balanced` is told which endpoints the balancer holds.
    pub fn new(
        endpoints: watch::Receiver<Endpoints>,
        balanced: watch::Sender<Endpoints>,
        initial_rtt: Duration,
        decay: Duration,
        floor: Duration,
    ) -> Discover {
        Discover {
            endpoints: WatchStream::new(endpoints),
            known: BTreeMap::new(),
            balanced,
            pending: VecDeque::new(),
            initial_rtt,
            decay,
            floor,
        }
    }

    fn update(&mut self, endpoints: &Endpoints) {
        let next: BTreeMap<String, Arc<Endpoint>> = (**endpoints).clone();
        for change in discovery::diff_by(&self.known, &next, Arc::ptr_eq) {
            self.pending.push_back(match change {
                Change::Remove(id) => Change::Remove(id),
                Change::Insert(id, endpoint) => {
                    let load = PeakEwma::new(
                        Tagged::new(endpoint.connection.clone(), &id),
                        self.initial_rtt,
                        self.decay,
                        self.floor,
                    );
                    Change::Insert(id, Gated::new(load, endpoint.gate()))
                }
            });
        }
        self.known = next;
        self.balanced.send_replace(endpoints.clone());
    }
}

impl Stream for Discover {
    type Item = Result<Change<String, Balanced>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            match Pin::new(&mut self.endpoints).poll_next(cx) {
                Poll::Ready(Some(endpoints)) => self.update(&endpoints),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
