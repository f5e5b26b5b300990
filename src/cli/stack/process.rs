//! One child process of the local stack: starting it with the stack's environment, awaiting its
//! listening line, keeping the tail of its log, and stopping it (SIGTERM, then kill).
//!
//! Owns a single child's lifetime; it must not know which children a stack runs or in what order
//! they stop.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// How long a child may take to print its listening line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each child's stderr kept for error reports.
const LOG_TAIL_LINES: usize = 40;

/// One running child process. SIGKILLed on drop unless it has already exited.
pub struct Proc {
    /// A short name for messages: `registry`, `gateway`, `agent 5.3.1 #1`.
    pub name: String,
    /// Where it listens, from its listening line (`http://…` for the registry).
    pub addr: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: Arc<Mutex<VecDeque<String>>>,
    exited: bool,
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last lines the child wrote on stderr.
    pub fn log_tail(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Asks the child to shut down: SIGTERM (or, where that cannot be sent, its stdin closed,
    /// which it obeys just the same).
    pub fn terminate(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            let sent = i32::try_from(pid).is_ok_and(|pid| {
                // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is
                // our own child's, not yet reaped (we hold its handle), so it names no other
                // process.
                unsafe { libc::kill(pid, libc::SIGTERM) == 0 }
            });
            if sent {
                return;
            }
        }
        self.stdin = None;
    }

    /// kill -9, and reap.
    pub async fn kill9(&mut self) {
        let _ = self.child.kill().await;
        self.exited = true;
    }

    /// Waits up to `timeout` for the child to exit; kills it after that. True when it exited by
    /// itself.
    pub async fn wait_or_kill(&mut self, timeout: Duration) -> bool {
        let clean = matches!(
            tokio::time::timeout(timeout, self.child.wait()).await,
            Ok(Ok(_))
        );
        if !clean {
            let _ = self.child.kill().await;
        }
        self.exited = true;
        clean
    }

    /// Whether the child is known to have exited (reaped, killed or seen by [`Self::poll_exit`]).
    pub(super) fn has_exited(&self) -> bool {
        self.exited
    }

    /// The child's exit status if it has exited by now, without waiting.
    pub(super) fn poll_exit(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = true;
                Some(status)
            }
            _ => None,
        }
    }

    /// SIGTERM, then [`Self::wait_or_kill`].
    pub async fn stop(&mut self, timeout: Duration) -> bool {
        self.terminate();
        self.wait_or_kill(timeout).await
    }

    pub(super) fn report(&self, why: &str) -> anyhow::Error {
        let tail = self.log_tail();
        let tail = tail
            .iter()
            .rev()
            .take(15)
            .rev()
            .cloned()
            .collect::<Vec<_>>();
        if tail.is_empty() {
            anyhow::anyhow!("{}: {why}", self.name)
        } else {
            anyhow::anyhow!(
                "{}: {why}\n--- its last log lines ---\n{}",
                self.name,
                tail.join("\n")
            )
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.start_kill();
        }
    }
}

/// Starts `exe args…` (with `env` added to the stack's environment) and waits (bounded) for its
/// first stdout line, which must start with `prefix`; the rest of that line is the address.
pub(super) async fn spawn(
    exe: &Path,
    name: &str,
    args: &[String],
    env: &[(String, String)],
    prefix: &str,
    forward_logs: bool,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env(crate::cli::STOP_ON_STDIN_EOF_ENV, "1")
        // Only the flags configure the children: a user's Consul settings or registry token
        // must not leak into the local stack.
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("BEAMLINE_REGISTRY_ACL_TOKEN")
        .envs(env.iter().map(|(k, v)| (k, v)));
    if !(forward_logs && std::io::stderr().is_terminal()) {
        cmd.env("NO_COLOR", "1");
    }
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name} ({})", exe.display()))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let stderr = child.stderr.take().context("no stderr pipe")?;

    let log: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let log_writer = Arc::clone(&log);
    let log_name = name.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if forward_logs {
                eprintln!("[{log_name}] {line}");
            }
            let mut log = log_writer.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() == LOG_TAIL_LINES {
                log.pop_front();
            }
            log.push_back(line);
        }
    });

    let mut proc = Proc {
        name: name.to_string(),
        addr: String::new(),
        child,
        stdin,
        log,
        exited: false,
    };
    let mut lines = BufReader::new(stdout).lines();
    let first = match tokio::time::timeout(LISTEN_TIMEOUT, lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) | Ok(Err(_)) => {
            // Let its last stderr lines arrive before reporting them.
            let status = tokio::time::timeout(Duration::from_secs(2), proc.child.wait()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            proc.exited = matches!(status, Ok(Ok(_)));
            let why = match status {
                Ok(Ok(status)) => format!("exited ({status}) before it listened"),
                _ => "closed its stdout before it listened".to_string(),
            };
            return Err(proc.report(&why));
        }
        Err(_) => {
            return Err(proc.report(&format!(
                "printed no listening line within {LISTEN_TIMEOUT:?}"
            )))
        }
    };
    let Some(addr) = first.strip_prefix(prefix) else {
        return Err(proc.report(&format!(
            "its first line {first:?} does not start with {prefix:?}"
        )));
    };
    proc.addr = addr.trim().to_string();
    // Keep reading stdout, so the child never blocks on a full pipe.
    let out_name = name.to_string();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if forward_logs {
                eprintln!("[{out_name}] {line}");
            }
        }
    });
    Ok(proc)
}
