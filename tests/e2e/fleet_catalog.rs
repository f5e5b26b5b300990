//! The fleet catalog: ListBeamlines, WatchFleet, and `agents --capabilities`.
//!
//! A real registry, real agents (the demo agent as a process; an SDK agent with another
//! capability in this process) and the real gateway: the catalog's snapshot (natural order,
//! instances with their Meta, cards learnt by push, halts and locks written to KV), its changes
//! on WatchFleet (a new agent with a new capability, an instance stopping, a halt, a lock and its
//! expiry), what a caller may see, and the CLI's view of it.

use std::time::{Duration, SystemTime};

use serde_json::json;
use tonic::transport::Channel;

use crate::support::agent::*;
use crate::support::gateway::*;
use crate::support::policy::*;
use crate::support::*;
use beamline_contract::control::{Halt, Lock};
use beamline_mesh::agent::{Agent, ReadOnly, TaskHandle};
use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::consul::{ConsulClient, ConsulConfig};
use beamline_mesh::proto::fleet_client::FleetClient;
use beamline_mesh::proto::fleet_event::Event;
use beamline_mesh::proto::{
    BeamlineEntry, FleetChange, FleetEvent, FleetSnapshot, ListBeamlinesRequest, WatchFleetRequest,
};
use beamline_mesh::wire::kv;

/// How long the catalog may take to show what a test waits for.
const DEADLINE: Duration = Duration::from_secs(20);

async fn fleet_client(gateway: &GatewayProc) -> FleetClient<Channel> {
    FleetClient::new(gateway.channel().await)
}

/// `message` with `authorization: Bearer <credential>` when given.
fn bearer<T>(credential: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(credential) = credential {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {credential}").parse().unwrap(),
        );
    }
    request
}

async fn list(client: &mut FleetClient<Channel>, credential: Option<&str>) -> FleetSnapshot {
    tokio::time::timeout(
        CALL_BOUND,
        client.list_beamlines(bearer(credential, ListBeamlinesRequest {})),
    )
    .await
    .expect("ListBeamlines answers within the bound")
    .expect("ListBeamlines succeeds")
    .into_inner()
}

/// Polls ListBeamlines until `ready` holds for it.
async fn list_until(
    client: &mut FleetClient<Channel>,
    credential: Option<&str>,
    what: &str,
    ready: impl Fn(&FleetSnapshot) -> bool,
) -> FleetSnapshot {
    poll_until(
        DEADLINE,
        what,
        async || list(client, credential).await,
        ready,
    )
    .await
}

fn ids(snapshot: &FleetSnapshot) -> Vec<&str> {
    snapshot
        .beamlines
        .iter()
        .map(|b| b.beamline.as_str())
        .collect()
}

fn entry<'a>(snapshot: &'a FleetSnapshot, beamline: &str) -> Option<&'a BeamlineEntry> {
    snapshot.beamlines.iter().find(|b| b.beamline == beamline)
}

fn has_card(snapshot: &FleetSnapshot, beamline: &str) -> bool {
    entry(snapshot, beamline).is_some_and(|e| e.card.is_some())
}

/// An open WatchFleet.
struct Watch {
    events: tonic::Streaming<FleetEvent>,
}

impl Watch {
    async fn open(client: &mut FleetClient<Channel>, credential: Option<&str>) -> Watch {
        let events = tokio::time::timeout(
            CALL_BOUND,
            client.watch_fleet(bearer(credential, WatchFleetRequest {})),
        )
        .await
        .expect("WatchFleet answers within the bound")
        .expect("WatchFleet succeeds")
        .into_inner();
        Watch { events }
    }

    async fn next(&mut self, within: Duration) -> Option<FleetEvent> {
        match tokio::time::timeout(within, self.events.message()).await {
            Ok(message) => Some(
                message
                    .expect("the watch goes on without an error")
                    .expect("the watch goes on"),
            ),
            Err(_) => None,
        }
    }

