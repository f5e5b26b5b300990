//! nginx as a gRPC proxy beside the gateway (the mesh bench's nginx paths, issue 16): found on
//! the machine or skipped, started with a config of its own in a temp dir (no system config, no
//! daemon), killed and reaped on drop with its workers.
//!
//! The config is what a user proxying gRPC with nginx would write: an h2c listener
//! (`listen … http2`), `grpc_pass` to a static upstream of the agent instance(s) with idle
//! connections kept (`keepalive`) and reused without bound (`keepalive_requests`), and either
//! `access_log off` or one line per call to a file (unbuffered: one `write` per line). No
//! discovery, no policy. One master and `worker_processes 1`, as nginx is run in production;
//! the master only supervises, so CPU and RSS are summed over the master and its workers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What to tell a reader whose machine has no nginx.
pub const INSTALL: &str = "apt-get install nginx";

/// The access log's format: the fields a gRPC proxy's log would carry (time, caller, request,
/// HTTP status, gRPC status from the trailers, duration, upstream), as the gateway's line does.
const LOG_FORMAT: &str = "'$time_iso8601 $remote_addr \"$request\" $status \
                          grpc-status=$sent_trailer_grpc_status $request_time $upstream_addr'";

/// The nginx executable: on `PATH`, or in `/usr/sbin` (not on a non-root user's `PATH` on
/// Debian), and answering `nginx -v`.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| {
            candidate.is_file()
                && Command::new(candidate)
                    .arg("-v")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        })
}

/// `nginx -v`'s answer (`nginx/1.22.1`), for the report.
pub fn version(exe: &Path) -> String {
    Command::new(exe)
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .trim_start_matches("nginx version: ")
                .to_string()
        })
        .unwrap_or_default()
}

/// One nginx: a master and its worker, with a prefix dir of its own.
pub struct Nginx {
    pub name: &'static str,
    child: Child,
    addr: String,
    /// The prefix: config, pid file, error log, access log, temp paths. Removed on drop.
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Writes the config into a new temp dir and starts `exe -p DIR -c DIR/nginx.conf -g
    /// 'daemon off;'` proxying to `upstreams` (`host:port`), on `cpu` alone if one is given
    /// (its worker inherits the placement); waits, at most [`super::START_TIMEOUT`], until its
    /// port accepts connections.
    pub fn start(
        name: &'static str,
        exe: &Path,
        upstreams: &[&str],
        access_log: bool,
        cpu: Option<usize>,
    ) -> Result<Nginx> {
        let dir = tempfile::Builder::new()
            .prefix("beamline-bench-nginx-")
            .tempdir()
            .context("create nginx temp dir")?;
        let port = free_port()?;
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), port, upstreams, access_log))
            .context("write nginx.conf")?;
        let mut command = Command::new(exe);
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            // Where nginx logs before it has read the config (else /var/log/nginx).
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.log"))
                    .context("create nginx stderr log")?,
            ));
        if let Some(cpu) = cpu {
            super::pin_command(&mut command, &[cpu])?;
        }
        super::die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("spawn {name} ({})", exe.display()))?;
        // From here on Drop stops it, whichever way start() returns.
        let mut nginx = Nginx {
            name,
            child,
            addr: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + super::START_TIMEOUT;
        loop {
            if let Some(status) = nginx.child.try_wait().context("wait for nginx")? {
                bail!(
                    "{name} exited ({status}) before listening; error log:\n{}",
                    nginx.error_tail()
                );
            }
            if std::net::TcpStream::connect(&nginx.addr).is_ok() {
                return Ok(nginx);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{name} did not listen on {} within {:?}; error log:\n{}",
                    nginx.addr,
                    super::START_TIMEOUT,
                    nginx.error_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `host:port` of its h2c listener.
    pub fn authority(&self) -> &str {
        &self.addr
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The master and its workers.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        pids.extend(children_of(self.pid()));
        pids
    }

    /// User + system CPU time so far of the master and its workers.
    pub fn cpu(&self) -> Duration {
        self.pids()
            .iter()
            .map(|pid| super::cpu_of(&pid.to_string()))
            .sum()
    }

    /// `VmRSS` of the master plus its workers, in KiB (pages they share are counted twice).
    pub fn rss_kib(&self) -> u64 {
        self.pids().iter().map(|&pid| rss_kib_of(pid)).sum()
    }

    /// Lines in its access log so far (0 without one).
    pub fn access_log_lines(&self) -> usize {
        std::fs::read(self.dir.path().join("access.log"))
            .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
            .unwrap_or(0)
    }

    /// The last 20 lines of its error log.
    pub fn error_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT would wait for connections to close; SIGTERM is nginx's fast shutdown (the
        // master stops its workers). Then SIGKILL whatever is left, workers first.
        let workers = children_of(self.pid());
        // SAFETY: kill has no memory preconditions; the pid is our child, not yet reaped.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for worker in workers {
            // SAFETY: as above; a worker already gone makes kill fail with ESRCH, ignored.
            unsafe { libc::kill(worker as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config: one worker, an h2c listener on `port`, `grpc_pass` to `upstreams` with idle
/// connections kept, everything nginx writes inside `dir`.
fn config(dir: &Path, port: u16, upstreams: &[&str], access_log: bool) -> String {
    let dir = dir.display();
    let servers: String = upstreams
        .iter()
        .map(|u| format!("        server {u};\n"))
        .collect();
    let log = if access_log {
        format!("    log_format grpc {LOG_FORMAT};\n    access_log {dir}/access.log grpc;\n")
    } else {
        "    access_log off;\n".to_string()
    };
    format!(
        "# Written by benches/mesh.rs (support/nginx.rs) for one run; removed with its dir.
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{log}
    # Since nginx 1.19.7 these also bound an HTTP/2 connection's requests and idle time: the
    # bench's one connection must never be closed by nginx during a run.
    keepalive_requests 1000000000;
    keepalive_timeout 3600s;

    upstream agents {{
{servers}        keepalive 256;
        keepalive_requests 1000000000;
        keepalive_timeout 3600s;
    }}

    server {{
        listen 127.0.0.1:{port} http2;
        location / {{
            grpc_pass grpc://agents;
        }}
    }}
}}
"
    )
}

/// A loopback port free now (the kernel's choice; released for nginx to bind).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The pids whose parent is `pid` (scanning `/proc`; nginx's workers are few).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| {
                    // After the command (which may hold spaces): state, then the parent's pid.
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// `VmRSS` of `pid` in KiB (0 when it cannot be read).
fn rss_kib_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
