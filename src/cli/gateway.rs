//! `beamline-mesh gateway`: the front door, routing by `x-beamline` through an in-process mesh,
//! with the policy from `--auth-file` (or none, said out loud with `--insecure-no-auth`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use beamline_mesh::consul::ConsulConfig;
use beamline_mesh::gateway::config::PolicyConfig;
use beamline_mesh::gateway::fleet::Facility;
use beamline_mesh::gateway::observe::GatewayMetrics;
use beamline_mesh::gateway::{self, status, GatewayOptions, TlsFiles};
use beamline_mesh::mesh::{
    ClientFiles, EndpointSettings, Mesh, MeshSettings, PemFile, UpstreamTls,
};

use super::duration_flag;

#[derive(clap::Args)]
pub struct GatewayArgs {
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Consul's HTTP address (default: $CONSUL_HTTP_ADDR, else 127.0.0.1:8500).
    #[arg(long)]
    consul: Option<String>,
    /// The policy file (TOML): callers and their API key digests, JWT settings, rate limits.
    #[arg(
        long,
        conflicts_with = "insecure_no_auth",
        required_unless_present = "insecure_no_auth"
    )]
    auth_file: Option<PathBuf>,
    /// Run without authentication or rate limits (local development only).
    #[arg(long)]
    insecure_no_auth: bool,
    /// Serve TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Accept bearer credentials over plaintext (behind a TLS-terminating proxy, or in a lab).
    #[arg(long)]
    allow_plaintext: bool,
    /// Also serve grpc.health.v1 alone, in plaintext, on this address (for probes that cannot
    /// speak TLS, such as Kubernetes' native gRPC probes).
    #[arg(long)]
    health_listen: Option<SocketAddr>,
    /// Do not write the access log (one line per call, target "access").
    #[arg(long)]
    no_access_log: bool,
    /// Serve Prometheus metrics (/metrics) and the status page (/) on this address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// A call fails when no instance of its beamline is ready this long.
    #[arg(long, default_value = "3s", value_parser = duration_flag)]
    failfast: Duration,
    /// Deadline of unary calls whose caller set none.
    #[arg(long, default_value = "30s", value_parser = duration_flag)]
    unary_timeout: Duration,
    /// The largest request message accepted (bytes); a larger one is refused with
    /// RESOURCE_EXHAUSTED while it streams in, with nothing more buffered.
    #[arg(long, default_value_t = beamline_mesh::mesh::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// An instance with calls in flight that answers no HTTP/2 PING this long is taken out of
    /// rotation (its connection closed, its calls failed) until its health watch answers again.
    #[arg(long, default_value = "1s", value_parser = duration_flag)]
    unresponsive_after: Duration,
    /// A connection to an agent instance that carried no call this long is closed, with its
    /// health watch (Consul's check is trusted meanwhile); the next call opens it again. 0s
    /// keeps connections open for as long as their beamline is routed.
    #[arg(long, default_value = "60s", value_parser = duration_flag)]
    idle_connection_timeout: Duration,
    /// Dial agents over TLS, trusting certificates from this PEM CA bundle; each agent's
    /// certificate must name its beamline (beamline-5-3-1.service.consul). Without it, agents
    /// are dialled in plaintext. Reloaded when the file changes.
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
    /// The PEM certificate chain presented to agents (its SAN gateway.beamline-mesh is what
    /// makes agents trust the forwarded x-caller and x-role); with --upstream-key and
    /// --upstream-ca. Reloaded when the file changes.
    #[arg(long, requires_all = ["upstream_key", "upstream_ca"])]
    upstream_cert: Option<PathBuf>,
    /// The PEM private key of --upstream-cert.
    #[arg(long, requires = "upstream_cert")]
    upstream_key: Option<PathBuf>,
}