    /// The first message, which must be the snapshot.
    async fn snapshot(&mut self) -> FleetSnapshot {
        match self.next(DEADLINE).await.and_then(|e| e.event) {
            Some(Event::Snapshot(snapshot)) => snapshot,
            other => panic!("the first message of a watch is a snapshot, got {other:?}"),
        }
    }

    /// Skips events until one for which `wanted` holds (bounded by [`DEADLINE`]); returns it
    /// and every event seen before it.
    async fn until(
        &mut self,
        what: &str,
        wanted: impl Fn(&FleetEvent) -> bool,
    ) -> (FleetEvent, Vec<FleetEvent>) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(event) = self.next(left).await else {
                panic!("no event {what} within {DEADLINE:?}; events before: {before:#?}");
            };
            if wanted(&event) {
                return (event, before);
            }
            before.push(event);
        }
    }
}

/// A beamline event for `beamline` that says `change`.
fn beamline_change(
    event: &FleetEvent,
    beamline: &str,
    change: FleetChange,
) -> Option<BeamlineEntry> {
    match &event.event {
        Some(Event::Beamline(entry))
            if entry.beamline == beamline && event.changes.contains(&(change as i32)) =>
        {
            Some(entry.clone())
        }
        _ => None,
    }
}

fn kv(registry: &Registry) -> ConsulClient {
    ConsulClient::new(ConsulConfig::new(&registry.addr.to_string()).expect("registry address"))
}

fn id(beamline: &str) -> BeamlineId {
    BeamlineId::parse(beamline).unwrap()
}

async fn put(registry: &Registry, key: &str, value: Vec<u8>) {
    let written = kv(registry)
        .kv_put(key, &value, None)
        .await
        .unwrap_or_else(|e| panic!("write {key}: {e}"));
    assert!(written, "KV refused {key}");
}

