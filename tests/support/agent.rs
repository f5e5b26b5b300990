//! The agent process: starts the real `beamline-mesh agent` (the demo agent on the agent runtime),
//! reads its listening line against a deadline, signals it (SIGTERM, SIGKILL), waits for its exit
//! with a deadline, and always kills it on drop. Also opens real tonic clients to it.
//!
//! Tests pass short intervals ([`FAST`]) so that health checks, keep-alive and drain take
//! fractions of a second.

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::{ExecuteRequest, Task, TaskEvent, TaskState};
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;
use tonic_health::pb::health_client::HealthClient;

use super::{follow_stdout, secs, tail, Registry, POLL_INTERVAL, START_TIMEOUT};

/// Short check, keep-alive and drain-grace intervals, so every scenario takes seconds.
pub const FAST: &[&str] = &[
    "--check-interval",
    "300ms",
    "--check-timeout",
    "300ms",
    "--keepalive",
    "300ms",
    "--drain-grace",
    "300ms",
];

/// The gRPC service name of the agent contract (as registered in tonic-health).
pub const AGENT_SERVICE: &str = "beamline.v1.BeamlineAgent";

/// Options for starting `beamline-mesh agent`.
pub struct AgentBuilder {
    beamline: String,
    consul: Option<String>,
    fast: bool,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl AgentBuilder {
    /// `--consul ADDR` (host:port or URL).
    pub fn consul(mut self, addr: impl ToString) -> Self {
        self.consul = Some(addr.to_string());
        self
    }

    /// `--consul` pointing at this registry.
    pub fn registry(self, registry: &Registry) -> Self {
        self.consul(registry.addr)
    }

    /// Do not pass [`FAST`] (the flags given with [`Self::arg`] still apply).
    pub fn default_intervals(mut self) -> Self {
        self.fast = false;
        self
    }

    /// One more `--flag value`; a flag of [`FAST`] given here replaces FAST's value.
    pub fn arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.extra.push(flag.to_string());
        self.extra.push(value.to_string());
        self
    }

