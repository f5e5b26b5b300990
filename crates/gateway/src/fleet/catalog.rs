//! The fleet catalog: every beamline with its instances, its AgentCard and its halt and lock
//! state, kept current by push (discovery's fleet watch, agents' `Meta.card_revision`, the
//! control-state watch) and served as snapshots and change streams.
//!
//! Owns learning cards (a Describe only when a beamline's card revision changes, or, for agents
//! that publish none, when its instance set does) and the change events; it must not decide who
//! may see what (the Fleet service passes a visibility filter).

use std::sync::Arc;

use futures::stream::BoxStream;
use tokio::sync::watch;
use tonic::Status;

use beamline_consul::control::ControlView;
use beamline_contract::proto::{FleetEvent, FleetSnapshot};
use beamline_mesh_client::Mesh;

/// Which beamlines a caller may see.
pub type Visible = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// What the catalog knows of a capability: whether it actuates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityKind {
    Actuating,
    ReadOnly,
    /// No card learnt yet, or no such capability on it: treated as actuating when a halt or
    /// lock applies (fail closed).
    Unknown,
}

/// The catalog; shared by the Fleet service, the enforcement layer and the status page.
pub struct Catalog {
    _mesh: Mesh,
    _control: watch::Receiver<Arc<ControlView>>,
}

impl Catalog {
    /// Starts learning the catalog (call inside a Tokio runtime).
    pub fn start(mesh: Mesh, control: watch::Receiver<Arc<ControlView>>) -> Catalog {
        Catalog {
            _mesh: mesh,
            _control: control,
        }
    }

    /// Every visible beamline now, in natural order of ids.
    pub fn list(&self, _visible: &dyn Fn(&str) -> bool) -> FleetSnapshot {
        FleetSnapshot::default()
    }

    /// A snapshot of the visible beamlines, then one event per change.
    pub fn watch(&self, _visible: Visible) -> BoxStream<'static, Result<FleetEvent, Status>> {
        Box::pin(futures::stream::pending())
    }

    /// Whether `capability` of `beamline` actuates, as far as its last card says.
    pub fn capability(&self, _beamline: &str, _capability: &str) -> CapabilityKind {
        CapabilityKind::Unknown
    }
}