/// The SDK agent of another team: one read-only capability the demo agent does not have.
fn thermometer() -> Agent {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct ReadTemperature {
        /// Which sensor to read.
        #[allow(dead_code)]
        sensor: String,
    }
    Agent::new("2.0.0").capability(
        "read_temperature",
        "Reads a sample temperature",
        ReadOnly,
        |_: ReadTemperature, task: TaskHandle| async move {
            task.complete(json!({ "kelvin": 293.4 }))
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_beamlines_is_a_snapshot_in_natural_order_with_cards_halts_and_locks() {
    let registry = Registry::start();
    let (_a, a_id, _) = start_agent(&registry, "10.1.1").await;
    let (_b, b_id, _) = start_agent(&registry, "2.1.1").await;
    let gateway = GatewayProc::builder(&registry).start();
    let mut client = fleet_client(&gateway).await;

    let snapshot = list_until(&mut client, None, "both cards learnt", |s| {
        has_card(s, "2.1.1") && has_card(s, "10.1.1")
    })
    .await;
    assert_eq!(
        ids(&snapshot),
        ["2.1.1", "10.1.1"],
        "natural order, not text"
    );
    for (beamline, instance) in [("2.1.1", &b_id), ("10.1.1", &a_id)] {
        let e = entry(&snapshot, beamline).unwrap();
        assert_eq!(e.instances.len(), 1, "{beamline}: {e:#?}");
        let i = &e.instances[0];
        assert_eq!(&i.instance_id, instance);
        assert!(i.healthy && i.address.starts_with("127.0.0.1:"), "{i:#?}");
        assert!(!i.sdk_version.is_empty(), "Meta.sdk_version shown: {i:#?}");
        let card = e.card.as_ref().unwrap();
        assert_eq!(card.beamline, beamline);
        assert!(!card.card_revision.is_empty());
        assert_eq!(
            i.card_revision, card.card_revision,
            "the instance publishes the revision of the card it serves"
        );
        assert!(i.enforces_halt, "this SDK halts itself: {i:#?}");
        let motor = card
            .capabilities
            .iter()
            .find(|c| c.name == "move_motor")
            .expect("move_motor on the demo agent's card");
        assert!(motor.actuating);
        assert!(motor.params_schema.contains("\"properties\""), "{motor:#?}");
        let read = card
            .capabilities
            .iter()
            .find(|c| c.name == "read_pv")
            .unwrap();
        assert!(!read.actuating);
        assert!(e.card_error.is_empty());
        assert!(!e.halt.as_ref().unwrap().halted && !e.lock.as_ref().unwrap().locked);
    }
    assert!(!snapshot.fleet_halt.as_ref().unwrap().halted);

    // A halt and a lock written to KV: each arrives on a watch and shows in the list.
    let mut watch = Watch::open(&mut client, None).await;
    assert_eq!(ids(&watch.snapshot().await), ["2.1.1", "10.1.1"]);
    let now = SystemTime::now();
    let halt = Halt {
        by: "control-room".into(),
        reason: "sample on fire".into(),
        since: now,
    };
    put(&registry, &kv::halt_key(&id("2.1.1")), halt.to_json()).await;
    let (event, _) = watch
        .until("HALT of 2.1.1", |e| {
            beamline_change(e, "2.1.1", FleetChange::Halt).is_some()
        })
        .await;
    let halted = beamline_change(&event, "2.1.1", FleetChange::Halt).unwrap();
    let state = halted.halt.unwrap();
    assert!(state.halted && !state.all);
    assert_eq!(
        (state.by.as_str(), state.reason.as_str()),
        ("control-room", "sample on fire")
    );
    assert!(halted.card.is_some(), "the whole entry, card included");

    let lock = Lock {
        holder: "alice".into(),
        note: "aligning the beam by hand".into(),
        since: now,
        expires: now + Duration::from_secs(5),
    };
    put(&registry, &kv::lock_key(&id("10.1.1")), lock.to_json()).await;
    let (event, _) = watch
        .until("LOCK of 10.1.1", |e| {
            beamline_change(e, "10.1.1", FleetChange::Lock).is_some()
        })
        .await;
    let locked = beamline_change(&event, "10.1.1", FleetChange::Lock)
        .unwrap()
        .lock
        .unwrap();
    assert!(locked.locked);
    assert_eq!(
        (locked.holder.as_str(), locked.note.as_str()),
        ("alice", "aligning the beam by hand")
    );

    let listed = list(&mut client, None).await;
    assert!(
        entry(&listed, "2.1.1")
            .unwrap()
            .halt
            .as_ref()
            .unwrap()
            .halted
    );
    assert!(
        !entry(&listed, "10.1.1")
            .unwrap()
            .halt
            .as_ref()
            .unwrap()
            .halted
    );
    assert_eq!(
        entry(&listed, "10.1.1")
            .unwrap()
            .lock
            .as_ref()
            .unwrap()
            .holder,
        "alice"
    );

    // Nothing is written when the lock expires: the catalog notices the time itself.
    let (event, _) = watch
        .until("the lock of 10.1.1 expiring", |e| {
            beamline_change(e, "10.1.1", FleetChange::Lock)
                .is_some_and(|b| !b.lock.as_ref().unwrap().locked)
        })
        .await;
    assert!(beamline_change(&event, "10.1.1", FleetChange::Lock).is_some());
    assert!(SystemTime::now() >= lock.expires, "not before its expiry");
    let listed = list(&mut client, None).await;
    assert!(
        !entry(&listed, "10.1.1")
            .unwrap()
            .lock
            .as_ref()
            .unwrap()
            .locked,
        "expired: free"
    );

    // The fleet-wide halt is an event of its own; each beamline's own halt stays as it was.
    let all = Halt {
        by: "safety-officer".into(),
        reason: "evacuation drill".into(),
        since: SystemTime::now(),
    };
    put(&registry, kv::HALT_ALL, all.to_json()).await;
    let (event, _) = watch
        .until(
            "the fleet-wide halt",
            |e| matches!(&e.event, Some(Event::FleetHalt(h)) if h.halted),
        )
        .await;
    let Some(Event::FleetHalt(state)) = event.event else {
        unreachable!()
    };
    assert!(state.all);
    assert_eq!(
        (state.by.as_str(), state.reason.as_str()),
        ("safety-officer", "evacuation drill")
    );
    let listed = list(&mut client, None).await;
    assert!(listed.fleet_halt.as_ref().unwrap().halted);
    assert!(
        !entry(&listed, "10.1.1")
            .unwrap()
            .halt
            .as_ref()
            .unwrap()
            .halted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_fleet_sends_a_new_agent_with_its_new_capability_and_an_instance_stopping() {
    let registry = Registry::start();
    let (_a, a_id, _) = start_agent(&registry, "5.3.1").await;
    let (b, b_id, _) = start_agent(&registry, "5.3.1").await;
    let gateway = GatewayProc::builder(&registry).start();
    let mut client = fleet_client(&gateway).await;
    list_until(
        &mut client,
        None,
        "5.3.1 with two instances and its card",
        |s| has_card(s, "5.3.1") && entry(s, "5.3.1").is_some_and(|e| e.instances.len() == 2),
    )
    .await;

    let mut watch = Watch::open(&mut client, None).await;
    let snapshot = watch.snapshot().await;
    assert_eq!(ids(&snapshot), ["5.3.1"]);

    // Another team deploys an agent with a capability nobody had: it arrives with its card.
    let thermometer = SdkAgent::start(&registry, "9.9.9", "2.0.0", thermometer()).await;
    let (event, before) = watch
        .until("9.9.9 with its card", |e| {
            beamline_change(e, "9.9.9", FleetChange::Card).is_some_and(|b| b.card.is_some())
        })
        .await;
    let learnt = beamline_change(&event, "9.9.9", FleetChange::Card).unwrap();
    let card = learnt.card.unwrap();
    let capability = &card.capabilities[0];
    assert_eq!(
        (capability.name.as_str(), capability.actuating),
        ("read_temperature", false)
    );
    assert!(
        capability.params_schema.contains("sensor"),
        "{capability:#?}"
    );
    assert_eq!(card.agent_version, "2.0.0");
    assert_eq!(learnt.instances[0].instance_id, thermometer.instance_id);
    assert!(
        before
            .iter()
            .any(|e| beamline_change(e, "9.9.9", FleetChange::Added).is_some()),
        "ADDED came first: {before:#?}"
    );

    // One instance of 5.3.1 stops: an INSTANCES change without it.
    b.sigterm();
    let (event, _) = watch
        .until("5.3.1 without the stopped instance", |e| {
            beamline_change(e, "5.3.1", FleetChange::Instances)
                .is_some_and(|b| b.instances.iter().all(|i| i.instance_id != b_id))
        })
        .await;
    let left = beamline_change(&event, "5.3.1", FleetChange::Instances).unwrap();
    assert_eq!(left.instances.len(), 1);
    assert_eq!(left.instances[0].instance_id, a_id);
    assert!(left.card.is_some(), "the card stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_sees_only_the_beamlines_its_policy_allows() {
    let dir = PolicyDir::new();
    let registry = Registry::start();
    let (_a, _, _) = start_agent(&registry, "5.3.1").await;
    let (_b, _, _) = start_agent(&registry, "7.0.1").await;
    let gateway = GatewayProc::builder(&registry)
        .auth_file(dir.standard())
        .flag("--allow-plaintext")
        .start();
    let mut client = fleet_client(&gateway).await;
    let observer = jwt_hs256(
        JWT_SECRET.as_bytes(),
        &claims("planner", "observer", &["5.3.1"]),
    );

    list_until(
        &mut client,
        Some(VIEWER_KEY),
        "both beamlines and cards",
        |s| ids(s) == ["5.3.1", "7.0.1"] && has_card(s, "5.3.1") && has_card(s, "7.0.1"),
    )
    .await;
    let only = list(&mut client, Some(&observer)).await;
    assert_eq!(
        ids(&only),
        ["5.3.1"],
        "an observer of 5.3.1 sees 5.3.1 only"
    );
    let denied = client
        .list_beamlines(bearer(Some(WRONG_KEY), ListBeamlinesRequest {}))
        .await
        .expect_err("an unknown key is refused");
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);

    let mut watch = Watch::open(&mut client, Some(&observer)).await;
    assert_eq!(ids(&watch.snapshot().await), ["5.3.1"]);
    // A halt of 7.0.1, then one of 5.3.1: the first event this watcher gets is 5.3.1's.
    for beamline in ["7.0.1", "5.3.1"] {
        let halt = Halt {
            by: "control-room".into(),
            reason: format!("stop {beamline}"),
            since: SystemTime::now(),
        };
        put(&registry, &kv::halt_key(&id(beamline)), halt.to_json()).await;
    }
    let (event, before) = watch
        .until("the halt of 5.3.1", |e| {
            beamline_change(e, "5.3.1", FleetChange::Halt).is_some()
        })
        .await;
    let of_7_0_1 = |e: &FleetEvent| match &e.event {
        Some(Event::Beamline(b)) => b.beamline == "7.0.1",
        Some(Event::Removed(id)) => id == "7.0.1",
        _ => false,
    };
    assert!(
        !before.iter().any(of_7_0_1),
        "nothing of 7.0.1 reached the watcher: {before:#?}"
    );
    assert!(beamline_change(&event, "5.3.1", FleetChange::Halt).is_some());
}

/// `beamline-mesh agents --capabilities --gateway <gateway> <extra…>`, which must exit 0; its
/// stdout.
async fn agents_capabilities(gateway: &GatewayProc, extra: &[&str]) -> String {
    let mut args: Vec<String> = ["agents", "--capabilities", "--gateway"]
        .map(String::from)
        .to_vec();
    args.push(gateway.endpoint());
    args.extend(extra.iter().map(|s| s.to_string()));
    run_ok(args, secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_capabilities_prints_the_catalog_from_the_gateway() {
    let registry = Registry::start();
    let (_a, a_id, _) = start_agent(&registry, "5.3.1").await;
    let gateway = GatewayProc::builder(&registry).start();
    let mut client = fleet_client(&gateway).await;
    list_until(&mut client, None, "5.3.1's card", |s| has_card(s, "5.3.1")).await;

    let table = agents_capabilities(&gateway, &[]).await;
    for needle in [
        "5.3.1",
        a_id.as_str(),
        "move_motor",
        "actuating",
        "read_pv",
        "read-only",
    ] {
        assert!(table.contains(needle), "{needle:?} in:\n{table}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&agents_capabilities(&gateway, &["--json"]).await)
            .expect("--json prints one JSON document");
    assert_eq!(json["beamlines"][0]["beamline"], "5.3.1");
    assert_eq!(
        json["beamlines"][0]["instances"][0]["instanceId"],
        a_id.as_str()
    );
    let capabilities = json["beamlines"][0]["card"]["capabilities"]
        .as_array()
        .expect("the card's capabilities");
    assert!(capabilities
        .iter()
        .any(|c| c["name"] == "move_motor" && c["actuating"] == true));

    // No gateway there: a clear error, exit 1; --gateway without --capabilities: a usage error.
    let down = run_to_exit(
        &["agents", "--capabilities", "--gateway", "127.0.0.1:1"],
        secs(30),
    );
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(
        down.stderr.contains("cannot connect to http://127.0.0.1:1"),
        "{down:?}"
    );
    let usage = run_to_exit(&["agents", "--gateway", &gateway.endpoint()], secs(30));
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    assert!(usage.stderr.contains("--capabilities"), "{usage:?}");
}
