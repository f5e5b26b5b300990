//! Key material for a registry serving HTTPS: a throwaway CA writing its certificate and
//! CA-signed leaves into a temporary directory, and the builder option that serves with one.
//!
//! Owns files only; it must not start processes or make requests.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::RegistryBuilder;

/// A CA in its own temporary directory.
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA named `name` (its distinguished name, so two CAs are told apart by name too).
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::Builder::new()
            .prefix("beamline-ca-test-")
            .tempdir()
            .expect("create temp dir for the CA");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-sign the CA");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write the CA");
        TestCa {
            dir,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate's PEM file (what CONSUL_CACERT names).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf for `names` (DNS names or IP addresses) written as `{file}.pem` and
    /// `{file}-key.pem`: their paths.
    pub fn leaf(&self, names: &[&str], file: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("leaf params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the leaf");
        let cert_path = self.dir.path().join(format!("{file}.pem"));
        let key_path = self.dir.path().join(format!("{file}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write the leaf");
        std::fs::write(&key_path, key.serialize_pem()).expect("write the leaf's key");
        (cert_path, key_path)
    }
}

impl RegistryBuilder {
    /// Serve HTTPS: `--tls-cert CERT --tls-key KEY`. The helpers' own HTTP client does not
    /// trust the CA; a test talks to the registry through the binary or its own client.
    pub fn tls(self, cert: &Path, key: &Path) -> Self {
        self.arg("--tls-cert")
            .arg(cert.display().to_string())
            .arg("--tls-key")
            .arg(key.display().to_string())
    }
}
