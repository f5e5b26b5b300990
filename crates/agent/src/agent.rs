//! [`Agent`]: what a beamline team writes. Name the agent's version, declare its capabilities,
//! and `run()`: the SDK parses the standard flags, serves, registers in Consul, keeps the
//! registration and drains on SIGTERM in the documented order.
//!
//! Owns the declaration of an agent; the process is `process`'s, serving is the runtime's.

use std::future::Future;
use std::process::ExitCode;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use tonic::Status;

use crate::capability::{self, Call, Declared, Kind};
use crate::service::AgentService;
use crate::tasks::TaskHandle;
use crate::{process, AgentError, AgentFlags};

/// A beamline agent under construction:
/// ```no_run
/// use beamline_agent::{Agent, ReadOnly, TaskHandle};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct ReadTemperature { sensor: String }
///
/// fn main() -> std::process::ExitCode {
///     Agent::new(env!("CARGO_PKG_VERSION"))
///         .capability("read_temperature", "Reads a sample temperature", ReadOnly,
///             |p: ReadTemperature, task: TaskHandle| async move {
///                 task.complete(serde_json::json!({ "sensor": p.sensor, "kelvin": 293.4 }))
///             })
///         .run()
/// }
/// ```
pub struct Agent {
    version: String,
    declared: Vec<Declared>,
}

impl Agent {
    /// An agent of version `version` (its `Meta.agent_version` and AgentCard field) with no
    /// capability yet.
    pub fn new(version: impl Into<String>) -> Agent {
        Agent {
            version: version.into(),
            declared: Vec::new(),
        }
    }

    /// Declares a capability whose every call starts a task running `run` with the decoded
    /// params. `P`'s JSON Schema (from `#[derive(JsonSchema)]`) is what Describe publishes and
    /// what Execute checks params against.
    pub fn capability<P, R, Fut>(
        mut self,
        name: &str,
        description: &str,
        kind: impl Into<Kind>,
        run: R,
    ) -> Agent
    where
        P: DeserializeOwned + JsonSchema + Send + 'static,
        R: Fn(P, TaskHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.declared
            .push(capability::declare(name, description, kind.into(), run));
        self
    }

    /// Declares a capability that decides, before any task exists, whether a call may start:
    /// `admit` returns the task's work, or the status that refuses the call (e.g.
    /// FAILED_PRECONDITION while the motor it needs is moving).
    pub fn admitted_capability<P, A, W, Fut>(
        mut self,
        name: &str,
        description: &str,
        kind: impl Into<Kind>,
        admit: A,
    ) -> Agent
    where
        P: DeserializeOwned + JsonSchema + 'static,
        A: Fn(P, &Call<'_>) -> Result<W, Status> + Send + Sync + 'static,
        W: FnOnce(TaskHandle) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.declared.push(capability::declare_admitted(
            name,
            description,
            kind.into(),
            admit,
        ));
        self
    }

    /// Runs the agent as a process (see [`process::run`]): parses the standard agent flags,
    /// serves until SIGTERM or SIGINT, drains, and returns the exit code for `main`.
    pub fn run(self) -> ExitCode {
        process::run(|flags, shutdown| self.serve(flags, shutdown))
    }

    /// Serves the agent as `flags` say until `shutdown`, then drains; for programs that own
    /// their process (flags, logging, runtime) themselves. Install the signal handlers before
    /// calling it: it prints the listening line once bound.
    pub async fn serve(
        self,
        flags: AgentFlags,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AgentError> {
        let runtime = flags.bind(&self.version).await?;
        let service = AgentService::new(runtime.instance(), self.declared, runtime.tasks())?
            .with_control(runtime.control());
        runtime.serve(service, shutdown).await
    }

    /// The service these capabilities make for `instance` over `tasks`, without serving it
    /// (tests, and programs that serve it themselves). Fails on a duplicate capability name
    /// or a params type whose schema does not compile. It enforces no halt or lock: served on
    /// an [`crate::AgentRuntime`], give it the runtime's with
    /// `.with_control(runtime.control())`, as [`Agent::serve`] does.
    pub fn service(
        self,
        instance: &crate::Instance,
        tasks: crate::tasks::TaskTable,
    ) -> Result<AgentService, AgentError> {
        Ok(AgentService::new(instance, self.declared, tasks)?)
    }
}
