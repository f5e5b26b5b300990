//! Transport security for every end of beamline-mesh that serves or dials: PEM certificates,
//! keys and CAs read from files (errors name the flag or variable that gave the path), the
//! rustls configurations an agent, a registry and a mesh client use, the check that a peer's
//! certificate carries a given name, and reloading when the files change (cert-manager renews
//! them in place; new connections take the new ones, nothing restarts).
//!
//! Owns reading and checking key material; it must not decide policy (who may call what) or
//! open sockets.

mod config;
mod identity;
mod pem;
mod reload;
mod verify;

pub use config::{client_config, server_config, ClientFiles, ServerFiles};
pub use identity::has_dns_name;
pub use pem::{certs, key, roots, PemFile, TlsError};
pub use reload::{Reloading, Stamps};
pub use verify::{any_server_certificate, verify_as};

/// rustls's provider here (ring, as the rest of the workspace builds it).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
