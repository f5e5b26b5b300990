//! The registry process: starts the real `beamline-mesh registry` with the options of
//! [`RegistryBuilder`], reads its listening line against a deadline, restarts or kill -9s it, and
//! always kills (and reaps) it on drop, printing its stderr when a test panics.
//!
//! Owns the child process and its logs; it must not speak HTTP to it (requests are `client`).

mod client;
mod proc;
pub mod tls;

// Re-exported as `support::encode`; binaries that never encode a query must not warn.
#[allow(unused_imports)]
pub use client::encode;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::deadline::{secs, START_TIMEOUT};
use super::resp::tail;
use super::stdout::follow_stdout;

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
    extra_args: Vec<String>,
}

impl RegistryBuilder {
    /// Use a fresh temporary `--data-dir`, owned by the [`Registry`] (kept across restarts).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
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

    /// One more command-line argument, after the ones the builder sets.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
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
        args.extend(self.extra_args);
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
    /// `http://127.0.0.1:PORT` (`https://` with `--tls-cert`), as printed by the binary.
    pub base: String,
    pub addr: SocketAddr,
    args: Vec<String>,
    work: tempfile::TempDir,
    data_dir: Option<PathBuf>,
    client: reqwest::Client,
    /// Token the helpers send, if any.
    token: Option<String>,
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
        let rx = follow_stdout(stdout, Arc::clone(&self.extra_stdout));
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
        let Some((scheme, hostport)) = url
            .split_once("://")
            .filter(|(s, _)| ["http", "https"].contains(s))
        else {
            self.fail_start(&format!("listening URL is not http(s)://…: {line:?}"))
        };
        let addr: SocketAddr = match hostport.trim_end_matches('/').parse() {
            Ok(addr) => addr,
            Err(e) => self.fail_start(&format!("cannot parse address in {line:?}: {e}")),
        };
        if addr.port() == 0 {
            self.fail_start(&format!("printed port 0: {line:?}"));
        }
        self.addr = addr;
        self.base = format!("{scheme}://{addr}");
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
