//! The rustls configurations of beamline-mesh's ends, built from PEM files: a server (agent,
//! registry) with or without required client certificates, and a client (the mesh dialling
//! agents, a Consul client) with or without its own certificate.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;

use super::pem::{certs, key, path, roots, PemFile, TlsError};
use super::provider;

/// A server's certificate chain and key, and the CA its clients' certificates must chain to
/// (none: no client certificate is asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: PemFile,
    pub key: PemFile,
    pub client_ca: Option<PemFile>,
}

impl ServerFiles {
    /// Every file this configuration is built from (to watch for changes).
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![path(&self.cert).to_owned(), path(&self.key).to_owned()];
        paths.extend(self.client_ca.as_ref().map(|ca| path(ca).to_owned()));
        paths
    }
}

/// The CA a client trusts its servers by, and its own certificate chain and key (none: it
/// presents no certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    pub ca: PemFile,
    pub identity: Option<(PemFile, PemFile)>,
}

impl ClientFiles {
    /// Every file this configuration is built from (to watch for changes).
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![path(&self.ca).to_owned()];
        if let Some((cert, key)) = &self.identity {
            paths.push(path(cert).to_owned());
            paths.push(path(key).to_owned());
        }
        paths
    }
}

fn rustls_error(what: String) -> impl FnOnce(rustls::Error) -> TlsError {
    move |source| TlsError::Rustls { what, source }
}

/// A server configuration from `files`, offering `alpn` (e.g. `h2`).
pub fn server_config(
    files: &ServerFiles,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error("TLS protocol versions".into()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| TlsError::Invalid {
                        flag: ca.flag,
                        path: ca.path.clone(),
                        reason: format!("cannot verify client certificates with it: {e}"),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs(&files.cert)?, key(&files.key)?)
        .map_err(rustls_error(format!(
            "{} {} with {} {}",
            files.cert.flag,
            files.cert.path.display(),
            files.key.flag,
            files.key.path.display()
        )))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration from `files`, offering `alpn` (e.g. `h2`).
pub fn client_config(
    files: &ClientFiles,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error("TLS protocol versions".into()))?
        .with_root_certificates(roots(&files.ca)?);
    let mut config = match &files.identity {
        Some((cert, key_file)) => builder
            .with_client_auth_cert(certs(cert)?, key(key_file)?)
            .map_err(rustls_error(format!(
                "{} {} with {} {}",
                cert.flag,
                cert.path.display(),
                key_file.flag,
                key_file.path.display()
            )))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
