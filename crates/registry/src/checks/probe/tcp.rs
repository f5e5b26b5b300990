//! The TCP check (Consul's `TCP`), and the Go-style `net.Dial` the gRPC check connects through.
//!
//! Owns opening a connection and how a failure to do so reads; it must not speak any protocol
//! over the connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout_at;

use super::resolve::Resolver;
use super::{deadline_after, done, io_text, ProbeResult};
use crate::model::CheckStatus::{Critical, Passing};

/// Passing when a TCP connection to `addr` (`host:port`) opens within `timeout`.
pub async fn tcp(addr: &str, timeout: Duration) -> ProbeResult {
    match timeout_at(deadline_after(timeout), dial(addr)).await {
        Ok(Ok(_stream)) => done(Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(err)) => done(Critical, err),
        Err(_) => done(Critical, format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Go's `net.Dial("tcp", addr)`: each resolved address in turn; the first failure is reported.
pub(super) async fn dial(addr: &str) -> Result<TcpStream, String> {
    let (host, port) =
        split_host_port(addr).map_err(|e| format!("dial tcp: address {addr}: {e}"))?;
    let addrs: Vec<SocketAddr> = Resolver::system()
        .resolve(host, port)
        .await
        .map_err(|e| format!("dial tcp: lookup {host}: {}", io_text(&e)))?;
    let mut first_err = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                first_err.get_or_insert(format!("dial tcp {addr}: connect: {}", io_text(&e)));
            }
        }
    }
    Err(first_err.unwrap_or_else(|| format!("dial tcp: lookup {host}: no such host")))
}

pub(super) fn split_host_port(addr: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = match addr.strip_prefix('[') {
        Some(rest) => rest
            .split_once("]:")
            .ok_or("missing ']' or port in address")?,
        None => addr.rsplit_once(':').ok_or("missing port in address")?,
    };
    if !addr.starts_with('[') && host.contains(':') {
        return Err("too many colons in address");
    }
    Ok((host, port.parse().map_err(|_| "invalid port")?))
}
