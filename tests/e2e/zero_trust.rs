//! Zero trust inside the mesh, all of it at once: a registry serving HTTPS with an ACL token;
//! two agents serving mutual TLS (`--client-ca`), their health on a plaintext port, registering
//! over HTTPS with the token — the real `beamline-mesh agent`, and an agent built on the SDK in
//! this process with a `whoami` capability that answers with the caller the agent verified —
//! and the gateway with an auth file, dialling them with its client certificate.
//!
//! Through the gateway calls work and the agent sees the caller the gateway authenticated.
//! Straight to an agent: without a client certificate the handshake fails; with a certificate
//! from another CA it fails; with one from the mesh's CA that is not the gateway's, the call is
//! served but a forged `x-caller`/`x-role` reaches no capability.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::support::agent::*;
use crate::support::gateway::*;
use crate::support::mtls::{direct, name_of};
use crate::support::policy::*;
use crate::support::tls::TestCa;
use crate::support::*;
use beamline_mesh::agent::{Agent, AgentFlags, AgentRuntime, Instance, NoParams, ReadOnly};
use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::consul::{ConsulConfig, ConsulEnv};
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::DescribeRequest;
use beamline_mesh::wire::tls::GATEWAY_NAME;

const TOKEN: &str = "zero-trust-token";
/// The real agent's beamline, and the SDK agent's.
const REAL: &str = "6.1.1";
const SDK: &str = "6.1.2";
const DEADLINE: Duration = Duration::from_secs(15);

/// The Consul client settings of the mesh's processes: the registry's address, its CA, the
/// token (as `CONSUL_*` variables would give them).
fn consul(registry: &Registry, ca: &TestCa) -> ConsulConfig {
    let vars = HashMap::from([
        ("CONSUL_CACERT", ca.cert().display().to_string()),
        ("CONSUL_HTTP_TOKEN", TOKEN.to_string()),
    ]);
    let env = ConsulEnv::parse(|k| vars.get(k).cloned()).unwrap();
    ConsulConfig::from_env(Some(&registry.base), &env).unwrap()
}

/// The SDK agent of [`SDK`], in this process, over mutual TLS; its `whoami` answers with the
/// caller it verified (`null` when none).
async fn sdk_agent(registry: &Registry, reg_ca: &TestCa, mesh_ca: &TestCa) -> CancellationToken {
    let (cert, key) = mesh_ca.leaf(&[&name_of(SDK)], "sdk-agent");
    let mut flags = AgentFlags::new(BeamlineId::parse(SDK).unwrap());
    flags.listen = "127.0.0.1:0".parse().unwrap();
    flags.tls_cert = Some(cert);
    flags.tls_key = Some(key);
    flags.client_ca = Some(mesh_ca.cert());
    flags.health_listen = Some("127.0.0.1:0".parse().unwrap());
    flags.check_interval = Duration::from_millis(500);
    let mut config = flags.config().unwrap();
    config.consul = consul(registry, reg_ca);
    let runtime = AgentRuntime::bind(Instance::new(flags.beamline.clone(), "1.0.0"), config)
        .await
        .unwrap();
    let service = Agent::new("1.0.0")
        .admitted_capability(
            "whoami",
            "Answers with the caller this agent verified",
            ReadOnly,
            |_: NoParams, call: &beamline_mesh::agent::Call<'_>| {
                let caller = call
                    .caller()
                    .map(|c| serde_json::json!({"name": c.name, "role": c.role}));
                Ok(|task: beamline_mesh::agent::TaskHandle| async move {
                    task.complete(serde_json::json!({ "caller": caller }))
                })
            },
        )
        .service(runtime.instance(), runtime.tasks())
        .unwrap();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(runtime.serve(service, async move { stopped.cancelled().await }));
    stop
}

/// `whoami` on `client` (`request` is its Execute); the `caller` of its result.
async fn whoami(
    client: &mut BeamlineAgentClient<Channel>,
    request: tonic::Request<beamline_mesh::proto::ExecuteRequest>,
) -> Result<serde_json::Value, tonic::Status> {
    let mut events = client.execute(request).await?.into_inner();
    let mut last = None;
    while let Some(event) = tokio::time::timeout(DEADLINE, events.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("TEST: whoami did not end"))??
    {
        last = Some(event);
    }
    let task = task_of(&last.expect("events")).clone();
    let result = task.result.as_ref().map(to_json).unwrap_or_default();
    Ok(result["caller"].clone())
}

fn forged<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-caller", "intruder".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-role", "operator".parse().unwrap());
    request
}

