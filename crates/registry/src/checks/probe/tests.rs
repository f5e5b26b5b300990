//! Probes against real servers started on 127.0.0.1 port 0: axum for HTTP, a raw TLS listener for
//! HTTPS, tonic with tonic-health (plain and TLS) for gRPC.
//!
//! One child module per probe kind; this one keeps the fixtures more than one of them needs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::*;

mod grpc;
mod http;
mod https;
mod tcp;

/// Bound on every wait for a probe that is expected to finish on its own.
const LONG: Duration = Duration::from_secs(10);

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A port that was just free: nothing listens there.
async fn closed_port() -> SocketAddr {
    listener().await.1
}

fn get_probe(url: String) -> HttpProbe {
    HttpProbe {
        url,
        method: String::new(),
        header: BTreeMap::new(),
        body: String::new(),
        tls_server_name: String::new(),
        tls_skip_verify: false,
    }
}

/// A self-signed certificate for beamline.test and localhost, served with the given ALPN.
fn tls_acceptor(alpn: &[u8]) -> tokio_rustls::TlsAcceptor {
    let names = vec!["beamline.test".to_string(), "localhost".to_string()];
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key.into())
        .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
