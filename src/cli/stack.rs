//! The local stack that `dev` and `demo` run: the registry, the gateway and demo agents, each a
//! child process of this same binary (`std::env::current_exe()`).
//!
//! Each child is started, then its one listening line is awaited (bounded); once every agent is
//! up, the stack waits (bounded) until Consul lists each of them as passing. [`Stack::stop`]
//! shuts down in dependency order: SIGTERM to the agents (they deregister and drain), then the
//! gateway, then the registry, each killed if it outlives its timeout.
//!
//! No child outlives the stack: every child is SIGKILLed when its handle is dropped (an early
//! return, a panic), each runs in its own process group (so a terminal's Ctrl-C reaches only the
//! parent, which then stops them in order), and each gets a stdin pipe plus
//! [`super::STOP_ON_STDIN_EOF_ENV`], so that if the parent dies without running any code (`kill
//! -9`), the closed pipe makes every child shut down by itself.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::consul::{ConsulClient, ConsulConfig};

/// The demo agents every stack runs: 5.3.1 twice, 7.0.1 and 12.3.1 once.
pub const DEMO_AGENTS: &[&str] = &["5.3.1", "5.3.1", "7.0.1", "12.3.1"];

/// How long a child may take to print its listening line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long every agent may take to pass its health check in Consul.
const PASSING_TIMEOUT: Duration = Duration::from_secs(30);
/// How long agents get to drain after SIGTERM before they are killed.
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The same for the gateway and the registry.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of each child's stderr kept for error reports.
const LOG_TAIL_LINES: usize = 40;

/// Where a server listens: an address, and whether a busy address may be swapped for a free
/// port (only for the defaults; an address the user gave is kept or refused).
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub addr: SocketAddr,
    pub fall_back_if_busy: bool,
}

impl Listen {
    /// The given address, or `default` (falling back to a free port if busy) when none is given.
    pub fn or_default(given: Option<SocketAddr>, default: &str) -> Listen {
        match given {
            Some(addr) => Listen {
                addr,
                fall_back_if_busy: false,
            },
            None => Listen {
                addr: default.parse().expect("a valid default address"),
                fall_back_if_busy: true,
            },
        }
    }

    /// A free port on loopback.
    pub fn free() -> Listen {
        Listen {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            fall_back_if_busy: false,
        }
    }

