//! The fleet catalog: every beamline with its instances, its AgentCard and its halt and lock
//! state, kept current by push (discovery's fleet watch, agents' `Meta.card_revision`, the
//! control-state watch) and served as snapshots and change streams.
//!
//! Owns learning cards (a Describe only when a beamline's card revision changes, or, for agents
//! that publish none, when its instance set does) and the change events; it must not decide who
//! may see what (the Fleet service passes a visibility filter).
//!
//! `state` decides (I/O-free: entries, changes, what to Describe and when), `learner` is its loop
//! (Describes through the mesh, timers), `view` publishes (the view, built once per change and
//! shared, and a bounded broadcast of changes), `stream` serves one watcher, `entry` translates
//! discovery and the control state into entry parts, `order` is the natural order of ids.

mod entry;
mod learner;
mod state;
mod stream;
mod view;

use std::sync::Arc;

use futures::stream::BoxStream;
use tokio::sync::watch;
use tonic::Status;

use beamline_consul::control::ControlView;
use beamline_contract::proto::{FleetEvent, FleetSnapshot};
use beamline_mesh_client::Mesh;

pub use learner::LearnSettings;
pub use state::Retry;
pub use view::View;

use view::Published;

/// Which beamlines a caller may see.
pub type Visible = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// How many changes a watcher may fall behind before it gets a fresh snapshot instead.
pub const WATCH_BACKLOG: usize = 256;

/// What the catalog knows of a capability: whether it actuates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityKind {
    Actuating,
    ReadOnly,
    /// No card learnt yet, or no such capability on it: treated as actuating when a halt or
    /// lock applies (fail closed).
    Unknown,
}

/// The catalog's settings (the defaults suit a gateway).
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    pub learn: LearnSettings,
    pub retry: Retry,
    pub backlog: usize,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            learn: LearnSettings::default(),
            retry: Retry::default(),
            backlog: WATCH_BACKLOG,
        }
    }
}

/// The catalog; shared by the Fleet service, the enforcement layer and the status page. Dropping
/// it stops learning and ends every watcher's stream.
pub struct Catalog {
    published: Arc<Published>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Catalog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Catalog {
    /// Starts learning the catalog (call inside a Tokio runtime).
    pub fn start(mesh: Mesh, control: watch::Receiver<Arc<ControlView>>) -> Catalog {
        Catalog::start_with(mesh, control, CatalogSettings::default())
    }

    /// [`Catalog::start`] with `settings`.
    pub fn start_with(
        mesh: Mesh,
        mut control: watch::Receiver<Arc<ControlView>>,
        settings: CatalogSettings,
    ) -> Catalog {
        let published = Arc::new(Published::new(settings.backlog));
        let machine = state::CatalogState::new(settings.retry, control.borrow_and_update().clone());
        let inputs = learner::Inputs {
            fleet: mesh.fleet(),
            mesh,
            control,
        };
        let task = tokio::spawn(learner::run(
            inputs,
            machine,
            published.clone(),
            settings.learn,
        ));
        Catalog { published, task }
    }

    /// Every visible beamline now, in natural order of ids.
    pub fn list(&self, visible: &dyn Fn(&str) -> bool) -> FleetSnapshot {
        self.published.with(|view| view.snapshot(visible))
    }

    /// The whole catalog now (built once per change; for the status page, which filters and
    /// orders it itself).
    pub fn view(&self) -> Arc<View> {
        self.published.current()
    }

    /// A snapshot of the visible beamlines, then one event per change.
    pub fn watch(&self, visible: Visible) -> BoxStream<'static, Result<FleetEvent, Status>> {
        stream::watch(&self.published, visible)
    }

    /// Whether `capability` of `beamline` actuates, as far as its last card says (a lookup in
    /// the current view: no allocation).
    pub fn capability(&self, beamline: &str, capability: &str) -> CapabilityKind {
        self.published
            .with(|view| view.capability(beamline, capability))
    }

    /// Watchers following the catalog now.
    pub fn watchers(&self) -> usize {
        self.published.watchers()
    }
}
