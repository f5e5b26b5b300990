//! One module per subcommand, plus what they share (signals, flag parsers, the local stack that
//! `dev` and `demo` run).
pub mod agent;
pub mod agents;
pub mod call;
pub mod demo;
pub mod dev;
pub mod gateway;
pub mod hash_key;
pub mod log_writer;
pub mod registry;
pub mod stack;

use std::future::Future;
use std::io::Read;
use std::time::Duration;

use futures::future::BoxFuture;

/// Set (to `1`) by `dev` and `demo` on the processes they start: such a process also stops,
/// as on SIGTERM, when its stdin reaches end of file — which happens when its parent exits,
/// however it exits (even `kill -9`), so no child outlives the stack it belongs to.
pub const STOP_ON_STDIN_EOF_ENV: &str = "BEAMLINE_MESH_STOP_ON_STDIN_EOF";

/// Resolves on SIGTERM or SIGINT (and, under `dev`/`demo`, when the parent is gone: see
/// [`STOP_ON_STDIN_EOF_ENV`]). The signal handlers are installed when this is called, not when
/// the future is first polled: call it before printing a listening line, or a SIGTERM sent as
/// soon as that line appears kills the process with the default action and skips the drain.
/// Needs a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let signal = signal();
    async move {
        tokio::select! {
            _ = signal => {}
            _ = parent_gone() => {}
        }
    }
}

fn signal() -> BoxFuture<'static, ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            return Box::pin(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
        }
    }
    Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Resolves when stdin reaches end of file, if [`STOP_ON_STDIN_EOF_ENV`] is set; never otherwise.
async fn parent_gone() {
    if std::env::var_os(STOP_ON_STDIN_EOF_ENV).is_none_or(|v| v != "1") {
        return std::future::pending().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // A plain thread, not tokio's stdin: a blocking read on tokio's pool cannot be cancelled and
    // would hold up the runtime's shutdown; a detached thread ends with the process.
    let spawned = std::thread::Builder::new()
        .name("stdin-eof".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 256];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        });
    if spawned.is_err() {
        return std::future::pending().await;
    }
    if rx.await.is_ok() {
        tracing::info!("stdin closed (the parent process is gone): shutting down");
    }
}

/// A Go-style duration flag ("2s", "1m30s", "500ms").
pub fn duration_flag(s: &str) -> Result<Duration, String> {
    beamline_mesh::duration::parse_go(s).map_err(|e| e.to_string())
}
