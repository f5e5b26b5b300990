//! The rustls client configuration a Consul client dials `https://` with, from Consul's own
//! variables: the CA to trust (`CONSUL_CACERT`; without it, the public web roots reqwest
//! trusts by default), a client certificate (`CONSUL_CLIENT_CERT` + `CONSUL_CLIENT_KEY`), the
//! name the server's certificate must carry when it is not the address's host
//! (`CONSUL_TLS_SERVER_NAME`; `sni` sends it as SNI too), and no verification at all
//! (`CONSUL_HTTP_SSL_VERIFY=false`, logged as a warning each time a configuration is built).
//!
//! Owns building the configuration once, at start-up (a broken file is a start-up error naming
//! its variable); it must not dial, nor decide when a failed handshake is worth retrying.

use std::sync::Arc;

use beamline_tls::{PemFile, TlsError};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::ServerName;
use rustls::RootCertStore;

/// Consul's TLS client variables, files not yet read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// `CONSUL_CACERT`.
    pub ca: Option<PemFile>,
    /// `CONSUL_CLIENT_CERT` and `CONSUL_CLIENT_KEY` (both or neither).
    pub identity: Option<(PemFile, PemFile)>,
    /// `CONSUL_TLS_SERVER_NAME`, any `:port` already dropped (as Consul's api package does).
    pub server_name: Option<String>,
    /// False for `CONSUL_HTTP_SSL_VERIFY=false`.
    pub skip_verify: bool,
}

impl TlsSettings {
    /// Whether anything differs from reqwest's defaults (public roots, no client certificate).
    pub fn is_default(&self) -> bool {
        *self == TlsSettings::default()
    }
}

/// Builds the client configuration `settings` describe.
pub fn client_config(settings: &TlsSettings) -> Result<rustls::ClientConfig, TlsError> {
    let provider = beamline_tls::provider();
    let roots = match &settings.ca {
        Some(ca) => beamline_tls::roots(ca)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let mut config = match &settings.ca {
        Some(ca) => beamline_tls::client_config(
            &beamline_tls::ClientFiles {
                ca: ca.clone(),
                identity: settings.identity.clone(),
            },
            &[],
        )?,
        None => {
            let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|source| TlsError::Rustls {
                    what: "TLS protocol versions".into(),
                    source,
                })?
                .with_root_certificates(roots.clone());
            match &settings.identity {
                Some((cert, key)) => builder
                    .with_client_auth_cert(beamline_tls::certs(cert)?, beamline_tls::key(key)?)
                    .map_err(|source| TlsError::Rustls {
                        what: format!(
                            "{} {} with {} {}",
                            cert.flag,
                            cert.path.display(),
                            key.flag,
                            key.path.display()
                        ),
                        source,
                    })?,
                None => builder.with_no_client_auth(),
            }
        }
    };
    if settings.skip_verify {
        tracing::warn!(
            "CONSUL_HTTP_SSL_VERIFY=false: the Consul server's certificate is NOT verified; \
             anyone on the path can read and change what this process sends to Consul \
             (its ACL token included)"
        );
        config
            .dangerous()
            .set_certificate_verifier(beamline_tls::any_server_certificate(provider));
    } else if let Some(name) = &settings.server_name {
        let name = server_name(name)?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Invalid {
                flag: "CONSUL_CACERT",
                path: settings
                    .ca
                    .as_ref()
                    .map(|ca| ca.path.clone())
                    .unwrap_or_default(),
                reason: format!("cannot verify server certificates with it: {e}"),
            })?;
        config
            .dangerous()
            .set_certificate_verifier(beamline_tls::verify_as(inner, name));
    }
    Ok(config)
}

/// `CONSUL_TLS_SERVER_NAME` as a name to verify against: a DNS name or an IP address.
fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_string()).map_err(|e| TlsError::Invalid {
        flag: "CONSUL_TLS_SERVER_NAME",
        path: name.into(),
        reason: format!("not a DNS name or an IP address: {e}"),
    })
}

/// What to tell an operator about a failed handshake: the variable to look at, if the cause
/// chain of `error` holds a TLS error this client can name one for.
pub fn hint(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    if let Some(found) = error.downcast_ref::<rustls::Error>() {
        return hint_for(found);
    }
    // An io::Error's `source()` skips the error it wraps; look inside it too (hyper-util and
    // tokio-rustls wrap rustls's error in one or two of them).
    let wrapped = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    wrapped
        .and_then(hint)
        .or_else(|| error.source().and_then(hint))
}

fn hint_for(error: &rustls::Error) -> Option<&'static str> {
    use rustls::AlertDescription as Alert;
    match error {
        rustls::Error::InvalidCertificate(_) => Some("check CONSUL_CACERT / CONSUL_TLS_SERVER_NAME"),
        rustls::Error::AlertReceived(
            Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::AccessDenied
            // A client certificate whose issuer has a trusted CA's name but not its key.
            | Alert::DecryptError,
        ) => Some("the server refused this client's certificate: check CONSUL_CLIENT_CERT / CONSUL_CLIENT_KEY"),
        rustls::Error::InvalidMessage(_) => {
            Some("is the server speaking HTTPS? check the scheme of CONSUL_HTTP_ADDR")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
