//! The RPCs of `beamline.v1.BeamlineAgent` and what each may do: the one list the mesh's
//! routing, the gateway's policy, metrics and access log, and the agent's drain read.

/// One RPC of `beamline.v1.BeamlineAgent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rpc {
    Describe,
    Execute,
    GetTask,
    Subscribe,
    Cancel,
}

impl Rpc {
    /// The gRPC service every agent serves.
    pub const SERVICE: &'static str = "beamline.v1.BeamlineAgent";
    /// The path prefix of its methods: `/beamline.v1.BeamlineAgent/`.
    pub const PATH_PREFIX: &'static str = "/beamline.v1.BeamlineAgent/";
    /// Every RPC, in the proto's order.
    pub const ALL: [Rpc; 5] = [
        Rpc::Describe,
        Rpc::Execute,
        Rpc::GetTask,
        Rpc::Subscribe,
        Rpc::Cancel,
    ];

    /// The RPC a request path names (`/beamline.v1.BeamlineAgent/Execute`), if any.
    pub fn of_path(path: &str) -> Option<Rpc> {
        Rpc::of_name(path.strip_prefix(Rpc::PATH_PREFIX)?)
    }

    /// The RPC of a method name (`Execute`), if any.
    pub fn of_name(name: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|rpc| rpc.name() == name)
    }

    /// The method name, as in the proto (`GetTask`).
    pub const fn name(self) -> &'static str {
        match self {
            Rpc::Describe => "Describe",
            Rpc::Execute => "Execute",
            Rpc::GetTask => "GetTask",
            Rpc::Subscribe => "Subscribe",
            Rpc::Cancel => "Cancel",
        }
    }

    /// The request path (`/beamline.v1.BeamlineAgent/GetTask`).
    pub const fn path(self) -> &'static str {
        match self {
            Rpc::Describe => "/beamline.v1.BeamlineAgent/Describe",
            Rpc::Execute => "/beamline.v1.BeamlineAgent/Execute",
            Rpc::GetTask => "/beamline.v1.BeamlineAgent/GetTask",
            Rpc::Subscribe => "/beamline.v1.BeamlineAgent/Subscribe",
            Rpc::Cancel => "/beamline.v1.BeamlineAgent/Cancel",
        }
    }

    /// The response is a stream of events (the request is always one message).
    pub const fn is_stream(self) -> bool {
        matches!(self, Rpc::Execute | Rpc::Subscribe)
    }

    /// Safe to send again after an agent may have seen it: it changes nothing. (An Execute of a
    /// capability marked idempotent is safe too; that is the capability's property, not the
    /// RPC's.)
    pub const fn is_idempotent(self) -> bool {
        matches!(self, Rpc::Describe | Rpc::GetTask | Rpc::Subscribe)
    }

    /// Reads only: what the `observer` role may call.
    pub const fn is_read(self) -> bool {
        self.is_idempotent()
    }

    /// May move hardware (an Execute of an actuating capability): what a halt or a lock stops.
    pub const fn may_actuate(self) -> bool {
        matches!(self, Rpc::Execute)
    }

    /// Names a task by its id, so it goes to the instance that owns that task.
    pub const fn names_task(self) -> bool {
        matches!(self, Rpc::GetTask | Rpc::Subscribe | Rpc::Cancel)
    }
}

impl std::fmt::Display for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
