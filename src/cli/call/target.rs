//! Where a `call` goes and the connection to it: the target chosen from --addr, --gateway or
//! --consul, the dialled (or meshed) client, the metadata every request carries, and the
//! client-side deadline.
//!
//! Owns target selection and connecting; it must not know what an operation sends or print
//! anything.

use std::time::Duration;

use anyhow::Context;
use tonic::body::Body;
use tonic::transport::Endpoint;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceExt};

use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::consul::ConsulConfig;
use beamline_mesh::mesh::{Mesh, MeshSettings};
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;

use super::{error_chain, CallArgs, Failure};

/// Where `call` goes when no target flag is given (the architecture's default front door).
const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

pub(super) enum Target {
    /// A gRPC URI to dial as is.
    Direct(String),
    /// The beamline through an in-process mesh over this Consul.
    Consul { addr: String, beamline: BeamlineId },
}

impl Target {
    pub(super) fn from_args(args: &CallArgs) -> anyhow::Result<Target> {
        let need_beamline = |flag: &str| {
            args.beamline
                .clone()
                .with_context(|| format!("{flag} needs --beamline ID (the beamline to call)"))
        };
        if let Some(addr) = &args.addr {
            return Ok(Target::Direct(grpc_uri(addr, "--addr")?));
        }
        if let Some(consul) = &args.consul {
            return Ok(Target::Consul {
                addr: consul.clone(),
                beamline: need_beamline("--consul")?,
            });
        }
        let gateway = match &args.gateway {
            Some(url) => {
                need_beamline("--gateway")?;
                url.as_str()
            }
            None if args.beamline.is_some() => DEFAULT_GATEWAY,
            None => anyhow::bail!(
                "say what to call: --beamline ID (through the gateway at {DEFAULT_GATEWAY}, \
                 or --gateway URL, or --consul ADDR), or one agent with --addr HOST:PORT"
            ),
        };
        Ok(Target::Direct(grpc_uri(gateway, "--gateway")?))
    }
}

/// `host:port`, `http://host:port` or `https://host:port` → a gRPC URI.
fn grpc_uri(addr: &str, flag: &str) -> anyhow::Result<String> {
    let addr = addr.trim().trim_end_matches('/');
    let uri = match addr.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => addr.to_string(),
        Some(_) => anyhow::bail!("{flag} {addr}: expected HOST:PORT or http://HOST:PORT"),
        None if addr.is_empty() => anyhow::bail!("{flag} is empty"),
        None => format!("http://{addr}"),
    };
    // Parse now so a typo is reported as a flag error, not as a connection failure.
    uri.parse::<http::Uri>()
        .ok()
        .filter(|u| u.port_u16().is_some() && u.path() == "/")
        .with_context(|| format!("{flag} {addr}: expected HOST:PORT or http://HOST:PORT"))?;
    Ok(uri)
}

/// What the client calls through: a tonic channel to one address, or a mesh channel.
type AgentService = BoxCloneService<http::Request<Body>, http::Response<Body>, BoxError>;

/// A connected client plus the metadata every request carries.
pub(super) struct Agent {
    pub(super) client: BeamlineAgentClient<AgentService>,
    beamline: Option<tonic::metadata::AsciiMetadataValue>,
    authorization: Option<tonic::metadata::AsciiMetadataValue>,
}

/// What `connect` needs besides the target.
pub(super) struct Access<'a> {
    pub(super) beamline: Option<&'a BeamlineId>,
    pub(super) token: Option<&'a str>,
    pub(super) ca_cert: Option<&'a std::path::Path>,
    pub(super) timeout: Duration,
}

impl Agent {
    /// Connects to `target`; `beamline`, when given, goes out as `x-beamline` on every call (a
    /// gateway routes by it; an agent ignores it).
    pub(super) async fn connect(target: &Target, access: Access<'_>) -> Result<Agent, Failure> {
        let timeout = access.timeout;
        // A beamline id is [A-Za-z0-9.-], so it is always valid ASCII metadata.
        let beamline = access.beamline.and_then(|b| b.as_str().parse().ok());
        let authorization = match access.token {
            None => None,
            Some(token) => Some(
                format!("Bearer {}", token.trim())
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--token is not valid ASCII metadata"))?,
            ),
        };
        let uri = match target {
            Target::Direct(uri) => uri.clone(),
            Target::Consul { addr, beamline: id } => {
                let mut consul = ConsulConfig::from_env_or(Some(addr))
                    .context("Consul client configuration (--consul and CONSUL_* variables)")?;
                consul.timeout = timeout;
                let settings = MeshSettings {
                    failfast: timeout,
                    ..MeshSettings::default()
                };
                let channel = Mesh::new(consul, settings).channel(id);
                return Ok(Agent {
                    client: BeamlineAgentClient::new(BoxCloneService::new(channel)),
                    beamline,
                    authorization,
                });
            }
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .with_context(|| format!("{uri} is not a valid address"))?
            .connect_timeout(timeout);
        if uri.starts_with("https://") {
            let tls = match access.ca_cert {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .with_context(|| format!("--ca-cert {}", path.display()))?;
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
                }
                None => tonic::transport::ClientTlsConfig::new().with_webpki_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .with_context(|| format!("TLS settings for {uri}"))?;
        }
        // connect_timeout bounds the TCP connect; the outer timeout bounds connect() as a whole.
        let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                return Err(Failure::Grpc(tonic::Status::unavailable(format!(
                    "cannot connect to {uri}: {}",
                    error_chain(&e)
                ))))
            }
            Err(_) => {
                return Err(Failure::Grpc(tonic::Status::unavailable(format!(
                    "cannot connect to {uri}: no connection within {timeout:?}"
                ))))
            }
        };
        let service = channel.map_err(BoxError::from);
        Ok(Agent {
            client: BeamlineAgentClient::new(BoxCloneService::new(service)),
            beamline,
            authorization,
        })
    }

    /// A request with `x-beamline` and, when given, a gRPC deadline (`grpc-timeout`, so the
    /// server and any gateway give up too).
    pub(super) fn request<T>(&self, message: T, deadline: Option<Duration>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(deadline) = deadline {
            // tonic's channel also enforces `grpc-timeout`, reporting it as CANCELLED; the small
            // margin lets `bounded` fire first with the truthful DEADLINE_EXCEEDED.
            request.set_timeout(deadline + DEADLINE_MARGIN);
        }
        if let Some(beamline) = &self.beamline {
            request
                .metadata_mut()
                .insert(beamline_mesh::wire::header::BEAMLINE, beamline.clone());
        }
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        request
    }
}

/// How much later than the client the server is told to give up (see [`Agent::request`]).
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// `call` with a client-side deadline: `grpc-timeout` only tells the server, and a peer that
/// accepted the TCP connection but never speaks HTTP/2 would otherwise hold us forever.
pub(super) async fn bounded<T>(
    deadline: Duration,
    what: &str,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let expired =
        || tonic::Status::deadline_exceeded(format!("no answer to {what} within {deadline:?}"));
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| Err(expired()))
}
