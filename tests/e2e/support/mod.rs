//! The one end-to-end harness: starts the real `beamline-mesh` binary on a free port, speaks HTTP
//! to it, and always kills it (Drop). Also starts real HTTP, TCP and gRPC-health servers inside the
//! test process for the registry's checkers to probe.
//!
//! Every wait is bounded: process start has a deadline, every HTTP request has a timeout, and
//! conditions are polled with [`poll_until`] / [`poll_for`] against a deadline (never a blind sleep).

pub mod agent;
pub mod cli;
pub mod gateway;
pub mod mtls;
pub mod policy;
pub mod signal;
pub mod sockets;

mod deadline;
mod json;
mod registry;
mod resp;
mod stdout;
mod targets;

// Tests use these as `support::NAME`. Each test binary compiles the harness on its own and uses
// only part of it, so a re-export one binary never reaches must not warn.
#[allow(unused_imports)]
pub use deadline::*;
#[allow(unused_imports)]
pub use json::*;
#[allow(unused_imports)]
pub use registry::*;
#[allow(unused_imports)]
pub use resp::*;
#[allow(unused_imports)]
pub use stdout::*;
#[allow(unused_imports)]
pub use targets::*;
