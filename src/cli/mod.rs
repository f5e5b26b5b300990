//! One module per subcommand, plus what they share (signals, flag parsers).
pub mod agent;
pub mod call;
pub mod gateway;
pub mod registry;

use std::time::Duration;

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A Go-style duration flag ("2s", "1m30s", "500ms").
pub fn duration_flag(s: &str) -> Result<Duration, String> {
    beamline_mesh::duration::parse_go(s).map_err(|e| e.to_string())
}
