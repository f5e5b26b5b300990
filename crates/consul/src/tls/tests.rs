//! The TLS client against loopback HTTPS servers with CA-signed certificates: a trusted CA, a
//! CA that does not match, CONSUL_TLS_SERVER_NAME (verified against and sent as SNI),
//! CONSUL_HTTP_SSL_VERIFY=false, a server that
//! requires a client certificate, and a 403 naming the token variable.

mod server;

use crate::{ConsulClient, ConsulConfig, ConsulEnv, ConsulError};
use server::{Pki, Server};

/// A client of `server` with Consul's variables `vars` (CONSUL_HTTP_ADDR is set to it).
fn client(server: &Server, vars: &[(&str, String)]) -> Result<ConsulClient, ConsulError> {
    let env = ConsulEnv::parse(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })?;
    let config = ConsulConfig::from_env(Some(&server.addr), &env)?;
    Ok(ConsulClient::new(config))
}

#[tokio::test]
async fn a_server_whose_certificate_chains_to_consul_cacert_is_trusted() {
    let pki = Pki::new();
    let server = Server::start(&pki, &["127.0.0.1"], None).await;
    let client = client(&server, &[("CONSUL_CACERT", pki.ca_path())]).unwrap();
    assert!(client.is_registered("x").await.unwrap());
}

#[tokio::test]
async fn a_certificate_from_another_ca_names_consul_cacert() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = Server::start(&pki, &["127.0.0.1"], None).await;
    let client = client(&server, &[("CONSUL_CACERT", other.ca_path())]).unwrap();
    let error = client.is_registered("x").await.unwrap_err();
    assert!(matches!(error, ConsulError::Tls { .. }), "{error:?}");
    assert!(!error.is_unreachable());
    let text = error.to_string();
    assert!(
        text.contains("check CONSUL_CACERT / CONSUL_TLS_SERVER_NAME"),
        "{text}"
    );
}

#[tokio::test]
async fn consul_tls_server_name_is_the_name_verified() {
    let pki = Pki::new();
    // The certificate names a host, not the loopback address dialled.
    let server = Server::start(&pki, &["consul.beamline.test"], None).await;
    let by_address = client(&server, &[("CONSUL_CACERT", pki.ca_path())]).unwrap();
    let error = by_address.is_registered("x").await.unwrap_err();
    assert!(
        error.to_string().contains("CONSUL_TLS_SERVER_NAME"),
        "{error}"
    );

    let renamed = client(
        &server,
        &[
            ("CONSUL_CACERT", pki.ca_path()),
            ("CONSUL_TLS_SERVER_NAME", "consul.beamline.test:8501".into()),
        ],
    )
    .unwrap();
    assert!(renamed.is_registered("x").await.unwrap());
    // Sent as SNI too, as Go's tls.Config.ServerName is; the loopback address is still dialled.
    assert_eq!(
        server
            .snis
            .lock()
            .unwrap()
            .last()
            .cloned()
            .flatten()
            .as_deref(),
        Some("consul.beamline.test")
    );

    let wrong = client(
        &server,
        &[
            ("CONSUL_CACERT", pki.ca_path()),
            ("CONSUL_TLS_SERVER_NAME", "other.beamline.test".into()),
        ],
    )
    .unwrap();
    assert!(wrong.is_registered("x").await.is_err());
}

#[tokio::test]
async fn ssl_verify_false_accepts_any_certificate() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = Server::start(&pki, &["consul.beamline.test"], None).await;
    let client = client(
        &server,
        &[
            ("CONSUL_CACERT", other.ca_path()),
            ("CONSUL_HTTP_SSL_VERIFY", "false".into()),
        ],
    )
    .unwrap();
    assert!(client.is_registered("x").await.unwrap());
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_the_server_asks() {
    let pki = Pki::new();
    let server = Server::start(&pki, &["127.0.0.1"], Some(&pki)).await;
    let (cert, key) = pki.leaf_files(&["client.beamline.test"]);
    let with_cert = client(
        &server,
        &[
            ("CONSUL_CACERT", pki.ca_path()),
            ("CONSUL_CLIENT_CERT", cert),
            ("CONSUL_CLIENT_KEY", key),
        ],
    )
    .unwrap();
    assert!(with_cert.is_registered("x").await.unwrap());

    let without = client(&server, &[("CONSUL_CACERT", pki.ca_path())]).unwrap();
    let error = without.is_registered("x").await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("CONSUL_CLIENT_CERT"), "{text}");
}

#[tokio::test]
async fn a_403_names_the_token_variable() {
    let pki = Pki::new();
    let server = Server::start(&pki, &["127.0.0.1"], None).await;
    let client = client(
        &server,
        &[
            ("CONSUL_CACERT", pki.ca_path()),
            ("CONSUL_HTTP_TOKEN", "wrong".into()),
        ],
    )
    .unwrap();
    // The server answers 403 to any token but its own.
    let error = client.services().await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("403"), "{text}");
    assert!(
        text.contains("permission denied: check CONSUL_HTTP_TOKEN"),
        "{text}"
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_names_the_scheme() {
    let pki = Pki::new();
    // https:// to a server that does not speak TLS: rustls reads garbage.
    let plain = server::plain_http().await;
    let env = ConsulEnv::parse(|name| (name == "CONSUL_CACERT").then(|| pki.ca_path())).unwrap();
    let config = ConsulConfig::from_env(Some(&format!("https://{plain}")), &env).unwrap();
    let error = ConsulClient::new(config)
        .is_registered("x")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("CONSUL_HTTP_ADDR"), "{error}");
}

#[test]
fn an_unreadable_consul_cacert_is_a_start_up_error_naming_it() {
    let env = ConsulEnv::parse(|name| {
        (name == "CONSUL_CACERT").then(|| "/nonexistent/ca.pem".to_string())
    })
    .unwrap();
    let error = ConsulConfig::from_env(Some("https://127.0.0.1:8501"), &env).unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("CONSUL_CACERT /nonexistent/ca.pem"),
        "{text}"
    );
}

#[test]
fn a_client_key_that_is_not_a_key_names_consul_client_key() {
    let pki = Pki::new();
    let (cert, _) = pki.leaf_files(&["client.beamline.test"]);
    let env = ConsulEnv::parse(|name| match name {
        "CONSUL_CACERT" => Some(pki.ca_path()),
        "CONSUL_CLIENT_CERT" => Some(cert.clone()),
        // A certificate where the key should be.
        "CONSUL_CLIENT_KEY" => Some(cert.clone()),
        _ => None,
    })
    .unwrap();
    let error = ConsulConfig::from_env(Some("https://127.0.0.1:8501"), &env).unwrap_err();
    assert!(
        error.to_string().starts_with("CONSUL_CLIENT_KEY"),
        "{error}"
    );
}

#[test]
fn default_settings_build_no_configuration() {
    let env = ConsulEnv::parse(|_| None).unwrap();
    assert!(env.tls.is_default());
    let config = ConsulConfig::from_env(Some("https://consul.example:8501"), &env).unwrap();
    assert!(config.tls.is_none());
}
