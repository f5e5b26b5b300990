//! The accepted-connection stream over real loopback sockets: the handshake timeout, its
//! concurrency (a silent client delays no other), the cap, and the replay of the first bytes.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;

use super::*;

const BOUND: Duration = Duration::from_secs(5);

async fn listening(max_connections: usize, timeout_ms: u64) -> (Incoming, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        max_connections,
        handshake_timeout: Duration::from_millis(timeout_ms),
    };
    (incoming(listener, limits, Handshake::Http2), addr)
}

/// Waits (bounded) for the server to close `tcp`; how long that took.
async fn closed(tcp: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(BOUND, tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "still open (or sent bytes): {read:?}"
    );
    start.elapsed()
}

async fn next(incoming: &mut Incoming) -> Conn {
    let conn = tokio::time::timeout(BOUND, incoming.next()).await;
    conn.expect("a connection in time").unwrap().unwrap()
}

#[tokio::test]
async fn a_silent_or_half_preface_client_is_closed_and_delays_no_other() {
    let (mut incoming, addr) = listening(16, 300).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&HTTP2_PREFACE[..12]).await.unwrap();
    let mut good = TcpStream::connect(addr).await.unwrap();
    good.write_all(HTTP2_PREFACE).await.unwrap();
    good.write_all(b"frames").await.unwrap();

    // Handed over at once, not after the silent ones' timeout; the preface is replayed.
    let start = Instant::now();
    let mut conn = next(&mut incoming).await;
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    let mut read = vec![0u8; 30];
    conn.read_exact(&mut read).await.unwrap();
    assert_eq!(&read[..24], HTTP2_PREFACE);
    assert_eq!(&read[24..], b"frames");
    conn.write_all(b"ok").await.unwrap();
    let mut answer = [0u8; 2];
    good.read_exact(&mut answer).await.unwrap();

    for tcp in [&mut silent, &mut half] {
        let after = closed(tcp).await;
        assert!(after < Duration::from_secs(2), "{after:?}");
    }
}

#[tokio::test]
async fn past_the_cap_a_connection_is_closed_at_once_and_a_closed_one_frees_its_place() {
    let (mut incoming, addr) = listening(2, 10_000).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(HTTP2_PREFACE).await.unwrap();
        held.push((tcp, next(&mut incoming).await));
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let after = closed(&mut third).await;
    assert!(after < Duration::from_secs(1), "{after:?}");

    // The first connection closes on the server's side: its place is free again.
    drop(held.remove(0));
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    fourth.write_all(HTTP2_PREFACE).await.unwrap();
    let conn = next(&mut incoming).await;
    assert_eq!(conn.peer(), Some(fourth.local_addr().unwrap()));
}

#[tokio::test]
async fn not_http2_is_closed_at_once() {
    let (_incoming, addr) = listening(4, 10_000).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let after = closed(&mut tcp).await;
    assert!(after < Duration::from_secs(1), "{after:?}");
}

#[tokio::test]
async fn a_whole_tls_client_hello_is_replayed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = incoming(listener, Limits::default(), Handshake::Tls);
    let mut hello = vec![22, 3, 1, 0, 40];
    hello.extend([7u8; 40]);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&hello[..20]).await.unwrap();
    // Not handed over before the record is whole.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), incoming.next())
            .await
            .is_err()
    );
    tcp.write_all(&hello[20..]).await.unwrap();
    let mut conn = next(&mut incoming).await;
    let mut read = vec![0u8; hello.len()];
    conn.read_exact(&mut read).await.unwrap();
    assert_eq!(read, hello);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_listener() {
    let (incoming, addr) = listening(4, 10_000).await;
    drop(incoming);
    let refused = async {
        loop {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(BOUND, refused)
        .await
        .expect("the listener closes");
}
