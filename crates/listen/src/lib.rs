//! Listener limits shared by every beamline-mesh server (the gateway, its health listener, and
//! every agent; the registry's HTTP/1 listener has its own connection handling and shares only
//! the descriptor limit): the open-descriptor limit raised at start-up ([`rlimit`]), a cap on
//! open connections that refuses one more at once, and a handshake timeout that closes a
//! connection whose first bytes (the HTTP/2 client preface, or a TLS ClientHello) do not arrive
//! in time — checked concurrently, so a slow client never delays another ([`incoming()`]).
//!
//! Owns accepting connections up to the moment tonic takes them; it must not know what is
//! served on them, and must stay lean (the agent SDK depends on it: tokio and tokio-stream, libc,
//! tracing, thiserror and tonic's server half only).

mod every;
pub mod incoming;
mod limits;
pub mod rlimit;

pub use incoming::{incoming, Conn, Handshake, Incoming};
pub use limits::{Limits, LimitsError, HANDSHAKE_TIMEOUT_ENV, MAX_CONNECTIONS_ENV};
pub use rlimit::{fit_cap, nofile_limit, raise_nofile_limit, raise_nofile_limit_logged};
