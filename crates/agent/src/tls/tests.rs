//! An agent served over TLS on loopback, called by real gRPC clients with and without client
//! certificates: the handshake admits only certificates from `--client-ca`, identity headers
//! reach capability code only from the gateway's certificate, the health listener answers
//! health alone without a certificate, and renewed files are used by the next connection.
//!
//! This module keeps the fixtures (the PKI, an agent on loopback, clients); each child module
//! is one concern.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{Agent, AgentFlags, AgentRuntime, Caller, Instance, NoParams, ReadOnly};
use beamline_contract::beamline::BeamlineId;
use beamline_contract::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_contract::proto::{AgentCard, DescribeRequest, ExecuteRequest};
use beamline_contract::wire::tls::agent_name;
use pki::{Ca, Leaf};

mod handshake;
mod health;
mod identity;
mod pki;
mod reload;

const DEADLINE: Duration = Duration::from_secs(10);

fn beamline() -> BeamlineId {
    "5.3.1".parse().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    // Written aside and renamed into place, as Kubernetes swaps a Secret's files: a reader
    // never sees half a file.
    let path = dir.join(name);
    let aside = dir.join(format!(".{name}.new"));
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, &path).unwrap();
    path
}

/// What the `whoami` capability saw of one call: its verified caller, and whether an `x-role`
/// header reached it.
type Seen = Arc<Mutex<Vec<(Option<Caller>, bool)>>>;

/// An agent serving on loopback until dropped.
struct Served {
    addr: SocketAddr,
    health: Option<SocketAddr>,
    seen: Seen,
    stop: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The TLS files of an agent, in a directory of their own.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(server: &Leaf, client_ca: Option<&Ca>) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let files = Files { dir };
        files.server(server);
        if let Some(ca) = client_ca {
            write(files.dir.path(), "ca.pem", &ca.pem());
        }
        files
    }

    /// Puts `server` in place of the certificate and key.
    fn server(&self, server: &Leaf) {
        write(self.dir.path(), "key.pem", &server.key);
        write(self.dir.path(), "cert.pem", &server.cert);
    }

    fn flags(&self, flags: &mut AgentFlags) {
        let dir = self.dir.path();
        flags.tls_cert = Some(dir.join("cert.pem"));
        flags.tls_key = Some(dir.join("key.pem"));
        let ca = dir.join("ca.pem");
        flags.client_ca = ca.exists().then_some(ca);
        // TLS needs the plaintext health port (Consul's check and probes go there).
        flags.health_listen = Some("127.0.0.1:0".parse().unwrap());
    }
}

fn flags() -> AgentFlags {
    let mut flags = AgentFlags::new(beamline());
    // Nothing listens there: the agent serves all the same, retrying Consul quietly.
    flags.consul = Some("127.0.0.1:1".into());
    flags.drain_grace = Duration::ZERO;
    flags
}

/// Serves an agent with `flags` (and TLS files looked at every 50 ms) whose `whoami`
/// capability records what it saw.
async fn serve(flags: &AgentFlags) -> Served {
    let mut config = flags.config().unwrap();
    config.tls_reload_every = Duration::from_millis(50);
    let runtime = AgentRuntime::bind(Instance::new(beamline(), "1.0.0"), config)
        .await
        .unwrap();
    let seen = Seen::default();
    let record = Arc::clone(&seen);
    let service = Agent::new("1.0.0")
        .admitted_capability(
            "whoami",
            "Records who calls",
            ReadOnly,
            move |_: NoParams, call: &crate::Call<'_>| {
                let role_header = call.metadata.get("x-role").is_some();
                record
                    .lock()
                    .unwrap()
                    .push((call.caller().cloned(), role_header));
                Ok(|task: crate::TaskHandle| async move { task.complete(serde_json::json!({})) })
            },
        )
        .service(runtime.instance(), runtime.tasks())
        .unwrap();
    let (addr, health) = (runtime.local_addr(), runtime.health_addr());
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(runtime.serve(service, async move { stopped.cancelled().await }));
    Served {
        addr,
        health,
        seen,
        stop,
    }
}

/// A TLS channel to `addr` trusting `ca` for `name`, presenting `identity` if given.
async fn dial(
    addr: SocketAddr,
    ca: &Ca,
    name: &str,
    identity: Option<&Leaf>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name(name);
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .tls_config(tls)?
        .connect()
        .await
}

/// A plaintext channel to `addr`.
async fn dial_plaintext(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .await
        .unwrap()
}

/// Describe over `channel`.
async fn describe(channel: Channel) -> Result<AgentCard, tonic::Status> {
    let mut client = BeamlineAgentClient::new(channel);
    client
        .describe(DescribeRequest::default())
        .await
        .map(|r| r.into_inner())
}

/// Describe over a new TLS connection; any failure (connecting, the handshake, the call) is
/// an error.
async fn describe_anew(
    addr: SocketAddr,
    ca: &Ca,
    name: &str,
    identity: Option<&Leaf>,
) -> Result<AgentCard, String> {
    let channel = dial(addr, ca, name, identity)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    describe(channel)
        .await
        .map_err(|s| format!("describe: {s:?}"))
}

/// Executes `whoami` over `channel` with `headers`.
async fn whoami(channel: Channel, headers: &[(&'static str, &'static str)]) {
    let mut request = tonic::Request::new(ExecuteRequest {
        capability: "whoami".into(),
        params: Some(Default::default()),
        idempotency_key: String::new(),
    });
    for (name, value) in headers {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    BeamlineAgentClient::new(channel)
        .execute(request)
        .await
        .unwrap();
}

/// Polls `attempt` until it succeeds or [`DEADLINE`] passes (then the last error).
async fn eventually<T, F, Fut>(mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The agent's certificate name (`beamline-5-3-1.service.consul`).
fn name() -> String {
    agent_name(&beamline())
}
