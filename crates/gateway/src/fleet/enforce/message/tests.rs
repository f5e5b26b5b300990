use bytes::Bytes;
use http_body::Frame;
use prost::Message;
use tonic::body::Body;
use tonic::Code;

use super::{decode, read};
use beamline_contract::proto::ExecuteRequest;

fn frame(capability: &str) -> Bytes {
    let encoded = ExecuteRequest {
        capability: capability.to_string(),
        ..ExecuteRequest::default()
    }
    .encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    out.extend_from_slice(&encoded);
    out.into()
}

/// `bytes` in chunks of `size` bytes.
fn chunked(bytes: &Bytes, size: usize) -> Body {
    let chunks: Vec<Result<Frame<Bytes>, tonic::Status>> = bytes
        .chunks(size)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    Body::new(http_body_util::StreamBody::new(futures::stream::iter(
        chunks,
    )))
}

fn capability(frame: &[u8]) -> Result<Option<String>, Code> {
    decode::<ExecuteRequest>(frame)
        .map(|m| m.map(|m| m.capability))
        .map_err(|s| s.code())
}

#[tokio::test]
async fn a_message_split_over_chunks_is_read_whole_and_decoded() {
    let sent = frame("move_motor");
    for size in [1, 2, 5, 6, sent.len()] {
        let read = read(chunked(&sent, size), 64).await.unwrap();
        assert_eq!(read, sent, "chunks of {size}");
        assert_eq!(capability(&read), Ok(Some("move_motor".to_string())));
    }
}

#[tokio::test]
async fn a_message_at_the_limit_is_read_and_one_byte_over_is_resource_exhausted() {
    // A capability of n bytes makes a message of n + 2 (tag and length).
    let at = frame(&"m".repeat(62));
    assert_eq!(read(chunked(&at, 7), 64).await.unwrap(), at);
    let over = frame(&"m".repeat(63));
    let status = read(chunked(&over, 7), 64).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "the request message is larger than 64 bytes"
    );
}

#[tokio::test]
async fn a_body_that_breaks_is_cancelled() {
    let frames: Vec<Result<Frame<Bytes>, tonic::Status>> = vec![
        Ok(Frame::data(Bytes::from_static(&[0, 0]))),
        Err(tonic::Status::cancelled("the caller went away")),
    ];
    let body = Body::new(http_body_util::StreamBody::new(futures::stream::iter(
        frames,
    )));
    assert_eq!(read(body, 64).await.unwrap_err().code(), Code::Cancelled);
}

#[test]
fn a_frame_that_is_not_one_message_is_invalid_argument() {
    let good = frame("move_motor");
    let mut two = good.to_vec();
    two.extend_from_slice(&good);
    let mut flag_two = good.to_vec();
    flag_two[0] = 2;
    // The right length, but field 1 with wire type 7, which does not exist.
    let garbage = vec![0, 0, 0, 0, 2, 0x0f, 0x01];
    for (name, bytes) in [
        ("empty", vec![]),
        ("short header", vec![0, 0, 0]),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("two messages", two),
        ("flag 2", flag_two),
        ("not protobuf", garbage),
    ] {
        assert_eq!(capability(&bytes), Err(Code::InvalidArgument), "{name}");
    }
}

#[test]
fn a_compressed_message_is_not_decoded() {
    let mut compressed = frame("read_pv").to_vec();
    compressed[0] = 1;
    assert_eq!(capability(&compressed), Ok(None));
}
