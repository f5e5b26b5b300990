//! The gRPC check (Consul's `GRPC`, with its TLS fields): one grpc.health.v1 Check call, its
//! ServingStatus mapped to a check status, and errors spelled as grpc-go spells them.
//!
//! Owns the gRPC connections (plain or TLS, including TLSSkipVerify) and the Check call; it must
//! not schedule checks or apply thresholds. A check's runner holds a [`GrpcLease`] on its target:
//! every run of every check on that target (same address and TLS settings) goes over one HTTP/2
//! connection, made on first use, made again after a transport error, and closed when the last
//! check on the target goes (a connection per run left 28,613 sockets in TIME_WAIT at 1,000
//! instances with 2 s checks).

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout_at, Instant};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use super::leases::{Lease, Leases};
use super::tcp::{dial, split_host_port};
use super::{deadline_after, describe_error, done, ProbeResult};
use crate::model::CheckStatus::{Critical, Passing};

/// grpc-go's text for a check that ran out of time, which is what Consul shows.
const DEADLINE_EXCEEDED: &str =
    "rpc error: code = DeadlineExceeded desc = context deadline exceeded";

/// What a gRPC check calls: `host:port` or `host:port/service` (Consul's `GRPC` field).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrpcProbe {
    pub target: String,
    pub use_tls: bool,
    pub tls_server_name: String,
    pub tls_skip_verify: bool,
}

/// One connection's identity: the address dialled and the TLS settings (not the service name).
type ConnKey = (String, bool, String, bool);
/// The connection to one target, if made (and not broken since).
type Slot = tokio::sync::Mutex<Option<tonic::transport::Channel>>;

static CONNECTIONS: LazyLock<Leases<ConnKey, Slot>> = LazyLock::new(Leases::default);

/// A hold on the connection to a gRPC check's target, kept by the check's runner for its life.
pub struct GrpcLease(Lease<ConnKey, Slot>);

impl GrpcLease {
    pub fn new(probe: &GrpcProbe) -> GrpcLease {
        let server = server_and_service(probe).0.to_owned();
        let key = (
            server,
            probe.use_tls,
            probe.tls_server_name.clone(),
            probe.tls_skip_verify,
        );
        GrpcLease(CONNECTIONS.lease(key))
    }

    /// Targets with a connection held (or being made) now.
    pub fn targets() -> usize {
        CONNECTIONS.len()
    }
}

fn server_and_service(probe: &GrpcProbe) -> (&str, &str) {
    let target = probe.target.as_str();
    target.split_once('/').unwrap_or((target, ""))
}

/// grpc.health.v1 Check; SERVING is passing, any other status or error critical. The call goes
/// over the target's shared connection: the runner's lease keeps it between runs.
pub async fn grpc(probe: &GrpcProbe, timeout: Duration) -> ProbeResult {
    let deadline = deadline_after(timeout);
    let target = probe.target.as_str();
    let (server, service) = server_and_service(probe);
    let lease = GrpcLease::new(probe);
    match timeout_at(
        deadline,
        grpc_check(probe, &lease, server, service, deadline),
    )
    .await
    {
        Ok(Ok(status)) if status == ServingStatus::Serving as i32 => {
            done(Passing, format!("gRPC check {target}: success"))
        }
        Ok(Ok(status)) => {
            let name = ServingStatus::try_from(status)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_else(|_| status.to_string());
            done(Critical, format!("gRPC {target} serving status: {name}"))
        }
        Ok(Err(err)) => done(Critical, err),
        Err(_) => done(Critical, DEADLINE_EXCEEDED.into()),
    }
}

