//! A body read whole into memory, under a bound: its data and its trailers. The router reads
//! every request message this way, and a unary read's response. Unlike `BodyExt::collect`, a
//! message that came as one DATA frame is kept as it came (no queue of chunks), and the
//! trailers are taken, not cloned: per call that was three allocations.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use tonic::body::Body;
use tower::BoxError;

/// What a body held.
pub(super) struct Whole {
    pub(super) data: Bytes,
    pub(super) trailers: Option<HeaderMap>,
}

/// Reads `body` to its end; past `limit` bytes of data, `http_body_util::LengthLimitError`
/// (nothing more is read).
pub(super) async fn read(body: Body, limit: usize) -> Result<Whole, BoxError> {
    let mut body = http_body_util::Limited::new(body, limit);
    let mut data = Bytes::new();
    // Only when the data comes in more than one frame.
    let mut joined: Option<BytesMut> = None;
    let mut trailers: Option<HeaderMap> = None;
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(chunk) if joined.is_none() && data.is_empty() => data = chunk,
            Ok(chunk) => joined
                .get_or_insert_with(|| BytesMut::from(&data[..]))
                .extend_from_slice(&chunk),
            Err(frame) => {
                if let Ok(more) = frame.into_trailers() {
                    match &mut trailers {
                        Some(trailers) => trailers.extend(more),
                        None => trailers = Some(more),
                    }
                }
            }
        }
    }
    Ok(Whole {
        data: joined.map_or(data, BytesMut::freeze),
        trailers,
    })
}

#[cfg(test)]
mod tests;
