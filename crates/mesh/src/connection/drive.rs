//! The task behind one open connection: it drives the socket (h2's connection future) and the
//! keepalive PINGs, tighter while calls are in flight, and when the connection ends or a PING
//! goes unanswered makes the next call reconnect.
//!
//! Owns that task; it must not hold the connection's handle alive (only a `Weak`), nor decide
//! anything about calls.

use std::sync::Weak;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Shared;

/// Drives one connection's socket until it closes, or until a PING goes unanswered; then
/// makes the next call reconnect.
pub(super) async fn drive<T: AsyncRead + AsyncWrite + Unpin>(
    mut connection: h2::client::Connection<T, Bytes>,
    shared: Weak<Shared>,
    generation: u64,
) {
    let ping_pong = connection.ping_pong();
    tokio::select! {
        biased;
        ended = &mut connection => {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection to an instance ended");
            }
        }
        () = keep_alive(ping_pong, shared.clone()) => {
            tracing::debug!("no PING answer: closing the connection to an instance");
        }
    }
    if let Some(shared) = shared.upgrade() {
        shared.forget(generation);
    }
}

/// Returns when a PING goes unanswered as long as [`ConnectionSettings::ping_plan`] allows;
/// never while the connection answers (or once nothing holds the connection).
async fn keep_alive(ping_pong: Option<h2::PingPong>, shared: Weak<Shared>) {
    let Some(mut ping_pong) = ping_pong else {
        return std::future::pending().await;
    };
    loop {
        let Some(now) = shared.upgrade() else {
            return std::future::pending().await;
        };
        let calls = now.activity.in_flight();
        let (pause, bound) = now.settings.ping_plan(calls);
        // While idle, a call starting cuts the pause short: it is watched over from the start.
        let idle = calls == 0;
        // Only the wake-up is kept across the pause: the loop must not keep the connection's
        // handle (and so the connection) alive.
        let activity = now.activity.clone();
        drop(now);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = activity.busy.notified(), if idle => continue,
        }
        match tokio::time::timeout(bound, ping_pong.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            // The connection failed; its own future reports that.
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}
