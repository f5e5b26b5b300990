//! A gRPC call on HTTP/2 directly (the `h2` crate), with no client-side deadline timer: tonic's
//! client runs its own grpc-timeout timer and reports its expiry as CANCELLED itself, which
//! would hide what the gateway answered. Used where the test is about the gateway's status.
//!
//! Owns the wire side only; it must not start or stop the process (the parent module does).

use bytes::Bytes;
use tokio::net::TcpStream;

use super::{GatewayProc, ROUTING_KEY};
use crate::support::deadline::secs;

/// What the gateway answered: the `grpc-status` code and `grpc-message`.
#[derive(Debug)]
pub struct RawStatus {
    pub code: i32,
    /// Shown by `Debug` in assertion messages.
    #[allow(dead_code)]
    pub message: String,
}

impl GatewayProc {
    /// A Describe for `beamline` sent with the `grpc-timeout` header exactly as given
    /// (e.g. `0n`), on a fresh connection; the status from the response headers
    /// (trailers-only) or trailers. Bounded: a hang panics after 5 s.
    pub async fn describe_raw(&self, beamline: &str, grpc_timeout: &str) -> RawStatus {
        tokio::time::timeout(secs(5), self.describe_raw_unbounded(beamline, grpc_timeout))
            .await
            .unwrap_or_else(|_| panic!("a raw Describe (grpc-timeout {grpc_timeout}) hung 5 s"))
    }

    async fn describe_raw_unbounded(&self, beamline: &str, grpc_timeout: &str) -> RawStatus {
        let tcp = TcpStream::connect(self.addr)
            .await
            .expect("connect to gateway");
        let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = client.ready().await.expect("h2 connection ready");
        let request = http::Request::post(format!(
            "http://{}/beamline.v1.BeamlineAgent/Describe",
            self.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(ROUTING_KEY, beamline)
        .header("grpc-timeout", grpc_timeout)
        .body(())
        .expect("request");
        let (response, mut send) = client.send_request(request, false).expect("send headers");
        // An empty DescribeRequest: uncompressed, zero length. The gateway may answer (and
        // close the stream) before it reads the message, so a refused send is not a failure:
        // the response says what happened.
        let _ = send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true);
        let response = response.await.expect("response headers");
        let (parts, mut body) = response.into_parts();
        let status_in = |headers: &http::HeaderMap| {
            let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
            let message = headers
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .unwrap_or_default()
                .to_string();
            Some(RawStatus { code, message })
        };
        if let Some(status) = status_in(&parts.headers) {
            return status;
        }
        while let Some(data) = body.data().await {
            data.expect("response body");
        }
        let trailers = body
            .trailers()
            .await
            .expect("response trailers")
            .expect("a gRPC response ends with trailers");
        status_in(&trailers).expect("grpc-status in the trailers")
    }
}

/// The SETTINGS_MAX_CONCURRENT_STREAMS a server at `addr` advertises (`usize::MAX`: none),
/// read once its SETTINGS arrived (a PING's answer comes after them). Bounded: panics after 5 s.
pub async fn advertised_max_streams(addr: std::net::SocketAddr) -> usize {
    use std::future::Future;
    tokio::time::timeout(secs(5), async move {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (_client, mut connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        let mut ping = connection.ping_pong().expect("a ping handle");
        let pong = ping.ping(h2::Ping::opaque());
        let mut pong = std::pin::pin!(pong);
        std::future::poll_fn(|cx| {
            // Drive the connection while the PING is out.
            if let std::task::Poll::Ready(ended) = std::pin::Pin::new(&mut connection).poll(cx) {
                panic!("the connection ended before the PONG: {ended:?}");
            }
            pong.as_mut().poll(cx)
        })
        .await
        .expect("a PONG");
        connection.max_concurrent_send_streams()
    })
    .await
    .expect("the server answered within 5 s")
}
