//! The mesh as a library, in the test process, against a real registry and real demo agents:
//! `Mesh::new(..)` and `mesh.agent("5.3.1")?.describe(..)` work, a bad beamline id is
//! INVALID_ARGUMENT, and p2c never sends a call to an instance whose readiness gate is closed
//! (its grpc.health.v1 Watch says NOT_SERVING) even while Consul lists it as passing.

use std::collections::BTreeMap;

use crate::support::agent::*;
use crate::support::gateway::{service_name, start_agent};
use crate::support::*;
use beamline_mesh::consul::ConsulConfig;
use beamline_mesh::mesh::{Mesh, MeshSettings};
use beamline_mesh::proto::DescribeRequest;
use serde_json::json;
use tonic::Code;

const BEAMLINE: &str = "5.3.1";
const AGENT_SERVICE: &str = "beamline.v1.BeamlineAgent";

fn mesh(registry: &Registry) -> Mesh {
    let consul =
        ConsulConfig::new(&registry.addr.to_string()).expect("ConsulConfig of the registry");
    Mesh::new(consul, MeshSettings::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_mesh_describes_an_agent_and_rejects_bad_ids() {
    let reg = Registry::start();
    let (_agent, id, _) = start_agent(&reg, BEAMLINE).await;
    let mesh = mesh(&reg);

    let mut client = mesh.agent(BEAMLINE).expect("mesh.agent(5.3.1)");
    let card = client
        .describe(DescribeRequest {})
        .await
        .expect("Describe through the mesh")
        .into_inner();
    assert_eq!(card.beamline, BEAMLINE);
    assert_eq!(card.instance_id, id);
    assert!(!card.capabilities.is_empty(), "{card:?}");

    // A second client shares the route and works too.
    let mut again = mesh.agent("5.3.1").expect("mesh.agent again");
    assert_eq!(
        again
            .describe(DescribeRequest {})
            .await
            .expect("Describe")
            .into_inner()
            .instance_id,
        id
    );

    for bad in ["bad id!", "", "5..3", "a/b"] {
        match mesh.agent(bad) {
            Ok(_) => panic!("mesh.agent({bad:?}) was accepted"),
            Err(status) => assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_never_picks_an_instance_whose_gate_is_closed() {
    let reg = Registry::start();
    let (_agent, real_id, _) = start_agent(&reg, BEAMLINE).await;

    // A second "instance": a gRPC server with only grpc.health.v1, whose server-wide status ("",
    // what Consul's check asks) is SERVING but whose BeamlineAgent status is NOT_SERVING — so
    // Consul lists it as passing while its readiness gate in the mesh is closed. Were a call
    // sent to it, it would fail with UNIMPLEMENTED (it serves no BeamlineAgent).
    let fake = GrpcTarget::start().await;
    fake.set(AGENT_SERVICE, false).await;
    let fake_id = "beamline-5-3-1-fakefake";
    reg.register(&json!({
        "ID": fake_id,
        "Name": service_name(BEAMLINE),
        "Address": "127.0.0.1",
        "Port": fake.addr.port(),
        "Tags": ["beamline-agent"],
        "Meta": {"beamline": BEAMLINE, "instance_id": fake_id, "agent_version": "test"},
        "Check": {"GRPC": fake.addr.to_string(), "Interval": "300ms", "Timeout": "300ms"},
    }))
    .await;
    wait_passing(&reg, &service_name(BEAMLINE), fake_id, secs(10)).await;

    let mesh = mesh(&reg);
    let id = beamline_mesh::beamline::BeamlineId::parse(BEAMLINE).unwrap();
    let resolved = mesh.resolved(&id, secs(5)).await;
    let healthy: Vec<_> = resolved
        .instances()
        .iter()
        .filter(|i| i.healthy)
        .map(|i| i.id.clone())
        .collect();
    assert!(
        healthy.contains(&fake_id.to_string()) && healthy.contains(&real_id),
        "the mesh should see both instances as healthy in Consul: {resolved:?}"
    );

    let mut client = mesh.agent(BEAMLINE).unwrap();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..60 {
        let card = client
            .describe(DescribeRequest {})
            .await
            .unwrap_or_else(|e| panic!("call {i} failed (sent to the closed instance?): {e:?}"))
            .into_inner();
        *answers.entry(card.instance_id).or_default() += 1;
    }
    assert_eq!(
        answers.keys().collect::<Vec<_>>(),
        vec![&real_id],
        "answers: {answers:?}"
    );

    // The control: open the gate, and calls do reach the fake (so it was the gate that kept
    // them away, not something else).
    fake.set(AGENT_SERVICE, true).await;
    let err = poll_for(
        secs(5),
        "a call to reach the fake once its gate opens",
        async || client.describe(DescribeRequest {}).await.err(),
    )
    .await;
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    // Closed again: no call reaches it any more.
    fake.set(AGENT_SERVICE, false).await;
    poll_until(
        secs(5),
        "20 calls in a row to succeed after the gate closed again",
        async || {
            let mut ok = 0;
            for _ in 0..20 {
                if client.describe(DescribeRequest {}).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        },
        |ok| *ok == 20,
    )
    .await;
    for i in 0..60 {
        client
            .describe(DescribeRequest {})
            .await
            .unwrap_or_else(|e| panic!("call {i} after closing the gate again: {e:?}"));
    }
}
