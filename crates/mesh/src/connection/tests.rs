//! The connection against real sockets: a tonic health server on loopback, a port nothing
//! listens on, and a peer that accepts but never speaks HTTP/2.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::*;

fn settings() -> ConnectionSettings {
    ConnectionSettings {
        connect_timeout: Duration::from_millis(500),
        http2_keepalive: Duration::from_secs(10),
        unresponsive_after: Duration::from_secs(1),
    }
}

const BOUND: Duration = Duration::from_secs(5);

/// A tonic health server on `listener` ("svc" serving) that counts the connections it
/// accepts.
struct HealthServer {
    accepted: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthServer {
    /// Shuts down as an agent does: GOAWAY on its connections, then the listener closes.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(BOUND, &mut self.task)
            .await
            .expect("the server stops within the bound")
            .unwrap();
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_health(listener: TcpListener) -> HealthServer {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("svc", tonic_health::ServingStatus::Serving)
        .await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let incoming = TcpListenerStream::new(listener).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.await;
            })
            .await;
    });
    HealthServer {
        accepted,
        stop: Some(stop),
        task,
    }
}

async fn check(connection: &Connection) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(connection.clone());
    let request = HealthCheckRequest {
        service: "svc".into(),
    };
    let response = tokio::time::timeout(BOUND, client.check(request))
        .await
        .expect("a check answers within the bound")?;
    Ok(response.into_inner().status())
}

#[test]
fn requests_go_to_the_instance_whatever_origin_they_came_with() {
    let connection = Connection::new("127.0.0.1:7001", settings(), None).unwrap();
    for from in [
        "/beamline.v1.BeamlineAgent/Describe",
        "http://gateway:8080/beamline.v1.BeamlineAgent/Describe",
    ] {
        let uri = connection.shared.target(&from.parse().unwrap());
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:7001/beamline.v1.BeamlineAgent/Describe"
        );
    }
    assert!(Connection::new("not an address", settings(), None).is_none());
}

#[test]
fn forbidden_connection_headers_are_dropped_and_te_trailers_kept() {
    let mut headers = http::HeaderMap::new();
    headers.insert("connection", "keep-alive".parse().unwrap());
    headers.insert("keep-alive", "timeout=5".parse().unwrap());
    headers.insert("te", "trailers".parse().unwrap());
    headers.insert("x-beamline", "5.3.1".parse().unwrap());
    strip_connection_headers(&mut headers);
    assert!(headers.get("connection").is_none() && headers.get("keep-alive").is_none());
    assert_eq!(headers["te"], "trailers");
    assert_eq!(headers["x-beamline"], "5.3.1");
    headers.insert("te", "gzip".parse().unwrap());
    strip_connection_headers(&mut headers);
    assert!(headers.get("te").is_none());
}

/// A call's future is allocated and moved once per call, so its size is a per-call cost: opening
/// a connection (TCP, TLS, the h2 handshake) is boxed apart, and the request's head is carried
/// once (6.3 KB in the release build with both inline, 536 bytes after). A bound with some
/// headroom, so that it does not creep back.
#[tokio::test]
async fn a_calls_future_stays_small() {
    let connection = Connection::new("127.0.0.1:9", settings(), None).expect("an authority");
    let sending = connection.send(http::Request::new(Body::empty()));
    let size = std::mem::size_of_val(&sending);
    assert!(size <= 1024, "the call's future is {size} bytes");
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    // A port nothing listens on: bind one, note it, close it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let mut connection = Connection::new(&addr, settings(), None).unwrap();
    let request = http::Request::builder()
        .uri("/beamline.v1.BeamlineAgent/Describe")
        .body(Body::empty())
        .unwrap();
    let error = tokio::time::timeout(BOUND, connection.call(request))
        .await
        .expect("a refused connect answers at once")
        .unwrap_err();
    assert!(
        matches!(error, ConnectionError::Connect { .. }),
        "{error:?}"
    );
    assert!(never_sent(&error), "{error:?}");
}

