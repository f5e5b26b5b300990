//! The registry over HTTPS with an ACL token, and every Consul client of the mesh against it
//! given only Consul's own variables (`CONSUL_CACERT`, `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_ADDR`)
//! as with a TLS-enabled Consul: an agent registers and turns passing, `agents` lists it, a
//! gateway routes a Describe to it; a wrong token and a CA that does not match are errors
//! naming the variable to fix.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::agent::*;
use crate::support::gateway::{describe, GatewayProc};
use crate::support::tls::TestCa;
use crate::support::*;

const TOKEN: &str = "registry-tls-token";
const BEAMLINE: &str = "8.3.1";

/// `beamline-mesh agents --json` with `vars` as its whole Consul environment.
async fn agents(vars: Vec<(&'static str, String)>) -> Exited {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_beamline-mesh"));
        command
            .args(["agents", "--json"])
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN_FILE")
            .env_remove("CONSUL_CACERT")
            .env("RUST_LOG", "warn")
            .envs(vars);
        run_bounded(command, None, secs(30))
    })
    .await
    .expect("agents thread")
}

/// A registry serving HTTPS with `--acl-token`, its certificate signed by `ca`.
fn https_registry(ca: &TestCa) -> Registry {
    let (cert, key) = ca.leaf(&["127.0.0.1"], "registry");
    Registry::builder()
        .acl_token(TOKEN)
        .tls(&cert, &key)
        .start()
}

fn consul_env(registry: &Registry, ca: &Path, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CONSUL_HTTP_ADDR", registry.base.clone()),
        ("CONSUL_CACERT", ca.display().to_string()),
        ("CONSUL_HTTP_TOKEN", token.to_string()),
    ]
}

/// The status `agents --json` gives the one instance of BEAMLINE, if listed.
fn status(listing: &Value) -> Option<String> {
    listing
        .as_array()?
        .iter()
        .find(|b| b["beamline"] == BEAMLINE)?["instances"][0]["status"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_cli_and_gateway_work_against_an_https_registry_with_consul_variables() {
    let ca = TestCa::new("registry-tls CA");
    let registry = https_registry(&ca);
    assert!(registry.base.starts_with("https://"), "{}", registry.base);

    // The agent: the address as a flag, TLS and token from the environment.
    let agent = AgentProc::builder(BEAMLINE)
        .consul(&registry.base)
        .env("CONSUL_CACERT", ca.cert().display())
        .env("CONSUL_HTTP_TOKEN", TOKEN)
        .start();

    // The CLI: everything from the environment; the agent turns passing.
    let env = consul_env(&registry, &ca.cert(), TOKEN);
    let listing = poll_until(
        secs(20),
        "the agent listed as passing by `agents` over HTTPS",
        async || {
            let out = agents(env.clone()).await;
            assert!(out.status.success(), "agents failed: {}", out.stderr);
            serde_json::from_str::<Value>(&out.stdout).expect("agents --json output")
        },
        |listing| status(listing).as_deref() == Some("passing"),
    )
    .await;
    let listed = listing.to_string();
    assert!(listed.contains(&agent.addr.to_string()), "{listed}");

    // The gateway: the address as a flag, TLS and token from the environment.
    let gateway = GatewayProc::builder(&registry)
        .consul(&registry.base)
        .env("CONSUL_CACERT", ca.cert().display())
        .env("CONSUL_HTTP_TOKEN", TOKEN)
        .start();
    let mut client = gateway.client().await;
    poll_until(
        secs(20),
        "a Describe routed through the gateway",
        async || {
            describe(&mut client, BEAMLINE)
                .await
                .map_err(|s| s.to_string())
        },
        Result::is_ok,
    )
    .await
    .expect("routed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_an_error_naming_consul_http_token() {
    let ca = TestCa::new("registry-tls CA");
    let registry = https_registry(&ca);
    let out = agents(consul_env(&registry, &ca.cert(), "not-the-token")).await;
    assert!(!out.status.success(), "agents succeeded: {}", out.stdout);
    assert!(
        out.stderr
            .contains("permission denied: check CONSUL_HTTP_TOKEN"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_does_not_match_is_an_error_naming_consul_cacert() {
    let ca = TestCa::new("registry-tls CA");
    let other = TestCa::new("another CA");
    let registry = https_registry(&ca);
    let out = agents(consul_env(&registry, &other.cert(), TOKEN)).await;
    assert!(!out.status.success(), "agents succeeded: {}", out.stdout);
    assert!(out.stderr.contains("check CONSUL_CACERT"), "{}", out.stderr);

    // The agent says the same in its log while it keeps trying.
    let agent = AgentProc::builder(BEAMLINE)
        .consul(&registry.base)
        .env("CONSUL_CACERT", other.cert().display())
        .env("CONSUL_HTTP_TOKEN", TOKEN)
        .start();
    poll_until(
        secs(20),
        "the agent's log naming CONSUL_CACERT",
        async || agent.stderr(),
        |log| log.contains("check CONSUL_CACERT"),
    )
    .await;
}
