//! What is refused, with what words and marks, and what goes on: Execute under a halt, a lock
//! and an unreadable state; Cancel under a lock; bad messages.

use super::*;

#[tokio::test]
async fn an_actuating_execute_while_halted_is_refused_naming_who_when_and_why() {
    let f = fixture(halted(BEAMLINE));
    for capability in ["move_motor", "never_heard_of_it"] {
        let body = whole(execute(capability));
        let answer = f.send(Rpc::Execute, BEAMLINE, Some("planner"), body).await;
        assert_eq!(answer.code, Code::FailedPrecondition, "{capability}");
        assert_eq!(
            answer.message,
            "beamline 5.3.1 is halted by \"control-room\" since 2026-11-30T00:53:20Z: sample on fire"
        );
        assert_eq!(answer.refused, Some(RefusedBy::Halt));
        assert_eq!(answer.facts.capability.as_deref(), Some(capability));
    }
    assert_eq!(f.calls(), 0, "a refused call reached the router");
}

#[tokio::test]
async fn a_read_only_execute_while_halted_goes_on_with_its_message_as_sent() {
    let f = fixture(halted(BEAMLINE));
    let sent = execute("read_pv");
    let answer = f
        .send(Rpc::Execute, BEAMLINE, None, chunked(sent.clone(), 3))
        .await;
    assert_eq!((answer.code, answer.refused), (Code::Ok, None));
    assert_eq!(*f.seen.bodies.lock().unwrap(), vec![sent]);
}

#[tokio::test]
async fn a_halt_of_every_beamline_refuses_each() {
    let f = fixture(readable(ControlState {
        all: Some(halt()),
        ..ControlState::default()
    }));
    for beamline in [BEAMLINE, OTHER] {
        let answer = f
            .send(Rpc::Execute, beamline, None, whole(execute("move_motor")))
            .await;
        assert_eq!(answer.code, Code::FailedPrecondition);
        let every = "every beamline is halted by \"control-room\"";
        assert!(answer.message.starts_with(every), "{}", answer.message);
    }
}

#[tokio::test]
async fn a_lock_refuses_others_and_anonymous_callers_but_not_its_holder() {
    let f = fixture(locked_by("alice", far_future()));
    for caller in [Some("bob"), None] {
        let body = whole(execute("move_motor"));
        let answer = f.send(Rpc::Execute, BEAMLINE, caller, body).await;
        assert_eq!(answer.code, Code::FailedPrecondition, "{caller:?}");
        let locked = "beamline 5.3.1 is locked by \"alice\" until ";
        assert!(answer.message.starts_with(locked), "{}", answer.message);
        assert!(answer.message.ends_with(": aligning by hand"));
        assert_eq!(answer.refused, Some(RefusedBy::Lock));
    }
    // The holder: not even its body is read.
    assert_eq!(f.untouched(Rpc::Execute, Some("alice")).await, (true, 0));
}

#[tokio::test]
async fn an_expired_lock_refuses_nobody() {
    let f = fixture(locked_by(
        "alice",
        SystemTime::now() - Duration::from_secs(1),
    ));
    for rpc in [Rpc::Execute, Rpc::Cancel] {
        assert_eq!(f.untouched(rpc, Some("bob")).await, (true, 0), "{rpc}");
    }
}

#[tokio::test]
async fn a_cancel_under_someone_elses_lock_is_refused_only_for_an_actuating_task() {
    let f = fixture(locked_by("alice", far_future()));
    // Actuating, a capability the catalog does not know, and a task that cannot be read.
    for task in ["a/1", "a/3", "broken/1"] {
        let answer = f
            .send(Rpc::Cancel, BEAMLINE, Some("bob"), whole(cancel(task)))
            .await;
        assert_eq!(answer.code, Code::FailedPrecondition, "{task}");
        assert!(answer.message.contains("locked by \"alice\""));
        assert_eq!(answer.refused, Some(RefusedBy::Lock));
        assert_eq!(answer.facts.task_id.as_deref(), Some(task));
    }
    assert_eq!(f.calls(), 0);
    // A read-only task, and one the agent does not have (it says NOT_FOUND itself).
    for task in ["a/2", "a/404"] {
        let sent = cancel(task);
        let answer = f
            .send(Rpc::Cancel, BEAMLINE, Some("bob"), whole(sent.clone()))
            .await;
        assert_eq!(answer.code, Code::Ok, "{task}");
        assert_eq!(f.seen.bodies.lock().unwrap().last(), Some(&sent));
    }
    // Its holder's cancel is not even read.
    assert_eq!(f.untouched(Rpc::Cancel, Some("alice")).await, (true, 0));
}

#[tokio::test]
async fn while_the_state_cannot_be_read_execute_is_refused_and_cancel_goes_on() {
    let f = fixture(ControlView::starting());
    let answer = f
        .send(Rpc::Execute, BEAMLINE, None, whole(execute("move_motor")))
        .await;
    assert_eq!(answer.code, Code::FailedPrecondition);
    assert!(
        answer.message.contains("cannot be read"),
        "{}",
        answer.message
    );
    assert_eq!(answer.refused, Some(RefusedBy::Unreadable));
    assert_eq!(f.untouched(Rpc::Cancel, None).await, (true, 0));
}

/// The message's framing (`message`'s tests) as the caller sees it: a message split over
/// chunks is read whole, one over the limit is RESOURCE_EXHAUSTED, a body that is not one
/// message INVALID_ARGUMENT, for Execute and Cancel alike; none reaches the router.
#[tokio::test]
async fn a_message_is_read_whole_under_the_limit_or_refused_as_bad_input() {
    let f = fixture(halted(BEAMLINE));
    let body = chunked(execute("move_motor"), 1);
    let answer = f.send(Rpc::Execute, BEAMLINE, None, body).await;
    assert_eq!(answer.facts.capability.as_deref(), Some("move_motor"));
    // The limit is 64 bytes of message.
    let big = chunked(execute(&"m".repeat(100)), 16);
    let answer = f.send(Rpc::Execute, BEAMLINE, None, big).await;
    assert_eq!(answer.code, Code::ResourceExhausted);
    assert!(answer.message.contains("larger than 64 bytes"));
    let truncated = execute("move_motor").slice(..8);
    let answer = f.send(Rpc::Execute, BEAMLINE, None, whole(truncated)).await;
    assert_eq!(answer.code, Code::InvalidArgument, "{}", answer.message);
    let f = fixture(locked_by("alice", far_future()));
    let garbage = whole(vec![0, 0, 0, 0, 2, 0x0f, 0x01]);
    let answer = f.send(Rpc::Cancel, BEAMLINE, None, garbage).await;
    assert_eq!(answer.code, Code::InvalidArgument);
    assert!(
        answer.message.starts_with("bad request message"),
        "{}",
        answer.message
    );
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn a_compressed_execute_under_a_refusal_is_refused_unread() {
    let f = fixture(halted(BEAMLINE));
    let mut compressed = execute("read_pv").to_vec();
    compressed[0] = 1;
    let answer = f
        .send(Rpc::Execute, BEAMLINE, None, whole(compressed))
        .await;
    assert_eq!(answer.code, Code::FailedPrecondition);
    assert_eq!(answer.refused, Some(RefusedBy::Halt));
}
