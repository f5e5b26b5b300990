//! The gateway dialling agents over mutual TLS, end to end: the real registry, real agents
//! serving `--tls-cert`/`--tls-key`/`--client-ca` (health on a plaintext `--health-listen`
//! port for the registry's check), and the real gateway with `--upstream-ca`,
//! `--upstream-cert`, `--upstream-key`. An agent whose certificate names its beamline is
//! reached (and accepts the gateway's certificate); one whose certificate names another
//! beamline is not, and the caller's UNAVAILABLE says the TLS handshake failed and why. A bad
//! `--upstream-*` file stops the gateway at start, naming the flag.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tonic::Code;

use crate::support::agent::*;
use crate::support::gateway::*;
use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(10);

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate `ca` signed for `name` with `usage`: (cert PEM, key PEM).
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

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// An agent of `beamline` serving mutual TLS with a certificate for `cert_name`, trusting
/// client certificates from `client_ca`.
fn tls_agent(
    registry: &Registry,
    dir: &Path,
    beamline: &str,
    (agent_ca, cert_name): (&CertifiedIssuer<'_, KeyPair>, &str),
    client_ca: &CertifiedIssuer<'_, KeyPair>,
) -> AgentProc {
    let (cert, key) = issue(agent_ca, cert_name, ExtendedKeyUsagePurpose::ServerAuth);
    AgentProc::builder(beamline)
        .registry(registry)
        .arg(
            "--tls-cert",
            write(dir, &format!("{beamline}.crt"), &cert).display(),
        )
        .arg(
            "--tls-key",
            write(dir, &format!("{beamline}.key"), &key).display(),
        )
        .arg(
            "--client-ca",
            write(dir, "mesh-ca.crt", &client_ca.pem()).display(),
        )
        .arg("--health-listen", "127.0.0.1:0")
        .start()
}

async fn passing(registry: &Registry, service: &str) -> serde_json::Value {
    poll_for(DEADLINE, &format!("{service} passing"), async || {
        let entries = registry.health_service(service, "passing").await.json();
        arr(&entries).first().cloned()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reaches_agents_over_mutual_tls_and_refuses_a_certificate_for_another_beamline()
{
    let (agent_ca, mesh_ca) = (ca(), ca());
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let right = beamline_mesh::wire::tls::agent_name(
        &beamline_mesh::beamline::BeamlineId::parse("5.3.1").unwrap(),
    );
    let _good = tls_agent(&reg, dir.path(), "5.3.1", (&agent_ca, &right), &mesh_ca);
    // A 7.0.1 agent deployed with 5.3.1's certificate.
    let _misissued = tls_agent(&reg, dir.path(), "7.0.1", (&agent_ca, &right), &mesh_ca);
    let good_entry = passing(&reg, "beamline-5-3-1").await;
    passing(&reg, "beamline-7-0-1").await;

    let (cert, key) = issue(
        &mesh_ca,
        beamline_mesh::wire::tls::GATEWAY_NAME,
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let gateway = GatewayProc::builder(&reg)
        .failfast("1s")
        .arg(
            "--upstream-ca",
            write(dir.path(), "agent-ca.crt", &agent_ca.pem()).display(),
        )
        .arg(
            "--upstream-cert",
            write(dir.path(), "gateway.crt", &cert).display(),
        )
        .arg(
            "--upstream-key",
            write(dir.path(), "gateway.key", &key).display(),
        )
        .start();
    let mut client = gateway.client().await;

    // The agent answers through the gateway: its certificate names 5.3.1, and it accepted the
    // gateway's.
    let id = poll_for(
        DEADLINE,
        "Describe of 5.3.1 through the gateway",
        async || describe(&mut client, "5.3.1").await.ok(),
    )
    .await;
    assert_eq!(good_entry["Service"]["ID"], id.as_str(), "{good_entry}");

    // 7.0.1's certificate does not name it: UNAVAILABLE, saying why.
    let status = poll_for(DEADLINE, "7.0.1 to fail saying why", async || {
        let status = describe(&mut client, "7.0.1").await.unwrap_err();
        status
            .message()
            .contains("TLS handshake failed")
            .then_some(status)
    })
    .await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("certificate not valid for name \"beamline-7-0-1.service.consul\""),
        "{status:?}"
    );
    assert!(
        gateway.stderr().contains("TLS handshake failed"),
        "the gateway logs the failure"
    );
}

#[test]
fn a_bad_upstream_file_stops_the_gateway_at_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let (cert, _) = issue(
        &ca,
        beamline_mesh::wire::tls::GATEWAY_NAME,
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let ca_path = write(dir.path(), "ca.crt", &ca.pem());
    let cert_path = write(dir.path(), "gateway.crt", &cert);
    let key_path = write(dir.path(), "gateway.key", "not a key");
    let cases: [(&[&Path], &str); 2] = [
        (&[&dir.path().join("missing.crt")], "--upstream-ca"),
        (&[&ca_path, &cert_path, &key_path], "--upstream-key"),
    ];
    for (files, flag) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_beamline-mesh"));
        command.args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--consul",
            "127.0.0.1:1",
            "--insecure-no-auth",
        ]);
        for (flag, file) in ["--upstream-ca", "--upstream-cert", "--upstream-key"]
            .iter()
            .zip(files)
        {
            command.arg(flag).arg(file);
        }
        let stderr = dir.path().join("stderr.log");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .env_remove("CONSUL_HTTP_ADDR")
            .env("RUST_BACKTRACE", "0")
            .spawn()
            .unwrap();
        let status = wait_exit(&mut child, DEADLINE).expect("the gateway exits at start");
        let stderr = std::fs::read_to_string(&stderr).unwrap();
        assert!(!status.success(), "{stderr}");
        assert!(stderr.contains(&format!("Error: {flag} ")), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
