//! An agent serving mutual TLS, end to end: the real `beamline-mesh agent` with `--tls-cert`,
//! `--tls-key`, `--client-ca` and `--health-listen` against the real registry. It registers at
//! its TLS port and turns passing through the plaintext health port (the registry's gRPC check
//! presents no client certificate), that port serves health alone, and a direct call without a
//! client certificate from the CA is refused while one with it is served.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::agent::*;
use crate::support::*;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::DescribeRequest;

const SERVICE: &str = "beamline-5-3-1";
const AGENT_NAME: &str = "beamline-5-3-1.service.consul";
const DEADLINE: Duration = Duration::from_secs(8);

/// A CA and a certificate it signed for `name` with `usage`: (CA PEM, cert PEM, key PEM).
fn issue(
    ca: &CertifiedIssuer<'_, KeyPair>,
    name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.extended_key_usages = vec![usage];
    (
        params.signed_by(&key, ca).unwrap().pem(),
        key.serialize_pem(),
    )
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn dial_tls(
    addr: &str,
    ca_pem: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(AGENT_NAME);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .tls_config(tls)
        .map_err(|e| format!("{e:?}"))?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn describe(channel: Channel) -> Result<String, tonic::Status> {
    BeamlineAgentClient::new(channel)
        .describe(DescribeRequest {})
        .await
        .map(|r| r.into_inner().instance_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_agent_turns_passing_through_its_health_port_and_refuses_callers_without_a_certificate(
) {
    let (server_ca, client_ca) = (ca(), ca());
    let (cert, key) = issue(&server_ca, AGENT_NAME, ExtendedKeyUsagePurpose::ServerAuth);
    let client = issue(&client_ca, "mesh.test", ExtendedKeyUsagePurpose::ClientAuth);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let agent = AgentProc::builder("5.3.1")
        .registry(&reg)
        .arg("--tls-cert", write(dir.path(), "cert.pem", &cert).display())
        .arg("--tls-key", write(dir.path(), "key.pem", &key).display())
        .arg(
            "--client-ca",
            write(dir.path(), "ca.pem", &client_ca.pem()).display(),
        )
        .arg("--health-listen", "127.0.0.1:0")
        .start();

    // Passing: the registry's check reached health without a client certificate.
    let entry = poll_for(DEADLINE, &format!("{SERVICE} passing"), async || {
        let entries = reg.health_service(SERVICE, "passing").await.json();
        arr(&entries).first().cloned()
    })
    .await;
    assert_eq!(entry["Service"]["Port"], agent.addr.port(), "{entry}");
    let target = arr(&entry["Checks"])
        .iter()
        .find_map(|c| c["Definition"]["GRPC"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no gRPC check in {entry}"));
    let (host, health_port) = target.rsplit_once(':').unwrap();
    assert_eq!(host, "127.0.0.1", "{entry}");
    assert_ne!(health_port, agent.addr.port().to_string(), "{entry}");

    // The health port: health in plaintext, nothing else.
    let health = Endpoint::from_shared(format!("http://{target}"))
        .unwrap()
        .connect_timeout(DEADLINE)
        .connect()
        .await
        .unwrap();
    HealthClient::new(health.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    let refused = describe(health).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");

    // The TLS port: no client certificate, no call; the CA's certificate, served.
    let addr = agent.addr.to_string();
    let without = match dial_tls(&addr, &server_ca.pem(), None).await {
        Ok(channel) => describe(channel).await.map_err(|s| format!("{s:?}")),
        Err(e) => Err(e),
    };
    // Refused by the connection (the TLS alert, or the close that follows it), never answered.
    let error = without.unwrap_err();
    assert!(error.contains("Transport"), "{error}");
    let channel = dial_tls(&addr, &server_ca.pem(), Some(&client))
        .await
        .unwrap();
    let id = describe(channel).await.unwrap();
    assert_eq!(entry["Service"]["ID"], id.as_str(), "{entry}");
}
