use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::{Code, Status};

use super::StatusTrailers;

#[tokio::test]
async fn a_broken_stream_ends_in_the_status_as_trailers() {
    let frames = futures::stream::iter([
        Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
        Err(Status::unavailable(
            "the instance's response broke off: connection closed",
        )),
    ]);
    let body = StatusTrailers::new(Body::new(http_body_util::StreamBody::new(frames)));
    let collected = body.collect().await.expect("no error reaches the server");
    let trailers = collected.trailers().cloned().expect("trailers");
    let status = Status::from_header_map(&trailers).expect("a status in the trailers");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("broke off"), "{status:?}");
    assert_eq!(
        collected.to_bytes().len(),
        5,
        "the data before the break is kept"
    );
}

#[tokio::test]
async fn a_whole_stream_passes_unchanged() {
    let mut end = http::HeaderMap::new();
    end.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = futures::stream::iter([
        Ok::<_, Status>(Frame::data(Bytes::from_static(b"abc"))),
        Ok(Frame::trailers(end.clone())),
    ]);
    let body = StatusTrailers::new(Body::new(http_body_util::StreamBody::new(frames)));
    let collected = body.collect().await.unwrap();
    assert_eq!(collected.trailers(), Some(&end));
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"abc"));
}
