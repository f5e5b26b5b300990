//! The caller's deadline over a whole call, stream included: tonic bounds only the time to the
//! response headers (and reports its own expiry as CANCELLED "Timeout expired"), so a 600 ms
//! deadline would not stop a 2 s stream. Here the response body ends with DEADLINE_EXCEEDED
//! trailers when the deadline passes, and dropping the upstream body cancels the call upstream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::Status;

/// When a call reached this process, put in the request's extensions by a server in front of
/// the mesh (the gateway) as it receives the call. The caller's deadline then counts from there,
/// as tonic's own grpc-timeout timer does, not from when the mesh got to the call: the mesh
/// must expire first, or tonic answers CANCELLED "Timeout expired" instead of
/// DEADLINE_EXCEEDED.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

/// How much sooner than the caller's deadline the mesh gives up: a twentieth of it, at least
/// 20 µs (the gap between tonic's timer starting and the gateway's arrival stamp) and at most
/// 5 ms. A deadline under 20 µs is over on arrival.
pub fn answer_by(deadline: Duration) -> Duration {
    let margin = (deadline / 20).clamp(Duration::from_micros(20), Duration::from_millis(5));
    deadline.saturating_sub(margin)
}

pin_project_lite::pin_project! {
    pub struct DeadlineBody {
        #[pin]
        inner: Body,
        sleep: Pin<Box<Sleep>>,
        expired: bool,
    }
}

impl DeadlineBody {
    /// `timer` is the call's own timer, moved to `deadline` if it is set to another instant:
    /// one timer per call, not one per bound.
    pub fn new(inner: Body, mut timer: Pin<Box<Sleep>>, deadline: Instant) -> DeadlineBody {
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        DeadlineBody {
            inner,
            sleep: timer,
            expired: false,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            *this.expired = true;
            let status = Status::deadline_exceeded("the caller's deadline passed");
            let mut trailers = http::HeaderMap::new();
            if status.add_header(&mut trailers).is_ok() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            return Poll::Ready(Some(Err(status)));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Rewrites tonic's own expiry (CANCELLED "Timeout expired", from a server's grpc-timeout
/// handling) into the DEADLINE_EXCEEDED the caller's deadline means.
pub fn fix_timeout_status(headers: &mut http::HeaderMap) {
    let cancelled = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"1");
    let timeout = headers
        .get("grpc-message")
        .is_some_and(|v| v.as_bytes() == b"Timeout expired");
    if cancelled && timeout {
        headers.insert("grpc-status", http::HeaderValue::from_static("4"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("deadline exceeded"),
        );
    }
}

#[cfg(test)]
mod tests;
