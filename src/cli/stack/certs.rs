//! The throwaway certificates of `dev --mtls` and `demo --mtls`: a CA made at start-up with
//! rcgen (nothing downloaded, no openssl), one server certificate per beamline the stack runs
//! (DNS name [`wire::tls::agent_name`], ServerAuth) and the gateway's client certificate (DNS
//! name [`wire::tls::GATEWAY_NAME`], ClientAuth), written as PEM files into a fresh private
//! directory under the system's temp dir that is removed when [`MeshCerts`] is dropped.
//!
//! The CA's private key never leaves memory (only its certificate is written), so nothing more
//! can be issued under it once the stack is gone. Keys are written owner-only.
//!
//! Owns that directory and what is in it; it must not start processes, read or write outside
//! its directory, or be used for anything but the local stack (these are test certificates).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::wire;

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The stack's CA and certificates on disk; the directory is removed on drop.
#[derive(Debug)]
pub struct MeshCerts {
    dir: PathBuf,
    ca_pem: String,
    /// The CA certificate: agents' `--client-ca` and the gateway's `--upstream-ca`.
    pub ca: PathBuf,
    /// The gateway's client certificate (`--upstream-cert`, `--upstream-key`).
    pub gateway: CertFiles,
    /// Each beamline's server certificate, by beamline id as given.
    agents: BTreeMap<String, CertFiles>,
}

impl MeshCerts {
    /// Makes a CA, a certificate per beamline in `beamlines` (repeats share one, as replicas of a
    /// beamline do) and the gateway's, and writes them into a new directory under the system's
    /// temp dir. An invalid beamline id is an error, and nothing is left behind.
    pub fn generate(beamlines: &[String]) -> anyhow::Result<MeshCerts> {
        let mut ids = BTreeMap::new();
        for beamline in beamlines {
            let id = BeamlineId::parse(beamline)
                .with_context(|| format!("no certificate for beamline {beamline:?}"))?;
            ids.insert(beamline.clone(), id);
        }
        Self::generate_in(&std::env::temp_dir(), &ids)
    }

    fn generate_in(parent: &Path, ids: &BTreeMap<String, BeamlineId>) -> anyhow::Result<MeshCerts> {
        let dir = new_private_dir(parent, "mtls")?;
        // From here on, dropping `certs` (an error below) removes the directory.
        let mut certs = MeshCerts {
            ca: dir.join("ca.pem"),
            gateway: CertFiles {
                cert: dir.join("gateway.pem"),
                key: dir.join("gateway.key"),
            },
            dir,
            ca_pem: String::new(),
            agents: BTreeMap::new(),
        };
        let ca = new_ca("beamline-mesh dev CA (throwaway)")?;
        certs.ca_pem = ca.pem();
        write_file(&certs.ca, &certs.ca_pem, false)?;

        let (cert, key) = issue(
            &ca,
            wire::tls::GATEWAY_NAME,
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        write_file(&certs.gateway.cert, &cert, false)?;
        write_file(&certs.gateway.key, &key, true)?;

        for (beamline, id) in ids {
            let stem = id.service_name();
            let files = CertFiles {
                cert: certs.dir.join(format!("{stem}.pem")),
                key: certs.dir.join(format!("{stem}.key")),
            };
            let name = wire::tls::agent_name(id);
            let (cert, key) = issue(&ca, &name, ExtendedKeyUsagePurpose::ServerAuth)?;
            write_file(&files.cert, &cert, false)?;
            write_file(&files.key, &key, true)?;
            certs.agents.insert(beamline.clone(), files);
        }
        Ok(certs)
    }

    /// The directory holding the files (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM: what a client dialling an agent directly must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `beamline`'s server certificate, if the stack runs it.
    pub fn agent(&self, beamline: &str) -> Option<&CertFiles> {
        self.agents.get(beamline)
    }
}

impl Drop for MeshCerts {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "warning: cannot remove the throwaway certificates in {}: {e}",
                    self.dir.display()
                );
            }
        }
    }
}

/// A client certificate (PEM chain, PEM key) for [`wire::tls::GATEWAY_NAME`] from a CA made
/// just now and thrown away: what an impostor holds. Agents of the stack must refuse it. Held
/// in memory only.
pub fn impostor_client() -> anyhow::Result<(String, String)> {
    let ca = new_ca("impostor CA")?;
    issue(
        &ca,
        wire::tls::GATEWAY_NAME,
        ExtendedKeyUsagePurpose::ClientAuth,
    )
}

fn new_ca(common_name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let key = KeyPair::generate().context("cannot generate the CA's key")?;
    CertifiedIssuer::self_signed(params, key).context("cannot self-sign the CA")
}

/// A certificate for the DNS name `name` signed by `ca`: (PEM chain, PEM key).
fn issue(
    ca: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<(String, String)> {
    let mut params = CertificateParams::new(vec![name.to_string()])
        .with_context(|| format!("a certificate for {name:?}"))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().with_context(|| format!("cannot generate a key for {name}"))?;
    let cert = params
        .signed_by(&key, ca)
        .with_context(|| format!("cannot sign the certificate for {name}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new directory `beamline-mesh-<what>-<pid>-<random>` under `parent`, owner-only; never an
/// existing one.
pub(in crate::cli) fn new_private_dir(parent: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let dir = parent.join(format!(
        "beamline-mesh-{what}-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Writes a new file (never an existing one); a `secret` is readable by its owner only.
pub(in crate::cli) fn write_file(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if secret { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests;
