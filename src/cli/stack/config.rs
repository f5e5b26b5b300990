//! What a local stack starts: the demo agents, and where the registry and the gateway listen
//! (a busy default address falls back to a free port; an address the user gave never does).
//!
//! Owns the stack's settings; it must not start or stop anything.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The demo agents every stack runs: 5.3.1 twice, 7.0.1 and 12.3.1 once.
pub const DEMO_AGENTS: &[&str] = &["5.3.1", "5.3.1", "7.0.1", "12.3.1"];

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
    pub(super) fn resolve(self) -> (SocketAddr, Option<String>) {
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
    /// Mutual TLS between the gateway and the agents, with throwaway certificates
    /// ([`super::MeshCerts`]); plaintext on loopback without it.
    pub mtls: bool,
    /// Copy the children's stderr (their logs) to ours, each line prefixed with the child's
    /// name; otherwise only the last lines are kept, for error reports.
    pub forward_logs: bool,
    /// The gateway's policy file (`--auth-file`, with `--allow-plaintext`: the stack is on
    /// loopback); without one the gateway runs `--insecure-no-auth`.
    pub auth_file: Option<PathBuf>,
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
            mtls: false,
            forward_logs: false,
            auth_file: None,
        }
    }
}
