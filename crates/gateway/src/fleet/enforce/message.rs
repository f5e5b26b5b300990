//! A unary gRPC request's one message, as the enforcement layer reads it when a refusal may
//! apply: the body read whole under the mesh's message limit (in however many chunks it comes),
//! its 5-byte frame header checked, and the protobuf decoded; then the same bytes handed on.
//!
//! Owns the framing and its errors (RESOURCE_EXHAUSTED over the limit, as the mesh says it;
//! INVALID_ARGUMENT for a body that is not one message); it must not decide anything from the
//! message.

use bytes::Bytes;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::Status;

/// The gRPC frame header: a compressed flag and a 4-byte big-endian length.
const HEADER: usize = 5;

/// The whole body, at most `max_message` bytes of message (plus its frame header).
pub(super) async fn read(body: Body, max_message: usize) -> Result<Bytes, Status> {
    let limited = http_body_util::Limited::new(body, max_message.saturating_add(HEADER));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Status::resource_exhausted(
            format!("the request message is larger than {max_message} bytes"),
        )),
        Err(e) => Err(Status::cancelled(format!("reading the request: {e}"))),
    }
}

/// The message in `frame` (one whole gRPC frame), decoded; None when it is compressed (its
/// content is not known here).
pub(super) fn decode<M: prost::Message + Default>(frame: &[u8]) -> Result<Option<M>, Status> {
    let Some((&[flag, a, b, c, d], message)) = frame.split_first_chunk::<HEADER>() else {
        return Err(Status::invalid_argument(
            "the request is not a gRPC message (fewer than 5 bytes)",
        ));
    };
    let length = u32::from_be_bytes([a, b, c, d]) as usize;
    if length != message.len() {
        return Err(Status::invalid_argument(format!(
            "the request is not one gRPC message: its frame says {length} bytes, {} came",
            message.len()
        )));
    }
    match flag {
        0 => M::decode(message)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("bad request message: {e}"))),
        1 => Ok(None),
        other => Err(Status::invalid_argument(format!(
            "the request's gRPC frame has flag {other} (0 or 1)"
        ))),
    }
}

/// A body of `bytes`, as read.
pub(super) fn replay(bytes: Bytes) -> Body {
    Body::new(http_body_util::Full::new(bytes))
}

#[cfg(test)]
mod tests;
