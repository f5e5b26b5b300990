//! PEM files read whole and parsed: certificate chains, private keys, CA bundles. An error says
//! which flag or variable named the file, the path, and what is wrong with it.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file and the flag or environment variable that named it (`--tls-cert`,
/// `CONSUL_CACERT`), for errors that say what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFile {
    pub flag: &'static str,
    pub path: PathBuf,
}

impl PemFile {
    pub fn new(flag: &'static str, path: impl Into<PathBuf>) -> PemFile {
        PemFile {
            flag,
            path: path.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {path}: cannot read it: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {path}: {reason}")]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what}: {source}")]
    Rustls { what: String, source: rustls::Error },
}

impl TlsError {
    fn invalid(file: &PemFile, reason: impl Into<String>) -> TlsError {
        TlsError::Invalid {
            flag: file.flag,
            path: file.path.clone(),
            reason: reason.into(),
        }
    }
}

fn read(file: &PemFile) -> Result<Vec<u8>, TlsError> {
    std::fs::read(&file.path).map_err(|source| TlsError::Read {
        flag: file.flag,
        path: file.path.clone(),
        source,
    })
}

/// The certificate chain in `file` (leaf first), at least one certificate.
pub fn certs(file: &PemFile) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::invalid(file, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::invalid(
            file,
            "no certificate in it (want PEM \"BEGIN CERTIFICATE\" blocks)",
        ));
    }
    Ok(certs)
}

/// The private key in `file` (PKCS#8, PKCS#1 or SEC1).
pub fn key(file: &PemFile) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(file)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        TlsError::invalid(
            file,
            format!("no usable private key in it (want a PEM \"PRIVATE KEY\" block): {e}"),
        )
    })
}

/// The CA certificates in `file`, as trust anchors.
pub fn roots(file: &PemFile) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(file)? {
        store
            .add(cert)
            .map_err(|e| TlsError::invalid(file, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(store)
}

/// The path of `file`, for callers that watch it.
pub(crate) fn path(file: &PemFile) -> &Path {
    &file.path
}

#[cfg(test)]
mod tests;
