//! One run of an HTTP, TCP or gRPC health check against its target, turned into a Consul check
//! status and an Output text shaped like the one a Consul agent writes.
//!
//! Owns the network side of a check only: scheduling, thresholds (SuccessBeforePassing,
//! FailuresBeforeCritical) and state changes belong to the check runner, not here.
//!
//! One submodule per check kind: `http`, `tcp` and `grpc`, and `resolve`, the host-name lookups
//! they all go through; this module holds what they share (the result, the deadline, Go-style
//! error text).

mod grpc;
mod http;
mod leases;
pub mod resolve;
mod tcp;

pub use self::grpc::{grpc, GrpcLease, GrpcProbe};
pub use self::http::{http, HttpProbe};
pub use self::tcp::tcp;

use std::time::Duration;

use tokio::time::Instant;

use crate::model::CheckStatus;

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub status: CheckStatus,
    pub output: String,
}

fn done(status: CheckStatus, output: String) -> ProbeResult {
    ProbeResult { status, output }
}

/// `Instant + Duration` panics on overflow, and a check's timeout is user input.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or(now + Duration::from_secs(365 * 24 * 3600))
}

/// `head` (if any) and the error's causes on one line, without the wrapper layers' repeats of
/// the same text.
fn describe_error(head: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Some(head.to_owned())
        .filter(|h| !h.is_empty())
        .into_iter()
        .collect();
    for cause in std::iter::successors(err.source(), |&e| e.source()) {
        let text = match cause.downcast_ref::<std::io::Error>() {
            Some(io) if io.get_ref().is_none() => io_text(io),
            _ => cause.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        return err.to_string();
    }
    parts.join(": ")
}

/// "connection refused" rather than "Connection refused (os error 111)", as Go prints it.
fn io_text(err: &std::io::Error) -> String {
    if err.kind() == std::io::ErrorKind::TimedOut {
        return "i/o timeout".into();
    }
    let text = err.to_string();
    text.split(" (os error")
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

#[cfg(test)]
mod tests;
