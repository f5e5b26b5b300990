//! Mutual TLS against real sockets: a tonic health server behind tokio-rustls on loopback, with
//! certificates from a test CA (rcgen) written to files as cert-manager would.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beamline_contract::beamline::BeamlineId;
use beamline_contract::causes::chain;
use beamline_contract::wire;
use beamline_tls::{ClientFiles, PemFile, ServerFiles};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::Service;

use super::UpstreamTls;
use crate::connection::{never_sent, Connection, ConnectionError, ConnectionSettings};

const BOUND: Duration = Duration::from_secs(5);

fn settings() -> ConnectionSettings {
    ConnectionSettings {
        connect_timeout: Duration::from_secs(2),
        http2_keepalive: Duration::from_secs(10),
        unresponsive_after: Duration::from_secs(2),
    }
}

fn beamline(id: &str) -> BeamlineId {
    BeamlineId::parse(id).unwrap()
}

/// A certificate authority that signs leaves.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf carrying `dns_name`: (certificate PEM, key PEM).
    fn leaf(&self, dns_name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![dns_name.to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes an agent's files (a certificate for `dns_name` from `ca`, and the CA its clients'
/// certificates must chain to, if any) and builds its server configuration.
fn agent_config(
    dir: &Path,
    ca: &Ca,
    dns_name: &str,
    client_ca: Option<&Ca>,
) -> rustls::ServerConfig {
    let (cert, key) = ca.leaf(dns_name);
    let files = ServerFiles {
        cert: PemFile::new("--tls-cert", write(dir, "agent.crt", &cert)),
        key: PemFile::new("--tls-key", write(dir, "agent.key", &key)),
        client_ca: client_ca
            .map(|ca| PemFile::new("--client-ca", write(dir, "client-ca.crt", &ca.pem))),
    };
    beamline_tls::server_config(&files, &[b"h2"]).unwrap()
}

/// The mesh's files: the CA it trusts, and its own certificate from `identity` if any.
fn upstream_files(dir: &Path, ca: &Ca, identity: Option<&Ca>) -> ClientFiles {
    ClientFiles {
        ca: PemFile::new("--upstream-ca", write(dir, "upstream-ca.crt", &ca.pem)),
        identity: identity.map(|issuer| {
            let (cert, key) = issuer.leaf(wire::tls::GATEWAY_NAME);
            (
                PemFile::new("--upstream-cert", write(dir, "upstream.crt", &cert)),
                PemFile::new("--upstream-key", write(dir, "upstream.key", &key)),
            )
        }),
    }
}

/// A health server ("beamline.v1.BeamlineAgent" serving) behind TLS, recording the certificate
/// each accepted client presented.
struct TlsAgent {
    addr: String,
    peers: Arc<Mutex<Vec<Option<CertificateDer<'static>>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_tls(config: rustls::ServerConfig) -> TlsAgent {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(
            "beamline.v1.BeamlineAgent",
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let peers = Arc::new(Mutex::new(Vec::new()));
    let recorded = peers.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (accepted, incoming) = tokio::sync::mpsc::channel::<std::io::Result<_>>(16);
    let accept = async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let accepted = accepted.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                // A refused handshake is the client's error to see; the server carries on.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let peer = tls.get_ref().1.peer_certificates().map(|c| c[0].clone());
                    recorded.lock().unwrap().push(peer);
                    let _ = accepted.send(Ok(tls)).await;
                }
            });
        }
    };
    let serve = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(incoming));
    let task = tokio::spawn(async move {
        tokio::select! {
            () = accept => {}
            _ = serve => {}
        }
    });
    TlsAgent { addr, peers, task }
}

fn health_request() -> http::Request<Body> {
    http::Request::builder()
        .uri("/grpc.health.v1.Health/Check")
        .body(Body::empty())
        .unwrap()
}

async fn check(connection: &Connection) -> Result<(), tonic::Status> {
    let mut client = HealthClient::new(connection.clone());
    let request = HealthCheckRequest {
        service: "beamline.v1.BeamlineAgent".into(),
    };
    tokio::time::timeout(BOUND, client.check(request))
        .await
        .expect("a check answers within the bound")
        .map(drop)
}

