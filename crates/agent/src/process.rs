//! An agent binary's process: the flags every agent takes (`--log-format`, `--worker-threads` /
//! `BEAMLINE_MESH_WORKER_THREADS`, `RUST_LOG` for the log filter), logging to stderr, the Tokio
//! runtime, SIGTERM/SIGINT, and the exit code. What [`crate::Agent::run`] and a hand-written
//! `BeamlineAgent` (through [`run`]) share. The open-descriptor limit is raised to its hard limit
//! at start (logged).
//!
//! Owns the process around the agent; it must not know what the agent serves.

use std::future::Future;
use std::io::Read;
use std::process::ExitCode;

use clap::Parser;
use futures::future::BoxFuture;

use crate::{AgentError, AgentFlags};

/// Set (to `1`) by `beamline-mesh dev` and `demo` on the processes they start: such a process
/// also stops, as on SIGTERM, when its stdin reaches end of file — which happens when its parent
/// exits, however it exits (even `kill -9`), so no child outlives the stack it belongs to.
pub const STOP_ON_STDIN_EOF_ENV: &str = "BEAMLINE_MESH_STOP_ON_STDIN_EOF";

/// Log lines as text or as JSON objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The process-wide flags of every beamline-mesh binary (global: they may come anywhere).
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessFlags {
    /// Log lines (stderr) as text or as JSON objects.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Threads that run the process's async work (default: one per core the process may use).
    /// An agent sharing a node with others may do better with fewer.
    #[arg(
        long,
        global = true,
        env = "BEAMLINE_MESH_WORKER_THREADS",
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    pub worker_threads: Option<u16>,
}

impl ProcessFlags {
    /// The multi-threaded Tokio runtime these flags ask for.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        runtime.enable_all();
        if let Some(threads) = self.worker_threads {
            runtime.worker_threads(threads.into());
        }
        runtime.build()
    }

    /// Logs to stderr as these flags say, filtered by `RUST_LOG` (default `info`).
    pub fn init_logging(&self) {
        use std::io::IsTerminal;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let fmt = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr);
        // A subscriber set already (a test, an embedding program) stays.
        let _ = match self.log_format {
            LogFormat::Text => fmt.try_init(),
            LogFormat::Json => fmt.json().flatten_event(true).try_init(),
        };
    }
}

/// Every flag an agent binary takes.
#[derive(Debug, Parser)]
#[command(about = "A beamline agent: serves its capabilities as beamline.v1.BeamlineAgent")]
struct AgentCli {
    #[command(flatten)]
    process: ProcessFlags,
    #[command(flatten)]
    agent: AgentFlags,
}

/// Runs an agent process: parses the flags (a bad flag prints why and exits 2, `--help` exits
/// 0), starts logging and the runtime, installs SIGTERM/SIGINT handling, then runs `serve` with
/// the agent flags and the shutdown signal, and exits 0 once it returns `Ok` (drained), 1 with
/// the error on stderr otherwise.
///
/// For an agent that implements the tonic-generated `BeamlineAgent` trait itself:
/// ```no_run
/// # use beamline_agent::{AgentFlags, AgentRuntime};
/// # fn make(_: &beamline_agent::Instance, _: beamline_agent::tasks::TaskTable)
/// #     -> beamline_agent::AgentService { unimplemented!() }
/// fn main() -> std::process::ExitCode {
///     beamline_agent::process::run(|flags: AgentFlags, shutdown| async move {
///         let runtime = flags.bind(env!("CARGO_PKG_VERSION")).await?;
///         let agent = make(runtime.instance(), runtime.tasks());
///         runtime.serve(agent, shutdown).await
///     })
/// }
/// ```
pub fn run<S, F>(serve: S) -> ExitCode
where
    S: FnOnce(AgentFlags, BoxFuture<'static, ()>) -> F,
    F: Future<Output = Result<(), AgentError>>,
{
    let cli = match AgentCli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    cli.process.init_logging();
    // Every caller's connection is a descriptor: start from the hard limit, not the often far
    // lower soft one (the listener's connection cap is fitted under it at bind).
    beamline_listen::raise_nofile_limit_logged();
    let runtime = match cli.process.runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        // Installed before `serve` prints the listening line: a supervisor may send SIGTERM as
        // soon as it sees it.
        let shutdown: BoxFuture<'static, ()> = Box::pin(shutdown_signal());
        serve(cli.agent, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agent failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT (and, under `dev`/`demo`, when the parent is gone: see
/// [`STOP_ON_STDIN_EOF_ENV`]). The signal handlers are installed when this is called, not when
/// the future is first polled: call it before printing a listening line, or a SIGTERM sent as
/// soon as that line appears kills the process with the default action and skips the drain.
/// Needs a Tokio runtime.
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
