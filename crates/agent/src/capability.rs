//! Capabilities as an author declares them: a name, a description, whether it actuates, and a
//! function of typed params. The params' type is the one source of both the JSON Schema the
//! AgentCard publishes (schemars) and their decoding (serde), so the two cannot drift; a
//! mismatch is INVALID_ARGUMENT naming the field, before any task exists.
//!
//! A capability may also admit or refuse a call in a synchronous first phase (a motor already
//! moving: FAILED_PRECONDITION at Execute time), and only then hand back the work its task runs.
//!
//! Owns the type erasure from an author's closure to what the agent service calls; it must not
//! create tasks (the task table does) nor validate against the schema (`capabilities` does).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::capabilities::CapabilitySpec;
use crate::identity::Caller;
use crate::tasks::TaskHandle;

/// Whether a capability moves hardware. Actuating capabilities are the ones a kill switch stops,
/// a lock reserves, and the mesh never retries once they may have started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads only: safe to run at any time, by anyone allowed to call the beamline.
    ReadOnly,
    /// Moves or changes something on the beamline.
    Actuating,
}

impl Effect {
    /// This effect with `tags` (published in the AgentCard; e.g. `long-running`).
    pub fn tagged<T: Into<String>>(self, tags: impl IntoIterator<Item = T>) -> Kind {
        Kind {
            actuating: self == Effect::Actuating,
            tags: tags.into_iter().map(Into::into).collect(),
            // Reading twice is reading once; moving twice is not known to be moving once.
            idempotent: self == Effect::ReadOnly,
        }
    }

    /// This effect, idempotent or not as the author says (see [`Kind::idempotent`]).
    pub fn idempotent(self, idempotent: bool) -> Kind {
        Kind::from(self).idempotent(idempotent)
    }
}

/// What the AgentCard says of a capability besides its name, description and schema.
#[derive(Debug, Clone)]
pub struct Kind {
    actuating: bool,
    tags: Vec<String>,
    idempotent: bool,
}

impl Kind {
    /// Whether running the capability twice with the same params has the effect of running it
    /// once. Read-only capabilities are by default, actuating ones are not: an actuating
    /// capability that is (a move to an absolute position) may say so, and the mesh then sends
    /// a keyed Execute that failed before its first event to another instance; a read-only one
    /// that is not (it consumes something) must say so.
    pub fn idempotent(mut self, idempotent: bool) -> Kind {
        self.idempotent = idempotent;
        self
    }
}

impl From<Effect> for Kind {
    fn from(effect: Effect) -> Kind {
        effect.tagged(Vec::<String>::new())
    }
}

/// Params of a capability that takes none (`{}`; any field is refused).
#[derive(Debug, Clone, Copy, Default, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// What an admission check sees of the Execute besides its params.
pub struct Call<'a> {
    pub capability: &'a str,
    /// Empty when the caller sent none. A call repeating the key of an existing task never
    /// reaches admission: it is answered with that task.
    pub idempotency_key: &'a str,
    /// The request's gRPC metadata. Over TLS, `x-caller` and `x-role` are in it only when the
    /// gateway sent them; without TLS anyone may have: use [`Call::caller`] to know who calls.
    pub metadata: &'a MetadataMap,
    caller: Option<&'a Caller>,
}

impl<'a> Call<'a> {
    /// A call with no verified caller (e.g. to test an admission check).
    pub fn new(capability: &'a str, idempotency_key: &'a str, metadata: &'a MetadataMap) -> Self {
        Call {
            capability,
            idempotency_key,
            metadata,
            caller: None,
        }
    }

    /// This call, made by `caller`.
    pub fn with_caller(self, caller: Option<&'a Caller>) -> Self {
        Call { caller, ..self }
    }

    /// Who is calling, as the gateway vouched for it over mutual TLS (its client certificate
    /// names the gateway); `None` when nothing vouches for it: TLS off, or another peer.
    pub fn caller(&self) -> Option<&'a Caller> {
        self.caller
    }
}

/// The work of one admitted task, run on a Tokio task of its own.
pub(crate) type Work = Box<dyn FnOnce(TaskHandle) -> BoxFuture<'static, ()> + Send>;

/// A declared capability, its params' type erased.
pub(crate) trait Admit: Send + Sync {
    /// Decodes schema-checked `params` and runs the capability's admission: the work to run, or
    /// the status that refuses the call.
    fn admit(&self, params: serde_json::Value, call: &Call<'_>) -> Result<Work, Status>;
}

struct Typed<P, A> {
    admit: A,
    params: PhantomData<fn() -> P>,
}

impl<P, A, W, Fut> Admit for Typed<P, A>
where
    P: DeserializeOwned,
    A: Fn(P, &Call<'_>) -> Result<W, Status> + Send + Sync,
    W: FnOnce(TaskHandle) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn admit(&self, params: serde_json::Value, call: &Call<'_>) -> Result<Work, Status> {
        let params: P = serde_path_to_error::deserialize(params).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                String::new()
            } else {
                format!(".{path}")
            };
            Status::invalid_argument(format!(
                "invalid params for \"{}\": params{at}: {}",
                call.capability,
                e.inner()
            ))
        })?;
        let work = (self.admit)(params, call)?;
        Ok(Box::new(move |task| Box::pin(work(task))))
    }
}

/// One capability as the agent serves it: its card entry and its admission.
pub(crate) struct Declared {
    pub spec: CapabilitySpec,
    pub admit: Box<dyn Admit>,
}

/// A capability whose every call is admitted: `run` is the task's work.
pub(crate) fn declare<P, R, Fut>(name: &str, description: &str, kind: Kind, run: R) -> Declared
where
    P: DeserializeOwned + JsonSchema + Send + 'static,
    R: Fn(P, TaskHandle) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let run = Arc::new(run);
    declare_admitted(name, description, kind, move |params: P, _: &Call<'_>| {
        let run = Arc::clone(&run);
        Ok(move |task| run(params, task))
    })
}

/// A capability that decides in `admit` whether a call may start, before any task exists.
pub(crate) fn declare_admitted<P, A, W, Fut>(
    name: &str,
    description: &str,
    kind: Kind,
    admit: A,
) -> Declared
where
    P: DeserializeOwned + JsonSchema + 'static,
    A: Fn(P, &Call<'_>) -> Result<W, Status> + Send + Sync + 'static,
    W: FnOnce(TaskHandle) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Declared {
        spec: CapabilitySpec {
            name: name.to_string(),
            description: description.to_string(),
            params_schema: params_schema::<P>(),
            actuating: kind.actuating,
            tags: kind.tags,
            idempotent: kind.idempotent,
        },
        admit: Box::new(Typed {
            admit,
            params: PhantomData,
        }),
    }
}

/// The JSON Schema of `P` as the AgentCard publishes it (draft 2020-12).
pub fn params_schema<P: JsonSchema>() -> serde_json::Value {
    schemars::schema_for!(P).to_value()
}