#[tokio::test]
async fn unary_and_streaming_calls_share_one_connection_opened_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = serve_health(listener).await;
    let connection = Connection::new(&addr, settings(), None).unwrap();

    // Sixteen first calls at once: one connect, shared.
    let calls = (0..16).map(|_| check(&connection));
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer.unwrap(), ServingStatus::Serving);
    }
    // A stream on the same connection: its first message arrives.
    let mut client = HealthClient::new(connection.clone());
    let request = HealthCheckRequest {
        service: "svc".into(),
    };
    let mut watch = tokio::time::timeout(BOUND, client.watch(request))
        .await
        .unwrap()
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(BOUND, watch.message())
        .await
        .unwrap()
        .unwrap()
        .expect("a first status");
    assert_eq!(first.status(), ServingStatus::Serving);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_closed_by_the_instance_is_reopened_by_the_next_call() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_health(listener).await;
    let connection = Connection::new(&addr.to_string(), settings(), None).unwrap();
    assert_eq!(check(&connection).await.unwrap(), ServingStatus::Serving);

    // The instance restarts on the same port.
    server.stop().await;
    let deadline = tokio::time::Instant::now() + BOUND;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%e, "port not free yet");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("rebinding {addr}: {e}"),
        }
    };
    let server = serve_health(listener).await;
    // The old connection's end may be noticed by the first call (which then reconnects) or
    // before it; either way a call succeeds on a new connection, within the bound.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match check(&connection).await {
            Ok(status) => {
                assert_eq!(status, ServingStatus::Serving);
                break;
            }
            Err(status) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%status, "call during the restart");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("no call succeeded after the restart: {status}"),
        }
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unanswered_ping_closes_the_connection_and_fails_its_calls() {
    // A peer that accepts and reads, but never speaks HTTP/2: no SETTINGS, no PONG.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let silent = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut socket, &mut sink).await;
    });
    let connection = Connection::new(
        &addr,
        ConnectionSettings {
            connect_timeout: Duration::from_millis(500),
            http2_keepalive: Duration::from_millis(100),
            unresponsive_after: Duration::from_millis(100),
        },
        None,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let status = check(&connection).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "failed after {:?}, not within ~2 keepalive periods",
        started.elapsed()
    );
    assert_ne!(status.code(), tonic::Code::Ok);
    silent.abort();
}

/// A request body whose message is not there at the first poll: the connection must write
/// the headers, then pipe the message when it comes.
struct LateMessage {
    message: Option<Bytes>,
    polled: bool,
}

impl http_body::Body for LateMessage {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        if !self.polled {
            self.polled = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.message.take().map(|m| Ok(http_body::Frame::data(m))))
    }
}

#[tokio::test]
async fn a_body_not_ready_at_once_is_piped_when_it_comes() {
    use http_body_util::BodyExt;
    use prost::Message;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _server = serve_health(listener).await;
    let mut connection = Connection::new(&addr, settings(), None).unwrap();

    let message = HealthCheckRequest {
        service: "svc".into(),
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let request = http::Request::builder()
        .method("POST")
        .uri("/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::new(LateMessage {
            message: Some(Bytes::from(framed)),
            polled: false,
        }))
        .unwrap();
    let response = tokio::time::timeout(BOUND, connection.call(request))
        .await
        .expect("an answer within the bound")
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let collected = tokio::time::timeout(BOUND, response.into_body().collect())
        .await
        .expect("the whole body within the bound")
        .unwrap();
    let trailers = collected.trailers().cloned().expect("gRPC trailers");
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    let data = collected.to_bytes();
    let answer =
        tonic_health::pb::HealthCheckResponse::decode(data.get(5..).expect("a framed message"))
            .unwrap();
    assert_eq!(answer.status(), ServingStatus::Serving);
}

