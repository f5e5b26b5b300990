use super::*;

#[tokio::test]
async fn an_unreachable_consul_names_the_root_cause() {
    // A port nothing listens on: the OS's "connection refused" must be in the message.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = ConsulClient::new(ConsulConfig::new(&format!("127.0.0.1:{port}")).unwrap());
    let error = client.is_registered("x").await.unwrap_err();
    assert!(error.is_unreachable(), "{error}");
    let text = error.to_string().to_lowercase();
    assert!(text.contains("refused"), "{text}");
}

#[test]
fn addresses_are_normalised() {
    assert_eq!(
        normalize_addr("127.0.0.1:8500").unwrap(),
        "http://127.0.0.1:8500"
    );
    assert_eq!(
        normalize_addr("http://consul:8500/").unwrap(),
        "http://consul:8500"
    );
    assert_eq!(
        normalize_addr("https://c.example").unwrap(),
        "https://c.example"
    );
    for bad in [
        "",
        "unix:///tmp/consul.sock",
        "http://",
        "http://h:1/v1",
        "ftp://h",
    ] {
        assert!(normalize_addr(bad).is_err(), "{bad}");
    }
}
