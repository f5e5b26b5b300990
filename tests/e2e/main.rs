//! The end-to-end tests: real `beamline-mesh` processes (registry, agents, gateway, CLI) on
//! loopback, called over real gRPC and HTTP. One test binary (it links the workspace once);
//! each file is one area's scenarios, and `support` is the harness that starts and stops the
//! processes.
//!
//! The chaos suite (`chaos`) is ignored by a plain `cargo test`: its scenarios need the machine
//! to themselves. CI runs it alone, after the rest:
//! `cargo test --test e2e -- --ignored --test-threads 1 chaos::`.

mod support;

mod agent_drain;
mod agent_lifecycle;
mod agent_mtls;
mod agent_rpc;
mod cert_rotation;
mod chaos;
mod cli_agents;
mod cli_call;
mod cli_demo;
mod cli_demo_mtls;
mod fleet_agent_control;
mod fleet_catalog;
mod fleet_halt;
mod fleet_lock;
mod gateway_balance;
mod gateway_errors;
mod gateway_idle;
mod gateway_mtls;
mod gateway_policy;
mod gateway_policy_identity;
mod gateway_policy_observe;
mod gateway_tasks;
mod listeners;
mod mesh_library;
mod registry_acl;
mod registry_agent;
mod registry_blocking;
mod registry_bounds;
mod registry_checks;
mod registry_connections;
mod registry_health;
mod registry_kv;
mod registry_logs;
mod registry_persistence;
mod registry_tls;
mod registry_validation;
mod status_page;
mod zero_trust;
