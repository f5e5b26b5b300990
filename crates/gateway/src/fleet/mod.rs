//! The facility's view and control, served as `beamline.v1.Fleet` beside the agents' service:
//! the catalog of every beamline (`catalog`: instances, cards, halt and lock state, by push), and
//! the control state in Consul KV (`control`: halts and locks, read by one fail-closed watch and
//! written with check-and-set).
//!
//! Owns the tonic service and what ListBeamlines and WatchFleet show a caller (the beamlines it
//! may Describe); who may halt, resume, lock and unlock (an operator its beamlines; `--all` and
//! breaking locks `safety`), the statuses of those RPCs and how KV is written are `control`'s,
//! how the catalog is learnt `catalog`'s. The refusal of actuating calls on the data path is
//! `enforce`'s layer.

pub mod catalog;
pub mod control;
pub mod enforce;

use std::sync::Arc;

use futures::stream::BoxStream;
use tonic::{Request, Response, Status};

use beamline_consul::ConsulConfig;
use beamline_contract::proto::fleet_server::Fleet;
use beamline_contract::proto::{
    FleetEvent, FleetSnapshot, HaltRequest, HaltState, ListBeamlinesRequest, LockRequest,
    LockState, ResumeRequest, UnlockRequest, WatchFleetRequest,
};
use beamline_mesh_client::Mesh;

use super::caller::Caller;
use catalog::Catalog;
use control::Control;

/// The catalog and the control state, started once per gateway and shared by the Fleet
/// service, the enforcement layer and the status page.
#[derive(Clone)]
pub struct Facility {
    pub catalog: Arc<Catalog>,
    pub control: Arc<Control>,
}

impl Facility {
    /// Starts following the control state in `consul` and learning the catalog of `mesh`'s
    /// fleet (call inside a Tokio runtime).
    pub fn start(mesh: &Mesh, consul: ConsulConfig) -> Facility {
        let control = Arc::new(Control::start(consul, mesh.clone()));
        let catalog = Arc::new(Catalog::start(mesh.clone(), control.subscribe()));
        Facility { catalog, control }
    }
}

/// `beamline.v1.Fleet` on the gateway.
#[derive(Clone)]
pub struct FleetService {
    facility: Facility,
}

impl FleetService {
    pub fn new(facility: Facility) -> FleetService {
        FleetService { facility }
    }
}

/// The authenticated caller of a request (None: the gateway runs without authentication).
fn caller_of<T>(request: &Request<T>) -> Option<Caller> {
    request.extensions().get::<Caller>().cloned()
}

/// Which beamlines a caller may see in the catalog: those it may Describe.
fn visible(caller: &Option<Caller>) -> impl Fn(&str) -> bool + Send + Sync + 'static {
    let beamlines = caller.as_ref().map(|c| c.beamlines.clone());
    move |id: &str| beamlines.as_ref().is_none_or(|b| b.allows(id))
}

#[tonic::async_trait]
impl Fleet for FleetService {
    async fn list_beamlines(
        &self,
        request: Request<ListBeamlinesRequest>,
    ) -> Result<Response<FleetSnapshot>, Status> {
        let caller = caller_of(&request);
        Ok(Response::new(self.facility.catalog.list(&visible(&caller))))
    }

    type WatchFleetStream = BoxStream<'static, Result<FleetEvent, Status>>;

    async fn watch_fleet(
        &self,
        request: Request<WatchFleetRequest>,
    ) -> Result<Response<Self::WatchFleetStream>, Status> {
        let caller = caller_of(&request);
        Ok(Response::new(
            self.facility.catalog.watch(Box::new(visible(&caller))),
        ))
    }

    async fn halt(&self, request: Request<HaltRequest>) -> Result<Response<HaltState>, Status> {
        let caller = caller_of(&request);
        let state = self
            .facility
            .control
            .halt(caller.as_ref(), request.into_inner())
            .await?;
        Ok(Response::new(state))
    }

    async fn resume(&self, request: Request<ResumeRequest>) -> Result<Response<HaltState>, Status> {
        let caller = caller_of(&request);
        let state = self
            .facility
            .control
            .resume(caller.as_ref(), request.into_inner())
            .await?;
        Ok(Response::new(state))
    }

    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockState>, Status> {
        let caller = caller_of(&request);
        let state = self
            .facility
            .control
            .lock(caller.as_ref(), request.into_inner())
            .await?;
        Ok(Response::new(state))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<LockState>, Status> {
        let caller = caller_of(&request);
        let state = self
            .facility
            .control
            .unlock(caller.as_ref(), request.into_inner())
            .await?;
        Ok(Response::new(state))
    }
}