/// A TCP proxy to `upstream` that can be frozen: while frozen it forwards nothing either way
/// (an instance under SIGSTOP: its sockets accept, nothing answers).
struct FreezableProxy {
    addr: String,
    frozen: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn freezable_proxy(upstream: String) -> FreezableProxy {
    use std::sync::atomic::AtomicBool;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let frozen = Arc::new(AtomicBool::new(false));
    let flag = frozen.clone();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut from, mut to, frozen) in [
                (
                    Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    flag.clone(),
                ),
                (Box::new(sr), Box::new(cw), flag.clone()),
            ] {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let Ok(n) = from.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        // Frozen: hold what came until thawed (bounded wait per poll).
                        while frozen.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    FreezableProxy { addr, frozen, task }
}

#[tokio::test]
async fn a_frozen_instance_fails_the_calls_in_flight_within_the_unresponsive_bound() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap().to_string();
    let _server = serve_health(listener).await;
    let proxy = freezable_proxy(upstream).await;
    let connection = Connection::new(
        &proxy.addr,
        ConnectionSettings {
            connect_timeout: Duration::from_millis(500),
            // Keepalive alone would take 20 s to notice.
            http2_keepalive: Duration::from_secs(10),
            unresponsive_after: Duration::from_millis(400),
        },
        None,
    )
    .unwrap();
    // A call on a path that is not the health watch, answered UNIMPLEMENTED while all is well.
    let call = |connection: Connection| async move {
        let request = http::Request::builder()
            .method("POST")
            .uri("/beamline.v1.BeamlineAgent/Describe")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Body::new(http_body_util::Full::new(Bytes::from_static(&[
                0, 0, 0, 0, 0,
            ]))))
            .unwrap();
        tower::ServiceExt::oneshot(connection, request).await
    };
    call(connection.clone())
        .await
        .expect("answered while thawed");

    proxy.frozen.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(BOUND, call(connection.clone()))
        .await
        .expect("the call ends within the bound: the connection is closed, not waited on");
    assert!(
        result.is_err(),
        "a call to a frozen instance cannot succeed"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "failed after {:?} (unresponsive after 400 ms)",
        started.elapsed()
    );

    // Thawed: the next call reconnects and is answered.
    proxy.frozen.store(false, Ordering::SeqCst);
    tokio::time::timeout(BOUND, call(connection.clone()))
        .await
        .expect("answered within the bound")
        .expect("answered once thawed");
}

/// An instance that dies mid-response (its connection closes after the headers and a first
/// message, before the trailers): the caller's body fails UNAVAILABLE, saying it broke off, not
/// with the INTERNAL "h2 protocol error" tonic would make of it.
#[tokio::test]
async fn a_response_cut_off_by_a_dying_instance_fails_unavailable() {
    use http_body_util::BodyExt;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut h2 = h2::server::handshake(socket).await.unwrap();
        let (_request, mut respond) = h2.accept().await.unwrap().unwrap();
        let response = http::Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let mut stream = respond.send_response(response, false).unwrap();
        stream
            .send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false)
            .unwrap();
        // Flush what was written, then drop the connection without trailers or GOAWAY.
        let _ = tokio::time::timeout(Duration::from_millis(200), h2.accept()).await;
    });
    let mut connection = Connection::new(&addr, settings(), None).unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri("/beamline.v1.BeamlineAgent/Subscribe")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::new(http_body_util::Full::new(Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ]))))
        .unwrap();
    let response = tokio::time::timeout(BOUND, connection.call(request))
        .await
        .expect("response headers within the bound")
        .unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(BOUND, body.frame())
        .await
        .expect("a first frame within the bound")
        .expect("a frame")
        .expect("the first message arrives whole");
    assert!(first.is_data());
    server.await.unwrap();
    let error = tokio::time::timeout(BOUND, body.frame())
        .await
        .expect("the break is seen within the bound")
        .expect("an error, not the end of the body")
        .expect_err("the body breaks off");
    let status = tonic::Status::from_error(error.into());
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("broke off"), "{status:?}");
}
