//! Every step of the drain window on explicit instants: the grace is served even when nothing
//! runs, quiet before the timeout stops at the grace, the timeout fails only what still runs.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

const GRACE: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(30);

fn window(t0: Instant) -> DrainWindow {
    DrainWindow::new(t0, GRACE, TIMEOUT)
}

#[test]
fn until_quiet_it_waits_for_quiet_or_the_timeout() {
    let t0 = Instant::now();
    let w = window(t0);
    let wait = Step::Wait {
        until: t0 + TIMEOUT,
        for_quiet: true,
    };
    assert_eq!(w.next(t0, true), wait);
    // Nothing running at this moment is not quiet: a count may have been zero only briefly.
    assert_eq!(w.next(t0 + GRACE, false), wait);
}

#[test]
fn quiet_within_the_grace_still_serves_the_whole_grace() {
    let t0 = Instant::now();
    let mut w = window(t0);
    w.on_quiet();
    let wait = Step::Wait {
        until: t0 + GRACE,
        for_quiet: false,
    };
    assert_eq!(w.next(t0, false), wait);
    assert_eq!(w.next(t0 + GRACE - Duration::from_millis(1), false), wait);
    assert_eq!(w.next(t0 + GRACE, false), Step::Stop);
}

#[test]
fn quiet_after_the_grace_stops_at_once() {
    let t0 = Instant::now();
    let mut w = window(t0);
    let later = t0 + Duration::from_secs(10);
    w.on_quiet();
    assert_eq!(w.next(later, true), Step::Stop);
}

#[test]
fn at_the_timeout_what_still_runs_is_failed() {
    let t0 = Instant::now();
    let w = window(t0);
    assert_eq!(w.next(t0 + TIMEOUT, true), Step::FailRunning);
    // Not quiet, but nothing runs at the deadline itself: nothing to fail.
    assert_eq!(w.next(t0 + TIMEOUT, false), Step::Stop);
}

#[test]
fn quiet_and_past_the_grace_at_the_timeout_is_a_stop_not_a_failure() {
    let t0 = Instant::now();
    let mut w = window(t0);
    w.on_quiet();
    assert_eq!(w.next(t0 + TIMEOUT, true), Step::Stop);
}

#[test]
fn a_grace_longer_than_the_timeout_is_cut_by_the_timeout() {
    let t0 = Instant::now();
    let mut w = DrainWindow::new(t0, TIMEOUT, GRACE);
    w.on_quiet();
    assert_eq!(
        w.next(t0, false),
        Step::Wait {
            until: t0 + GRACE,
            for_quiet: false
        }
    );
    assert_eq!(w.next(t0 + GRACE, false), Step::Stop);
    // Something started again after the quiet (a retried keyed Execute, a GetTask): failed.
    assert_eq!(w.next(t0 + GRACE, true), Step::FailRunning);
}
