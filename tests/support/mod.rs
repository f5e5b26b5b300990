//! The one end-to-end harness: starts the real `beamline-mesh` binary on a free port, speaks HTTP
//! to it, and always kills it (Drop). Also starts real HTTP, TCP and gRPC-health servers inside the
//! test process for the registry's checkers to probe.
//!
//! Every wait is bounded: process start has a deadline, every HTTP request has a timeout, and
//! conditions are polled with [`poll_until`] / [`poll_for`] against a deadline (never a blind sleep).
//!
//! Each file in tests/ compiles this module separately, so items one file does not use are allowed.
#![allow(dead_code)]

pub mod agent;
pub mod cli;
pub mod gateway;
pub mod policy;

use std::fmt::Debug;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How long the binary may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Timeout of an ordinary (non-blocking) request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Interval between two polls of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------------------------------------
// The registry process
// ---------------------------------------------------------------------------------------------

/// Options for starting `beamline-mesh registry`.
#[derive(Default)]
pub struct RegistryBuilder {
    data_dir: Option<PathBuf>,
    persistent: bool,
    datacenter: Option<String>,
    node_name: Option<String>,
    acl_token: Option<String>,
    send_token: bool,
    listen: Option<SocketAddr>,
}

impl RegistryBuilder {
    /// Use a fresh temporary `--data-dir`, owned by the [`Registry`] (kept across restarts).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Use this `--data-dir`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    pub fn datacenter(mut self, dc: &str) -> Self {
        self.datacenter = Some(dc.to_string());
        self
    }

    pub fn node_name(mut self, name: &str) -> Self {
        self.node_name = Some(name.to_string());
        self
    }

    /// Start with `--acl-token TOKEN`. The helpers do NOT send it unless [`Self::send_token`]
    /// is also called; [`Registry::request_with`] lets a test choose per request.
    pub fn acl_token(mut self, token: &str) -> Self {
        self.acl_token = Some(token.to_string());
        self
    }

    /// Make the helpers send the ACL token (as X-Consul-Token) on every request.
    pub fn send_token(mut self) -> Self {
        self.send_token = true;
        self
    }

    /// Listen on this address (default `127.0.0.1:0`); a fixed port is kept across restarts.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    pub fn start(self) -> Registry {
        let work = tempfile::Builder::new()
            .prefix("beamline-registry-test-")
            .tempdir()
            .expect("create temp dir for the registry");
        let data_dir = match (self.data_dir, self.persistent) {
            (Some(dir), _) => Some(dir),
            (None, true) => Some(work.path().join("data")),
            (None, false) => None,
        };
        let listen = self
            .listen
            .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        let mut args: Vec<String> = vec!["registry".into(), "--listen".into(), listen];
        if let Some(dir) = &data_dir {
            args.push("--data-dir".into());
            args.push(dir.display().to_string());
        }
        if let Some(dc) = &self.datacenter {
            args.push("--datacenter".into());
            args.push(dc.clone());
        }
        if let Some(node) = &self.node_name {
            args.push("--node-name".into());
            args.push(node.clone());
        }
        if let Some(token) = &self.acl_token {
            args.push("--acl-token".into());
            args.push(token.clone());
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(secs(5))
            .build()
            .expect("build reqwest client");
        let mut registry = Registry {
            child: None,
            base: String::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
            args,
            work,
            data_dir,
            client,
            token: if self.send_token {
                self.acl_token.clone()
            } else {
                None
            },
            acl_token: self.acl_token,
            starts: 0,
            extra_stdout: Arc::new(Mutex::new(Vec::new())),
        };
        registry.spawn();
        registry
    }
}

