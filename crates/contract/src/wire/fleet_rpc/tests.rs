use super::FleetRpc;

#[test]
fn every_fleet_rpc_is_found_by_its_path_and_name_and_nothing_else_is() {
    for rpc in FleetRpc::ALL {
        let path = format!("{}{}", FleetRpc::PATH_PREFIX, rpc.name());
        assert_eq!(FleetRpc::of_path(&path), Some(rpc));
        assert_eq!(FleetRpc::of_name(rpc.name()), Some(rpc));
        assert_eq!(rpc.to_string(), rpc.name());
    }
    assert_eq!(
        FleetRpc::of_path("/beamline.v1.BeamlineAgent/Describe"),
        None
    );
    assert_eq!(FleetRpc::of_path("/beamline.v1.Fleet/Execute"), None);
    assert_eq!(FleetRpc::of_path("Halt"), None);
    assert_eq!(
        FleetRpc::PATH_PREFIX,
        format!("/{}/", FleetRpc::SERVICE).as_str()
    );
}

#[test]
fn the_writes_of_the_control_state_are_halt_resume_lock_unlock() {
    let control: Vec<_> = FleetRpc::ALL
        .into_iter()
        .filter(|r| r.is_control())
        .collect();
    assert_eq!(
        control,
        [
            FleetRpc::Halt,
            FleetRpc::Resume,
            FleetRpc::Lock,
            FleetRpc::Unlock
        ]
    );
}
