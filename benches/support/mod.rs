//! What the benchmarks share: child processes of the release binary (started with a deadline on
//! their listening line, killed and reaped on drop), `/proc` readings (memory, CPU time, where
//! the resident pages are), percentiles, the report's header lines, a bounded wait for a
//! service to be passing in the registry, CPU placement (`sched_setaffinity`), a byte-copying
//! TCP proxy (`tcp_proxy`), a fleet of real SDK agents in a few processes (`agents`) and nginx as
//! a gRPC proxy (`nginx`).
//!
//! Each bench includes this file with `mod support;` and uses only part of it.
#![allow(dead_code)]

pub mod agents;
pub mod nginx;
pub mod tcp_proxy;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

/// How long a process may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `cargo bench` passes `--bench`; without it (e.g. `cargo test --benches`) a bench only says
/// how to run itself and exits, so test runs never start a load test. True when it should run.
pub fn invoked_as_bench(name: &str, command: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    println!("{name} benchmark: skipped (run it with `{command}`)");
    false
}

/// The lines every report starts with: title, command, date, commit and the machine.
pub fn print_header(title: &str, command: &str, sharing: &str) {
    // The machine's CPUs, not this process's: a bench may have pinned itself to fewer.
    // SAFETY: sysconf has no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    println!("{title}");
    println!("command: {command}");
    println!("date: {}", shell(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]));
    println!(
        "commit: {}",
        shell(&["git", "rev-parse", "--short", "HEAD"])
    );
    println!("machine: {cores} cores ({}); {sharing}", cpu_model());
}