/// The stream under the channel: TCP, or TLS over it; one type for both connector arms.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Calls Check over the target's connection (connecting first if there is none); the returned
/// number is the raw ServingStatus. A transport error drops the connection: the next run dials.
async fn grpc_check(
    probe: &GrpcProbe,
    lease: &GrpcLease,
    server: &str,
    service: &str,
    deadline: Instant,
) -> Result<i32, String> {
    let channel = {
        let mut slot = lease.0.lock().await;
        match &*slot {
            Some(channel) => channel.clone(),
            None => slot.insert(connect(probe, server).await?).clone(),
        }
    };
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    // Lets the server give up too, as grpc-go does with the context deadline.
    request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    match HealthClient::new(channel).check(request).await {
        Ok(response) => Ok(response.into_inner().status),
        // tonic enforces the grpc-timeout too, as Cancelled; report it as grpc-go does.
        Err(_) if Instant::now() >= deadline => Err(DEADLINE_EXCEEDED.into()),
        // A status made from a transport failure keeps the cause only as its source.
        Err(status) => {
            if status.code() == tonic::Code::Unavailable
                || std::error::Error::source(&status).is_some()
            {
                lease.0.lock().await.take();
            }
            let (code, desc) = (status.code(), describe_error(status.message(), &status));
            Err(format!("rpc error: code = {code:?} desc = {desc}"))
        }
    }
}

/// Opens the HTTP/2 connection to `server` (TLS as the probe says).
async fn connect(probe: &GrpcProbe, server: &str) -> Result<tonic::transport::Channel, String> {
    let bad_target = |e: &dyn std::fmt::Display| format!("gRPC target {:?}: {e}", probe.target);
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("http://{server}"))
        .map_err(|e| bad_target(&e))?;
    let tls = if probe.use_tls {
        // TLS is done in the connector below rather than by tonic's ClientTlsConfig, which can
        // neither skip verification nor fall back to well-known roots without more features.
        let origin = format!("https://{server}")
            .parse()
            .map_err(|e| bad_target(&e))?;
        endpoint = endpoint.origin(origin);
        let name = if probe.tls_server_name.is_empty() {
            split_host_port(server)
                .map(|(host, _)| host)
                .unwrap_or(server)
        } else {
            probe.tls_server_name.as_str()
        };
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| format!("gRPC TLSServerName {name:?}: {e}"))?;
        Some((tls_config(probe.tls_skip_verify)?, name))
    } else {
        None
    };

    let server = server.to_owned();
    let connector = tower::service_fn(move |_: http::Uri| {
        let (server, tls) = (server.clone(), tls.clone());
        async move {
            let tcp = dial(&server)
                .await
                .map_err(|e| format!("transport: Error while dialing: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some((config, name)) => Box::new(
                    tokio_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("transport: authentication handshake failed: {e}"))?,
                ),
            };
            Ok::<_, String>(TokioIo::new(io))
        }
    });
    let connected = endpoint.connect_with_connector(connector).await;
    connected.map_err(|e| {
        let desc = describe_error("", &e);
        format!("rpc error: code = Unavailable desc = connection error: desc = {desc:?}")
    })
}

/// One rustls config per skip-verify flag; well-known roots (webpki-roots, as reqwest uses)
/// stand in for the system roots that Consul's Go agent would use.
fn tls_config(skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
    static CONFIGS: [OnceLock<Result<Arc<ClientConfig>, String>>; 2] =
        [OnceLock::new(), OnceLock::new()];
    CONFIGS[usize::from(skip_verify)]
        .get_or_init(|| {
            let provider = beamline_tls::provider();
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("gRPC TLS set-up: {e}"))?;
            let mut config = if skip_verify {
                builder
                    .dangerous()
                    // TLSSkipVerify as Go means it: any certificate and name, but the handshake
                    // signatures must still be made with the key of the certificate shown.
                    .with_custom_certificate_verifier(beamline_tls::any_server_certificate(
                        provider,
                    ))
                    .with_no_client_auth()
            } else {
                let roots =
                    RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                builder.with_root_certificates(roots).with_no_client_auth()
            };
            // gRPC servers (grpc-go among them) refuse TLS connections that did not offer h2.
            config.alpn_protocols = vec![b"h2".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
}
