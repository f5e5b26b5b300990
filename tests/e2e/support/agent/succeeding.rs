//! `beamline-mesh <args>` that must succeed, run from async tests: off the runtime's threads
//! (the wait blocks), bounded, and failing the test with both outputs when it exits non-zero.
//!
//! Owns that one assertion around [`run_to_exit`](super::run_to_exit); it must not keep a
//! process running.

use std::time::Duration;

use super::run_to_exit;

/// Runs `beamline-mesh <args>` to its exit (at most `timeout`), which must be 0; its stdout.
pub async fn run_ok(args: Vec<String>, timeout: Duration) -> String {
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_exit(&args, timeout)
    })
    .await
    .expect("the command's thread");
    assert!(
        out.status.success(),
        "beamline-mesh {shown} exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}
