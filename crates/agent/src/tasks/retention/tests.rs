//! Every retention decision on explicit instants: kept until the period passes, the oldest
//! dropped first past the most kept, nothing dropped early.

use std::time::{Duration, Instant};

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn expired(r: &mut Retention, now: Instant) -> Vec<String> {
    r.expired(now).collect()
}

#[test]
fn a_finished_task_is_kept_for_the_period_then_dropped_once() {
    let t0 = Instant::now();
    let mut r = Retention::new(HOUR, 10);
    r.on_finished("a".into(), t0);
    assert!(expired(&mut r, t0).is_empty());
    assert!(expired(&mut r, t0 + HOUR - Duration::from_nanos(1)).is_empty());
    assert_eq!(expired(&mut r, t0 + HOUR), ["a"]);
    assert!(expired(&mut r, t0 + 2 * HOUR).is_empty(), "dropped once");
}

#[test]
fn tasks_expire_in_the_order_they_finished() {
    let t0 = Instant::now();
    let mut r = Retention::new(HOUR, 10);
    r.on_finished("a".into(), t0);
    r.on_finished("b".into(), t0 + Duration::from_secs(10));
    r.on_finished("c".into(), t0 + Duration::from_secs(20));
    assert_eq!(
        expired(&mut r, t0 + HOUR + Duration::from_secs(10)),
        ["a", "b"]
    );
    assert_eq!(expired(&mut r, t0 + 2 * HOUR), ["c"]);
}

#[test]
fn past_the_most_kept_the_oldest_go_first_however_young() {
    let t0 = Instant::now();
    let mut r = Retention::new(HOUR, 2);
    for id in ["a", "b", "c", "d"] {
        r.on_finished(id.into(), t0);
    }
    assert_eq!(expired(&mut r, t0), ["a", "b"]);
    r.on_finished("e".into(), t0);
    assert_eq!(expired(&mut r, t0), ["c"]);
}

#[test]
fn a_zero_period_drops_at_once_and_a_zero_bound_keeps_none() {
    let t0 = Instant::now();
    let mut r = Retention::new(Duration::ZERO, 10);
    r.on_finished("a".into(), t0);
    assert_eq!(expired(&mut r, t0), ["a"]);
    let mut r = Retention::new(HOUR, 0);
    r.on_finished("b".into(), t0);
    assert_eq!(expired(&mut r, t0), ["b"]);
}

#[test]
fn a_clock_read_before_the_finish_drops_nothing_early() {
    // The table reads the clock outside its record of when a task finished: an earlier `now`
    // must count as no time passed, not wrap around.
    let t0 = Instant::now();
    let mut r = Retention::new(HOUR, 10);
    r.on_finished("a".into(), t0 + Duration::from_secs(5));
    assert!(expired(&mut r, t0).is_empty());
    assert_eq!(
        r.pop_expired(t0 + HOUR + Duration::from_secs(5)),
        Some("a".into())
    );
}
