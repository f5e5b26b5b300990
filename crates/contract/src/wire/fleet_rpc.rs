//! The RPCs of `beamline.v1.Fleet` (the gateway's catalog and control of the facility): their
//! names for the access log and metrics, and which of them change the control state.

/// One RPC of `beamline.v1.Fleet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FleetRpc {
    ListBeamlines,
    WatchFleet,
    Halt,
    Resume,
    Lock,
    Unlock,
}

impl FleetRpc {
    /// The gRPC service the gateway serves beside the agents'.
    pub const SERVICE: &'static str = "beamline.v1.Fleet";
    /// The path prefix of its methods: `/beamline.v1.Fleet/`.
    pub const PATH_PREFIX: &'static str = "/beamline.v1.Fleet/";
    /// Every RPC, in the proto's order.
    pub const ALL: [FleetRpc; 6] = [
        FleetRpc::ListBeamlines,
        FleetRpc::WatchFleet,
        FleetRpc::Halt,
        FleetRpc::Resume,
        FleetRpc::Lock,
        FleetRpc::Unlock,
    ];

    /// The RPC a request path names (`/beamline.v1.Fleet/Halt`), if any.
    pub fn of_path(path: &str) -> Option<FleetRpc> {
        FleetRpc::of_name(path.strip_prefix(FleetRpc::PATH_PREFIX)?)
    }

    /// The RPC of a method name (`Halt`), if any.
    pub fn of_name(name: &str) -> Option<FleetRpc> {
        FleetRpc::ALL.into_iter().find(|rpc| rpc.name() == name)
    }

    /// The method name, as in the proto (`ListBeamlines`).
    pub const fn name(self) -> &'static str {
        match self {
            FleetRpc::ListBeamlines => "ListBeamlines",
            FleetRpc::WatchFleet => "WatchFleet",
            FleetRpc::Halt => "Halt",
            FleetRpc::Resume => "Resume",
            FleetRpc::Lock => "Lock",
            FleetRpc::Unlock => "Unlock",
        }
    }

    /// Changes the control state (halts and locks in Consul KV); its request names a
    /// beamline in field 1.
    pub const fn is_control(self) -> bool {
        matches!(
            self,
            FleetRpc::Halt | FleetRpc::Resume | FleetRpc::Lock | FleetRpc::Unlock
        )
    }
}

impl std::fmt::Display for FleetRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests;