/// A running `beamline-mesh registry` child process. Killed (and reaped) on drop.
pub struct Registry {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`, as printed by the binary.
    pub base: String,
    pub addr: SocketAddr,
    args: Vec<String>,
    work: tempfile::TempDir,
    data_dir: Option<PathBuf>,
    client: reqwest::Client,
    /// Token the helpers send, if any.
    token: Option<String>,
    /// The `--acl-token` the registry was started with, if any.
    pub acl_token: Option<String>,
    starts: usize,
    /// Lines the binary printed on stdout after the listening line (should stay empty).
    extra_stdout: Arc<Mutex<Vec<String>>>,
}

impl Registry {
    /// A registry with default options (no data dir, no ACL).
    pub fn start() -> Registry {
        RegistryBuilder::default().start()
    }

    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    fn stderr_path(&self, n: usize) -> PathBuf {
        self.work.path().join(format!("stderr-{n}.log"))
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "registry already running");
        self.starts += 1;
        let stderr_path = self.stderr_path(self.starts);
        let stderr = File::create(&stderr_path).expect("create stderr log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_beamline-mesh"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn beamline-mesh registry");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<std::io::Result<String>>();
        let extra = Arc::clone(&self.extra_stdout);
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            match lines.next() {
                Some(line) => {
                    let _ = tx.send(line);
                }
                None => {
                    let _ = tx.send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "stdout closed before the listening line",
                    )));
                    return;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for line in lines.map_while(Result::ok) {
                extra.lock().unwrap().push(line);
            }
        });
        // Kept in `self` at once so that a failed start still kills the child.
        self.child = Some(child);
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => self.fail_start(&format!("{e}")),
            Err(_) => self.fail_start(&format!("no listening line within {START_TIMEOUT:?}")),
        };
        let Some(url) = line.strip_prefix("registry listening on ") else {
            self.fail_start(&format!("unexpected first stdout line {line:?}"))
        };
        let Some(hostport) = url.strip_prefix("http://") else {
            self.fail_start(&format!("listening URL is not http://…: {line:?}"))
        };
        let addr: SocketAddr = match hostport.trim_end_matches('/').parse() {
            Ok(addr) => addr,
            Err(e) => self.fail_start(&format!("cannot parse address in {line:?}: {e}")),
        };
        if addr.port() == 0 {
            self.fail_start(&format!("printed port 0: {line:?}"));
        }
        self.addr = addr;
        self.base = format!("http://{addr}");
    }

    fn fail_start(&mut self, why: &str) -> ! {
        self.kill_child();
        panic!(
            "registry (args {:?}) failed to start: {why}\n--- stderr ---\n{}",
            self.args,
            self.stderr()
        );
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
        }
    }

    /// kill -9 the registry (and reap it). The data dir, if any, is kept.
    pub fn kill9(&mut self) {
        let child = self.child.as_mut().expect("registry is not running");
        child.kill().expect("SIGKILL the registry");
        child.wait().expect("reap the registry");
        self.child = None;
    }

    /// Start the registry again with the same arguments (same --data-dir; a new port).
    pub fn restart(&mut self) {
        self.kill_child();
        self.spawn();
    }

    /// Whether the child process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// Everything the current (last started) process wrote on stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path(self.starts)).unwrap_or_default()
    }

    /// Lines printed on stdout after the listening line.
    pub fn extra_stdout(&self) -> Vec<String> {
        self.extra_stdout.lock().unwrap().clone()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    // -- HTTP -----------------------------------------------------------------------------------

    /// One request; `headers` are added as given; the helper token (if any) is added unless a
    /// header already carries a token. `timeout` bounds the whole exchange.
    pub async fn request_full(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
        send_token: bool,
        timeout: Duration,
    ) -> Resp {
        let mut req = self
            .client
            .request(method.clone(), self.url(path_and_query))
            .timeout(timeout);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if send_token {
            if let Some(token) = &self.token {
                req = req.header("X-Consul-Token", token);
            }
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let sent_at = Instant::now();
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => panic!(
                "{method} {path_and_query} failed: {e:?}\n--- registry stderr (tail) ---\n{}",
                tail(&self.stderr(), 4000)
            ),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => panic!("{method} {path_and_query}: reading body failed: {e:?}"),
        };
        let received_at = Instant::now();
        Resp {
            what: format!("{method} {path_and_query}"),
            status,
            headers,
            body,
            sent_at,
            received_at,
        }
    }

    /// A request with the helper token (if any) and extra headers.
    pub async fn request_with(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.request_full(method, path_and_query, body, headers, true, REQUEST_TIMEOUT)
            .await
    }

    /// A request that never carries the helper token (for ACL tests).
    pub async fn request_no_token(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.request_full(
            method,
            path_and_query,
            body,
            headers,
            false,
            REQUEST_TIMEOUT,
        )
        .await
    }

    pub async fn get(&self, path_and_query: &str) -> Resp {
        self.request_with(Method::GET, path_and_query, None, &[])
            .await
    }

    /// A GET that may block (a blocking query); `timeout` bounds it on the client side.
    pub async fn get_blocking(&self, path_and_query: &str, timeout: Duration) -> Resp {
        self.request_full(Method::GET, path_and_query, None, &[], true, timeout)
            .await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path_and_query: &str, body: &Value) -> Resp {
        self.request_with(
            Method::PUT,
            path_and_query,
            Some(serde_json::to_vec(body).unwrap()),
            &[],
        )
        .await
    }

    /// PUT with raw bytes as the body.
    pub async fn put_bytes(&self, path_and_query: &str, body: impl Into<Vec<u8>>) -> Resp {
        self.request_with(Method::PUT, path_and_query, Some(body.into()), &[])
            .await
    }

    /// PUT with no body.
    pub async fn put_empty(&self, path_and_query: &str) -> Resp {
        self.request_with(Method::PUT, path_and_query, None, &[])
            .await
    }

    pub async fn delete(&self, path_and_query: &str) -> Resp {
        self.request_with(Method::DELETE, path_and_query, None, &[])
            .await
    }

    // -- Consul-shaped helpers -----------------------------------------------------------------

    /// PUT /v1/agent/service/register and assert 200.
    pub async fn register(&self, service: &Value) {
        self.put("/v1/agent/service/register", service)
            .await
            .expect_status(200);
    }

    /// PUT /v1/agent/service/deregister/:id and assert 200.
    pub async fn deregister(&self, id: &str) {
        self.put_empty(&format!("/v1/agent/service/deregister/{id}"))
            .await
            .expect_status(200);
    }

    /// GET /v1/agent/services (asserts 200).
    pub async fn services(&self) -> Value {
        self.get("/v1/agent/services")
            .await
            .expect_status(200)
            .json()
    }

    /// GET /v1/agent/checks (asserts 200).
    pub async fn checks(&self) -> Value {
        self.get("/v1/agent/checks").await.expect_status(200).json()
    }

    /// One check from /v1/agent/checks, if present.
    pub async fn check(&self, check_id: &str) -> Option<Value> {
        self.checks().await.get(check_id).cloned()
    }

    /// The Status of one check from /v1/agent/checks, if present.
    pub async fn check_status(&self, check_id: &str) -> Option<String> {
        self.check(check_id)
            .await
            .and_then(|c| c.get("Status").and_then(Value::as_str).map(str::to_string))
    }

    /// PUT /v1/agent/check/{pass,warn,fail}/:id[?note=] and assert 200.
    pub async fn ttl(&self, verb: &str, check_id: &str, note: Option<&str>) {
        let path = match note {
            Some(note) => format!("/v1/agent/check/{verb}/{check_id}?note={}", encode(note)),
            None => format!("/v1/agent/check/{verb}/{check_id}"),
        };
        self.put_empty(&path).await.expect_status(200);
    }

    /// GET /v1/health/service/:name with a query string (may be empty), asserting 200.
    pub async fn health_service(&self, name: &str, query: &str) -> Resp {
        let path = if query.is_empty() {
            format!("/v1/health/service/{name}")
        } else {
            format!("/v1/health/service/{name}?{query}")
        };
        self.get(&path).await.expect_status(200)
    }

    /// Wait until the check has `status` (as seen by /v1/agent/checks), or panic after `timeout`.
    pub async fn wait_check_status(&self, check_id: &str, status: &str, timeout: Duration) {
        let what = format!("check {check_id} to become {status}");
        poll_until(
            timeout,
            &what,
            async || self.check_status(check_id).await,
            |s| s.as_deref() == Some(status),
        )
        .await;
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let running = self.child.is_some();
        self.kill_child();
        if std::thread::panicking() && running {
            eprintln!(
                "--- registry {} stderr (tail) ---\n{}\n--- end of registry stderr ---",
                self.base,
                tail(&self.stderr(), 6000)
            );
        }
    }
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A complete HTTP response, with when it was sent and received.
#[derive(Debug, Clone)]
pub struct Resp {
    pub what: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub sent_at: Instant,
    pub received_at: Instant,
}

impl Resp {
    pub fn code(&self) -> u16 {
        self.status.as_u16()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}): {:?}",
                self.what,
                tail(&self.text(), 2000)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_string())
    }

    /// X-Consul-Index, parsed; panics if absent or not a number.
    pub fn index(&self) -> u64 {
        let raw = self.header("X-Consul-Index").unwrap_or_else(|| {
            panic!(
                "{}: no X-Consul-Index header ({:?})",
                self.what, self.headers
            )
        });
        raw.parse().unwrap_or_else(|e| {
            panic!("{}: X-Consul-Index {raw:?} is not a number: {e}", self.what)
        })
    }

    /// How long the request took, send to last body byte.
    pub fn elapsed(&self) -> Duration {
        self.received_at - self.sent_at
    }

    /// Assert the status code, showing the body on failure.
    #[track_caller]
    pub fn expect_status(self, code: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            code,
            "{}: expected {code}, got {} with body {:?}",
            self.what,
            self.status,
            tail(&self.text(), 2000)
        );
        self
    }

    /// Assert a 4xx/5xx status, and that it is not 2xx.
    #[track_caller]
    pub fn expect_error(self) -> Self {
        assert!(
            self.status.is_client_error() || self.status.is_server_error(),
            "{}: expected an error status, got {} with body {:?}",
            self.what,
            self.status,
            tail(&self.text(), 2000)
        );
        self
    }

    /// Assert the body contains `needle`.
    #[track_caller]
    pub fn expect_body_contains(self, needle: &str) -> Self {
        let text = self.text();
        assert!(
            text.contains(needle),
            "{}: body {:?} does not contain {needle:?}",
            self.what,
            tail(&text, 2000)
        );
        self
    }

    /// Assert the standard blocking-read headers: X-Consul-Index > 0, KnownLeader true.
    #[track_caller]
    pub fn expect_read_headers(self) -> Self {
        let index = self.index();
        assert!(index > 0, "{}: X-Consul-Index must never be 0", self.what);
        assert_eq!(
            self.header("X-Consul-KnownLeader").as_deref(),
            Some("true"),
            "{}: X-Consul-KnownLeader",
            self.what
        );
        self
    }
}

// ---------------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------------

/// The array at `v` (panics with the value if it is not an array).
pub fn arr(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {v}"))
}

/// `Service.ID` of each entry of a /v1/health/service answer, sorted.
pub fn service_ids(entries: &Value) -> Vec<String> {
    let mut ids: Vec<String> = arr(entries)
        .iter()
        .map(|e| {
            e["Service"]["ID"]
                .as_str()
                .unwrap_or_else(|| panic!("entry without Service.ID: {e}"))
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

/// The service-level checks (ServiceID non-empty) of a health/service entry or a list of
/// checks. Node-level checks (Consul's serfHealth, checks registered without a ServiceID) may
/// appear beside them, as in Consul.
pub fn service_checks(entry_or_list: &Value) -> Vec<Value> {
    let list = match entry_or_list.get("Checks") {
        Some(checks) => checks,
        None => entry_or_list,
    };
    arr(list)
        .iter()
        .filter(|c| c["ServiceID"].as_str().is_some_and(|s| !s.is_empty()))
        .cloned()
        .collect()
}

/// The check with this CheckID in a health/service entry or a list of checks.
pub fn find_check(entry_or_list: &Value, check_id: &str) -> Value {
    let list = match entry_or_list.get("Checks") {
        Some(checks) => checks,
        None => entry_or_list,
    };
    arr(list)
        .iter()
        .find(|c| c["CheckID"] == check_id)
        .cloned()
        .unwrap_or_else(|| panic!("no check {check_id} in {list}"))
}

/// Sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

// ---------------------------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------------------------

/// Calls `probe` until `pred` holds for its result, every [`POLL_INTERVAL`], for at most
/// `timeout`; returns the value that satisfied `pred`. Panics with the last value on timeout.
pub async fn poll_until<T, F, P>(timeout: Duration, what: &str, mut probe: F, pred: P) -> T
where
    T: Debug,
    F: AsyncFnMut() -> T,
    P: Fn(&T) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let value = probe().await;
        if pred(&value) {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last value: {value:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Calls `probe` until it returns `Some`, for at most `timeout`.
pub async fn poll_for<T, F>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: AsyncFnMut() -> Option<T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Servers in the test process, for the registry's checkers to probe
// ---------------------------------------------------------------------------------------------

struct HttpState {
    status: u16,
    delay: Duration,
    hits: u64,
    first_hit_at: Option<Instant>,
    /// Requests answered with the current status since it was last set.
    hits_since_change: u64,
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
                s.first_hit_at.get_or_insert_with(Instant::now);
                s.hits_since_change += 1;
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
            first_hit_at: None,
            hits_since_change: 0,
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
        s.hits_since_change = 0;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn hits(&self) -> u64 {
        self.state.lock().unwrap().hits
    }

    /// When the first request arrived, if any did.
    pub fn first_hit_at(&self) -> Option<Instant> {
        self.state.lock().unwrap().first_hit_at
    }

    pub fn hits_since_change(&self) -> u64 {
        self.state.lock().unwrap().hits_since_change
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
