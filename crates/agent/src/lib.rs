//! The agent runtime: what a beamline team hands its `BeamlineAgent` implementation to.
pub mod capabilities;
pub mod instance;
pub mod tasks;

pub use instance::Instance;
pub mod drain;
pub mod registration;
pub mod runtime;
pub mod services;

pub use runtime::{AgentConfig, AgentError, AgentRuntime};
