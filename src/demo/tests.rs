//! The demo agent's unit tests: the agent through its gRPC service in-process, the simulated
//! motors' motion, and the simulation itself.

mod agent;
mod motion;
mod sim;
