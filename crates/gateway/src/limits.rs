//! Rate limits at the gateway: governor token buckets per beamline (with per-beamline
//! overrides) and per caller. A call needs a token from both; over either limit it is refused at
//! once with RESOURCE_EXHAUSTED naming the limit, never queued, so a runaway planner cannot flood
//! a beamline and a hammered beamline costs the others nothing (each key has its own bucket,
//! checked with lock-free atomics; no lock is held across an await).
//!
//! Order of the checks: the caller's bucket first, then the beamline's. governor cannot peek or
//! refund, so one refused call may cost a token from the bucket checked first. The caller's own
//! bucket is the one that may pay: a caller over its limit never takes a token from the shared
//! beamline bucket (so it cannot starve the beamline's other callers), while a call the
//! beamline refuses costs its caller a token — the caller did make that call.
//!
//! Owns the buckets and the refusal; the limits' values are the policy file's (`config`), and
//! counting refusals is the metrics' (`observe`). It must not queue a call.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, Ready};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

use super::caller::Caller;
use super::config::{Limit, LimitsConfig};
use super::observe::GatewayMetrics;
use beamline_contract::beamline::BeamlineId;
use beamline_contract::wire::FleetRpc;

/// The caller name of calls without an authenticated caller (`--insecure-no-auth`).
pub const ANONYMOUS: &str = "anonymous";

/// Which bucket refused a call (the `scope` label of the rejection metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Beamline,
    Caller,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Beamline => "beamline",
            Scope::Caller => "caller",
        }
    }
}

/// Keyed buckets sharing one limit. Keys seen once stay in the map until their bucket is full
/// again; `sweep` drops those now and then so arbitrary ids do not grow it forever. Keyed by
/// shared strings (the caller's name, the beamline id): checking a key copies nothing.
struct Keyed {
    limit: Limit,
    buckets: DefaultKeyedRateLimiter<Arc<str>>,
}

/// Every bucket of the gateway, shared by all clones of the service.
struct Buckets {
    per_beamline: Option<Keyed>,
    per_caller: Option<Keyed>,
    /// Overrides are fixed at start: one direct bucket each.
    overrides: BTreeMap<String, (Limit, DefaultDirectRateLimiter)>,
    calls: AtomicU64,
    /// [`ANONYMOUS`] as a key.
    anonymous: Arc<str>,
}

/// Calls between sweeps of idle keys.
const SWEEP_EVERY: u64 = 4096;

fn quota(limit: Limit) -> Quota {
    // The config refuses rate <= 0 and burst < 1; clamp anyway rather than panic.
    let period = Duration::from_secs_f64(1.0 / limit.rate.max(1e-9)).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .expect("period is positive")
        .allow_burst(burst)
}

fn keyed(limit: Option<Limit>) -> Option<Keyed> {
    limit.map(|limit| Keyed {
        limit,
        buckets: RateLimiter::dashmap(quota(limit)),
    })
}

/// `5/s`, `0.5/s`: the rate as the policy file wrote it.
fn per_second(limit: Limit) -> String {
    format!("{}/s", limit.rate)
}

impl Buckets {
    fn is_empty(&self) -> bool {
        self.per_beamline.is_none() && self.per_caller.is_none() && self.overrides.is_empty()
    }

    /// Takes a token for the call, or says which limit refused it. A Fleet call names no
    /// beamline in its metadata (`beamline` None): only the caller's limit applies to it.
    fn admit(
        &self,
        beamline: Option<&BeamlineId>,
        caller: &Arc<str>,
    ) -> Result<(), (Scope, Status)> {
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        if let Some(keyed) = &self.per_caller {
            if keyed.buckets.check_key(caller).is_err() {
                let message = format!(
                    "rate limit of caller {caller} exceeded ({})",
                    per_second(keyed.limit)
                );
                return Err((Scope::Caller, Status::resource_exhausted(message)));
            }
        }
        let Some(beamline) = beamline else {
            return Ok(());
        };
        let refused = |limit| {
            let message = format!(
                "rate limit of beamline {beamline} exceeded ({})",
                per_second(limit)
            );
            Err((Scope::Beamline, Status::resource_exhausted(message)))
        };
        if let Some((limit, bucket)) = self.overrides.get(beamline.as_str()) {
            if bucket.check().is_err() {
                return refused(*limit);
            }
        } else if let Some(keyed) = &self.per_beamline {
            if keyed.buckets.check_key(&beamline.shared()).is_err() {
                return refused(keyed.limit);
            }
        }
        Ok(())
    }

    fn sweep(&self) {
        for keyed in [&self.per_beamline, &self.per_caller].into_iter().flatten() {
            keyed.buckets.retain_recent();
            keyed.buckets.shrink_to_fit();
        }
    }
}

/// Adds the rate limits of `[limits]` in front of a gateway service.
#[derive(Clone)]
pub struct RateLimitLayer {
    buckets: Arc<Buckets>,
    metrics: Option<Arc<GatewayMetrics>>,
}

impl RateLimitLayer {
    pub fn new(config: &LimitsConfig) -> RateLimitLayer {
        let overrides = config
            .beamline
            .iter()
            .map(|(id, &limit)| (id.clone(), (limit, RateLimiter::direct(quota(limit)))))
            .collect();
        RateLimitLayer {
            buckets: Arc::new(Buckets {
                per_beamline: keyed(config.per_beamline),
                per_caller: keyed(config.per_caller),
                overrides,
                calls: AtomicU64::new(0),
                anonymous: Arc::from(ANONYMOUS),
            }),
            metrics: None,
        }
    }

    /// Counts refusals in `metrics` (by beamline and scope).
    pub fn with_metrics(mut self, metrics: Arc<GatewayMetrics>) -> RateLimitLayer {
        self.metrics = Some(metrics);
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            buckets: self.buckets.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] produces.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    buckets: Arc<Buckets>,
    metrics: Option<Arc<GatewayMetrics>>,
}

impl<S> Service<http::Request<Body>> for RateLimit<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<http::Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if !self.buckets.is_empty() {
            // A Fleet call (halts, locks, the catalog) counts against its caller's limit; an
            // agent call without a valid beamline is answered INVALID_ARGUMENT further in.
            let beamline = if request.uri().path().starts_with(FleetRpc::PATH_PREFIX) {
                Some(None)
            } else {
                super::beamline_of(&mut request).ok().map(Some)
            };
            if let Some(beamline) = beamline {
                let caller = (request.extensions().get::<Caller>())
                    .map_or(&self.buckets.anonymous, |c| &c.name);
                if let Err((scope, status)) = self.buckets.admit(beamline.as_ref(), caller) {
                    if let Some(metrics) = &self.metrics {
                        metrics.rate_limited(beamline.as_ref().map_or("", |b| b.as_str()), scope);
                    }
                    return Either::Right(futures::future::ready(Ok(status.into_http())));
                }
            }
        }
        // The future needs no `'static` box: the inner future is returned as it is, so the
        // layer adds no allocation to admitted calls.
        Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests;
