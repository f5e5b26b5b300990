//! The gateway process: starts the real `beamline-mesh gateway --insecure-no-auth` (or with
//! `--auth-file`) against a registry, reads its listening line against a deadline, and always
//! kills it on drop (printing its stderr when a test panics). Runs with
//! `RUST_LOG=beamline_mesh=debug` so a failing scenario shows the mesh's routing decisions. Also
//! opens real tonic clients to it and builds requests that carry the `x-beamline` routing key.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::DescribeRequest;
use tonic::transport::{Channel, Endpoint};

use super::agent::{wait_passing, AgentProc};
use super::{follow_stdout, poll_until, secs, tail, Registry, POLL_INTERVAL, START_TIMEOUT};

/// The gRPC metadata key the gateway routes by.
pub const ROUTING_KEY: &str = "x-beamline";

/// Options for starting `beamline-mesh gateway`.
pub struct GatewayBuilder {
    consul: String,
    extra: Vec<String>,
    log: String,
    /// Flags before the `gateway` subcommand (e.g. `--log-format json`).
    global: Vec<String>,
    /// `--insecure-no-auth` unless an auth file is given.
    no_auth: bool,
}

impl GatewayBuilder {
    /// `--failfast DURATION` (e.g. "1s").
    pub fn failfast(self, d: &str) -> Self {
        self.arg("--failfast", d)
    }

    /// One more `--flag value`.
    pub fn arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.extra.push(flag.to_string());
        self.extra.push(value.to_string());
        self
    }

    /// A flag without a value (e.g. `--allow-plaintext`).
    pub fn flag(mut self, flag: &str) -> Self {
        self.extra.push(flag.to_string());
        self
    }

    /// `--auth-file FILE` instead of `--insecure-no-auth`.
    pub fn auth_file(mut self, file: impl AsRef<std::path::Path>) -> Self {
        self.no_auth = false;
        self.arg("--auth-file", file.as_ref().display())
    }

    /// A global `--flag value` of `beamline-mesh`, placed before `gateway`.
    pub fn global_arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.global.push(flag.to_string());
        self.global.push(value.to_string());
        self
    }

    /// RUST_LOG of the gateway (default `info,beamline_mesh=debug`).
    pub fn log(mut self, filter: &str) -> Self {
        self.log = filter.to_string();
        self
    }

    /// Starts the gateway and waits (bounded) for `gateway listening on HOST:PORT`.
    pub fn start(self) -> GatewayProc {
        let mut args = self.global.clone();
        args.extend([
            "gateway".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--consul".into(),
            self.consul.clone(),
        ]);
        if self.no_auth {
            args.push("--insecure-no-auth".into());
        }
        args.extend(self.extra.iter().cloned());
        let work = tempfile::Builder::new()
            .prefix("beamline-gateway-test-")
            .tempdir()
            .expect("create temp dir for the gateway");
        let stderr_path = work.path().join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create gateway stderr log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_beamline-mesh"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("CONSUL_HTTP_TOKEN")
            .env("RUST_LOG", &self.log)
            .spawn()
            .expect("spawn beamline-mesh gateway");
        let stdout = child.stdout.take().expect("gateway stdout");
        let extra_stdout = Arc::new(Mutex::new(Vec::new()));
        let rx = follow_stdout(stdout, Arc::clone(&extra_stdout));
        let mut gateway = GatewayProc {
            child: Some(child),
            addr: "127.0.0.1:0".parse().unwrap(),
            args,
            stderr_path,
            _work: work,
            extra_stdout,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => gateway.fail_start(&format!("{e}")),
            Err(_) => gateway.fail_start(&format!("no listening line within {START_TIMEOUT:?}")),
        };
        let Some(hostport) = line.strip_prefix("gateway listening on ") else {
            gateway.fail_start(&format!("unexpected first stdout line {line:?}"))
        };
        let hostport = hostport.trim();
        let hostport = hostport.strip_prefix("https://").unwrap_or(hostport);
        let addr: SocketAddr = match hostport.parse() {
            Ok(addr) => addr,
            Err(e) => gateway.fail_start(&format!("cannot parse address in {line:?}: {e}")),
        };
        if addr.port() == 0 {
            gateway.fail_start(&format!("printed port 0: {line:?}"));
        }
        gateway.addr = addr;
        gateway
    }
}

