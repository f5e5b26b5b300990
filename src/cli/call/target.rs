//! Where a `call` goes and the connection to it: the target chosen from --addr, --gateway or
//! --consul, the dialled (`dial`) or meshed client, and the metadata every request carries.
//!
//! Owns target selection and connecting; it must not know what an operation sends or print
//! anything.

use std::time::Duration;

use anyhow::Context;
use tonic::body::Body;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceExt};

use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::consul::ConsulConfig;
use beamline_mesh::mesh::{Mesh, MeshSettings};
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;

use super::dial::{bearer, dial, grpc_uri, DialError, DEADLINE_MARGIN, DEFAULT_GATEWAY};
use super::{CallArgs, Failure};

impl From<DialError> for Failure {
    fn from(e: DialError) -> Self {
        match e {
            DialError::Flags(e) => Failure::Other(e),
            DialError::Unreachable(status) => Failure::Grpc(status),
        }
    }
}

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
        let authorization = bearer(access.token)?;
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
        let channel = dial(&uri, access.ca_cert, timeout).await?;
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
