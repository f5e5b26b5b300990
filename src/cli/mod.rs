//! One module per subcommand, plus what they share (signals, flag parsers, the local stack that
//! `dev` and `demo` run).
pub mod agent;
pub mod agents;
pub mod call;
pub mod control;
pub mod demo;
pub mod dev;
pub mod gateway;
pub mod hash_key;
pub mod heap;
pub mod log_writer;
pub mod printable;
pub mod registry;
pub mod stack;

pub use beamline_mesh::agent::process::{shutdown_signal, STOP_ON_STDIN_EOF_ENV};

pub use beamline_mesh::agent::duration_flag;
