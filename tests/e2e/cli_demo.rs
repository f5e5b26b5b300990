//! `beamline-mesh demo` and `beamline-mesh dev` end to end, as a user runs them: the real binary,
//! which starts the registry, the gateway and four demo agents as its own child processes.
//!
//! - `demo` exits 0 within its deadline, says it runs plaintext on loopback, its failover burst
//!   reports 0 failed calls, and nothing it started still listens afterwards.
//! - `dev` (on free ports, so it runs beside anything) prints where everything listens, serves
//!   calls through its gateway, and on SIGTERM stops every child and exits 0.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::agent::run_to_exit;
use crate::support::cli::call;
use crate::support::*;

/// The demo must take well under a minute; this leaves room for a loaded CI machine.
pub(crate) const DEMO_DEADLINE: Duration = Duration::from_secs(90);

/// At most the last `n` characters of `s`.
pub(crate) fn last_chars(s: &str, n: usize) -> String {
    let skip = s.chars().count().saturating_sub(n);
    s.chars().skip(skip).collect()
}

/// The `host:port` (or `http://host:port`) at the end of a line such as `  gateway  127.0.0.1:1`.
fn address_in(line: &str) -> Option<SocketAddr> {
    let word = line.split_whitespace().nth(1)?;
    word.trim_start_matches("http://").parse().ok()
}

/// The addresses printed for the registry, the gateway and the agents.
pub(crate) fn stack_addresses(stdout: &str) -> Vec<(String, SocketAddr)> {
    stdout
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let name = if t.starts_with("registry ") {
                "registry"
            } else if t.starts_with("gateway ") {
                "gateway"
            } else if t.starts_with("agent ") {
                return t
                    .split_whitespace()
                    .nth(3)
                    .and_then(|a| a.parse().ok())
                    .map(|a| (t.to_string(), a));
            } else {
                return None;
            };
            address_in(t).map(|a| (name.to_string(), a))
        })
        .collect()
}

/// Waits (bounded) until nothing accepts connections on `addr`.
pub(crate) fn wait_closed(name: &str, addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, ms(200)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{name} still listens on {addr} after the stack stopped"
        );
        std::thread::sleep(ms(100));
    }
}

#[test]
fn demo_runs_the_tour_with_no_failed_call_and_exits_0() {
    let started = Instant::now();
    let out = run_to_exit(&["demo"], DEMO_DEADLINE);
    let report = format!(
        "--- stdout ---\n{}\n--- stderr (tail) ---\n{}",
        out.stdout,
        last_chars(&out.stderr, 4000)
    );
    assert!(out.status.success(), "demo exited {}\n{report}", out.status);
    assert!(started.elapsed() < secs(60), "took {:?}", started.elapsed());
    for needle in [
        "plaintext on loopback; --mtls for mutual TLS",
        "200 calls: 200 succeeded, 0 failed",
        "kill -9 beamline-5-3-1-",
        "COMPLETED",
        "BEAMLINE",
        "critical",
        ", 0 failed",
        // The stop button and the lock (the demo fails itself when a promise is broken).
        "scan CANCELLED",
        "(HALTED: beamline 12.3.1 is halted by \"control-room\"",
        "monitor_pv kept streaming",
        "move_motor refused: FAILED_PRECONDITION: beamline 12.3.1 is halted",
        "planner's move_motor refused: FAILED_PRECONDITION: beamline 7.0.1 is locked by \"scientist\"",
        "scientist's own move_motor COMPLETED",
    ] {
        assert!(out.stdout.contains(needle), "no {needle:?}\n{report}");
    }
    // Each beamline was described through the gateway.
    for beamline in ["5.3.1", "7.0.1", "12.3.1"] {
        let prefix = format!("{beamline} ");
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&prefix) && l.contains("answered by")),
            "{beamline} not described\n{report}"
        );
    }
    // Everything it started is gone.
    let addrs = stack_addresses(&out.stdout);
    assert_eq!(
        addrs.len(),
        6,
        "registry, gateway, 4 agents: {addrs:?}\n{report}"
    );
    for (name, addr) in addrs {
        wait_closed(&name, addr, secs(5));
    }
}

/// A running `beamline-mesh dev`; killed on drop.
pub(crate) struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) stdout: Vec<String>,
}

impl Dev {
    pub(crate) fn start(args: &[&str]) -> Dev {
        let mut child = Command::new(env!("CARGO_BIN_EXE_beamline-mesh"))
            .arg("dev")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("CONSUL_HTTP_TOKEN")
            .spawn()
            .expect("spawn beamline-mesh dev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Dev {
            child,
            lines,
            stdout: Vec::new(),
        }
    }

    /// Reads stdout until a line contains `needle`; panics after `timeout`.
    pub(crate) fn wait_line(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stdout.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "dev printed no {needle:?} within {timeout:?}; stdout:\n{}",
                    self.stdout.join("\n")
                ),
            }
        }
    }

    pub(crate) fn sigterm(&self) {
        crate::support::signal::send(self.child.id(), libc::SIGTERM);
    }

    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "dev did not exit within {timeout:?}; stdout:\n{}",
                self.stdout.join("\n")
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dev_serves_calls_and_stops_everything_on_sigterm() {
    let mut dev = Dev::start(&[
        "--registry-listen",
        "127.0.0.1:0",
        "--gateway-listen",
        "127.0.0.1:0",
    ]);
    dev.wait_line("Ctrl-C stops everything", secs(60));
    let stdout = dev.stdout.join("\n");
    let addrs = stack_addresses(&stdout);
    assert_eq!(addrs.len(), 6, "registry, gateway, 4 agents:\n{stdout}");
    let gateway = addrs
        .iter()
        .find(|(n, _)| n == "gateway")
        .map(|(_, a)| *a)
        .expect("gateway address");
    // Its example lines name the gateway it runs (not the default port).
    assert!(
        stdout.contains(&format!(
            "call --gateway http://{gateway} --beamline 5.3.1 describe"
        )),
        "{stdout}"
    );

    let url = format!("http://{gateway}");
    for beamline in ["5.3.1", "7.0.1", "12.3.1"] {
        let card = call(&["--gateway", &url, "--beamline", beamline, "describe"])
            .expect_code(0)
            .json();
        assert_eq!(card["beamline"], beamline);
    }

    dev.sigterm();
    let status = dev.wait_exit(secs(30));
    assert!(status.success(), "dev exited {status}");
    for (name, addr) in addrs {
        wait_closed(&name, addr, secs(5));
    }
}
