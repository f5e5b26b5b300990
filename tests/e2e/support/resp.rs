//! A complete HTTP response ([`Resp`]) and its assertions, which show the body on failure; and
//! [`tail`], which keeps bodies and process logs in panic messages short.
//!
//! Owns reading a response already received; it must not send requests.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// A complete HTTP response, with when it was sent and received.
#[derive(Debug, Clone)]
pub struct Resp {
    pub what: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub sent_at: Instant,
    pub received_at: Instant,
}

impl Resp {
    pub fn code(&self) -> u16 {
        self.status.as_u16()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}): {:?}",
                self.what,
                tail(&self.text(), 2000)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_string())
    }

    /// X-Consul-Index, parsed; panics if absent or not a number.
    pub fn index(&self) -> u64 {
        let raw = self.header("X-Consul-Index").unwrap_or_else(|| {
            panic!(
                "{}: no X-Consul-Index header ({:?})",
                self.what, self.headers
            )
        });
        raw.parse().unwrap_or_else(|e| {
            panic!("{}: X-Consul-Index {raw:?} is not a number: {e}", self.what)
        })
    }

    /// How long the request took, send to last body byte.
    pub fn elapsed(&self) -> Duration {
        self.received_at - self.sent_at
    }

    /// Assert the status code, showing the body on failure.
    #[track_caller]
    pub fn expect_status(self, code: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            code,
            "{}: expected {code}, got {} with body {:?}",
            self.what,
            self.status,
            tail(&self.text(), 2000)
        );
        self
    }

    /// Assert a 4xx/5xx status, and that it is not 2xx.
    #[track_caller]
    pub fn expect_error(self) -> Self {
        assert!(
            self.status.is_client_error() || self.status.is_server_error(),
            "{}: expected an error status, got {} with body {:?}",
            self.what,
            self.status,
            tail(&self.text(), 2000)
        );
        self
    }

    /// Assert the body contains `needle`.
    #[track_caller]
    pub fn expect_body_contains(self, needle: &str) -> Self {
        let text = self.text();
        assert!(
            text.contains(needle),
            "{}: body {:?} does not contain {needle:?}",
            self.what,
            tail(&text, 2000)
        );
        self
    }

    /// Assert the standard blocking-read headers: X-Consul-Index > 0, KnownLeader true.
    #[track_caller]
    pub fn expect_read_headers(self) -> Self {
        let index = self.index();
        assert!(index > 0, "{}: X-Consul-Index must never be 0", self.what);
        assert_eq!(
            self.header("X-Consul-KnownLeader").as_deref(),
            Some("true"),
            "{}: X-Consul-KnownLeader",
            self.what
        );
        self
    }
}

pub(super) fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
