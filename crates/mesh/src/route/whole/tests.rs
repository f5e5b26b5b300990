use bytes::Bytes;
use http_body::Frame;
use tonic::body::Body;

use super::read;

fn body_of(frames: Vec<Frame<Bytes>>) -> Body {
    Body::new(http_body_util::StreamBody::new(futures::stream::iter(
        frames.into_iter().map(Ok::<_, tonic::Status>),
    )))
}

fn trailers(status: &str) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", status.parse().expect("a value"));
    trailers
}

#[tokio::test]
async fn one_frame_is_kept_as_it_came_and_the_trailers_are_taken() {
    let message = Bytes::from_static(b"\0\0\0\0\x02hi");
    let body = body_of(vec![
        Frame::data(message.clone()),
        Frame::trailers(trailers("0")),
    ]);
    let whole = read(body, 1024).await.expect("read");
    assert_eq!(whole.data, message);
    assert_eq!(whole.data.as_ptr(), message.as_ptr(), "not copied");
    assert_eq!(whole.trailers, Some(trailers("0")));
}

#[tokio::test]
async fn frames_are_joined_in_order() {
    let body = body_of(vec![
        Frame::data(Bytes::from_static(b"ab")),
        Frame::data(Bytes::from_static(b"")),
        Frame::data(Bytes::from_static(b"cd")),
        Frame::data(Bytes::from_static(b"e")),
    ]);
    let whole = read(body, 1024).await.expect("read");
    assert_eq!(&whole.data[..], b"abcde");
    assert_eq!(whole.trailers, None);
}

#[tokio::test]
async fn past_the_limit_is_a_length_limit_error() {
    let body = body_of(vec![
        Frame::data(Bytes::from_static(b"abc")),
        Frame::data(Bytes::from_static(b"def")),
    ]);
    let error = read(body, 4).await.err().expect("over the limit");
    assert!(error.is::<http_body_util::LengthLimitError>(), "{error}");
}