/// A running `beamline-mesh gateway` child process. Killed (and reaped) on drop.
pub struct GatewayProc {
    child: Option<Child>,
    pub addr: SocketAddr,
    args: Vec<String>,
    stderr_path: PathBuf,
    _work: tempfile::TempDir,
    /// Lines printed on stdout after the listening line.
    extra_stdout: Arc<Mutex<Vec<String>>>,
}

impl GatewayProc {
    /// A gateway over `registry` with default options.
    pub fn start(registry: &Registry) -> GatewayProc {
        Self::builder(registry).start()
    }

    pub fn builder(registry: &Registry) -> GatewayBuilder {
        GatewayBuilder {
            consul: registry.addr.to_string(),
            extra: Vec::new(),
            log: "info,beamline_mesh=debug".to_string(),
            global: Vec::new(),
            no_auth: true,
        }
    }

    fn fail_start(&mut self, why: &str) -> ! {
        self.kill_child();
        panic!(
            "gateway (args {:?}) failed to start: {why}\n--- stderr ---\n{}",
            self.args,
            tail(&self.stderr(), 6000)
        );
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://HOST:PORT` of the gateway.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the gateway wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits (bounded) for a stdout line after the listening line that starts with `prefix`;
    /// returns the rest of it.
    pub async fn wait_stdout_line(&self, prefix: &str, timeout: Duration) -> String {
        let found = super::poll_for(timeout, &format!("a stdout line {prefix:?}"), async || {
            let lines = self.extra_stdout.lock().unwrap();
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix).map(|rest| rest.trim().to_string()))
        })
        .await;
        found
    }

    /// The last `max` bytes of stderr (for assertion messages).
    pub fn stderr_tail(&self, max: usize) -> String {
        tail(&self.stderr(), max).to_string()
    }

    /// A new connection to the gateway.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.endpoint())
            .expect("gateway endpoint")
            .connect_timeout(secs(5))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to gateway {}: {e:?}", self.addr))
    }

    /// A real tonic `BeamlineAgent` client to the gateway over a fresh connection. Requests
    /// need the routing key: build them with [`to`].
    pub async fn client(&self) -> BeamlineAgentClient<Channel> {
        BeamlineAgentClient::new(self.channel().await)
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let running = self.child.is_some();
        self.kill_child();
        if std::thread::panicking() {
            eprintln!(
                "--- gateway {} (was running: {running}) stderr (tail) ---\n{}\n--- end of gateway stderr ---",
                self.addr,
                tail(&self.stderr(), 12000)
            );
        }
    }
}

/// `message` as a request for `beamline` (the `x-beamline` metadata set).
pub fn to<T>(beamline: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        ROUTING_KEY,
        beamline.parse().expect("beamline as a metadata value"),
    );
    request
}

/// [`to`] with a caller deadline (sent as `grpc-timeout`).
pub fn to_with_timeout<T>(beamline: &str, message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = to(beamline, message);
    request.set_timeout(timeout);
    request
}

// ---------------------------------------------------------------------------------------------
// A registry, N agents of one beamline and a gateway
// ---------------------------------------------------------------------------------------------

/// Consul service name of a beamline (`5.3.1` → `beamline-5-3-1`).
pub fn service_name(beamline: &str) -> String {
    format!("beamline-{}", beamline.to_lowercase().replace('.', "-"))
}

/// A registry, `n` demo agents of one beamline (passing in Consul, FAST intervals) and a
/// gateway that has seen every one of them answer. Fields drop in order: gateway, agents,
/// registry.
pub struct Cluster {
    pub gateway: GatewayProc,
    pub agents: Vec<AgentProc>,
    /// Instance id of `agents[i]`.
    pub ids: Vec<String>,
    pub beamline: String,
    pub registry: Registry,
}

/// Starts an agent of `beamline` in `registry` (drain grace 500ms) and waits until it is passing
/// in Consul; returns it with its instance id and when it was first seen passing.
pub async fn start_agent(registry: &Registry, beamline: &str) -> (AgentProc, String, Instant) {
    let agent = AgentProc::builder(beamline)
        .registry(registry)
        .arg("--drain-grace", "500ms")
        .start();
    let id = agent
        .client()
        .await
        .describe(DescribeRequest {})
        .await
        .unwrap_or_else(|e| panic!("direct Describe of agent {}: {e:?}", agent.addr))
        .into_inner()
        .instance_id;
    wait_passing(registry, &service_name(beamline), &id, secs(10)).await;
    (agent, id, Instant::now())
}