/// Restricts this process to `cpus` (Linux). Call it before any thread starts: threads and child
/// processes created afterwards inherit the set, and so do the runtimes' default thread counts
/// (`available_parallelism` reads it).
pub fn pin_self(cpus: &[usize]) -> Result<()> {
    let set = cpu_set(cpus)?;
    // SAFETY: `set` is a valid, initialised cpu_set_t of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    ensure!(
        rc == 0,
        "sched_setaffinity {cpus:?}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Makes `command`'s process run on `cpus` only, from its first instruction.
pub fn pin_command(command: &mut Command, cpus: &[usize]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let set = cpu_set(cpus)?;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // sched_setaffinity, which is async-signal-safe; `set` was built before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    Ok(())
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: all zeroes is the empty set; the kernel fills at most `size_of_val(&set)` bytes.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    ensure!(
        rc == 0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    let bits = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: every index is below the set's size in bits.
    Ok((0..bits)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

fn cpu_set(cpus: &[usize]) -> Result<libc::cpu_set_t> {
    ensure!(!cpus.is_empty(), "an empty CPU set");
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        ensure!(
            cpu < 8 * std::mem::size_of::<libc::cpu_set_t>(),
            "CPU {cpu} is out of range"
        );
        // SAFETY: `cpu` is within the set's bits (checked above).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    Ok(set)
}

/// A multi-threaded Tokio runtime, as `#[tokio::main]` builds it.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// `beamline-mesh` (the release binary cargo built for the bench), without the environment
/// variables that would change what it does (`RUST_LOG`, `CONSUL_HTTP_*`).
pub fn bin() -> Command {
    clean(Command::new(env!("CARGO_BIN_EXE_beamline-mesh")))
}

/// This bench's own binary, to re-execute (a bench may add no other target).
pub fn this_bench() -> Result<Command> {
    let exe = std::env::current_exe().context("locate the bench binary")?;
    Ok(clean(Command::new(exe)))
}

fn clean(mut command: Command) -> Command {
    command.env_remove("RUST_LOG");
    command.env_remove("CONSUL_HTTP_ADDR");
    command.env_remove("CONSUL_HTTP_TOKEN");
    command
}

/// A child process; killed and reaped on drop, whatever happens.
pub struct Proc {
    pub name: &'static str,
    child: Child,
    /// What followed " listening on " in its first stdout line (for the registry, a URL).
    pub addr: String,
    /// Holds the stderr log.
    work: tempfile::TempDir,
}

impl Proc {
    /// Spawns `command` (stdout piped, stderr to a log file) and waits, at most
    /// [`START_TIMEOUT`], for its first stdout line, `… listening on <addr>`.
    pub fn start(name: &'static str, mut command: Command) -> Result<Proc> {
        let work = tempfile::Builder::new()
            .prefix("beamline-bench-")
            .tempdir()
            .context("create temp dir")?;
        let stderr = File::create(work.path().join("stderr.log")).context("create stderr log")?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        // From here on Drop kills the child, whichever way start() returns.
        let mut process = Proc {
            name,
            child,
            addr: String::new(),
            work,
        };
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining so the child never blocks on a full pipe; ends when it exits.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => bail!(
                "{name} exited before listening; stderr:\n{}",
                process.stderr_tail()
            ),
            Err(_) => bail!("{name} did not print its listening line within {START_TIMEOUT:?}"),
        };
        process.addr = line
            .split_once(" listening on ")
            .with_context(|| format!("{name}: unexpected first line {line:?}"))?
            .1
            .trim()
            .to_string();
        Ok(process)
    }

    /// `host:port`, without the scheme some processes print.
    pub fn authority(&self) -> &str {
        self.addr.trim_start_matches("http://")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Memory and threads from `/proc/<pid>/status`.
    pub fn memory(&self) -> Result<Memory> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let field = |key: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(key))
                .with_context(|| format!("{}: no {key} line", self.name))?;
            line.split_whitespace()
                .nth(1)
                .with_context(|| format!("{key} value"))?
                .parse()
                .with_context(|| format!("{key} number"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:")?,
            file_kib: field("RssFile:")?,
            hwm_kib: field("VmHWM:")?,
            threads: field("Threads:")?,
        })
    }

    /// `VmRSS` in bytes.
    pub fn rss(&self) -> Result<u64> {
        Ok(self.memory()?.rss_kib * 1024)
    }

    /// User + system CPU time so far, in clock ticks (USER_HZ).
    pub fn cpu_ticks(&self) -> Result<u64> {
        cpu_ticks_of(&self.pid().to_string())
    }

    /// User + system CPU time so far (zero if it cannot be read).
    pub fn cpu(&self) -> Duration {
        cpu_of(&self.pid().to_string())
    }

    /// Where the resident pages are, from `/proc/<pid>/smaps`, by mapping: the executable's own
    /// image (code, read-only data, relocated data), shared libraries, and everything else
    /// (heap, thread stacks, anonymous mappings).
    pub fn breakdown(&self) -> Result<Breakdown> {
        let pid = self.pid();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).context("read /proc/<pid>/exe")?;
        let exe = exe.to_string_lossy().into_owned();
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
            .context("read /proc/<pid>/smaps")?;
        let mut out = Breakdown::default();
        // Which bucket the mapping whose lines follow belongs to.
        let mut bucket = 2;
        for line in smaps.lines() {
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            if let Some(kib) = first.strip_prefix("Rss:").map(|_| words.next()) {
                let kib: u64 = kib.context("Rss value")?.parse().context("Rss number")?;
                out.0[bucket] += kib;
            } else if !first.ends_with(':') {
                // A mapping's header: "start-end perms offset dev inode [path]".
                let path = line.split_whitespace().nth(5).unwrap_or("");
                bucket = if path == exe {
                    0
                } else if path.starts_with('/') {
                    1
                } else {
                    2
                };
            }
        }
        Ok(out)
    }

    /// The last 20 lines of its stderr.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.work.path().join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// From `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
}

/// Resident KiB in: the executable's image, shared libraries, the rest (heap, stacks, anon).
#[derive(Clone, Copy, Default)]
pub struct Breakdown(pub [u64; 3]);

// ---------------------------------------------------------------------------------------------
// /proc and the machine
// ---------------------------------------------------------------------------------------------

/// User + system CPU time of `/proc/<pid>` (`self` for this process), all threads, in clock
/// ticks.
pub fn cpu_ticks_of(pid: &str) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The fields after the command (which may hold spaces) start at state, field 3.
    let (_, rest) = stat
        .rsplit_once(')')
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short /proc/<pid>/stat")?
            .parse()
            .context("CPU ticks")
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 after the state.
    Ok(tick(11)? + tick(12)?)
}

