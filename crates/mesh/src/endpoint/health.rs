//! An instance's health, as its agent says it: one `grpc.health.v1.Health/Watch` stream for
//! the service the mesh calls, which opens and closes the endpoint's gate and says whether the
//! instance answers at all (and why not). Restarted after a back-off when it ends. Held while
//! the endpoint is in use: once no call has started for the idle bound ([`super::idle`]) the
//! stream and the connection are let go, and both come back with the next call, or when the
//! instance leaves discovery (whether it still answers decides if its tasks are still reached).
//!
//! Owns that stream; it must not route calls or decide retries.

use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::codec::{BufferSettings, Codec};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use super::super::connection::{Connection, Sample};
use super::idle::{IdleClock, Verdict};
use super::EndpointSettings;
use beamline_consul::backoff::{jitter, Backoff};
use beamline_contract::causes::chain;
use beamline_contract::wire::Rpc;

/// The codec's buffers for the Watch stream. Its messages are a few bytes, and the stream is
/// held open per instance while the endpoint is in use: tonic's default 8 KiB decode buffer
/// would be most of what such an instance costs the mesh (about 47 KB per called instance was
/// measured at 1,000 beamlines). The buffer still grows if a message ever needs it.
fn watch_buffer() -> BufferSettings {
    BufferSettings::new(128, 32 * 1024)
}

/// Prost, with [`watch_buffer`].
#[derive(Debug, Clone, Copy, Default)]
struct SmallBuffers;

impl Codec for SmallBuffers {
    type Encode = HealthCheckRequest;
    type Decode = HealthCheckResponse;
    type Encoder = ProstEncoder<HealthCheckRequest>;
    type Decoder = ProstDecoder<HealthCheckResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<HealthCheckRequest, HealthCheckResponse>::raw_encoder(watch_buffer())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<HealthCheckRequest, HealthCheckResponse>::raw_decoder(watch_buffer())
    }
}

/// `Health/Watch` on `connection`: the stream of the service's statuses.
async fn watch_call(
    connection: Connection,
    request: HealthCheckRequest,
) -> Result<tonic::Response<tonic::Streaming<HealthCheckResponse>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(connection);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("not ready: {e}")))?;
    let path = PathAndQuery::from_static("/grpc.health.v1.Health/Watch");
    grpc.server_streaming(tonic::Request::new(request), path, SmallBuffers)
        .await
}

/// What the health watch publishes.
pub(super) struct Health {
    pub gate: watch::Sender<bool>,
    pub alive: watch::Sender<bool>,
    pub failure: watch::Sender<Option<Arc<str>>>,
    /// Set once the instance left discovery: from then on the connection is never let go,
    /// so that whether the instance still answers is known (and its tasks still reached).
    pub held: watch::Receiver<bool>,
}

/// How the Watch stream ended.
enum Ended {
    /// The stream failed or the instance closed it.
    Broken,
    /// Let go, idle, as of the connection's counts the clock decided on; the endpoint trusts
    /// Consul until a call (one started after that reading) or a departure wakes it.
    Released(Sample),
}

pub(super) async fn watch(
    connection: Connection,
    health: Health,
    id: String,
    settings: EndpointSettings,
) {
    let Health {
        gate,
        alive,
        failure,
        mut held,
    } = health;
    let mut backoff = Backoff::new(settings.min_backoff, settings.max_backoff);
    let idle = Idle {
        gate: &gate,
        held: held.clone(),
        connection: &connection,
        // Zero would let every connection go after each call: taken as no bound.
        after: settings.idle_after.filter(|after| !after.is_zero()),
    };
    loop {
        let request = HealthCheckRequest {
            service: Rpc::SERVICE.to_string(),
        };
        match watch_call(connection.clone(), request).await {
            Ok(response) => {
                failure.send_replace(None);
                alive.send_replace(true);
                match follow(response.into_inner(), &idle, &id, &mut backoff).await {
                    Ended::Broken => {}
                    Ended::Released(seen) => {
                        let_go(&connection, seen, &mut held, &id).await;
                        backoff.reset();
                        continue;
                    }
                }
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                // An agent without health Watch: trust Consul's check alone (and take it as
                // answering while the endpoint lives); its connection still goes when idle.
                gate.send_replace(true);
                alive.send_replace(true);
                let seen = idle.due().await;
                let_go(&connection, seen, &mut held, &id).await;
                continue;
            }
            Err(status) => {
                // The connection's own error, with every cause (tonic's message has only the
                // first line): "cannot connect to …: TLS handshake failed: …".
                let why: Arc<str> = match std::error::Error::source(&status) {
                    Some(error) => chain(error).into(),
                    None => status.message().into(),
                };
                let changed = failure.borrow().as_deref() != Some(&*why);
                if changed {
                    tracing::warn!(instance = %id, error = %why, "instance health watch failed");
                    failure.send_replace(Some(why));
                }
            }
        }
        alive.send_replace(false);
        if gate.send_replace(false) {
            tracing::debug!(instance = %id, "endpoint gate closed: health watch ended");
        }
        tokio::time::sleep(backoff.next(jitter())).await;
    }
}

/// Lets the idle connection go, and waits for a call started after `seen` or for the
/// instance to leave discovery.
async fn let_go(connection: &Connection, seen: Sample, held: &mut watch::Receiver<bool>, id: &str) {
    connection.release();
    tracing::debug!(instance = %id, "idle: connection let go");
    tokio::select! {
        () = connection.resumed(seen.started) => {}
        _ = held.wait_for(|held| *held) => {}
    }
}

/// Reads the Watch stream into the gate until it ends, or until the connection is due to go.
async fn follow(
    mut stream: tonic::Streaming<HealthCheckResponse>,
    idle: &Idle<'_>,
    id: &str,
    backoff: &mut Backoff,
) -> Ended {
    let due = idle.due();
    tokio::pin!(due);
    loop {
        tokio::select! {
            message = stream.message() => {
                let Ok(Some(message)) = message else {
                    return Ended::Broken;
                };
                let serving = message.status() == ServingStatus::Serving;
                if idle.gate.send_replace(serving) != serving {
                    tracing::debug!(instance = %id, serving, "endpoint gate");
                }
                if serving {
                    backoff.reset();
                }
            }
            seen = &mut due => return Ended::Released(seen),
        }
    }
}

/// When an endpoint's connection is due to go.
struct Idle<'a> {
    gate: &'a watch::Sender<bool>,
    held: watch::Receiver<bool>,
    connection: &'a Connection,
    /// `None`: never.
    after: Option<Duration>,
}

impl Idle<'_> {
    /// Resolves, with the counts it decided on, once the connection has carried no call for
    /// the bound while the instance serves and is still in discovery; never without a bound.
    async fn due(&self) -> Sample {
        let Some(after) = self.after else {
            return std::future::pending().await;
        };
        let start = || IdleClock::new(after, Instant::now(), self.connection.activity());
        let mut clock = start();
        loop {
            tokio::time::sleep_until(clock.next_look()).await;
            let seen = self.connection.activity();
            if clock.look(Instant::now(), seen) == Verdict::Release {
                if *self.gate.borrow() && !*self.held.borrow() {
                    return seen;
                }
                // Not serving (its drain is watched to the end) or departed: kept, and the
                // bound counts again from now.
                clock = start();
            }
        }
    }
}
