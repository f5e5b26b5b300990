//! Probes against real servers started on 127.0.0.1 port 0: axum for HTTP, a raw TLS listener for
//! HTTPS, tonic with tonic-health (plain and TLS) for gRPC.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{any, get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic_health::ServingStatus as Reported;

use super::*;

const SVC: &str = "beamline.v1.Agent";
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

async fn echo(method: Method, headers: HeaderMap, body: String) -> String {
    let h = |name: &str| {
        let values = headers.get_all(name).iter();
        values
            .map(|v| v.to_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "method={method} host={} ua={} accept={} x-probe={} body={body}",
        h("host"),
        h("user-agent"),
        h("accept"),
        h("x-probe")
    )
}

async fn http_server() -> SocketAddr {
    let app = axum::Router::new()
        .route("/ok", get(|| async { "all good" }))
        .route(
            "/busy",
            get(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/hang", get(std::future::pending::<&'static str>))
        .route("/echo", any(echo))
        .route(
            "/big",
            get(|| async { format!("HEAD{}TAIL", "x".repeat(5000)) }),
        )
        .route(
            "/moved",
            get(|| async { axum::response::Redirect::to("/ok") }),
        );
    let (listener, addr) = listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
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

async fn http_get(addr: SocketAddr, path: &str) -> ProbeResult {
    http(&get_probe(format!("http://{addr}{path}")), LONG).await
}

#[tokio::test]
async fn http_status_codes_map_like_consul() {
    let addr = http_server().await;
    let ok = http_get(addr, "/ok").await;
    assert_eq!(ok.status, CheckStatus::Passing);
    assert_eq!(
        ok.output,
        format!("HTTP GET http://{addr}/ok: 200 OK Output: all good")
    );

    let busy = http_get(addr, "/busy").await;
    assert_eq!(busy.status, CheckStatus::Warning);
    let expected = format!("HTTP GET http://{addr}/busy: 429 Too Many Requests Output: slow down");
    assert_eq!(busy.output, expected);

    let fail = http_get(addr, "/fail").await;
    assert_eq!(fail.status, CheckStatus::Critical);
    assert!(
        fail.output
            .ends_with("500 Internal Server Error Output: boom"),
        "{}",
        fail.output
    );

    let missing = http_get(addr, "/nowhere").await;
    assert_eq!(missing.status, CheckStatus::Critical);
    assert!(
        missing.output.contains(": 404 Not Found Output: "),
        "{}",
        missing.output
    );

    assert_eq!(http_get(addr, "/moved").await.status, CheckStatus::Passing);
}

#[tokio::test]
async fn http_sends_method_headers_and_body() {
    let addr = http_server().await;
    let mut probe = get_probe(format!("http://{addr}/echo"));
    probe.method = "POST".into();
    probe
        .header
        .insert("X-Probe".into(), vec!["a".into(), "b".into()]);
    probe.body = "ping".into();
    let result = http(&probe, LONG).await;
    assert_eq!(result.status, CheckStatus::Passing);
    let expected = format!(
        "HTTP POST http://{addr}/echo: 200 OK Output: method=POST host={addr} \
         ua=Consul Health Check accept=text/plain, text/*, */* x-probe=a,b body=ping"
    );
    assert_eq!(result.output, expected);

    // The caller's own Host, User-Agent and Accept win over the defaults, as in Consul.
    probe
        .header
        .insert("Host".into(), vec!["beamline.test".into()]);
    probe
        .header
        .insert("user-agent".into(), vec!["mine".into()]);
    probe
        .header
        .insert("Accept".into(), vec!["application/json".into()]);
    let output = http(&probe, LONG).await.output;
    assert!(
        output.contains("host=beamline.test ua=mine accept=application/json"),
        "{output}"
    );
}

#[tokio::test]
async fn http_keeps_the_last_4k_of_the_body() {
    let result = http_get(http_server().await, "/big").await;
    let body = result.output.split_once(" Output: ").unwrap().1;
    assert_eq!(body.len(), 4096);
    assert!(body.ends_with("TAIL") && !body.contains("HEAD"));
}

#[tokio::test]
async fn http_timeout_and_connection_errors_are_critical() {
    let addr = http_server().await;
    let started = Instant::now();
    let probe = get_probe(format!("http://{addr}/hang"));
    let hung = http(&probe, Duration::from_millis(300)).await;
    assert!(started.elapsed() < LONG);
    assert_eq!(hung.status, CheckStatus::Critical);
    let expected = format!(
        "Get \"http://{addr}/hang\": context deadline exceeded \
         (Client.Timeout exceeded while awaiting headers)"
    );
    assert_eq!(hung.output, expected);

    let refused = http_get(closed_port().await, "/").await;
    assert_eq!(refused.status, CheckStatus::Critical);
    assert!(
        refused.output.starts_with("Get \"http://127.0.0.1:"),
        "{}",
        refused.output
    );
    assert!(
        refused.output.contains("connection refused"),
        "{}",
        refused.output
    );
}

#[tokio::test]
async fn http_bad_input_is_critical_not_a_panic() {
    let addr = http_server().await;
    let mut cases = vec![
        get_probe("not a url".into()),
        get_probe("ftp://127.0.0.1/x".into()),
        get_probe("http://nonexistent.invalid/".into()),
        get_probe(String::new()),
    ];
    let mut bad_method = get_probe(format!("http://{addr}/ok"));
    bad_method.method = "BAD METHOD".into();
    let mut bad_header = get_probe(format!("http://{addr}/ok"));
    bad_header
        .header
        .insert("bad name".into(), vec!["v".into()]);
    let mut bad_value = get_probe(format!("http://{addr}/ok"));
    bad_value
        .header
        .insert("x".into(), vec!["line\nbreak".into()]);
    let mut bad_sni = get_probe(format!("https://{addr}/ok"));
    bad_sni.tls_server_name = "bad name/".into();
    cases.extend([bad_method, bad_header, bad_value, bad_sni]);
    for probe in &cases {
        let result = http(probe, LONG).await;
        assert_eq!(result.status, CheckStatus::Critical, "{probe:?}");
        assert!(!result.output.is_empty(), "{probe:?}");
    }
    let unsupported = http(&cases[1], LONG).await.output;
    assert_eq!(
        unsupported,
        "Get \"ftp://127.0.0.1/x\": unsupported protocol scheme \"ftp\""
    );

    // A timeout too large to add to the clock must not overflow.
    let result = http(&get_probe(format!("http://{addr}/ok")), Duration::MAX).await;
    assert_eq!(result.status, CheckStatus::Passing);
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

/// An HTTPS server that answers 200 "ok" and reports each request's SNI and head.
async fn https_server() -> (SocketAddr, mpsc::UnboundedReceiver<(String, String)>) {
    let (listener, addr) = listener().await;
    let acceptor = tls_acceptor(b"http/1.1");
    let (seen, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = seen.send((sni, String::from_utf8_lossy(&head).into_owned()));
                let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, requests)
}

#[tokio::test]
async fn https_verification_skip_verify_and_server_name() {
    let (addr, mut requests) = https_server().await;
    let mut probe = get_probe(format!("https://{addr}/health"));
    let untrusted = http(&probe, LONG).await;
    assert_eq!(untrusted.status, CheckStatus::Critical);
    assert!(
        untrusted.output.contains("certificate"),
        "{}",
        untrusted.output
    );

    probe.tls_skip_verify = true;
    let insecure = http(&probe, LONG).await;
    assert_eq!(insecure.status, CheckStatus::Passing, "{}", insecure.output);
    assert!(
        insecure.output.ends_with("200 OK Output: ok"),
        "{}",
        insecure.output
    );
    let (sni, _) = tokio::time::timeout(LONG, requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sni, "", "no SNI is sent for an IP address");

    // TLSServerName changes SNI only; the Host header and the output keep the URL's host.
    probe.tls_server_name = "beamline.test".into();
    let named = http(&probe, LONG).await;
    assert_eq!(named.status, CheckStatus::Passing, "{}", named.output);
    assert!(named
        .output
        .starts_with(&format!("HTTP GET https://{addr}/health: 200 OK")));
    let (sni, head) = tokio::time::timeout(LONG, requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sni, "beamline.test");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: {addr}\r\n")),
        "{head}"
    );
}

#[tokio::test]
async fn tcp_connect_refused_and_bad_addresses() {
    let (_open, addr) = listener().await;
    let open = tcp(&addr.to_string(), LONG).await;
    assert_eq!(open.status, CheckStatus::Passing);
    assert_eq!(open.output, format!("TCP connect {addr}: Success"));

    let closed = closed_port().await;
    let refused = tcp(&closed.to_string(), LONG).await;
    assert_eq!(refused.status, CheckStatus::Critical);
    assert_eq!(
        refused.output,
        format!("dial tcp {closed}: connect: connection refused")
    );

    let missing = tcp("127.0.0.1", LONG).await;
    assert_eq!(
        missing.output,
        "dial tcp: address 127.0.0.1: missing port in address"
    );
    for bad in [
        "",
        "::1:80",
        "[::1",
        "host:99999",
        "bad host:1",
        "nonexistent.invalid:80",
    ] {
        let result = tcp(bad, LONG).await;
        assert_eq!(result.status, CheckStatus::Critical, "{bad}");
        assert!(
            result.output.starts_with("dial tcp"),
            "{bad}: {}",
            result.output
        );
    }
}

#[tokio::test]
async fn tcp_timeout_is_an_io_timeout() {
    // A listener that never accepts: once its accept queue is full, Linux drops further SYNs and
    // the connect hangs. Each probe below leaves one connection in that queue.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(1).unwrap();
    let addr = full.local_addr().unwrap().to_string();
    let started = Instant::now();
    let mut outputs = Vec::new();
    for _ in 0..16 {
        let result = tcp(&addr, Duration::from_millis(200)).await;
        if result.status == CheckStatus::Critical {
            assert_eq!(result.output, format!("dial tcp {addr}: i/o timeout"));
            assert!(started.elapsed() < LONG);
            return;
        }
        outputs.push(result.output);
    }
    panic!("no connect timed out: {outputs:?}");
}

/// A tonic server with grpc.health.v1, over plain TCP or TLS (recording each SNI).
async fn grpc_server(
    tls: bool,
) -> (
    SocketAddr,
    tonic_health::server::HealthReporter,
    mpsc::UnboundedReceiver<String>,
) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(SVC, Reported::Serving).await;
    let (listener, addr) = listener().await;
    let (seen, snis) = mpsc::unbounded_channel();
    let server = tonic::transport::Server::builder().add_service(health);
    if tls {
        let acceptor = tls_acceptor(b"h2");
        let incoming = futures::stream::unfold(listener, move |listener| {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            async move {
                loop {
                    let (tcp, _) = listener.accept().await.ok()?;
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = seen.send(tls.get_ref().1.server_name().unwrap_or("").to_owned());
                        return Some((Ok::<_, std::io::Error>(tls), listener));
                    }
                }
            }
        });
        tokio::spawn(server.serve_with_incoming(incoming));
    } else {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(server.serve_with_incoming(incoming));
    }
    (addr, reporter, snis)
}

fn grpc_probe(target: String) -> GrpcProbe {
    GrpcProbe {
        target,
        use_tls: false,
        tls_server_name: String::new(),
        tls_skip_verify: false,
    }
}

#[tokio::test]
async fn grpc_follows_the_serving_status() {
    let (addr, reporter, _) = grpc_server(false).await;
    let whole = grpc(&grpc_probe(addr.to_string()), LONG).await;
    assert_eq!(whole.status, CheckStatus::Passing, "{}", whole.output);
    assert_eq!(whole.output, format!("gRPC check {addr}: success"));

    let named = grpc_probe(format!("{addr}/{SVC}"));
    let serving = grpc(&named, LONG).await;
    assert_eq!(serving.status, CheckStatus::Passing, "{}", serving.output);
    assert_eq!(serving.output, format!("gRPC check {addr}/{SVC}: success"));

    reporter.set_service_status(SVC, Reported::NotServing).await;
    let down = grpc(&named, LONG).await;
    assert_eq!(down.status, CheckStatus::Critical);
    assert_eq!(
        down.output,
        format!("gRPC {addr}/{SVC} serving status: NOT_SERVING")
    );

    reporter.set_service_status(SVC, Reported::Serving).await;
    assert_eq!(grpc(&named, LONG).await.status, CheckStatus::Passing);

    let unknown = grpc(&grpc_probe(format!("{addr}/no.such.Service")), LONG).await;
    assert_eq!(unknown.status, CheckStatus::Critical);
    assert!(
        unknown.output.starts_with("rpc error: code = NotFound"),
        "{}",
        unknown.output
    );
}

#[tokio::test]
async fn grpc_errors_and_timeouts_are_critical() {
    let closed = closed_port().await;
    let refused = grpc(&grpc_probe(closed.to_string()), LONG).await;
    assert_eq!(refused.status, CheckStatus::Critical);
    assert!(
        refused.output.contains("connection refused"),
        "{}",
        refused.output
    );
    assert!(
        refused.output.starts_with("rpc error: code = Unavailable"),
        "{}",
        refused.output
    );

    // Accepts connections and never speaks HTTP/2.
    let (silent, addr) = listener().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let hung = grpc(&grpc_probe(addr.to_string()), Duration::from_millis(300)).await;
    assert!(started.elapsed() < LONG);
    assert_eq!(hung.status, CheckStatus::Critical);
    assert_eq!(
        hung.output,
        "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
    );

    for bad in [
        "",
        "/svc",
        "no-port",
        "[::1",
        "host:99999",
        "bad host:1",
        "a b/c",
        "nonexistent.invalid:1",
    ] {
        let result = grpc(&grpc_probe(bad.into()), LONG).await;
        assert_eq!(result.status, CheckStatus::Critical, "{bad}");
        assert!(!result.output.is_empty(), "{bad}");
    }
}

#[tokio::test]
async fn grpc_tls_verification_skip_verify_and_server_name() {
    let (addr, _reporter, mut snis) = grpc_server(true).await;
    let mut probe = grpc_probe(format!("{addr}/{SVC}"));

    let plaintext = grpc(&probe, LONG).await;
    assert_eq!(plaintext.status, CheckStatus::Critical);

    probe.use_tls = true;
    let untrusted = grpc(&probe, LONG).await;
    assert_eq!(untrusted.status, CheckStatus::Critical);
    assert!(
        untrusted.output.contains("authentication handshake failed"),
        "{}",
        untrusted.output
    );

    probe.tls_skip_verify = true;
    let insecure = grpc(&probe, LONG).await;
    assert_eq!(insecure.status, CheckStatus::Passing, "{}", insecure.output);

    probe.tls_server_name = "beamline.test".into();
    let named = grpc(&probe, LONG).await;
    assert_eq!(named.status, CheckStatus::Passing, "{}", named.output);
    // Earlier connections sent no SNI (an IP address); this one must have sent the name.
    let named_sni = async {
        while let Some(sni) = snis.recv().await {
            if sni == "beamline.test" {
                return true;
            }
        }
        false
    };
    assert!(tokio::time::timeout(LONG, named_sni).await.unwrap());

    // TLS towards a plaintext server fails instead of hanging.
    let (plain, _, _) = grpc_server(false).await;
    probe.target = plain.to_string();
    let mismatch = grpc(&probe, LONG).await;
    assert_eq!(mismatch.status, CheckStatus::Critical);
}