/// The mesh's TLS to agents from the --upstream-* flags; none without --upstream-ca.
fn upstream_tls(args: &GatewayArgs) -> anyhow::Result<Option<UpstreamTls>> {
    let Some(ca) = &args.upstream_ca else {
        return Ok(None);
    };
    let identity = match (&args.upstream_cert, &args.upstream_key) {
        (Some(cert), Some(key)) => Some((
            PemFile::new("--upstream-cert", cert),
            PemFile::new("--upstream-key", key),
        )),
        _ => None,
    };
    let files = ClientFiles {
        ca: PemFile::new("--upstream-ca", ca),
        identity,
    };
    // The error names the flag whose file is wrong.
    Ok(Some(UpstreamTls::from_files(files)?))
}

fn read(path: &PathBuf, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
}

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let policy = match &args.auth_file {
        Some(path) => Some(PolicyConfig::load(path).context("--auth-file")?),
        None => {
            tracing::warn!("gateway running WITHOUT authentication (--insecure-no-auth)");
            None
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert_pem: read(cert, "--tls-cert")?,
            key_pem: read(key, "--tls-key")?,
        }),
        _ => None,
    };
    if policy.is_some() && tls.is_none() {
        // Bearer credentials must not cross a network in the clear.
        anyhow::ensure!(
            args.allow_plaintext,
            "authentication is on but TLS is off: pass --tls-cert and --tls-key, or \
             --allow-plaintext if a TLS-terminating proxy stands in front"
        );
        tracing::warn!(
            "authentication without TLS (--allow-plaintext): credentials travel in the clear"
        );
    }

    // Every client connection and every agent connection is a descriptor: start from the hard
    // limit, not the often far lower soft one.
    // (The gateway fits its connection cap under the limit raised here.)
    beamline_mesh::registry::rlimit::raise_nofile_limit_logged();
    let consul = ConsulConfig::from_env_or(args.consul.as_deref())
        .context("Consul client configuration (--consul and CONSUL_* variables)")?;
    let upstream_tls = upstream_tls(&args)?;
    if upstream_tls.is_none() {
        tracing::info!("dialling agents in plaintext (no --upstream-ca)");
    }
    let settings = MeshSettings {
        failfast: args.failfast,
        unary_timeout: args.unary_timeout,
        max_message_bytes: args.max_message_bytes,
        endpoint: EndpointSettings {
            unresponsive_after: args.unresponsive_after,
            idle_after: (!args.idle_connection_timeout.is_zero())
                .then_some(args.idle_connection_timeout),
            ..EndpointSettings::default()
        },
        upstream_tls,
        ..MeshSettings::default()
    };
    let mesh = Mesh::new(consul.clone(), settings);
    // Idle agent connections are let go (and routes of vanished beamlines dropped): their pages
    // go back to the kernel, not only to malloc.
    tokio::spawn(super::heap::return_freed_memory());
    let facility = Facility::start(&mesh, consul);
    let metrics = Arc::new(GatewayMetrics::new());
    let (listener, addr) = gateway::bind(args.listen).await.context("--listen")?;
    // Before the listening lines: a supervisor may send SIGTERM as soon as it sees one.
    let stop = super::shutdown_signal();
    println!("gateway listening on {addr}");
    let metrics_server = match args.metrics_listen {
        Some(metrics_addr) => {
            let (listener, bound) = gateway::bind(metrics_addr)
                .await
                .context("--metrics-listen")?;
            let stop_metrics = super::shutdown_signal();
            println!("metrics listening on http://{bound}");
            let router = status::router(metrics.clone(), mesh.clone(), facility.clone());
            Some(tokio::spawn(status::serve(listener, router, stop_metrics)))
        }
        None => None,
    };
    let health_listener = match args.health_listen {
        Some(health_addr) => {
            let (listener, bound) = gateway::bind(health_addr)
                .await
                .context("--health-listen")?;
            println!("health listening on {bound}");
            Some(listener)
        }
        None => None,
    };
    let options = GatewayOptions {
        policy,
        tls,
        access_log: !args.no_access_log,
        metrics: args.metrics_listen.is_some(),
        health_listener,
        facility,
    };
    gateway::serve(mesh, listener, options, metrics, stop).await?;
    if let Some(server) = metrics_server {
        server.abort();
    }
    Ok(())
}
