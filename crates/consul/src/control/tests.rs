use std::time::{Duration, SystemTime};

use super::*;
use beamline_contract::control::Halt;

fn settings() -> FollowSettings {
    FollowSettings {
        wait: Duration::from_secs(300),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(2),
    }
}

#[test]
fn the_first_answer_publishes_and_an_unchanged_index_does_not() {
    let mut f = Follow::new(&settings());
    assert_eq!(f.index(), 0);
    assert_eq!(f.on_answer(7), Answered::Publish);
    assert_eq!(f.index(), 7);
    assert_eq!(f.on_answer(7), Answered::Unchanged, "the wait ran out");
    assert_eq!(f.on_answer(9), Answered::Publish);
}

#[test]
fn a_failure_before_the_first_answer_starts_an_outage_and_the_answer_publishes() {
    let mut f = Follow::new(&settings());
    let (started, _) = f.on_error(0.0);
    assert!(started, "the view must say why, not 'not answered yet'");
    assert!(!f.on_error(0.0).0);
    assert_eq!(f.on_answer(0), Answered::Publish, "even at index 0");
    assert_eq!(f.index(), 1, "0 is never blocked on");
    assert_eq!(f.on_answer(1), Answered::Publish, "1 is news after 0");
    assert_eq!(f.on_answer(1), Answered::Unchanged);
}

#[test]
fn an_index_that_went_backwards_starts_again_from_zero_and_zero_is_never_blocked_on() {
    let mut f = Follow::new(&settings());
    f.on_answer(100);
    assert_eq!(f.on_answer(3), Answered::Publish);
    assert_eq!(f.index(), 0, "a restored server: ask at once");
    f.on_answer(0);
    assert_eq!(f.index(), 1);
}

#[test]
fn a_failure_starts_an_outage_once_backs_off_and_the_next_answer_publishes() {
    let mut f = Follow::new(&settings());
    f.on_answer(5);
    let (started, first) = f.on_error(0.0);
    assert!(started);
    assert_eq!(first, Duration::from_millis(50));
    let (again, second) = f.on_error(0.0);
    assert!(!again, "logged once per outage");
    assert_eq!(second, Duration::from_millis(100));
    assert_eq!(f.index(), 0);
    assert_eq!(f.on_answer(5), Answered::Publish, "readable again");
    assert_eq!(
        f.on_error(0.0).1,
        Duration::from_millis(50),
        "back-off reset"
    );
}

#[test]
fn an_unreadable_view_refuses_actuating_work_and_a_known_halt_says_more() {
    let starting = ControlView::starting();
    let refusal = starting.refusal("5.3.1", Some("alice"), SystemTime::now());
    assert!(matches!(refusal, Some(Refusal::Unreadable { .. })));
    let mut view = ControlView::starting();
    view.state.halts.insert(
        "5.3.1".to_string(),
        Halt {
            by: "alice".to_string(),
            reason: "beam dump".to_string(),
            since: SystemTime::UNIX_EPOCH,
        },
    );
    let refusal = view.refusal("5.3.1", None, SystemTime::now());
    assert!(matches!(refusal, Some(Refusal::Halted { .. })));
    view.unreadable = None;
    assert_eq!(view.refusal("7.0.1", None, SystemTime::now()), None);
}

#[tokio::test]
async fn a_prefix_consul_hides_by_acls_is_unreadable_not_empty() {
    // Consul's answer to a recursive KV read by a token that may read none of the prefix: a
    // 404 with the ACL-filtered flag and an index.
    let client = crate::kv::tests::answering(
        "HTTP/1.1 404 Not Found\r\nX-Consul-Index: 7\r\n\
         X-Consul-Results-Filtered-By-ACLs: true\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    let watch = spawn(client, settings());
    let mut view = watch.subscribe();
    let seen = tokio::time::timeout(Duration::from_secs(10), view.wait_for(|v| v.index == 7))
        .await
        .expect("the answer is published")
        .unwrap()
        .clone();
    let why = seen.unreadable.as_deref().expect("fail closed");
    assert!(why.contains("key_prefix \"beamline-mesh/\" read"), "{why}");
    assert!(matches!(
        seen.refusal("5.3.1", None, SystemTime::now()),
        Some(Refusal::Unreadable { .. })
    ));
}