/// The error of a call that fails on the connection itself.
async fn connection_error(connection: &Connection) -> ConnectionError {
    let mut connection = connection.clone();
    tokio::time::timeout(BOUND, connection.call(health_request()))
        .await
        .expect("a failed handshake answers within the bound")
        .map(drop)
        .unwrap_err()
}

#[tokio::test]
async fn an_agent_certificate_naming_the_beamline_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("beamline-mesh test CA");
    let name = wire::tls::agent_name(&beamline("5.3.1"));
    let agent = serve_tls(agent_config(dir.path(), &ca, &name, None)).await;
    let tls = UpstreamTls::from_files(upstream_files(dir.path(), &ca, None)).unwrap();
    let connection = Connection::new(&agent.addr, settings(), Some(tls.dial(&beamline("5.3.1"))));
    check(&connection.unwrap()).await.unwrap();
    assert_eq!(
        *agent.peers.lock().unwrap(),
        vec![None],
        "no client certificate"
    );
}

#[tokio::test]
async fn a_certificate_naming_another_beamline_fails_the_handshake_and_is_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("beamline-mesh test CA");
    let other = wire::tls::agent_name(&beamline("7.0.1"));
    let agent = serve_tls(agent_config(dir.path(), &ca, &other, None)).await;
    let tls = UpstreamTls::from_files(upstream_files(dir.path(), &ca, None)).unwrap();
    let connection =
        Connection::new(&agent.addr, settings(), Some(tls.dial(&beamline("5.3.1")))).unwrap();
    let error = connection_error(&connection).await;
    assert!(
        matches!(error, ConnectionError::Connect { .. }),
        "{error:?}"
    );
    assert!(never_sent(&error));
    let text = chain(&error);
    assert!(
        text.contains("TLS handshake failed")
            && text.contains("certificate not valid for name \"beamline-5-3-1.service.consul\""),
        "{text}"
    );
    assert!(
        agent.peers.lock().unwrap().is_empty(),
        "no connection was served"
    );
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let name = wire::tls::agent_name(&beamline("5.3.1"));
    let agent = serve_tls(agent_config(dir.path(), &Ca::new("rogue CA"), &name, None)).await;
    let trusted = Ca::new("beamline-mesh test CA");
    let tls = UpstreamTls::from_files(upstream_files(dir.path(), &trusted, None)).unwrap();
    let connection =
        Connection::new(&agent.addr, settings(), Some(tls.dial(&beamline("5.3.1")))).unwrap();
    let error = connection_error(&connection).await;
    assert!(never_sent(&error));
    let text = chain(&error);
    assert!(text.contains("TLS handshake failed"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
}

#[tokio::test]
async fn the_client_certificate_is_presented_when_configured_and_its_absence_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("beamline-mesh test CA");
    let name = wire::tls::agent_name(&beamline("5.3.1"));
    let agent = serve_tls(agent_config(dir.path(), &ca, &name, Some(&ca))).await;

    let with = UpstreamTls::from_files(upstream_files(dir.path(), &ca, Some(&ca))).unwrap();
    let connection =
        Connection::new(&agent.addr, settings(), Some(with.dial(&beamline("5.3.1")))).unwrap();
    check(&connection).await.unwrap();
    let presented = agent.peers.lock().unwrap()[0]
        .clone()
        .expect("a certificate");
    assert!(beamline_tls::has_dns_name(
        &presented,
        wire::tls::GATEWAY_NAME
    ));

    // Without one the agent refuses the connection: a handshake failure, nothing sent.
    let without = UpstreamTls::from_files(upstream_files(dir.path(), &ca, None)).unwrap();
    let connection = Connection::new(
        &agent.addr,
        settings(),
        Some(without.dial(&beamline("5.3.1"))),
    )
    .unwrap();
    let error = connection_error(&connection).await;
    assert!(never_sent(&error), "{error:?}");
    let text = chain(&error);
    assert!(text.contains("TLS handshake failed"), "{text}");
    assert_eq!(
        agent.peers.lock().unwrap().len(),
        1,
        "only the first was served"
    );
}