/// The address registered for `beamline`'s one instance, once it passes.
async fn passing_address(registry: &Registry, ca: &TestCa, beamline: &str) -> String {
    let client = beamline_mesh::consul::ConsulClient::new(consul(registry, ca));
    let service = BeamlineId::parse(beamline).unwrap().service_name();
    poll_for(DEADLINE, &format!("{beamline} passing"), async || {
        let entries = client
            .health_service(&service, 0, Duration::ZERO)
            .await
            .ok()?;
        entries
            .value
            .iter()
            .find(|e| e.is_passing())
            .map(|e| e.address())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_the_gateway_work_and_nothing_else_gets_in() {
    let (reg_ca, mesh_ca, other_ca) = (
        TestCa::new("registry CA"),
        TestCa::new("mesh CA"),
        TestCa::new("another CA"),
    );
    let (reg_cert, reg_key) = reg_ca.leaf(&["127.0.0.1"], "registry");
    let registry = Registry::builder()
        .acl_token(TOKEN)
        .tls(&reg_cert, &reg_key)
        .start();

    let (cert, key) = mesh_ca.leaf(&[&name_of(REAL)], "real-agent");
    let _real = AgentProc::builder(REAL)
        .consul(&registry.base)
        .env("CONSUL_CACERT", reg_ca.cert().display())
        .env("CONSUL_HTTP_TOKEN", TOKEN)
        .arg("--tls-cert", cert.display())
        .arg("--tls-key", key.display())
        .arg("--client-ca", mesh_ca.cert().display())
        .arg("--health-listen", "127.0.0.1:0")
        .start();
    let _sdk = sdk_agent(&registry, &reg_ca, &mesh_ca).await;
    let real_addr = passing_address(&registry, &reg_ca, REAL).await;
    let sdk_addr = passing_address(&registry, &reg_ca, SDK).await;

    let (gw_cert, gw_key) = mesh_ca.leaf(&[GATEWAY_NAME], "gateway");
    let policy = PolicyDir::new();
    let gateway = GatewayProc::builder(&registry)
        .consul(&registry.base)
        .env("CONSUL_CACERT", reg_ca.cert().display())
        .env("CONSUL_HTTP_TOKEN", TOKEN)
        .auth_file(policy.standard())
        .flag("--allow-plaintext")
        .arg("--upstream-ca", mesh_ca.cert().display())
        .arg("--upstream-cert", gw_cert.display())
        .arg("--upstream-key", gw_key.display())
        .start();
    let mut client = gateway.client().await;

    // Through the gateway: both agents answer, and the SDK agent sees the caller the gateway
    // authenticated (not the headers the client wrote).
    for beamline in [REAL, SDK] {
        poll_for(
            DEADLINE,
            &format!("Describe {beamline} through the gateway"),
            async || describe_as(&mut client, beamline, Some(OPS_KEY)).await.ok(),
        )
        .await;
    }
    let mut request = with_credential(
        SDK,
        Some(OPS_KEY),
        execute_request("whoami", serde_json::json!({}), ""),
    );
    request
        .metadata_mut()
        .insert("x-caller", "intruder".parse().unwrap());
    let caller = whoami(&mut client, request)
        .await
        .expect("whoami through the gateway");
    assert_eq!(
        caller,
        serde_json::json!({"name": "ops-console", "role": "operator"}),
        "the agent saw the gateway's word"
    );

    // Straight to an agent without a client certificate, or with one from another CA: the
    // handshake fails (or the connection closes at the first call), nothing is answered.
    let (rogue_cert, rogue_key) = other_ca.leaf(&[GATEWAY_NAME], "rogue-gateway");
    for addr in [&real_addr, &sdk_addr] {
        let name = if addr == &real_addr {
            name_of(REAL)
        } else {
            name_of(SDK)
        };
        for identity in [None, Some((rogue_cert.as_path(), rogue_key.as_path()))] {
            let answered = match direct(addr, &mesh_ca.cert(), &name, identity).await {
                Err(_) => false,
                Ok(mut agent) => agent.describe(forged(DescribeRequest {})).await.is_ok(),
            };
            assert!(
                !answered,
                "{addr}: a direct call with {identity:?} was answered"
            );
        }
    }

    // With the mesh CA's certificate for another name (not the gateway's): served, but the
    // forged identity reaches no capability.
    let (peer_cert, peer_key) = mesh_ca.leaf(&["monitoring.example"], "peer");
    let mut agent = direct(
        &sdk_addr,
        &mesh_ca.cert(),
        &name_of(SDK),
        Some((&peer_cert, &peer_key)),
    )
    .await
    .expect("a mesh-CA client is let in");
    let caller = whoami(
        &mut agent,
        forged(execute_request("whoami", serde_json::json!({}), "")),
    )
    .await
    .expect("whoami straight to the agent");
    assert_eq!(
        caller,
        serde_json::Value::Null,
        "a forged identity was honoured"
    );
}
