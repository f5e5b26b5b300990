use super::*;

fn request(headers: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::new(());
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

#[test]
fn a_gateway_request_carries_its_caller_and_keeps_the_headers() {
    let mut r = request(&[("x-caller", "alice"), ("x-role", "operator")]);
    vouch(&mut r, true);
    let caller = r.extensions().get::<Caller>().unwrap();
    assert_eq!(caller.name, "alice");
    assert_eq!(caller.role, "operator");
    assert_eq!(r.headers()["x-role"], "operator");
}

#[test]
fn anyone_else_loses_every_identity_header_and_has_no_caller() {
    let mut r = request(&[
        ("x-caller", "mallory"),
        ("x-role", "operator"),
        ("x-role", "admin"),
        ("x-beamline", "5.3.1"),
    ]);
    r.extensions_mut().insert(Caller {
        name: "planted".into(),
        role: "operator".into(),
    });
    vouch(&mut r, false);
    assert!(r.extensions().get::<Caller>().is_none());
    assert!(r.headers().get("x-caller").is_none());
    assert!(r.headers().get_all("x-role").iter().next().is_none());
    assert_eq!(r.headers()["x-beamline"], "5.3.1");
}

#[test]
fn a_gateway_request_without_both_headers_names_no_caller() {
    let mut r = request(&[("x-caller", "alice")]);
    vouch(&mut r, true);
    assert!(r.extensions().get::<Caller>().is_none());
}

#[test]
fn without_tls_connection_info_the_peer_is_not_the_gateway() {
    assert!(!peer_is_gateway(&http::Extensions::new()));
    let mut plaintext = http::Extensions::new();
    plaintext.insert(TcpConnectInfo {
        local_addr: None,
        remote_addr: None,
    });
    assert!(!peer_is_gateway(&plaintext));
}
