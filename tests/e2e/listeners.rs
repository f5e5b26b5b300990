//! The gateway's and an agent's gRPC listeners under clients that hold connections: one that
//! sends nothing (or half the HTTP/2 preface) is closed within the handshake timeout, one past
//! the connection cap is closed at once while a client already connected keeps being served,
//! and 500 idle connections to a gateway limited to 256 descriptors (`prlimit`) do not lock a
//! new client out. Real processes on 127.0.0.1, raw TCP for the misbehaving clients; the limits
//! are set through `BEAMLINE_MESH_HANDSHAKE_TIMEOUT` and `BEAMLINE_MESH_MAX_CONNECTIONS`.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::agent::AgentProc;
use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HANDSHAKE_TIMEOUT_ENV: &str = "BEAMLINE_MESH_HANDSHAKE_TIMEOUT";
const MAX_CONNECTIONS_ENV: &str = "BEAMLINE_MESH_MAX_CONNECTIONS";

/// A `beamline-mesh gateway --insecure-no-auth` with environment variables of its own, and
/// optionally under `prlimit --nofile=N:N`. Killed (and reaped) on drop, its stderr printed
/// when the test panics.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
    _work: tempfile::TempDir,
}

impl Gateway {
    fn start(registry: &Registry, env: &[(&str, &str)], nofile: Option<u32>) -> Gateway {
        let work = tempfile::tempdir().expect("temp dir");
        let stderr = work.path().join("stderr.log");
        let bin = env!("CARGO_BIN_EXE_beamline-mesh");
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let consul = registry.addr.to_string();
        let args = ["gateway", "--listen", "127.0.0.1:0", "--insecure-no-auth"];
        let mut child = command
            .args(args)
            .args(["--consul", &consul])
            .envs(env.iter().copied())
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("CONSUL_HTTP_TOKEN")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).expect("stderr log"))
            .spawn()
            .expect("spawn the gateway");
        let lines = follow_stdout(child.stdout.take().unwrap(), Arc::new(Mutex::new(vec![])));
        let mut gateway = Gateway {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            stderr,
            _work: work,
        };
        let line = lines.recv_timeout(START_TIMEOUT);
        let line = match &line {
            Ok(Ok(line)) => line.strip_prefix("gateway listening on "),
            _ => None,
        };
        gateway.addr = match line.map(|a| a.trim().parse()) {
            Some(Ok(addr)) => addr,
            _ => panic!("no listening line\n{}", gateway.stderr()),
        };
        gateway
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gateway stderr ---\n{}", self.stderr());
        }
    }
}

/// Reads until the server closes `tcp` (EOF or reset), for at most `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) {
    let read_all = async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .unwrap_or_else(|_| panic!("still open after {within:?}"));
}

/// A gRPC health check over a fresh connection, bounded by `within`.
async fn healthy(addr: SocketAddr, within: Duration) -> bool {
    let check = async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect_timeout(within)
            .connect()
            .await
            .ok()?;
        check(&mut HealthClient::new(channel), within)
            .await
            .then_some(())
    };
    tokio::time::timeout(within, check)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// A health check of the whole server ("") on an existing channel, bounded by `within`.
async fn check(client: &mut HealthClient<Channel>, within: Duration) -> bool {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let answer = tokio::time::timeout(within, client.check(request)).await;
    matches!(answer, Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32)
}

/// A client that connects and sends nothing, one that sends half the preface, and a working
/// client beside them: the silent two are closed within the (1 s) handshake timeout, the
/// working one is served meanwhile.
async fn silent_clients_are_closed(addr: SocketAddr, what: &str) {
    let connected = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&PREFACE[..12]).await.unwrap();
    assert!(healthy(addr, secs(5)).await, "{what}: a client is served");
    for (name, tcp) in [("silent", &mut silent), ("half a preface", &mut half)] {
        closed_within(tcp, secs(5)).await;
        let after = connected.elapsed();
        eprintln!("{what}: {name} connection closed {after:?} after it connected");
        let expected = Duration::from_millis(900)..Duration::from_millis(2500);
        assert!(expected.contains(&after), "{what}: {name}: {after:?}");
    }
}