/// [`cpu_ticks_of`] as a duration; zero when it cannot be read.
pub fn cpu_of(pid: &str) -> Duration {
    let ticks = cpu_ticks_of(pid).unwrap_or(0);
    Duration::from_nanos(ticks * 1_000_000_000 / clock_ticks())
}

/// The kernel's USER_HZ (100 on Linux in practice).
pub fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        shell(&["getconf", "CLK_TCK"])
            .parse()
            .ok()
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// A short command's trimmed stdout, or "" when it fails.
pub fn shell(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The machine's 1/5/15-minute load averages: other work on the cores skews the numbers.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

/// Nearest-rank percentile of sorted values, `p` in 0..=100 (zero when empty).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median (upper median for an even count) of values that need not be sorted.
pub fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

// ---------------------------------------------------------------------------------------------
// The registry's HTTP API
// ---------------------------------------------------------------------------------------------

/// An HTTP client for set-up requests: no proxy, every request bounded by `timeout`.
pub fn http(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .context("build reqwest client")
}

/// Polls (bounded by `deadline`) until `service` has a passing instance in the registry at
/// `base` (`http://host:port`).
pub async fn wait_passing(
    http: &reqwest::Client,
    base: &str,
    service: &str,
    deadline: Duration,
) -> Result<()> {
    let url = format!("{base}/v1/health/service/{service}?passing");
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Ok(response) = http.get(&url).send().await {
            if response.status().is_success() {
                let entries: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
                if !entries.is_empty() {
                    return Ok(());
                }
            }
        }
        ensure!(
            tokio::time::Instant::now() < until,
            "{service} was not passing within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Consul service of a beamline: `5.3.1` → `beamline-5-3-1` (ARCHITECTURE.md's mapping).
pub fn service_name(beamline: &str) -> String {
    format!(
        "beamline-{}",
        beamline.to_ascii_lowercase().replace('.', "-")
    )
}

// ---------------------------------------------------------------------------------------------
// Descriptors, sockets and limits (the scale bench)
// ---------------------------------------------------------------------------------------------

/// `/proc/net/tcp` states: LISTEN and TIME_WAIT (`st` column, hex).
pub const TCP_LISTEN: u8 = 0x0A;
pub const TCP_TIME_WAIT: u8 = 0x06;

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Clone, Copy, Debug)]
pub struct TcpRow {
    pub local_port: u16,
    pub remote_port: u16,
    pub state: u8,
    /// The socket's inode (0 for a socket no process holds, e.g. in TIME_WAIT).
    pub inode: u64,
}

/// Every TCP socket of this network namespace, IPv4 and IPv6.
pub fn tcp_table() -> Result<Vec<TcpRow>> {
    fn port(addr: &str) -> Result<u16> {
        let (_, hex) = addr.rsplit_once(':').context("address without a port")?;
        u16::from_str_radix(hex, 16).context("port")
    }
    let mut rows = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            // A kernel without IPv6 has no tcp6.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("read {path}")),
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            ensure!(fields.len() > 9, "{path}: short row {line:?}");
            rows.push(TcpRow {
                local_port: port(fields[1])?,
                remote_port: port(fields[2])?,
                state: u8::from_str_radix(fields[3], 16).context("state")?,
                inode: fields[9].parse().context("inode")?,
            });
        }
    }
    Ok(rows)
}

/// The open descriptors of process `pid`.
pub fn open_fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("list /proc/{pid}/fd"))?
        .count())
}

