//! The TCP probe: connect, refused and malformed addresses, and a connect that times out.

use std::time::{Duration, Instant};

use super::*;

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