#[tokio::test]
async fn files_swapped_on_disk_are_used_by_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Ca::new("old CA"), Ca::new("the renewed CA"));
    let name = wire::tls::agent_name(&beamline("5.3.1"));
    // The agents already moved to the new CA; the mesh's files still hold the old one.
    let agent = serve_tls(agent_config(dir.path(), &new, &name, Some(&new))).await;
    let files = upstream_files(dir.path(), &old, Some(&old));
    let tls = UpstreamTls::from_files(files.clone()).unwrap();
    let watch = tls.watch(Duration::from_millis(20));
    let connection =
        Connection::new(&agent.addr, settings(), Some(tls.dial(&beamline("5.3.1")))).unwrap();
    let error = connection_error(&connection).await;
    assert!(chain(&error).contains("TLS handshake failed"), "{error}");

    // cert-manager renews the mesh's files in place.
    let renewed = upstream_files(dir.path(), &new, Some(&new));
    assert_eq!(renewed, files, "the same paths");
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match check(&connection).await {
            Ok(()) => break,
            Err(status) => assert!(
                tokio::time::Instant::now() < deadline,
                "the renewed files were not used within {BOUND:?}: {status}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let presented = agent.peers.lock().unwrap()[0]
        .clone()
        .expect("a certificate");
    assert!(beamline_tls::has_dns_name(
        &presented,
        wire::tls::GATEWAY_NAME
    ));
    watch.abort();
}

#[test]
fn bad_files_are_start_up_errors_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("beamline-mesh test CA");
    let missing = ClientFiles {
        ca: PemFile::new("--upstream-ca", dir.path().join("nowhere.crt")),
        identity: None,
    };
    let error = UpstreamTls::from_files(missing).unwrap_err().to_string();
    assert!(error.starts_with("--upstream-ca "), "{error}");

    let mut files = upstream_files(dir.path(), &ca, Some(&ca));
    let (cert, key) = files.identity.clone().unwrap();
    write(dir.path(), "upstream.key", "not a key");
    let error = UpstreamTls::from_files(files.clone())
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("--upstream-key "), "{error}");

    // A key that is not the certificate's.
    let (_, other_key) = ca.leaf("elsewhere.example");
    write(dir.path(), "upstream.key", &other_key);
    files.identity = Some((cert, key));
    let error = UpstreamTls::from_files(files).unwrap_err().to_string();
    assert!(
        error.contains("--upstream-cert") && error.contains("--upstream-key"),
        "{error}"
    );
}

/// Polls `ready` until it holds, within the bound.
async fn eventually(what: &str, ready: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_instance_whose_certificate_names_another_beamline_stays_closed_and_says_why() {
    use crate::endpoint::{Endpoint, EndpointSettings};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("beamline-mesh test CA");
    let right = wire::tls::agent_name(&beamline("5.3.1"));
    let wrong = wire::tls::agent_name(&beamline("7.0.1"));
    let good = serve_tls(agent_config(dir.path(), &ca, &right, None)).await;
    let bad = serve_tls(agent_config(dir.path(), &ca, &wrong, None)).await;
    let tls = UpstreamTls::from_files(upstream_files(dir.path(), &ca, None)).unwrap();
    let settings = EndpointSettings::default();
    let dial = || Some(tls.dial(&beamline("5.3.1")));
    let good = Arc::new(Endpoint::new("i-good", &good.addr, &settings, dial()).unwrap());
    let bad = Arc::new(Endpoint::new("i-bad", &bad.addr, &settings, dial()).unwrap());
    eventually("the good instance's gate opens", || good.is_open()).await;
    eventually("the bad instance's failure is known", || {
        bad.failure().is_some()
    })
    .await;
    assert!(!bad.is_open());
    assert_eq!(good.failure(), None);

    let endpoints: crate::pool::Endpoints = Arc::new(
        [
            ("i-good".to_string(), good),
            ("i-bad".to_string(), bad.clone()),
        ]
        .into_iter()
        .collect(),
    );
    let why = crate::pool::failures(&endpoints).unwrap();
    assert!(
        why.starts_with("instance i-bad: cannot connect to ")
            && why.contains(
                "TLS handshake failed: invalid peer certificate: certificate not valid for \
                 name \"beamline-5-3-1.service.consul\""
            ),
        "{why}"
    );
}
