//! The metrics listener's bounds over loopback, with short timeouts: a silent connection, a
//! slowloris one and a kept-alive one waiting for its next request are closed within the
//! header-read timeout; a response nobody reads within the idle timeout; one connection past
//! the cap is answered 503 and closed, and a place freed is taken again.

use std::time::Duration;

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::*;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n";
const BIG: usize = 64 << 20;

/// A listener serving `GET /` ("ok") and `GET /big` (64 MiB) within `limits`; its address and
/// the sender that stops it.
async fn start(
    limits: ConnectionLimits,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/big", get(|| async { vec![b'x'; BIG] }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_within(listener, router, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Reads until the server closes the connection (EOF or reset) or `bound` passes; how long
/// that took and the bytes read, or None if it stayed open.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Option<(Duration, Vec<u8>)> {
    let start = Instant::now();
    let mut read = Vec::new();
    let mut buf = vec![0; 1 << 16];
    let closed = tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed.ok().map(|()| (start.elapsed(), read))
}

/// Sends `GET /` and reads its whole response, leaving the connection open.
async fn get_ok(stream: &mut TcpStream) -> String {
    stream.write_all(REQUEST).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0; 1024];
    while !response.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed before the response ended: {response:?}");
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(response).unwrap()
}

#[tokio::test]
async fn silent_slowloris_and_kept_alive_connections_close_within_the_header_read_timeout() {
    let timeout = Duration::from_millis(300);
    let (addr, _stop) = start(ConnectionLimits {
        header_read_timeout: timeout,
        idle_timeout: Duration::from_secs(30),
        max_connections: 8,
    })
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut slowloris = TcpStream::connect(addr).await.unwrap();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    assert!(get_ok(&mut kept_alive).await.starts_with("HTTP/1.1 200"));
    // A header line every 100 ms: bytes keep coming, the head never ends.
    let trickle = tokio::spawn(async move {
        slowloris
            .write_all(b"GET / HTTP/1.1\r\nHost: gateway\r\n")
            .await
            .unwrap();
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let line = format!("x-slow-{i}: 1\r\n");
            if slowloris.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            if i == 50 {
                panic!("the slowloris connection stayed open for 5 s");
            }
        }
        slowloris
    });
    let bound = Duration::from_secs(3);
    for (name, stream) in [("silent", &mut silent), ("kept alive", &mut kept_alive)] {
        let (took, read) = closed_within(stream, bound)
            .await
            .unwrap_or_else(|| panic!("the {name} connection stayed open"));
        assert!(took < bound, "{name}: {took:?}");
        // hyper may answer a timed-out head with 408; nothing else is sent.
        assert!(
            read.is_empty() || read.starts_with(b"HTTP/1.1 408"),
            "{name}: {read:?}"
        );
    }
    let mut slowloris = trickle.await.unwrap();
    let (took, _) = closed_within(&mut slowloris, bound)
        .await
        .expect("slowloris closed");
    assert!(took < bound, "slowloris: {took:?}");
}

#[tokio::test]
async fn a_response_nobody_reads_is_closed_within_the_idle_timeout() {
    let (addr, _stop) = start(ConnectionLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(300),
        max_connections: 8,
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    // The socket buffers fill and the server's writes stall: nothing moves for the timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, read) = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("the stalled connection was closed");
    assert!(read.starts_with(b"HTTP/1.1 200"));
    assert!(read.len() < BIG, "the whole body arrived: never idle?");
}

#[tokio::test]
async fn a_connection_past_the_cap_is_refused_with_503_until_a_place_frees() {
    let (addr, _stop) = start(ConnectionLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: 2,
    })
    .await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    // Both served, and both kept open.
    get_ok(&mut first).await;
    get_ok(&mut second).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (_, read) = closed_within(&mut third, Duration::from_secs(3))
        .await
        .expect("the connection past the cap was closed");
    assert_eq!(read, REFUSED, "{}", String::from_utf8_lossy(&read));
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut next = loop {
        let mut next = TcpStream::connect(addr).await.unwrap();
        match closed_within(&mut next, Duration::from_millis(300)).await {
            // Still open: it holds the freed place.
            None => break next,
            Some((_, read)) => assert_eq!(read, REFUSED),
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never taken again"
        );
    };
    assert!(get_ok(&mut next).await.starts_with("HTTP/1.1 200"));
    get_ok(&mut second).await;
}