#[tokio::test]
async fn the_gateway_and_an_agent_close_a_connection_that_sends_no_preface() {
    let registry = Registry::start();
    let gateway = Gateway::start(&registry, &[(HANDSHAKE_TIMEOUT_ENV, "1s")], None);
    let agent = AgentProc::builder("5.3.1")
        .registry(&registry)
        .env(HANDSHAKE_TIMEOUT_ENV, "1s")
        .start();
    tokio::join!(
        silent_clients_are_closed(gateway.addr, "gateway"),
        silent_clients_are_closed(agent.addr, "agent"),
    );
}

#[tokio::test]
async fn past_the_cap_a_connection_is_closed_at_once_while_a_client_keeps_working() {
    let registry = Registry::start();
    let gateway = Gateway::start(&registry, &[(MAX_CONNECTIONS_ENV, "4")], None);
    let channel = Endpoint::from_shared(format!("http://{}", gateway.addr))
        .unwrap()
        .connect()
        .await
        .expect("the first client connects");
    let mut client = HealthClient::new(channel);
    assert!(check(&mut client, secs(5)).await);
    // Three more handshaken connections fill the cap of 4.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
        tcp.write_all(PREFACE).await.unwrap();
        held.push(tcp);
    }
    let mut past = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
        tcp.write_all(PREFACE).await.unwrap();
        closed_within(&mut tcp, secs(2)).await;
        past.push(start.elapsed());
    }
    eprintln!("past the cap: closed after {past:?}");
    assert!(
        past.iter().all(|d| *d < Duration::from_millis(500)),
        "{past:?}"
    );
    assert!(
        check(&mut client, secs(5)).await,
        "the first client is still served"
    );

    // The refusal is logged (once per 10 s), naming the cap.
    let warned = poll_until(
        secs(5),
        "the refusal's WARN line",
        async || gateway.stderr(),
        |log| log.contains("connection refused") && log.contains("max_connections=4"),
    )
    .await;
    let lines = warned.matches("connection refused").count();
    assert_eq!(lines, 1, "rate-limited: {warned}");

    // A connection that closes frees its place.
    drop(held.pop());
    poll_until(
        secs(5),
        "a new client served again",
        async || healthy(gateway.addr, secs(1)).await,
        |ok| *ok,
    )
    .await;
}

#[tokio::test]
async fn five_hundred_idle_connections_do_not_lock_out_a_client_of_a_gateway_with_256_descriptors()
{
    // The test process holds the 500 client ends.
    let _ = beamline_mesh::registry::rlimit::raise_nofile_limit();
    let registry = Registry::start();
    let env = [(HANDSHAKE_TIMEOUT_ENV, "2s")];
    let gateway = Gateway::start(&registry, &env, Some(256));
    assert!(healthy(gateway.addr, secs(5)).await);

    let start = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..500 {
        let tcp = tokio::time::timeout(secs(5), TcpStream::connect(gateway.addr)).await;
        idle.push(tcp.expect("connect in time").expect("connect"));
    }
    let opened = start.elapsed();
    let served = poll_until(
        secs(10),
        "a new client served beside 500 idle connections",
        async || healthy(gateway.addr, secs(1)).await,
        |ok| *ok,
    )
    .await;
    let waited = start.elapsed();
    eprintln!(
        "256 descriptors: 500 idle connections opened in {opened:?}; a new client served \
         {waited:?} after the first"
    );
    assert!(served);
    // Every idle connection is closed by the gateway: past the cap at once, the rest at the
    // handshake timeout.
    for tcp in &mut idle {
        closed_within(tcp, secs(5)).await;
    }
    let all_closed = start.elapsed();
    eprintln!("all 500 closed by the gateway {all_closed:?} after the first opened");
    // The last idle connection was closed at most the handshake timeout (2 s) after it opened.
    assert!(all_closed < opened + secs(4), "{all_closed:?}");
    assert!(
        gateway.stderr().contains("lowered_to=192"),
        "{}",
        gateway.stderr()
    );
}
