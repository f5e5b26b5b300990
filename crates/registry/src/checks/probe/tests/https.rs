//! The HTTP probe over TLS: certificate verification, TLSSkipVerify, and TLSServerName changing
//! the SNI only.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::*;

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
