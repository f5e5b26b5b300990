//! Time bounds of the harness: how long a process may take to start, how long a request may take,
//! and polling a condition against a deadline ([`poll_until`], [`poll_for`]).
//!
//! Owns every wait's bound so that no test sleeps blindly; it must not know what is waited for
//! (callers pass a probe, and a description for the panic message).

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long the binary may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Timeout of an ordinary (non-blocking) request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Interval between two polls of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Calls `probe` until `pred` holds for its result, every [`POLL_INTERVAL`], for at most
/// `timeout`; returns the value that satisfied `pred`. Panics with the last value on timeout.
pub async fn poll_until<T, F, P>(timeout: Duration, what: &str, mut probe: F, pred: P) -> T
where
    T: Debug,
    F: AsyncFnMut() -> T,
    P: Fn(&T) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let value = probe().await;
        if pred(&value) {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last value: {value:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Calls `probe` until it returns `Some`, for at most `timeout`.
pub async fn poll_for<T, F>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: AsyncFnMut() -> Option<T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `child` until it exits, within `timeout`; past it the child is killed and reaped and
/// `None` says it never exited by itself.
pub fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