/// The inodes of the sockets process `pid` holds (`/proc/<pid>/fd/*` → `socket:[N]`).
pub fn socket_inodes(pid: u32) -> Result<std::collections::HashSet<u64>> {
    let dir = format!("/proc/{pid}/fd");
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("list {dir}"))? {
        // A descriptor closed between the listing and the readlink is simply not counted.
        let Ok(target) = std::fs::read_link(entry.context("read fd entry")?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.parse().context("socket inode")?);
        }
    }
    Ok(inodes)
}

/// The TCP sockets (any state but LISTEN) process `pid` holds, from one reading of the tables.
pub fn tcp_sockets_of(pid: u32, table: &[TcpRow]) -> Result<Vec<TcpRow>> {
    let inodes = socket_inodes(pid)?;
    Ok(table
        .iter()
        .filter(|row| row.state != TCP_LISTEN && row.inode != 0 && inodes.contains(&row.inode))
        .copied()
        .collect())
}

/// Makes `command`'s process start with `limit` open files, soft and hard (as
/// `prlimit --nofile=LIMIT:LIMIT` would): it cannot raise its own.
pub fn limit_nofile(command: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    let rlimit = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: limit as libc::rlim_t,
    };
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit, which
    // is async-signal-safe; `rlimit` was built before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Makes the kernel kill `command`'s process (SIGKILL) when the thread that spawns it dies, so
/// that a bench killed before its `Drop`s run leaves no helper behind. Spawn from the thread
/// that lives for the run (the main thread, e.g. inside `block_on`).
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// A gateway policy file (`--auth-file`): one operator caller for every beamline, identified by
/// the SHA-256 (hex) of its API key, with per-beamline and per-caller limits (10⁶/s, burst 10⁶)
/// no bench comes near, so every call passes every policy layer.
pub fn open_policy(api_key_sha256: &str) -> String {
    policy_of(&[("bench", api_key_sha256, "operator")])
}

/// The same with these callers (name, SHA-256 of the API key, role), each for every beamline.
pub fn policy_of(callers: &[(&str, &str, &str)]) -> String {
    let mut text = String::new();
    for (name, api_key_sha256, role) in callers {
        text.push_str(&format!(
            "[[caller]]\n\
             name = \"{name}\"\n\
             api_key_sha256 = \"{api_key_sha256}\"\n\
             role = \"{role}\"\n\
             beamlines = [\"*\"]\n"
        ));
    }
    text.push_str(
        "[limits]\n\
         per_beamline = { rate = 1000000, burst = 1000000 }\n\
         per_caller = { rate = 1000000, burst = 1000000 }\n",
    );
    text
}

/// TIME_WAIT sockets in `table`: all of them, or those with one of `ports` at either end.
pub fn time_wait(table: &[TcpRow], ports: Option<&std::collections::HashSet<u16>>) -> usize {
    table
        .iter()
        .filter(|r| r.state == TCP_TIME_WAIT)
        .filter(|r| ports.is_none_or(|p| p.contains(&r.local_port) || p.contains(&r.remote_port)))
        .count()
}

