//! One watcher: snapshot first, visible changes only, a fresh snapshot after lagging, and
//! dropping the stream unsubscribes.

use std::time::Duration;

use futures::StreamExt;

use beamline_contract::proto::{BeamlineEntry, FleetChange, HaltState};

use super::*;
use crate::fleet::catalog::view::View;

fn entry(id: &str) -> Arc<BeamlineEntry> {
    Arc::new(BeamlineEntry {
        beamline: id.into(),
        ..BeamlineEntry::default()
    })
}

fn view(ids: &[&str]) -> Arc<View> {
    Arc::new(View {
        entries: ids.iter().map(|id| entry(id)).collect(),
        ..View::default()
    })
}

fn added(id: &str) -> Change {
    Change::Beamline {
        entry: entry(id),
        changes: vec![FleetChange::Added],
    }
}

fn only(id: &'static str) -> Visible {
    Box::new(move |b: &str| b == id)
}

async fn next(stream: &mut BoxStream<'static, Result<FleetEvent, Status>>) -> fleet_event::Event {
    tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .expect("an event within 1 s")
        .expect("the stream goes on")
        .expect("not an error")
        .event
        .expect("an event")
}

fn snapshot_ids(event: fleet_event::Event) -> Vec<String> {
    match event {
        fleet_event::Event::Snapshot(s) => s.beamlines.into_iter().map(|b| b.beamline).collect(),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn a_watcher_gets_its_snapshot_then_only_visible_changes() {
    let published = Arc::new(Published::new(16));
    published.publish(view(&["5.3.1", "7.0.1"]), vec![]);
    let mut stream = watch(&published, only("5.3.1"));
    assert_eq!(snapshot_ids(next(&mut stream).await), ["5.3.1"]);

    published.publish(
        view(&["5.3.1", "7.0.1", "8.1"]),
        vec![
            added("8.1"),
            Change::Removed("7.0.1".into()),
            Change::FleetHalt(HaltState {
                halted: true,
                all: true,
                ..HaltState::default()
            }),
            Change::Beamline {
                entry: entry("5.3.1"),
                changes: vec![FleetChange::Halt],
            },
        ],
    );
    match next(&mut stream).await {
        fleet_event::Event::FleetHalt(h) => assert!(h.all, "everyone sees the fleet-wide halt"),
        other => panic!("expected the fleet halt, got {other:?}"),
    }
    match next(&mut stream).await {
        fleet_event::Event::Beamline(b) => assert_eq!(b.beamline, "5.3.1"),
        other => panic!("expected 5.3.1, got {other:?}"),
    }
}

#[tokio::test]
async fn a_watcher_that_falls_behind_gets_a_fresh_snapshot_instead_of_what_it_missed() {
    let published = Arc::new(Published::new(4));
    published.publish(view(&[]), vec![]);
    let mut stream = watch(&published, Box::new(|_: &str| true));
    assert!(snapshot_ids(next(&mut stream).await).is_empty());

    // Ten changes into a backlog of four: the watcher lags.
    let ids: Vec<String> = (1..=10).map(|i| format!("{i}.1")).collect();
    for (i, id) in ids.iter().enumerate() {
        let so_far: Vec<&str> = ids[..=i].iter().map(String::as_str).collect();
        published.publish(view(&so_far), vec![added(id)]);
    }
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(snapshot_ids(next(&mut stream).await), all, "the view now");

    // And it follows on from there.
    published.publish(view(&all), vec![Change::Removed("1.1".into())]);
    assert_eq!(
        next(&mut stream).await,
        fleet_event::Event::Removed("1.1".into())
    );
}

#[tokio::test]
async fn dropping_the_stream_unsubscribes_and_dropping_the_catalog_ends_it() {
    let published = Arc::new(Published::new(4));
    let stream = watch(&published, Box::new(|_: &str| true));
    assert_eq!(published.watchers(), 1);
    drop(stream);
    assert_eq!(
        published.watchers(),
        0,
        "nothing kept for a watcher that left"
    );

    let mut stream = watch(&published, Box::new(|_: &str| true));
    let _snapshot = next(&mut stream).await;
    drop(published);
    let end = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends with the catalog");
}
