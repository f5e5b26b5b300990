//! Servers inside the test process for the registry's checkers to probe: HTTP (status and delay
//! switchable at runtime), TCP, and gRPC health (plain or TLS), plus an address nobody listens on.
//! Each server is stopped on drop.
//!
//! Owns these servers only; it must not talk to the registry.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct HttpState {
    status: u16,
    delay: Duration,
    hits: u64,
    last_method: String,
    last_headers: Vec<(String, String)>,
}

/// A real HTTP server (axum) on 127.0.0.1:0 answering every path with a status that can be
/// switched at runtime. Stopped on drop.
pub struct HttpTarget {
    pub addr: SocketAddr,
    state: Arc<Mutex<HttpState>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpTarget {
    pub async fn start(status: u16) -> HttpTarget {
        use axum::extract::{Request, State};
        use axum::response::IntoResponse;

        async fn handler(
            State(state): State<Arc<Mutex<HttpState>>>,
            req: Request,
        ) -> axum::response::Response {
            let (status, delay) = {
                let mut s = state.lock().unwrap();
                s.hits += 1;
                s.last_method = req.method().to_string();
                s.last_headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                (s.status, s.delay)
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let code = axum::http::StatusCode::from_u16(status).unwrap();
            (code, format!("test target says {status}")).into_response()
        }

        let state = Arc::new(Mutex::new(HttpState {
            status,
            delay: Duration::ZERO,
            hits: 0,
            last_method: String::new(),
            last_headers: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test HTTP server");
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handler)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpTarget { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set_status(&self, status: u16) {
        let mut s = self.state.lock().unwrap();
        s.status = status;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn hits(&self) -> u64 {
        self.state.lock().unwrap().hits
    }

    pub fn last_method(&self) -> String {
        self.state.lock().unwrap().last_method.clone()
    }

    pub fn last_header(&self, name: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .last_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

impl Drop for HttpTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real TCP listener on 127.0.0.1:0 that accepts (and closes) connections until stopped.
pub struct TcpTarget {
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TcpTarget {
    pub async fn start() -> TcpTarget {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test TCP server");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        TcpTarget {
            addr,
            task: Some(task),
        }
    }

    /// Stop accepting: the listening socket is closed, so connects are refused.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for TcpTarget {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// An address on which nothing listens (bound once, then closed).
pub fn closed_port_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// A real tonic gRPC server with tonic-health's reporter on 127.0.0.1:0. The whole server ("")
/// starts SERVING. Stopped on drop.
pub struct GrpcTarget {
    pub addr: SocketAddr,
    reporter: tonic_health::server::HealthReporter,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcTarget {
    pub async fn start() -> GrpcTarget {
        Self::start_inner(false).await
    }

    /// The same, serving TLS with a fresh self-signed certificate for localhost/127.0.0.1 (so a
    /// client must skip verification to accept it).
    pub async fn start_tls() -> GrpcTarget {
        Self::start_inner(true).await
    }

    async fn start_inner(tls: bool) -> GrpcTarget {
        let (reporter, service) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test gRPC server");
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let mut builder = tonic::transport::Server::builder();
        if tls {
            let ck = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .expect("self-signed certificate");
            let identity =
                tonic::transport::Identity::from_pem(ck.cert.pem(), ck.signing_key.serialize_pem());
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .expect("server TLS config");
        }
        let task = tokio::spawn(async move {
            let _ = builder
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        GrpcTarget {
            addr,
            reporter,
            task,
        }
    }

    /// Set the serving status of `service` ("" = the whole server).
    pub async fn set(&self, service: &str, serving: bool) {
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        self.reporter.set_service_status(service, status).await;
    }
}

impl Drop for GrpcTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}
