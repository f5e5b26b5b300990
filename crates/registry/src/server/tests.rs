//! The listener over HTTPS, through the Consul client every component uses: a client trusting
//! the registry's CA is served, one trusting another CA is refused with the variable to fix,
//! `--client-ca` requires a client certificate, and renewed certificate files serve new
//! connections.

use std::path::PathBuf;

use beamline_consul::{ConsulClient, ConsulConfig, ConsulEnv};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use super::*;
use crate::RegistryConfig;

/// A CA writing its certificate and leaves into `dir`.
struct Ca {
    dir: PathBuf,
    name: &'static str,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(dir: &Path, name: &'static str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Ca {
            dir: dir.to_owned(),
            name,
            issuer: Issuer::new(params, key),
        }
    }

    fn path(&self) -> String {
        self.dir
            .join(format!("{}.pem", self.name))
            .display()
            .to_string()
    }

    /// Writes a leaf for `names` to `{file}.pem` and `{file}-key.pem`; their paths.
    fn leaf(&self, names: &[&str], file: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (
            cert_path.display().to_string(),
            key_path.display().to_string(),
        )
    }
}

/// A registry serving HTTPS (as `--tls-cert`, `--tls-key`, `--client-ca` make it) on loopback:
/// its address and its TLS configuration.
async fn registry(files: (String, String, Option<String>)) -> (String, ServerTls) {
    let (cert, key, client_ca) = files;
    let tls = https(
        Path::new(&cert),
        Path::new(&key),
        client_ca.as_deref().map(Path::new),
    )
    .unwrap();
    let (registry, listener, addr) =
        crate::bind(RegistryConfig::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    tokio::spawn(registry.serve_with(listener, Limits::default(), Some(Arc::clone(&tls))));
    (format!("https://{addr}"), tls)
}

fn client(addr: &str, vars: &[(&str, String)]) -> ConsulClient {
    let env = ConsulEnv::parse(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    ConsulClient::new(ConsulConfig::from_env(Some(addr), &env).unwrap())
}

#[tokio::test]
async fn https_serves_clients_trusting_its_ca_and_refuses_others_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let other = Ca::new(dir.path(), "other");
    let (cert, key) = ca.leaf(&["127.0.0.1"], "server");
    let (addr, _tls) = registry((cert, key, None)).await;

    let trusted = client(&addr, &[("CONSUL_CACERT", ca.path())]);
    trusted.services().await.unwrap();

    let untrusted = client(&addr, &[("CONSUL_CACERT", other.path())]);
    let error = untrusted.services().await.unwrap_err().to_string();
    assert!(error.contains("check CONSUL_CACERT"), "{error}");
}

#[tokio::test]
async fn a_client_ca_requires_a_client_certificate_chaining_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let other = Ca::new(dir.path(), "other");
    let (cert, key) = ca.leaf(&["127.0.0.1"], "server");
    let (addr, _tls) = registry((cert, key, Some(ca.path()))).await;

    let (client_cert, client_key) = ca.leaf(&["agent.beamline.test"], "client");
    let with_cert = client(
        &addr,
        &[
            ("CONSUL_CACERT", ca.path()),
            ("CONSUL_CLIENT_CERT", client_cert),
            ("CONSUL_CLIENT_KEY", client_key),
        ],
    );
    with_cert.services().await.unwrap();

    let without = client(&addr, &[("CONSUL_CACERT", ca.path())]);
    let error = without.services().await.unwrap_err().to_string();
    assert!(error.contains("CONSUL_CLIENT_CERT"), "{error}");

    let (stranger_cert, stranger_key) = other.leaf(&["agent.beamline.test"], "stranger");
    let stranger = client(
        &addr,
        &[
            ("CONSUL_CACERT", ca.path()),
            ("CONSUL_CLIENT_CERT", stranger_cert),
            ("CONSUL_CLIENT_KEY", stranger_key),
        ],
    );
    let error = stranger.services().await.unwrap_err().to_string();
    assert!(error.contains("CONSUL_CLIENT_CERT"), "{error}");
}

#[tokio::test]
async fn renewed_certificate_files_serve_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let renewed_ca = Ca::new(dir.path(), "renewed");
    let (cert, key) = ca.leaf(&["127.0.0.1"], "server");
    let (addr, tls) = registry((cert, key, None)).await;
    client(&addr, &[("CONSUL_CACERT", ca.path())])
        .services()
        .await
        .unwrap();

    // Renewed in place (here by another CA, so that which one is served shows).
    renewed_ca.leaf(&["127.0.0.1"], "server");
    assert!(
        tls.refresh().unwrap(),
        "the rewritten files are a new configuration"
    );
    client(&addr, &[("CONSUL_CACERT", renewed_ca.path())])
        .services()
        .await
        .unwrap();
    let error = client(&addr, &[("CONSUL_CACERT", ca.path())])
        .services()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("CONSUL_CACERT"), "{error}");
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_header_read_timeout_without_a_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.leaf(&["127.0.0.1"], "server");
    let tls = https(Path::new(&cert), Path::new(&key), None).unwrap();
    let (registry, listener, addr) =
        crate::bind(RegistryConfig::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let limits = Limits {
        header_read_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    tokio::spawn(registry.serve_with(listener, limits, Some(tls)));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    // Closed by the registry (EOF or reset) well within the deadline; never answered.
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await
    .expect("closed within the deadline");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
