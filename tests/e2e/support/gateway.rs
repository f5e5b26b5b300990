//! The gateway process: starts the real `beamline-mesh gateway --insecure-no-auth` (or with
//! `--auth-file`) against a registry, reads its listening line against a deadline, and always
//! kills it on drop (printing its stderr when a test panics). Runs with
//! `RUST_LOG=beamline_mesh=debug` so a failing scenario shows the mesh's routing decisions.
//!
//! Owns the child process and its logs; it must not make gRPC calls through it (`calls`,
//! `raw`), start agents (`cluster`) or drive traffic (`load`).

mod calls;
mod cluster;
mod consul_env;
mod load;
mod raw;

// Tests reach these as `support::gateway::NAME`; a binary that uses none of one file's items
// must not warn.
#[allow(unused_imports)]
pub use calls::*;
#[allow(unused_imports)]
pub use cluster::*;
#[allow(unused_imports)]
pub use load::*;
#[allow(unused_imports)]
pub use raw::*;

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{follow_stdout, tail, Registry, START_TIMEOUT};

/// Options for starting `beamline-mesh gateway`.
pub struct GatewayBuilder {
    consul: String,
    extra: Vec<String>,
    log: String,
    /// Flags before the `gateway` subcommand (e.g. `--log-format json`).
    global: Vec<String>,
    /// `--insecure-no-auth` unless an auth file is given.
    no_auth: bool,
    /// Environment variables of the gateway (`consul_env`).
    env: Vec<(String, String)>,
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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
    pub fn builder(registry: &Registry) -> GatewayBuilder {
        GatewayBuilder {
            consul: registry.addr.to_string(),
            extra: Vec::new(),
            log: "info,beamline_mesh=debug".to_string(),
            global: Vec::new(),
            no_auth: true,
            env: Vec::new(),
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

    /// The process id of the gateway.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the gateway runs").id()
    }

    /// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the gateway's /proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"));
        kb * 1024
    }

    /// How many file descriptors the gateway holds open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("list the gateway's descriptors")
            .count()
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
