//! Accepted connections for tonic's `serve_with_incoming_shutdown`, within [`Limits`]: at most
//! `max_connections` open at once (each [`Conn`] holds a place until it is dropped; one more is
//! closed at once, with a rate-limited WARN naming the cap), and a handshake timeout — a
//! connection's first bytes (the 24-byte HTTP/2 client preface, or a whole TLS ClientHello
//! record) are read within `handshake_timeout` by a task of their own, so a client that sends
//! nothing, or half a preface, is closed without delaying anyone else; the bytes read are
//! replayed to tonic. Accept errors (out of descriptors, say) are logged, rate-limited, with the
//! descriptor limit, and retried after a pause instead of spinning.
//!
//! Owns connections from accept() until tonic takes them (and their place under the cap until
//! they close); it must not speak HTTP/2 or TLS beyond recognising those first bytes.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::every::Every;
use crate::Limits;

/// What every HTTP/2 client sends first (RFC 9113, 3.4).
pub const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The largest TLS record (2^14 bytes of plaintext plus the most expansion TLS allows).
const MAX_TLS_RECORD: usize = (1 << 14) + 2048;
/// Pause after a failed accept, so the loop does not spin while descriptors are short.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one line per period about refused connections, and one about accept errors.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for tonic to take them.
const HANDOFF_QUEUE: usize = 64;

/// What a connection must send first, within the handshake timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The HTTP/2 client preface (plaintext gRPC); anything else is closed at once.
    Http2,
    /// A TLS handshake record (the ClientHello) in full; anything else is closed at once.
    Tls,
}

/// Starts accepting on `listener` within `limits`; pass the stream to tonic's
/// `serve_with_incoming_shutdown`. Dropping it stops accepting and closes the listener (and the
/// connections still handshaking). Needs a Tokio runtime.
pub fn incoming(listener: TcpListener, limits: Limits, handshake: Handshake) -> Incoming {
    let (handoff, taken) = mpsc::channel(HANDOFF_QUEUE);
    let accept = tokio::spawn(accept_loop(listener, limits, handshake, handoff));
    Incoming {
        taken,
        accept: accept.abort_handle(),
    }
}

/// Handshaken connections, for tonic.
#[derive(Debug)]
pub struct Incoming {
    taken: mpsc::Receiver<Conn>,
    accept: AbortHandle,
}

impl tokio_stream::Stream for Incoming {
    type Item = Result<Conn, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.taken.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    limits: Limits,
    handshake: Handshake,
    handoff: mpsc::Sender<Conn>,
) {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    // Aborted with this task: a connection still handshaking when accepting stops is closed.
    let mut handshaking = JoinSet::new();
    let mut refused = Every::new(WARN_EVERY);
    let mut failed = Every::new(WARN_EVERY);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = handshaking.join_next(), if !handshaking.is_empty() => continue,
            () = handoff.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if let Some(held_back) = failed.admit(Instant::now()) {
                    let nofile = crate::nofile_limit().map_or(0, |(soft, _)| soft);
                    tracing::error!(error = %e, nofile, held_back, "cannot accept a connection");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            // Closed at once: the client sees its connection end instead of waiting on it.
            drop(tcp);
            if let Some(held_back) = refused.admit(Instant::now()) {
                let max_connections = limits.max_connections;
                tracing::warn!(
                    %peer,
                    max_connections,
                    held_back,
                    "connection refused: {max_connections} connections open (the cap)"
                );
            }
            continue;
        };
        // gRPC writes small frames; Nagle meeting the peer's delayed ACK adds ~40 ms.
        let _ = tcp.set_nodelay(true);
        let timeout = limits.handshake_timeout;
        let handoff = handoff.clone();
        handshaking.spawn(async move {
            match tokio::time::timeout(timeout, first_bytes(tcp, handshake)).await {
                Ok(Ok((tcp, first))) => {
                    // Fails only when tonic has stopped taking connections: then it closes.
                    let _ = handoff.send(Conn::new(tcp, first, place)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "closed during its handshake"),
                Err(_) => tracing::debug!(%peer, ?timeout, "no handshake in time: closed"),
            }
        });
    }
}

/// Reads the bytes `handshake` expects first; the stream and those bytes, or why not.
async fn first_bytes(
    mut stream: TcpStream,
    handshake: Handshake,
) -> io::Result<(TcpStream, Vec<u8>)> {
    let first = match handshake {
        Handshake::Http2 => {
            let mut preface = vec![0; HTTP2_PREFACE.len()];
            stream.read_exact(&mut preface).await?;
            if preface != HTTP2_PREFACE {
                return Err(invalid("not an HTTP/2 client preface"));
            }
            preface
        }
        Handshake::Tls => {
            let mut record = vec![0; 5];
            stream.read_exact(&mut record).await?;
            // A handshake record (22) of TLS 1.0 to 1.3 (record versions 3.1 to 3.3).
            if record[0] != 22 || record[1] != 3 {
                return Err(invalid("not a TLS handshake record"));
            }
            let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
            if len == 0 || len > MAX_TLS_RECORD {
                return Err(invalid("a TLS record of impossible length"));
            }
            record.resize(5 + len, 0);
            stream.read_exact(&mut record[5..]).await?;
            record
        }
    };
    Ok((stream, first))
}

fn invalid(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// An accepted, handshaking client's connection: replays the first bytes read, then reads the
/// socket; holds its place under the cap until dropped.
#[derive(Debug)]
pub struct Conn {
    tcp: TcpStream,
    first: Vec<u8>,
    replayed: usize,
    info: TcpConnectInfo,
    _place: OwnedSemaphorePermit,
}

impl Conn {
    fn new(tcp: TcpStream, first: Vec<u8>, place: OwnedSemaphorePermit) -> Conn {
        let info = TcpConnectInfo {
            local_addr: tcp.local_addr().ok(),
            remote_addr: tcp.peer_addr().ok(),
        };
        Conn {
            tcp,
            first,
            replayed: 0,
            info,
            _place: place,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.info.remote_addr
    }
}

impl Connected for Conn {
    // tonic's own, so `Request::remote_addr` works as with a plain TcpStream (and under TLS).
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.first.len() {
            let rest = &this.first[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.first.len() {
                this.first = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
