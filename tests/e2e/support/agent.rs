//! The agent process: starts the real `beamline-mesh agent` (the demo agent on the agent runtime),
//! reads its listening line against a deadline, signals it (SIGTERM, SIGKILL), waits for its exit
//! with a deadline, and always kills it on drop.
//!
//! Tests pass short intervals ([`FAST`]) so that health checks, keep-alive and drain take
//! fractions of a second.
//!
//! Owns the child process and its logs; it must not speak gRPC to it (`calls`), ask the registry
//! about it (`registration`) or run commands that are meant to exit (`oneshot`).

mod calls;
mod oneshot;
mod registration;
mod sdk;
mod succeeding;

// Tests reach these as `support::agent::NAME`; a binary that uses none of one file's items must
// not warn.
#[allow(unused_imports)]
pub use calls::*;
#[allow(unused_imports)]
pub use oneshot::*;
#[allow(unused_imports)]
pub use registration::*;
#[allow(unused_imports)]
pub use sdk::*;
#[allow(unused_imports)]
pub use succeeding::*;

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{follow_stdout, tail, Registry, POLL_INTERVAL, START_TIMEOUT};

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
            args,
            stderr_path,
            _work: work,
            _extra_stdout: extra,
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
    args: Vec<String>,
    stderr_path: PathBuf,
    _work: tempfile::TempDir,
    /// Lines printed on stdout after the listening line (kept for the reader thread).
    _extra_stdout: Arc<Mutex<Vec<String>>>,
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
        super::signal::send(self.pid(), libc::SIGTERM);
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing. Returns once
    /// the kernel reports every thread stopped: `kill` returns when the signal is sent, and on a
    /// loaded machine a thread may run on a while before it stops.
    pub fn freeze(&self) {
        super::signal::send(self.pid(), libc::SIGSTOP);
        let pid = self.pid();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid) {
            assert!(
                Instant::now() < deadline,
                "agent {pid} not stopped 5 s after SIGSTOP"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) {
        super::signal::send(self.pid(), libc::SIGCONT);
    }

    /// Sends SIGINT , as Ctrl-C would; does not wait.
    pub fn sigint(&self) {
        super::signal::send(self.pid(), libc::SIGINT);
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

/// Whether every thread of `pid` is stopped (state `T` in `/proc/PID/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T")
        })
    })
}