    /// Set an environment variable of the agent (CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN are
    /// otherwise removed).
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "agent".to_string(),
            "--beamline".to_string(),
            self.beamline.clone(),
        ];
        if let Some(consul) = &self.consul {
            args.push("--consul".into());
            args.push(consul.clone());
        }
        if self.fast {
            // clap refuses a repeated flag, so a flag given with `arg` replaces FAST's.
            for pair in FAST.chunks(2) {
                if !self.extra.iter().any(|a| a == pair[0]) {
                    args.extend(pair.iter().map(|s| s.to_string()));
                }
            }
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts the agent and waits (bounded) for `agent beamline ID listening on HOST:PORT`.
    pub fn start(self) -> AgentProc {
        let args = self.args();
        let work = tempfile::Builder::new()
            .prefix("beamline-agent-test-")
            .tempdir()
            .expect("create temp dir for the agent");
        let stderr_path = work.path().join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create agent stderr log");
        let mut child = agent_command(&args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn beamline-mesh agent");
        let stdout = child.stdout.take().expect("agent stdout");
        let extra = Arc::new(Mutex::new(Vec::new()));
        let rx = follow_stdout(stdout, Arc::clone(&extra));
        let mut agent = AgentProc {
            child: Some(child),
            exit: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            beamline: self.beamline.clone(),
            args,
            stderr_path,
            _work: work,
            extra_stdout: extra,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => agent.fail_start(&format!("{e}")),
            Err(_) => agent.fail_start(&format!("no listening line within {START_TIMEOUT:?}")),
        };
        let prefix = format!("agent beamline {} listening on ", self.beamline);
        let Some(hostport) = line.strip_prefix(&prefix) else {
            agent.fail_start(&format!(
                "first stdout line {line:?} does not start with {prefix:?}"
            ))
        };
        let addr: SocketAddr = match hostport.trim().parse() {
            Ok(addr) => addr,
            Err(e) => agent.fail_start(&format!("cannot parse address in {line:?}: {e}")),
        };
        if addr.port() == 0 {
            agent.fail_start(&format!("printed port 0: {line:?}"));
        }
        agent.addr = addr;
        agent
    }
}

fn agent_command(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beamline-mesh"));
    cmd.args(args)
        .stdin(Stdio::null())
        // Only the flags configure Consul in these tests.
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env("RUST_LOG", "info");
    cmd
}

/// A running `beamline-mesh agent` child process. Killed (and reaped) on drop.
pub struct AgentProc {
    child: Option<Child>,
    exit: Option<ExitStatus>,
    /// The address from the listening line.
    pub addr: SocketAddr,
    pub beamline: String,
    args: Vec<String>,
    stderr_path: PathBuf,
    _work: tempfile::TempDir,
    extra_stdout: Arc<Mutex<Vec<String>>>,
}

impl AgentProc {
    pub fn builder(beamline: &str) -> AgentBuilder {
        AgentBuilder {
            beamline: beamline.to_string(),
            consul: None,
            fast: true,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    /// An agent of `beamline` registered in `registry`, with [`FAST`] intervals.
    pub fn start(beamline: &str, registry: &Registry) -> AgentProc {
        Self::builder(beamline).registry(registry).start()
    }

    fn fail_start(&mut self, why: &str) -> ! {
        self.kill_child();
        panic!(
            "agent (args {:?}) failed to start: {why}\n--- stderr ---\n{}",
            self.args,
            tail(&self.stderr(), 6000)
        );
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.exit = Some(status);
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent is not running").id()
    }

    /// `http://HOST:PORT` of the agent's gRPC server.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM (`kill -TERM <pid>`); does not wait.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// Sends SIGINT (`kill -INT <pid>`), as Ctrl-C would; does not wait.
    pub fn sigint(&self) {
        self.signal("INT");
    }

    fn signal(&self, name: &str) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("run kill -{name}: {e}"));
        assert!(status.success(), "kill -{name} {pid} failed: {status}");
    }

    /// kill -9 the agent and reap it.
    pub fn kill9(&mut self) {
        let child = self.child.as_mut().expect("agent is not running");
        child.kill().expect("SIGKILL the agent");
        let status = child.wait().expect("reap the agent");
        self.exit = Some(status);
        self.child = None;
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.exit = Some(status);
                self.child = None;
                false
            }
            Err(_) => false,
        }
    }

    /// The exit status once the process has exited (and been reaped by this helper).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.is_running();
        self.exit
    }

    /// Waits (polling, without blocking the runtime) for the process to exit; panics with its
    /// stderr after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "agent {} did not exit within {timeout:?}\n--- stderr (tail) ---\n{}",
                    self.addr,
                    tail(&self.stderr(), 6000)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Everything the agent wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Lines printed on stdout after the listening line.
    pub fn extra_stdout(&self) -> Vec<String> {
        self.extra_stdout.lock().unwrap().clone()
    }

    async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.endpoint())
            .expect("agent endpoint")
            .connect_timeout(secs(5))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to agent {}: {e:?}", self.addr))
    }

    /// A real tonic `BeamlineAgent` client over a fresh connection.
    pub async fn client(&self) -> BeamlineAgentClient<Channel> {
        BeamlineAgentClient::new(self.channel().await)
    }

    /// A real grpc.health.v1 client over a fresh connection.
    pub async fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel().await)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let running = self.child.is_some();
        self.kill_child();
        if std::thread::panicking() {
            eprintln!(
                "--- agent {} (was running: {running}) stderr (tail) ---\n{}\n--- end of agent stderr ---",
                self.addr,
                tail(&self.stderr(), 6000)
            );
        }
    }
}

/// What a process that was expected to exit by itself did.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `beamline-mesh <args>` to its exit, bounded by `timeout` (then it is killed and this
/// panics). For invocations that must fail at start.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> Exited {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_bounded(agent_command(&args), None, timeout)
}