    /// The address to pass, and a note when the default was busy.
    fn resolve(self) -> (SocketAddr, Option<String>) {
        if !self.fall_back_if_busy || self.addr.port() == 0 {
            return (self.addr, None);
        }
        match std::net::TcpListener::bind(self.addr) {
            Ok(probe) => {
                drop(probe);
                (self.addr, None)
            }
            Err(e) => {
                let mut free = self.addr;
                free.set_port(0);
                let why = match e.kind() {
                    std::io::ErrorKind::AddrInUse => "in use".to_string(),
                    _ => e.to_string(),
                };
                (free, Some(format!("{} {why}: took a free port", self.addr)))
            }
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub registry: Listen,
    pub gateway: Listen,
    /// The registry's `--data-dir` (state in memory without it).
    pub data_dir: Option<PathBuf>,
    /// The beamline of each agent to start.
    pub agents: Vec<String>,
    /// Extra flags for every agent.
    pub agent_args: Vec<String>,
    /// Copy the children's stderr (their logs) to ours, each line prefixed with the child's
    /// name; otherwise only the last lines are kept, for error reports.
    pub forward_logs: bool,
}

impl StackConfig {
    /// The demo stack on free ports, logs kept quiet.
    pub fn on_free_ports() -> StackConfig {
        StackConfig {
            registry: Listen::free(),
            gateway: Listen::free(),
            data_dir: None,
            agents: DEMO_AGENTS.iter().map(|s| s.to_string()).collect(),
            agent_args: Vec::new(),
            forward_logs: false,
        }
    }
}

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
            // No libc here: the `kill` utility sends the signal.
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
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

    /// SIGTERM, then [`Self::wait_or_kill`].
    pub async fn stop(&mut self, timeout: Duration) -> bool {
        self.terminate();
        self.wait_or_kill(timeout).await
    }

    fn report(&self, why: &str) -> anyhow::Error {
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

/// An agent of the stack.
pub struct AgentProc {
    pub beamline: String,
    /// Its Consul service ID (= instance id), once seen passing.
    pub instance_id: String,
    pub proc: Proc,
}

/// The running stack. Dropping it kills every child; [`Stack::stop`] stops them in order.
pub struct Stack {
    exe: PathBuf,
    config: StackConfig,
    /// `http://host:port` of the registry.
    pub consul: Option<String>,
    /// `host:port` of the gateway.
    pub gateway: Option<String>,
    pub registry_proc: Option<Proc>,
    pub gateway_proc: Option<Proc>,
    pub agents: Vec<AgentProc>,
}

impl Stack {
    pub fn new(config: StackConfig) -> anyhow::Result<Stack> {
        let exe = std::env::current_exe().context("cannot find this program's own path")?;
        Ok(Stack {
            exe,
            config,
            consul: None,
            gateway: None,
            registry_proc: None,
            gateway_proc: None,
            agents: Vec::new(),
        })
    }

    /// Starts everything, printing where each child listens, and waits until every agent is
    /// passing in Consul. On error, what started is left in `self` (stop or drop it).
    pub async fn start(&mut self) -> anyhow::Result<()> {
        // The registry.
        let (addr, note) = self.config.registry.resolve();
        let mut args = vec!["registry".to_string(), "--listen".into(), addr.to_string()];
        if let Some(dir) = &self.config.data_dir {
            args.push("--data-dir".into());
            args.push(path_arg(dir)?);
        }
        let registry = self
            .spawn("registry", &args, "registry listening on ")
            .await?;
        let consul = registry.addr.clone();
        println!(
            "  {:<16} {consul}{}",
            "registry",
            note.map(|n| format!("   ({n})")).unwrap_or_default()
        );
        self.consul = Some(consul.clone());
        self.registry_proc = Some(registry);

        // The gateway.
        let (addr, note) = self.config.gateway.resolve();
        let args = [
            "gateway",
            "--listen",
            &addr.to_string(),
            "--consul",
            &consul,
            "--insecure-no-auth",
        ]
        .map(str::to_string);
        let gateway = self
            .spawn("gateway", &args, "gateway listening on ")
            .await?;
        println!(
            "  {:<16} {}{}",
            "gateway",
            gateway.addr,
            note.map(|n| format!("   ({n})")).unwrap_or_default()
        );
        self.gateway = Some(gateway.addr.clone());
        self.gateway_proc = Some(gateway);

        // The agents, started together.
        let mut numbers: std::collections::HashMap<String, usize> = Default::default();
        let mut starts = Vec::new();
        let (exe, forward_logs) = (&self.exe, self.config.forward_logs);
        for (i, beamline) in self.config.agents.clone().into_iter().enumerate() {
            let n = numbers.entry(beamline.clone()).or_default();
            *n += 1;
            let name = format!("agent {beamline} #{n}");
            let mut args = [
                "agent",
                "--beamline",
                &beamline,
                "--listen",
                "127.0.0.1:0",
                "--consul",
                &consul,
                "--seed",
                &(i + 1).to_string(),
            ]
            .map(str::to_string)
            .to_vec();
            args.extend(self.config.agent_args.iter().cloned());
            let prefix = format!("agent beamline {beamline} listening on ");
            starts.push(async move {
                let proc = spawn(exe, &name, &args, &prefix, forward_logs).await;
                (beamline, proc)
            });
        }
        let started = futures::future::join_all(starts).await;
        let mut first_error = None;
        for (beamline, proc) in started {
            match proc {
                Ok(proc) => {
                    println!("  {:<16} {}", proc.name, proc.addr);
                    self.agents.push(AgentProc {
                        beamline,
                        instance_id: String::new(),
                        proc,
                    });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.wait_passing().await
    }

    async fn spawn(&self, name: &str, args: &[String], prefix: &str) -> anyhow::Result<Proc> {
        spawn(&self.exe, name, args, prefix, self.config.forward_logs).await
    }

    /// Waits until Consul lists every agent (by its address) as passing; records instance ids.
    async fn wait_passing(&mut self) -> anyhow::Result<()> {
        let consul = self.consul.clone().context("the registry is not running")?;
        let client = ConsulClient::new(ConsulConfig::new(&consul)?);
        let started = Instant::now();
        let deadline = started + PASSING_TIMEOUT;
        let mut beamlines: Vec<String> = self.agents.iter().map(|a| a.beamline.clone()).collect();
        beamlines.sort();
        beamlines.dedup();
        loop {
            let mut passing: std::collections::HashMap<String, String> = Default::default();
            for beamline in &beamlines {
                let service = BeamlineId::parse(beamline)?.service_name();
                if let Ok(answer) = client.health_service(&service, 0, Duration::ZERO).await {
                    for entry in answer.entries.iter().filter(|e| e.is_passing()) {
                        passing.insert(entry.address(), entry.service.id.clone());
                    }
                }
            }
            let mut waiting = Vec::new();
            for agent in &mut self.agents {
                match passing.get(&agent.proc.addr) {
                    Some(id) => agent.instance_id = id.clone(),
                    None => waiting.push(agent.proc.name.clone()),
                }
            }
            if waiting.is_empty() {
                println!(
                    "  all {} agents passing their health checks in Consul ({:.1} s)",
                    self.agents.len(),
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            for agent in &mut self.agents {
                if let Ok(Some(status)) = agent.proc.child.try_wait() {
                    agent.proc.exited = true;
                    return Err(agent.proc.report(&format!("exited ({status})")));
                }
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "not passing in Consul within {PASSING_TIMEOUT:?}: {}",
                    waiting.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops everything in order: agents (SIGTERM, so they deregister and drain), then the
    /// gateway, then the registry; each is killed if it outlives its timeout. Returns the names
    /// of those that had to be killed.
    pub async fn stop(&mut self) -> Vec<String> {
        let mut killed = Vec::new();
        for agent in &mut self.agents {
            if !agent.proc.exited {
                agent.proc.terminate();
            }
        }
        let waits = self.agents.iter_mut().filter(|a| !a.proc.exited).map(|a| {
            let name = a.proc.name.clone();
            async move { (name, a.proc.wait_or_kill(AGENT_STOP_TIMEOUT).await) }
        });
        for (name, clean) in futures::future::join_all(waits).await {
            if !clean {
                killed.push(name);
            }
        }
        for proc in [self.gateway_proc.as_mut(), self.registry_proc.as_mut()]
            .into_iter()
            .flatten()
        {
            if !proc.exited && !proc.stop(SERVER_STOP_TIMEOUT).await {
                killed.push(proc.name.clone());
            }
        }
        killed
    }

    /// Children that have exited since the last look (each reported once), with whether it was
    /// the registry or the gateway (without which the stack is of no use).
    pub fn newly_exited(&mut self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let servers = self
            .registry_proc
            .iter_mut()
            .chain(self.gateway_proc.iter_mut())
            .map(|p| (p, true));
        let agents = self.agents.iter_mut().map(|a| (&mut a.proc, false));
        for (proc, server) in servers.chain(agents) {
            if proc.exited {
                continue;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                proc.exited = true;
                out.push((format!("{} ({status})", proc.name), server));
            }
        }
        out
    }

    /// The last log lines of every child, for an error report.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let procs = self
            .registry_proc
            .iter()
            .chain(self.gateway_proc.iter())
            .chain(self.agents.iter().map(|a| &a.proc));
        for proc in procs {
            let tail = proc.log_tail();
            let start = tail.len().saturating_sub(lines);
            out.push_str(&format!("--- {} ---\n", proc.name));
            for line in &tail[start..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

fn path_arg(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

/// Starts `exe args…` and waits (bounded) for its first stdout line, which must start with
/// `prefix`; the rest of that line is the address.
async fn spawn(
    exe: &Path,
    name: &str,
    args: &[String],
    prefix: &str,
    forward_logs: bool,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env(super::STOP_ON_STDIN_EOF_ENV, "1")
        // Only the flags configure the children: a user's Consul settings or registry token
        // must not leak into the local stack.
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("BEAMLINE_REGISTRY_ACL_TOKEN");
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