impl Cluster {
    /// `n` agents of `beamline`, and a gateway built by `gateway` from a builder over the
    /// registry; returns once a Describe through the gateway has reached every agent.
    pub async fn start(
        beamline: &str,
        n: usize,
        gateway: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> Cluster {
        let registry = Registry::start();
        let started =
            futures::future::join_all((0..n).map(|_| start_agent(&registry, beamline))).await;
        let (agents, ids): (Vec<AgentProc>, Vec<String>) =
            started.into_iter().map(|(a, id, _)| (a, id)).unzip();
        let gateway = gateway(GatewayProc::builder(&registry)).start();
        let cluster = Cluster {
            gateway,
            agents,
            ids,
            beamline: beamline.to_string(),
            registry,
        };
        cluster.wait_all_reached(secs(10)).await;
        cluster
    }

    /// Polls Describe through the gateway until every id in `self.ids` has answered.
    pub async fn wait_all_reached(&self, timeout: Duration) {
        let mut client = self.gateway.client().await;
        let mut seen = BTreeSet::new();
        let want: BTreeSet<String> = self.ids.iter().cloned().collect();
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        while !want.is_subset(&seen) {
            if Instant::now() >= deadline {
                panic!(
                    "Describe through the gateway reached {seen:?}, not all of {want:?}, within \
                     {timeout:?}; last error {last_error:?}"
                );
            }
            match describe(&mut client, &self.beamline).await {
                Ok(id) => {
                    seen.insert(id);
                }
                Err(status) => {
                    last_error = Some(status);
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            }
        }
    }
}

/// Describe through the gateway; the answering instance's id. Bounded by [`CALL_BOUND`] (a
/// hang is reported as a DEADLINE_EXCEEDED made up here, saying so).
pub async fn describe(
    client: &mut BeamlineAgentClient<Channel>,
    beamline: &str,
) -> Result<String, tonic::Status> {
    match tokio::time::timeout(
        CALL_BOUND,
        client.describe(to(beamline, DescribeRequest {})),
    )
    .await
    {
        Ok(result) => result.map(|r| r.into_inner().instance_id),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "TEST: no answer through the gateway within {CALL_BOUND:?}"
        ))),
    }
}

/// The longest a test lets one unary call take before it counts it as hung.
pub const CALL_BOUND: Duration = Duration::from_secs(10);

/// One call of a [`Load`].
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub worker: usize,
    pub started: Instant,
    pub finished: Instant,
    /// The answering instance id, or the status.
    pub result: Result<String, tonic::Status>,
}

/// Concurrent callers doing Describe through the gateway in a loop (each on its own
/// connection, paced by `pause`) until stopped, recording every call.
pub struct Load {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<CallRecord>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub async fn start(
        gateway: &GatewayProc,
        beamline: &str,
        workers: usize,
        pause: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for worker in 0..workers {
            let mut client = gateway.client().await;
            let stop = Arc::clone(&stop);
            let records = Arc::clone(&records);
            let beamline = beamline.to_string();
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = describe(&mut client, &beamline).await;
                    let finished = Instant::now();
                    records.lock().unwrap().push(CallRecord {
                        worker,
                        started,
                        finished,
                        result,
                    });
                    tokio::time::sleep(pause).await;
                }
            }));
        }
        Load {
            stop,
            records,
            tasks,
        }
    }

    /// Every call finished so far.
    pub fn records(&self) -> Vec<CallRecord> {
        self.records.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// Waits (polling) until at least `n` calls have finished.
    pub async fn wait_calls(&self, n: usize, timeout: Duration) {
        poll_until(
            timeout,
            &format!("{n} calls of the load to finish"),
            async || self.len(),
            |len| *len >= n,
        )
        .await;
    }

    /// Stops the callers, waits for their last calls, and returns every record.
    pub async fn stop(self) -> Vec<CallRecord> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load worker panicked");
        }
        let records = self.records.lock().unwrap().clone();
        records
    }
}

/// The failed calls of `records`, for an assertion message.
pub fn failures(records: &[CallRecord]) -> Vec<&CallRecord> {
    records.iter().filter(|r| r.result.is_err()).collect()
}

/// Calls answered per instance id.
pub fn per_instance(records: &[CallRecord]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        if let Ok(id) = &r.result {
            *counts.entry(id.clone()).or_insert(0) += 1;
        }
    }
    counts
}
