use super::{CheckStatus, Rpc};

#[test]
fn every_rpc_is_found_by_its_path_and_name_and_nothing_else_is() {
    for rpc in Rpc::ALL {
        assert_eq!(Rpc::of_path(rpc.path()), Some(rpc));
        assert_eq!(Rpc::of_name(rpc.name()), Some(rpc));
        assert_eq!(rpc.path(), format!("{}{}", Rpc::PATH_PREFIX, rpc.name()));
        assert_eq!(rpc.to_string(), rpc.name());
    }
    assert_eq!(Rpc::of_path("/beamline.v1.BeamlineAgent/Unknown"), None);
    assert_eq!(Rpc::of_path("/grpc.health.v1.Health/Check"), None);
    assert_eq!(Rpc::of_path("Execute"), None);
}

#[test]
fn properties_are_those_the_mesh_and_the_policy_rely_on() {
    let streams: Vec<_> = Rpc::ALL.into_iter().filter(|r| r.is_stream()).collect();
    assert_eq!(streams, [Rpc::Execute, Rpc::Subscribe]);
    let reads: Vec<_> = Rpc::ALL.into_iter().filter(|r| r.is_read()).collect();
    assert_eq!(reads, [Rpc::Describe, Rpc::GetTask, Rpc::Subscribe]);
    let by_task: Vec<_> = Rpc::ALL.into_iter().filter(|r| r.names_task()).collect();
    assert_eq!(by_task, [Rpc::GetTask, Rpc::Subscribe, Rpc::Cancel]);
    assert!(Rpc::Execute.may_actuate() && !Rpc::Cancel.may_actuate());
    assert!(!Rpc::Execute.is_idempotent() && !Rpc::Cancel.is_idempotent());
}

#[test]
fn check_statuses_read_and_write_consul_spelling_and_order_by_severity() {
    for status in [
        CheckStatus::Passing,
        CheckStatus::Warning,
        CheckStatus::Critical,
    ] {
        assert_eq!(status.as_str().parse::<CheckStatus>(), Ok(status));
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(json, format!("\"{status}\""));
        assert_eq!(serde_json::from_str::<CheckStatus>(&json).unwrap(), status);
    }
    assert!("maintenance".parse::<CheckStatus>().is_err());
    assert_eq!(
        [
            CheckStatus::Passing,
            CheckStatus::Critical,
            CheckStatus::Warning
        ]
        .iter()
        .max(),
        Some(&CheckStatus::Critical)
    );
}

#[test]
fn an_agents_certificate_name_is_its_consul_service_dns_name() {
    let beamline = crate::beamline::BeamlineId::parse("5.3.1").unwrap();
    assert_eq!(
        super::tls::agent_name(&beamline),
        "beamline-5-3-1.service.consul"
    );
}
