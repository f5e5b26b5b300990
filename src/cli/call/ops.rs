//! What each `call` operation sends and how its answer ends the command: the request built
//! from the flags, the bounded wait for the answer, and for `execute` the event stream up to the
//! task's terminal state.
//!
//! Owns the per-operation logic; it must not choose the target or dial (that is `target`) nor
//! format anything itself (that is `output`).

use anyhow::Context;

use beamline_mesh::proto::{
    CancelRequest, DescribeRequest, ExecuteRequest, GetTaskRequest, Task, TaskState,
};

use super::dial::bounded;
use super::output::{state_name, JsonPrinter, ProgressView};
use super::target::{Access, Agent, Target};
use super::{CallArgs, Failure, Op};

/// Runs the operation the flags name. `progress` and `running_task` belong to the caller so that
/// they survive this future being dropped on Ctrl-C.
pub(super) async fn run_op(
    args: &CallArgs,
    progress: &mut ProgressView,
    running_task: &mut Option<String>,
) -> Result<(), Failure> {
    // Everything that can be checked locally is checked before any network traffic.
    let printer = JsonPrinter::new()?;
    let execute = match &args.op {
        Op::Execute(e) => Some(ExecuteRequest {
            capability: e.capability.clone(),
            params: Some(parse_params(e.params.as_deref())?),
            idempotency_key: e.idempotency_key.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    let target = Target::from_args(args)?;
    let access = Access {
        beamline: args.beamline.as_ref(),
        token: args.token.as_deref(),
        ca_cert: args.ca_cert.as_deref(),
        timeout: args.connect_timeout,
    };
    let mut agent = Agent::connect(&target, access).await?;
    let deadline = args.timeout;

    match &args.op {
        Op::Describe => {
            let request = agent.request(DescribeRequest {}, Some(deadline));
            let card = bounded(deadline, "Describe", agent.client.describe(request)).await?;
            printer.print_pretty("beamline.v1.AgentCard", &card.into_inner())?;
        }
        Op::Get { task } => {
            let request = agent.request(
                GetTaskRequest {
                    task_id: task.clone(),
                },
                Some(deadline),
            );
            let task = bounded(deadline, "GetTask", agent.client.get_task(request)).await?;
            printer.print_pretty("beamline.v1.Task", &task.into_inner())?;
        }
        Op::Cancel { task } => {
            let request = agent.request(
                CancelRequest {
                    task_id: task.clone(),
                },
                Some(deadline),
            );
            let task = bounded(deadline, "Cancel", agent.client.cancel(request)).await?;
            printer.print_pretty("beamline.v1.Task", &task.into_inner())?;
        }
        Op::Execute(flags) => {
            // No gRPC deadline on Execute: a task may rightly run for hours. Only the start of
            // the stream (its first event) is bounded; after that, Ctrl-C is the way out.
            let request = agent.request(execute.expect("built above for execute"), None);
            let start = async {
                let mut stream = agent.client.execute(request).await?.into_inner();
                let first = stream.message().await?;
                Ok((stream, first))
            };
            let (mut stream, first) = bounded(deadline, "Execute", start).await?;
            let mut next = first;
            let mut last: Option<Task> = None;
            while let Some(event) = next.take() {
                if let Some(task) = &event.task {
                    if running_task.is_none() {
                        *running_task = Some(task.task_id.clone());
                    }
                    last = Some(task.clone());
                }
                if flags.events {
                    printer.print_line("beamline.v1.TaskEvent", &event)?;
                } else {
                    progress.update(&event);
                }
                // The agent ends the stream after the terminal event; stop there regardless.
                if last.as_ref().is_some_and(is_terminal) {
                    break;
                }
                next = stream.message().await?;
            }
            progress.finish();
            let Some(task) = last.filter(is_terminal) else {
                let id = running_task.as_deref().unwrap_or("(none)");
                return Err(Failure::Other(anyhow::anyhow!(
                    "the Execute stream ended before task {id} finished; \
                     follow it with `beamline-mesh call … get {id}`"
                )));
            };
            if !flags.events {
                printer.print_pretty("beamline.v1.Task", &task)?;
            }
            if task.state() != TaskState::Completed {
                let mut why = format!("task {} ended {}", task.task_id, state_name(task.state()));
                if let Some(e) = &task.error {
                    why.push_str(&format!(": {}: {}", e.code, e.message));
                }
                eprintln!("{why}");
                return Err(Failure::TaskNotCompleted);
            }
        }
    }
    Ok(())
}

fn is_terminal(task: &Task) -> bool {
    matches!(
        task.state(),
        TaskState::Completed | TaskState::Failed | TaskState::Cancelled | TaskState::Rejected
    )
}

/// `--params` → google.protobuf.Struct; absent means `{}`.
fn parse_params(params: Option<&str>) -> anyhow::Result<prost_types::Struct> {
    let Some(text) = params else {
        return Ok(prost_types::Struct::default());
    };
    let json: serde_json::Value = serde_json::from_str(text)
        .with_context(|| format!("--params '{text}' is not valid JSON"))?;
    let kind = match &json {
        serde_json::Value::Object(_) => {
            return Ok(beamline_mesh::agent::capabilities::json_to_struct(&json))
        }
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Null => "null",
    };
    anyhow::bail!(
        "--params must be a JSON object such as '{{\"name\": \"ring:current\"}}', not {kind}"
    )
}
