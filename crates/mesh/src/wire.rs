//! What the router reads off the wire: gRPC's timeout header and trailers-only statuses (with
//! the agent's not-started marker). Whether a transport error happened before the request was
//! written is the connection's (`connection::never_sent`).

use std::time::Duration;

use tonic::{Code, Status};

use super::route::Response;
use beamline_contract::wire::NOT_STARTED_KEY;

/// `grpc-timeout` as gRPC encodes it: digits and a unit (H, M, S, m, u, n).
pub(super) fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    // gRPC allows at most 8 digits; longer values are malformed, not "forever".
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The status of a trailers-only response, and whether it says the call never started.
pub(super) fn trailers_only_status(response: &Response) -> Option<(Code, bool)> {
    let code = response
        .headers()
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    let not_started = response
        .headers()
        .get(NOT_STARTED_KEY)
        .is_some_and(|v| v.as_bytes() == b"true");
    Some((Code::from_i32(code), not_started))
}

pub(super) fn status_of(response: &Response) -> Status {
    Status::from_header_map(response.headers())
        .unwrap_or_else(|| Status::unavailable("unavailable"))
}

#[cfg(test)]
mod tests;