/// Polls (bounded by `deadline`) until the registry at `base` has at least `count` passing
/// checks of services whose name starts with `prefix`; returns how long it took.
pub async fn wait_passing_count(
    http: &reqwest::Client,
    base: &str,
    prefix: &str,
    count: usize,
    deadline: Duration,
) -> Result<Duration> {
    let url = format!("{base}/v1/health/state/passing");
    let started = tokio::time::Instant::now();
    let mut passing = 0;
    loop {
        if let Ok(response) = http.get(&url).send().await {
            let checks: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
            passing = checks
                .iter()
                .filter(|c| {
                    c["ServiceName"]
                        .as_str()
                        .is_some_and(|s| s.starts_with(prefix))
                })
                .count();
            if passing >= count {
                return Ok(started.elapsed());
            }
        }
        ensure!(
            started.elapsed() < deadline,
            "{passing} of {count} {prefix}* checks passing after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The ports of the services registered at `base` whose name starts with `prefix`.
pub async fn registered_ports(
    http: &reqwest::Client,
    base: &str,
    prefix: &str,
) -> Result<std::collections::HashSet<u16>> {
    let services: serde_json::Map<String, serde_json::Value> = http
        .get(format!("{base}/v1/agent/services"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(services
        .values()
        .filter(|s| s["Service"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .filter_map(|s| s["Port"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Mutual TLS (the mesh and agent benches)
// ---------------------------------------------------------------------------------------------

/// The PEM files of a mesh with mutual TLS, as [`write_mesh_certs`] wrote them: the CA
/// (agents' `--client-ca`, the gateway's `--upstream-ca`), one agent's server certificate and
/// the gateway's client certificate.
pub struct MeshCerts {
    pub ca: std::path::PathBuf,
    pub agent_cert: std::path::PathBuf,
    pub agent_key: std::path::PathBuf,
    pub gateway_cert: std::path::PathBuf,
    pub gateway_key: std::path::PathBuf,
}

impl MeshCerts {
    /// The agent's flags for mutual TLS: its certificate, the CA its callers must chain to, and
    /// a plaintext health-only port (any free one) for the registry's gRPC check.
    pub fn agent_args(&self) -> Result<Vec<String>> {
        Ok(vec![
            "--tls-cert".into(),
            utf8(&self.agent_cert)?,
            "--tls-key".into(),
            utf8(&self.agent_key)?,
            "--client-ca".into(),
            utf8(&self.ca)?,
            "--health-listen".into(),
            "127.0.0.1:0".into(),
        ])
    }

    /// The gateway's flags to dial agents over mutual TLS with its client certificate.
    pub fn gateway_args(&self) -> Result<Vec<String>> {
        Ok(vec![
            "--upstream-ca".into(),
            utf8(&self.ca)?,
            "--upstream-cert".into(),
            utf8(&self.gateway_cert)?,
            "--upstream-key".into(),
            utf8(&self.gateway_key)?,
        ])
    }
}

fn utf8(path: &std::path::Path) -> Result<String> {
    path.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

/// Makes a throwaway CA (rcgen) and writes into `dir`: its certificate, a server certificate
/// for `beamline`'s agent (DNS SAN `wire::tls::agent_name`, ServerAuth) and the gateway's
/// client certificate (DNS SAN `wire::tls::GATEWAY_NAME`, ClientAuth), with their keys. The
/// CA's key stays in memory.
pub fn write_mesh_certs(dir: &std::path::Path, beamline: &str) -> Result<MeshCerts> {
    use beamline_mesh::beamline::BeamlineId;
    use beamline_mesh::wire;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    let id = BeamlineId::parse(beamline).with_context(|| format!("beamline {beamline:?}"))?;
    let ca_key = KeyPair::generate().context("generate the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "beamline-mesh bench CA (throwaway)");
    let ca = ca_params.self_signed(&ca_key).context("self-sign the CA")?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| -> Result<(String, String)> {
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().with_context(|| format!("generate a key for {name}"))?;
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("sign the certificate for {name}"))?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let stem = id.service_name();
    let certs = MeshCerts {
        ca: dir.join("ca.pem"),
        agent_cert: dir.join(format!("{stem}.pem")),
        agent_key: dir.join(format!("{stem}.key")),
        gateway_cert: dir.join("gateway.pem"),
        gateway_key: dir.join("gateway.key"),
    };
    let (agent_cert, agent_key) = leaf(
        &wire::tls::agent_name(&id),
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (gateway_cert, gateway_key) =
        leaf(wire::tls::GATEWAY_NAME, ExtendedKeyUsagePurpose::ClientAuth)?;
    for (path, text) in [
        (&certs.ca, ca.pem()),
        (&certs.agent_cert, agent_cert),
        (&certs.agent_key, agent_key),
        (&certs.gateway_cert, gateway_cert),
        (&certs.gateway_key, gateway_key),
    ] {
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(certs)
}