/// Runs `command` to its exit with `stdin` (none: an empty input), collecting its output,
/// bounded by `timeout` (then it is killed and this panics).
pub fn run_bounded(mut command: Command, stdin: Option<&str>, timeout: Duration) -> Exited {
    let label = format!("{command:?}");
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn beamline-mesh");
    let writer = stdin.map(|data| {
        let mut input = child.stdin.take().expect("stdin");
        let data = data.to_string();
        // Dropping `input` at the end closes stdin.
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut input, data.as_bytes());
        })
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{label} did not exit within {timeout:?}");
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Exited {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// The agent as the registry sees it
// ---------------------------------------------------------------------------------------------

/// The entry of `/v1/health/service/<service>` (with `?passing` when `passing`) whose
/// `Service.ID` is `id`, if listed.
pub async fn health_entry(
    registry: &Registry,
    service: &str,
    id: &str,
    passing: bool,
) -> Option<serde_json::Value> {
    let query = if passing { "passing" } else { "" };
    let entries = registry.health_service(service, query).await.json();
    super::arr(&entries)
        .iter()
        .find(|e| e["Service"]["ID"] == id)
        .cloned()
}

/// Waits until instance `id` of `service` is listed with `?passing`; returns its entry.
pub async fn wait_passing(
    registry: &Registry,
    service: &str,
    id: &str,
    timeout: Duration,
) -> serde_json::Value {
    let what = format!("{id} to be listed in /v1/health/service/{service}?passing");
    super::poll_for(timeout, &what, async || {
        health_entry(registry, service, id, true).await
    })
    .await
}

/// Waits until instance `id` is not registered at all (GET /v1/agent/service/:id is 404).
pub async fn wait_gone(registry: &Registry, id: &str, timeout: Duration) {
    let path = format!("/v1/agent/service/{id}");
    super::poll_until(
        timeout,
        &format!("{id} to be deregistered"),
        async || registry.get(&path).await.code(),
        |code| *code == 404,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

/// How long one stream message may take to arrive in a test.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// JSON params → the `google.protobuf.Struct` of an ExecuteRequest.
pub fn params(v: serde_json::Value) -> Option<prost_types::Struct> {
    Some(beamline_mesh::agent::capabilities::json_to_struct(&v))
}

/// A `google.protobuf.Struct` → JSON (for reading results).
pub fn to_json(s: &prost_types::Struct) -> serde_json::Value {
    beamline_mesh::agent::capabilities::struct_to_json(s)
}

pub fn execute_request(capability: &str, p: serde_json::Value, key: &str) -> ExecuteRequest {
    ExecuteRequest {
        capability: capability.to_string(),
        params: params(p),
        idempotency_key: key.to_string(),
    }
}

/// The task of an event (every event must carry one).
pub fn task_of(event: &TaskEvent) -> &Task {
    event
        .task
        .as_ref()
        .unwrap_or_else(|| panic!("event without a task: {event:?}"))
}

pub fn state_of(event: &TaskEvent) -> TaskState {
    let task = task_of(event);
    TaskState::try_from(task.state).unwrap_or_else(|_| panic!("unknown state in {task:?}"))
}

pub fn task_state(task: &Task) -> TaskState {
    TaskState::try_from(task.state).unwrap_or_else(|_| panic!("unknown state in {task:?}"))
}

pub fn is_terminal(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::Completed | TaskState::Failed | TaskState::Cancelled | TaskState::Rejected
    )
}

/// The next message of a stream (None at its end), bounded by [`EVENT_TIMEOUT`].
pub async fn next_event(stream: &mut Streaming<TaskEvent>) -> Option<TaskEvent> {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.message()).await {
        Ok(Ok(event)) => event,
        Ok(Err(status)) => panic!("stream failed: {status:?}"),
        Err(_) => panic!("no stream message within {EVENT_TIMEOUT:?}"),
    }
}

/// Every remaining message until the stream ends; panics if it does not end within `timeout`.
pub async fn rest_of(stream: &mut Streaming<TaskEvent>, timeout: Duration) -> Vec<TaskEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(event))) => events.push(event),
            Ok(Ok(None)) => return events,
            Ok(Err(status)) => panic!("stream failed after {events:?}: {status:?}"),
            Err(_) => panic!(
                "stream did not end within {timeout:?}; last event {:?}",
                events.last()
            ),
        }
    }
}
