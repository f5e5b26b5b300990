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
//!
//! With [`StackConfig::mtls`] the gateway dials the agents over mutual TLS: `certs` makes a
//! throwaway CA and certificates before anything starts, every agent serves TLS with its
//! beamline's certificate and asks for a client certificate from that CA (its plaintext health
//! port on a free loopback port, for the registry's check), and the gateway presents its own.
//! Agents then also log each refused handshake and why (`beamline_agent::tls` at DEBUG, added to
//! `RUST_LOG`), which `demo` shows and `dev` forwards.
//! The files outlive every child (the stack drops them last). The registry stays plain HTTP on
//! loopback either way.
//!
//! This module owns which children run, with which flags, and the order they start and stop in;
//! `config` is what to start, `process` is one child's lifetime, `certs` the certificates.

mod certs;
mod config;
mod process;

pub use certs::{impostor_client, MeshCerts};
pub(in crate::cli) use certs::{new_private_dir, write_file};
pub use config::{Listen, StackConfig, DEMO_AGENTS};
pub use process::Proc;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::consul::{ConsulClient, ConsulConfig};

use process::spawn;

/// How long every agent may take to pass its health check in Consul.
const PASSING_TIMEOUT: Duration = Duration::from_secs(30);
/// How long agents get to drain after SIGTERM before they are killed.
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The same for the gateway and the registry.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The throwaway certificates with [`StackConfig::mtls`]. Declared last: dropped (its
    /// directory removed) after every child is killed.
    pub certs: Option<MeshCerts>,
}

/// The one line `dev` and `demo` print about how the mesh's inside is protected.
pub const PLAINTEXT_LINE: &str = "plaintext on loopback; --mtls for mutual TLS";

impl Stack {
    pub fn new(config: StackConfig) -> anyhow::Result<Stack> {
        let exe = std::env::current_exe().context("cannot find this program's own path")?;
        let certs = if config.mtls {
            let certs = MeshCerts::generate(&config.agents)
                .context("cannot make the throwaway certificates for --mtls")?;
            Some(certs)
        } else {
            None
        };
        Ok(Stack {
            exe,
            config,
            consul: None,
            gateway: None,
            registry_proc: None,
            gateway_proc: None,
            agents: Vec::new(),
            certs,
        })
    }

    /// One line on how the gateway and the agents talk: [`PLAINTEXT_LINE`], or mutual TLS and
    /// where the certificates are.
    pub fn transport_line(&self) -> String {
        match &self.certs {
            None => PLAINTEXT_LINE.to_string(),
            Some(certs) => format!(
                "mutual TLS between the gateway and the agents; throwaway CA and certificates in \
                 {} (removed on exit)",
                certs.dir().display()
            ),
        }
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
        let mut args = [
            "gateway",
            "--listen",
            &addr.to_string(),
            "--consul",
            &consul,
        ]
        .map(str::to_string)
        .to_vec();
        match &self.config.auth_file {
            // On loopback only: the credentials never leave the machine.
            Some(file) => args.extend([
                "--auth-file".to_string(),
                path_arg(file)?,
                "--allow-plaintext".into(),
            ]),
            None => args.push("--insecure-no-auth".into()),
        }
        if let Some(certs) = &self.certs {
            args.extend([
                "--upstream-ca".to_string(),
                path_arg(&certs.ca)?,
                "--upstream-cert".into(),
                path_arg(&certs.gateway.cert)?,
                "--upstream-key".into(),
                path_arg(&certs.gateway.key)?,
            ]);
        }
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
        let env = match &self.certs {
            Some(_) => vec![("RUST_LOG".to_string(), agent_log_filter())],
            None => Vec::new(),
        };
        let mut starts = Vec::new();
        let (exe, forward_logs, env) = (&self.exe, self.config.forward_logs, &env);
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
            if let Some(certs) = &self.certs {
                args.extend(mtls_agent_args(certs, &beamline)?);
            }
            args.extend(self.config.agent_args.iter().cloned());
            let prefix = format!("agent beamline {beamline} listening on ");
            starts.push(async move {
                let proc = spawn(exe, &name, &args, env, &prefix, forward_logs).await;
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
        spawn(&self.exe, name, args, &[], prefix, self.config.forward_logs).await
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
                    for entry in answer.value.iter().filter(|e| e.is_passing()) {
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
                if let Some(status) = agent.proc.poll_exit() {
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
            if !agent.proc.has_exited() {
                agent.proc.terminate();
            }
        }
        let waits = self
            .agents
            .iter_mut()
            .filter(|a| !a.proc.has_exited())
            .map(|a| {
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
            if !proc.has_exited() && !proc.stop(SERVER_STOP_TIMEOUT).await {
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
            if proc.has_exited() {
                continue;
            }
            if let Some(status) = proc.poll_exit() {
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

/// An agent's flags for mutual TLS: its beamline's certificate, the CA its clients must chain
/// to, and a plaintext health port for the registry's check.
fn mtls_agent_args(certs: &MeshCerts, beamline: &str) -> anyhow::Result<Vec<String>> {
    let files = certs
        .agent(beamline)
        .with_context(|| format!("no certificate for beamline {beamline}"))?;
    Ok(vec![
        "--tls-cert".into(),
        path_arg(&files.cert)?,
        "--tls-key".into(),
        path_arg(&files.key)?,
        "--client-ca".into(),
        path_arg(&certs.ca)?,
        "--health-listen".into(),
        "127.0.0.1:0".into(),
    ])
}

/// The agents' `RUST_LOG` with mutual TLS: the user's filter (or `info`) plus refused
/// handshakes, which the agent logs at DEBUG.
fn agent_log_filter() -> String {
    let base = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "info".to_string());
    format!("{base},{TLS_LOG_TARGET}=debug")
}

/// Where an agent logs a refused TLS handshake (`TLS handshake failed … error=…`).
const TLS_LOG_TARGET: &str = "beamline_agent::tls";

fn path_arg(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}
