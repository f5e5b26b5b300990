//! Calls straight to an agent over TLS, as a peer of the mesh (or an intruder) would make them:
//! the name an agent's certificate carries, and a tonic client that trusts a CA, checks that
//! name and presents a certificate if given one.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::wire::tls::agent_name;

/// The DNS name `beamline`'s agent certificates carry.
pub fn name_of(beamline: &str) -> String {
    agent_name(&BeamlineId::parse(beamline).unwrap())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A client straight to an agent at `addr` over TLS, trusting `ca`, checking `name`,
/// presenting `identity` (certificate file, key file) if any. The error is the connection's,
/// as text.
pub async fn direct(
    addr: &str,
    ca: &Path,
    name: &str,
    identity: Option<(&Path, &Path)>,
) -> Result<BeamlineAgentClient<Channel>, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca)))
        .domain_name(name);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(read(cert), read(key)));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(BeamlineAgentClient::new(channel))
}
