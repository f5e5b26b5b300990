//! A TCP proxy that copies bytes and nothing else: the floor under any gateway. Measured on the
//! same path as the gateway, it shows what one more process between caller and agent costs on
//! this machine before any HTTP/2, routing or policy.
//!
//! A bench re-executes itself with [`FLAG`] to run it (a bench may add no other target).

use std::io::Write;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

/// `<bench binary> --serve-tcp-proxy HOST:PORT` proxies to HOST:PORT.
pub const FLAG: &str = "--serve-tcp-proxy";

/// The upstream address when this process was started as a proxy.
pub fn requested() -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != FLAG);
    args.next()?;
    args.next()
}

/// Listens on a loopback port, prints `tcp proxy listening on ADDR`, and forwards every
/// connection to `upstream` until killed.
pub fn serve(upstream: &str) -> Result<()> {
    super::runtime()?.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the proxy")?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout();
        writeln!(out, "tcp proxy listening on {addr}")?;
        out.flush()?;
        loop {
            let (mut caller, _) = listener.accept().await.context("accept")?;
            let upstream = upstream.to_string();
            tokio::spawn(async move {
                let Ok(mut agent) = TcpStream::connect(&upstream).await else {
                    return;
                };
                // As the gateway's sockets: no Nagle delay on small frames.
                if caller.set_nodelay(true).is_ok() && agent.set_nodelay(true).is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut caller, &mut agent).await;
                }
            });
        }
    })
}
