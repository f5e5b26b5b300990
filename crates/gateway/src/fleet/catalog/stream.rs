//! A watcher of the catalog: first the visible snapshot, then each visible change as one event.
//! A watcher that falls more than the backlog behind is not buffered for: it skips what it
//! missed and is sent a fresh snapshot instead. Dropping the stream unsubscribes.
//!
//! Owns serving one watcher; what changed is the `state` machine's, publication `view`'s.

use std::sync::{Arc, Weak};

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tonic::Status;

use beamline_contract::proto::{fleet_event, FleetEvent};

use super::view::{Change, Published};
use super::Visible;

struct Watcher {
    /// Weak: the stream must not keep the catalog alive; when it goes, the stream ends.
    published: Weak<Published>,
    changes: Receiver<Arc<Change>>,
    visible: Visible,
    first: Option<FleetEvent>,
}

/// The event stream of one watcher allowed to see `visible` beamlines.
pub fn watch(
    published: &Arc<Published>,
    visible: Visible,
) -> BoxStream<'static, Result<FleetEvent, Status>> {
    let (view, changes) = published.subscribe();
    let first = snapshot_event(view.snapshot(&*visible));
    let watcher = Watcher {
        published: Arc::downgrade(published),
        changes,
        visible,
        first: Some(first),
    };
    futures::stream::unfold(watcher, |mut watcher| async move {
        let event = watcher.next().await?;
        Some((Ok(event), watcher))
    })
    .boxed()
}

impl Watcher {
    async fn next(&mut self) -> Option<FleetEvent> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            match self.changes.recv().await {
                Ok(change) => {
                    if let Some(event) = change.event_for(&*self.visible) {
                        return Some(event);
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // What is still queued may be older than the view now: start over from a
                    // new subscription, atomically with its snapshot.
                    let published = self.published.upgrade()?;
                    let (view, changes) = published.subscribe();
                    self.changes = changes;
                    return Some(snapshot_event(view.snapshot(&*self.visible)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn snapshot_event(snapshot: beamline_contract::proto::FleetSnapshot) -> FleetEvent {
    FleetEvent {
        event: Some(fleet_event::Event::Snapshot(snapshot)),
        changes: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
