//! A response body that ends in gRPC trailers even when the upstream stream breaks: an error
//! from the mesh's body (an instance that died mid-stream) becomes `grpc-status` and
//! `grpc-message` trailers, so the caller reads the status the mesh gave (UNAVAILABLE, "the
//! instance's response broke off: …"), not the INTERNAL of a reset stream.
//!
//! Owns that conversion only; it must not buffer or reorder the body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use tonic::body::Body;
use tonic::Status;

/// `inner`, with a failure turned into trailers and the body ended there.
pub struct StatusTrailers {
    inner: Body,
    done: bool,
}

impl StatusTrailers {
    pub fn new(inner: Body) -> StatusTrailers {
        StatusTrailers { inner, done: false }
    }
}

impl HttpBody for StatusTrailers {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(status))) => {
                self.done = true;
                let mut trailers = http::HeaderMap::new();
                match status.add_header(&mut trailers) {
                    Ok(()) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                    // A status that cannot be written as headers: the stream is reset instead.
                    Err(_) => Poll::Ready(Some(Err(status))),
                }
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
