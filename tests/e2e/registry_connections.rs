//! The registry's HTTP listener under clients that hold connections: a slowloris request, an
//! idle keep-alive connection, more connections than `--max-connections`, and a blocking query
//! that outlasts the idle timeout — over raw TCP, so nothing but the registry closes a socket.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST: &[u8] = b"GET /v1/status/leader HTTP/1.1\r\nHost: registry\r\n\r\n";

/// Reads until the registry closes the connection (EOF or reset), within `within`; what it sent.
async fn until_closed(tcp: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .unwrap_or_else(|_| panic!("still open after {within:?}"));
    seen
}

/// Sends one request and reads its answer (the connection stays open).
async fn one_request(tcp: &mut TcpStream) -> String {
    tcp.write_all(REQUEST).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        // `"127.0.0.1:8300"` is the whole body of /v1/status/leader.
        while !answer.ends_with(b"8300\"") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before answering: {:?}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(secs(10), read)
        .await
        .expect("an answer");
    String::from_utf8_lossy(&answer).into_owned()
}

fn registry(args: &[&str]) -> Registry {
    args.iter()
        .fold(Registry::builder(), |b, a| b.arg(*a))
        .start()
}

/// A partial request line and nothing more is closed at the header-read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_closed_at_the_header_timeout() {
    let reg = registry(&["--header-read-timeout", "1s", "--idle-timeout", "30s"]);
    let mut tcp = TcpStream::connect(reg.addr).await.unwrap();
    tcp.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: regi")
        .await
        .unwrap();
    let opened = Instant::now();
    until_closed(&mut tcp, secs(5)).await;
    let held = opened.elapsed();
    assert!(held >= ms(800), "closed after {held:?}, before the timeout");
}

/// A keep-alive connection with nothing in flight is closed at the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let reg = registry(&["--header-read-timeout", "30s", "--idle-timeout", "1s"]);
    let mut tcp = TcpStream::connect(reg.addr).await.unwrap();
    assert!(one_request(&mut tcp).await.starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    until_closed(&mut tcp, secs(5)).await;
    let held = answered.elapsed();
    assert!(held >= ms(800), "closed after {held:?}, before the timeout");
}

/// Past --max-connections a new connection is answered 503 and closed at once; the open ones
/// still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_refused_and_the_others_still_work() {
    let reg = registry(&["--max-connections", "4"]);
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut tcp = TcpStream::connect(reg.addr).await.unwrap();
        one_request(&mut tcp).await;
        open.push(tcp);
    }
    let mut extra = TcpStream::connect(reg.addr).await.unwrap();
    let refused = Instant::now();
    let seen = until_closed(&mut extra, secs(2)).await;
    assert!(
        refused.elapsed() < secs(1),
        "refused after {:?}",
        refused.elapsed()
    );
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        seen.is_empty() || seen.starts_with("HTTP/1.1 503"),
        "{seen}"
    );
    for tcp in &mut open {
        assert!(one_request(tcp).await.starts_with("HTTP/1.1 200"));
    }
    let line = poll_for(secs(10), "the refusal's log line", async || {
        reg.stderr()
            .lines()
            .find(|l| l.contains("connection refused"))
            .map(str::to_string)
    })
    .await;
    assert!(line.contains("WARN") && line.contains("max=4"), "{line}");
    drop(open);
    // Closed connections give their places back.
    poll_until(
        secs(10),
        "a new client answered",
        async || {
            let mut tcp = TcpStream::connect(reg.addr).await.unwrap();
            tcp.write_all(REQUEST).await.unwrap();
            let mut buf = [0u8; 12];
            let n = tokio::time::timeout(secs(2), tcp.read(&mut buf)).await;
            matches!(n, Ok(Ok(12))) && &buf == b"HTTP/1.1 200"
        },
        |ok| *ok,
    )
    .await;
}

/// A blocking query waiting longer than the idle timeout is answered, not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_query_outlasts_the_idle_timeout() {
    let reg = registry(&["--idle-timeout", "1s"]);
    reg.register(&json!({"Name": "web"})).await;
    let first = reg.get("/v1/health/service/web").await.expect_status(200);
    let index = first.header("X-Consul-Index").expect("an index");
    let path = format!("/v1/health/service/web?index={index}&wait=3s");
    let r = reg.get_blocking(&path, secs(15)).await.expect_status(200);
    let waited = r.received_at - r.sent_at;
    assert!(waited >= ms(2900), "answered after {waited:?}");
}
