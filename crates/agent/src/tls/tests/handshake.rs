//! Who gets through the TLS handshake of an agent with `--client-ca`, and the start-up errors
//! of TLS files that cannot work.

use super::*;

#[tokio::test]
async fn a_client_certificate_from_the_client_ca_is_served_and_the_agent_is_verified() {
    let (ca, callers) = (Ca::new("mesh CA"), Ca::new("callers CA"));
    let files = Files::new(&ca.server(&name()), Some(&callers));
    let mut f = flags();
    files.flags(&mut f);
    let agent = serve(&f).await;
    let card = describe_anew(agent.addr, &ca, &name(), Some(&callers.client("mesh.test")))
        .await
        .unwrap();
    assert_eq!(card.beamline, "5.3.1");
    // The agent's certificate is checked for the name the mesh dials it by.
    assert!(describe_anew(
        agent.addr,
        &ca,
        "beamline-9-9-9.service.consul",
        Some(&callers.client("mesh.test"))
    )
    .await
    .is_err());
}

#[tokio::test]
async fn no_client_certificate_or_one_from_another_ca_fails_the_handshake() {
    let (ca, callers) = (Ca::new("mesh CA"), Ca::new("callers CA"));
    let files = Files::new(&ca.server(&name()), Some(&callers));
    let mut f = flags();
    files.flags(&mut f);
    let agent = serve(&f).await;
    let error = describe_anew(agent.addr, &ca, &name(), None)
        .await
        .unwrap_err();
    // Refused by the connection (the TLS alert, or the close that follows), not by gRPC.
    assert!(error.contains("Transport"), "{error}");
    let stranger = Ca::new("another CA").client("mesh.test");
    let error = describe_anew(agent.addr, &ca, &name(), Some(&stranger))
        .await
        .unwrap_err();
    assert!(error.contains("Transport"), "{error}");
    // Nor does plaintext gRPC get anywhere.
    assert!(describe(dial_plaintext_lazy(agent.addr)).await.is_err());
    // And a proper client still does, after all that.
    describe_anew(agent.addr, &ca, &name(), Some(&callers.client("mesh.test")))
        .await
        .unwrap();
}

fn dial_plaintext_lazy(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(DEADLINE)
        .connect_lazy()
}

#[tokio::test]
async fn without_a_client_ca_any_client_is_served_over_tls() {
    let ca = Ca::new("mesh CA");
    let files = Files::new(&ca.server(&name()), None);
    let mut f = flags();
    files.flags(&mut f);
    let agent = serve(&f).await;
    describe_anew(agent.addr, &ca, &name(), None).await.unwrap();
}

async fn bind_error(flags: &AgentFlags) -> String {
    match flags.bind("1.0.0").await {
        Ok(_) => panic!("bound with {flags:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn files_that_cannot_work_are_start_up_errors_naming_the_flag() {
    let ca = Ca::new("mesh CA");
    let files = Files::new(&ca.server(&name()), Some(&ca));
    let dir = files.dir.path();

    let mut missing = flags();
    files.flags(&mut missing);
    missing.tls_cert = Some(dir.join("nonexistent.pem"));
    let error = bind_error(&missing).await;
    assert!(error.starts_with("--tls-cert "), "{error}");
    assert!(error.contains("nonexistent.pem"), "{error}");

    let mut garbage = flags();
    files.flags(&mut garbage);
    garbage.tls_key = Some(write(dir, "garbage.pem", "not a key"));
    let error = bind_error(&garbage).await;
    assert!(error.starts_with("--tls-key "), "{error}");

    let mut mismatched = flags();
    files.flags(&mut mismatched);
    mismatched.tls_key = Some(write(dir, "other-key.pem", &ca.server(&name()).key));
    let error = bind_error(&mismatched).await;
    assert!(
        error.contains("--tls-cert") && error.contains("--tls-key"),
        "{error}"
    );

    let mut bad_ca = flags();
    files.flags(&mut bad_ca);
    bad_ca.client_ca = Some(write(dir, "empty.pem", ""));
    let error = bind_error(&bad_ca).await;
    assert!(error.starts_with("--client-ca "), "{error}");
}

#[test]
fn tls_flags_come_in_pairs_and_a_client_ca_needs_them() {
    let mut f = flags();
    f.tls_cert = Some("cert.pem".into());
    assert_eq!(
        f.config().unwrap_err().to_string(),
        "--tls-cert needs --tls-key"
    );
    let mut f = flags();
    f.tls_key = Some("key.pem".into());
    assert_eq!(
        f.config().unwrap_err().to_string(),
        "--tls-key needs --tls-cert"
    );
    let mut f = flags();
    f.client_ca = Some("ca.pem".into());
    assert!(f
        .config()
        .unwrap_err()
        .to_string()
        .starts_with("--client-ca needs --tls-cert and --tls-key"));
    assert!(flags().config().unwrap().tls.is_none());
}

/// With TLS on, Consul's gRPC check and Kubernetes' probes (plaintext, no client certificate)
/// need the health-only port: without it the instance would stay critical, so it is refused.
#[test]
fn tls_needs_the_plaintext_health_port() {
    let mut f = flags();
    f.tls_cert = Some("cert.pem".into());
    f.tls_key = Some("key.pem".into());
    let error = f.config().unwrap_err().to_string();
    assert!(
        error.starts_with("--tls-cert needs --health-listen"),
        "{error}"
    );
    f.health_listen = Some("127.0.0.1:0".parse().unwrap());
    assert!(f.config().unwrap().tls.is_some());
}
