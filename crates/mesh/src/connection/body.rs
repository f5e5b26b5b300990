//! Bodies on an HTTP/2 stream: a request body written to its stream, and a response stream
//! read as a body. Flow control is h2's; this module only decides when to write.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http_body::{Body as HttpBody, Frame};
use tonic::body::Body;

/// How much of a request body is written without waiting for flow-control capacity (h2
/// buffers it until the window allows): a gRPC request message, with room to spare.
const EAGER_BYTES: usize = 64 * 1024;

/// Writes `body` to `stream`. What the body has ready now is written now, so a unary request
/// leaves with its headers in one write; the rest, if any, is piped by a task of its own.
pub(super) async fn send(mut body: Body, mut stream: SendStream<Bytes>) {
    let finished =
        std::future::poll_fn(|cx| Poll::Ready(write_ready(&mut body, &mut stream, cx))).await;
    if !finished {
        tokio::spawn(pipe(body, stream));
    }
}

/// Writes the frames `body` has ready, up to [`EAGER_BYTES`]; whether the body is done.
fn write_ready(body: &mut Body, stream: &mut SendStream<Bytes>, cx: &mut Context<'_>) -> bool {
    let mut budget = EAGER_BYTES;
    loop {
        let Poll::Ready(frame) = Pin::new(&mut *body).poll_frame(cx) else {
            return false;
        };
        match put(frame, body.is_end_stream(), stream) {
            Step::Done => return true,
            Step::Wrote(len) if len >= budget => return false,
            Step::Wrote(len) => budget -= len,
        }
    }
}

enum Step {
    Wrote(usize),
    Done,
}

/// Writes one frame of the body; `eos` says the body has nothing after it.
fn put(
    frame: Option<Result<Frame<Bytes>, tonic::Status>>,
    eos: bool,
    stream: &mut SendStream<Bytes>,
) -> Step {
    let frame = match frame {
        None => {
            let _ = stream.send_data(Bytes::new(), true);
            return Step::Done;
        }
        Some(Err(error)) => {
            tracing::debug!(%error, "request body failed: cancelling the stream");
            stream.send_reset(h2::Reason::CANCEL);
            return Step::Done;
        }
        Some(Ok(frame)) => frame,
    };
    match frame.into_data() {
        Ok(data) => {
            let len = data.len();
            // An error means the stream was reset; its response says why.
            if stream.send_data(data, eos).is_err() || eos {
                return Step::Done;
            }
            Step::Wrote(len)
        }
        Err(frame) => match frame.into_trailers() {
            Ok(trailers) => {
                let _ = stream.send_trailers(trailers);
                Step::Done
            }
            Err(_) => Step::Wrote(0),
        },
    }
}

/// The rest of a request body, written as the stream's window allows (h2 holds at most what
/// was sent beyond it), until the body ends or the peer resets the stream.
async fn pipe(mut body: Body, mut stream: SendStream<Bytes>) {
    loop {
        let frame = std::future::poll_fn(|cx| {
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        let Some(frame) = frame else { return };
        let is_data = matches!(&frame, Some(Ok(f)) if f.is_data());
        if is_data && !capacity(&mut stream).await {
            return;
        }
        if let Step::Done = put(frame, body.is_end_stream(), &mut stream) {
            return;
        }
    }
}

/// Waits until the stream can take more data; false when it cannot any more.
async fn capacity(stream: &mut SendStream<Bytes>) -> bool {
    stream.reserve_capacity(1);
    while stream.capacity() == 0 {
        match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(0)) => {}
            Some(Ok(_)) => break,
            Some(Err(_)) | None => return false,
        }
    }
    true
}

/// A response stream as a body: its data (each chunk's window released as it is read), then
/// its trailers.
pub(super) struct Received {
    stream: RecvStream,
    data_done: bool,
    /// Counts the call as in flight until the response is dropped.
    _call: Option<super::CallInFlight>,
}

impl Received {
    pub(super) fn new(stream: RecvStream, call: Option<super::CallInFlight>) -> Received {
        Received {
            stream,
            data_done: false,
            _call: call,
        }
    }
}

impl HttpBody for Received {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // RFC 9113 §8.1: NO_ERROR ends the response early; it is not a failure.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(None)
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(broke_off(e)))),
                None => this.data_done = true,
            }
        }
        match ready!(this.stream.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) => Poll::Ready(Some(Err(broke_off(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}

/// The status of a response stream that broke before its trailers. A gRPC error comes in
/// trailers; this is the transport failing (the instance died, its connection closed, it reset
/// the stream), which gRPC calls UNAVAILABLE, not the INTERNAL tonic would make of an h2
/// protocol error. A reset that says more keeps its meaning.
fn broke_off(error: h2::Error) -> tonic::Status {
    let code = match error.reason() {
        Some(h2::Reason::CANCEL) => tonic::Code::Cancelled,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => tonic::Code::ResourceExhausted,
        _ => tonic::Code::Unavailable,
    };
    let message = format!(
        "the instance's response broke off: {}",
        beamline_contract::causes::chain(&error)
    );
    // The h2 error stays the source: a server in front (hyper) resets its own stream with the
    // reason it finds there.
    let mut status = tonic::Status::new(code, message);
    status.set_source(std::sync::Arc::new(error));
    status
}
