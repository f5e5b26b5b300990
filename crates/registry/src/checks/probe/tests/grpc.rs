//! The gRPC probe against grpc.health.v1: the serving status, errors and timeouts, and TLS
//! (verification, TLSSkipVerify, TLSServerName).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic_health::ServingStatus as Reported;

use super::*;

const SVC: &str = "beamline.v1.Agent";

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

/// A plain grpc.health.v1 server on `listener` that counts the connections it accepts and stops
/// (closing them) when `stop` fires.
async fn counting_grpc_server(
    listener: tokio::net::TcpListener,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> (
    Arc<std::sync::atomic::AtomicUsize>,
    tonic_health::server::HealthReporter,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(SVC, Reported::Serving).await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let incoming = futures::stream::unfold(listener, move |listener| {
        let count = count.clone();
        async move {
            let (tcp, _) = listener.accept().await.ok()?;
            count.fetch_add(1, Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(tcp), listener))
        }
    });
    let server = tonic::transport::Server::builder().add_service(health);
    tokio::spawn(server.serve_with_incoming_shutdown(incoming, async {
        let _ = stop.await;
    }));
    (accepted, reporter)
}

/// Polls `probe` until its status is `wanted`, within LONG.
async fn until_status(probe: &GrpcProbe, wanted: CheckStatus) {
    let deadline = Instant::now() + LONG;
    loop {
        let result = grpc(probe, Duration::from_secs(2)).await;
        if result.status == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "still {result:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// While a runner holds its lease, every run goes over one HTTP/2 connection; a connection the
/// server closed is dialled again; the last lease's drop closes it (the next run dials anew).
#[tokio::test]
async fn grpc_runs_share_one_connection_per_target() {
    use std::sync::atomic::Ordering;
    use tokio::sync::oneshot;
    let (listener, addr) = listener().await;
    let (stop, stopped) = oneshot::channel();
    let (first, _first_reporter) = counting_grpc_server(listener, stopped).await;
    let probe = grpc_probe(format!("{addr}/{SVC}"));
    let lease = GrpcLease::new(&probe);
    for run in 0..20 {
        let result = grpc(&probe, LONG).await;
        assert_eq!(
            result.status,
            CheckStatus::Passing,
            "run {run}: {}",
            result.output
        );
    }
    assert_eq!(first.load(Ordering::SeqCst), 1, "20 runs, one connection");

    stop.send(()).unwrap();
    until_status(&probe, CheckStatus::Critical).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (_keep, never) = oneshot::channel();
    let (second, _second_reporter) = counting_grpc_server(listener, never).await;
    until_status(&probe, CheckStatus::Passing).await;
    for _ in 0..5 {
        assert_eq!(grpc(&probe, LONG).await.status, CheckStatus::Passing);
    }
    assert_eq!(
        second.load(Ordering::SeqCst),
        1,
        "one new connection after the break"
    );

    drop(lease);
    assert_eq!(grpc(&probe, LONG).await.status, CheckStatus::Passing);
    assert_eq!(
        second.load(Ordering::SeqCst),
        2,
        "gone with the last lease, so dialled anew"
    );
}
