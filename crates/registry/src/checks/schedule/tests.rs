use std::time::Duration;

use tokio::time::Instant;

use super::*;

const INTERVAL: Duration = Duration::from_secs(5);

#[test]
fn the_first_run_waits_for_the_stagger_of_at_most_one_interval() {
    let t0 = Instant::now();
    let s = Schedule::new(Some(INTERVAL));
    assert_eq!(s.max_stagger(), INTERVAL);
    assert_eq!(s.first_run(t0, Duration::ZERO), t0);
    assert_eq!(
        s.first_run(t0, Duration::from_secs(2)),
        t0 + Duration::from_secs(2)
    );
    assert_eq!(s.first_run(t0, Duration::from_secs(60)), t0 + INTERVAL);
}

#[test]
fn runs_start_one_interval_apart_whatever_a_run_takes() {
    let t0 = Instant::now();
    let s = Schedule::new(Some(INTERVAL));
    let done = t0 + Duration::from_secs(1);
    assert_eq!(s.next_run(t0, done), t0 + INTERVAL);
}

#[test]
fn a_run_longer_than_the_interval_is_followed_at_once() {
    let t0 = Instant::now();
    let s = Schedule::new(Some(INTERVAL));
    let done = t0 + Duration::from_secs(8);
    assert_eq!(s.next_run(t0, done), done);
}

#[test]
fn no_interval_means_consuls_default_and_huge_ones_do_not_panic() {
    let t0 = Instant::now();
    assert_eq!(
        Schedule::new(None).next_run(t0, t0),
        t0 + Duration::from_secs(10)
    );
    let huge = Schedule::new(Some(Duration::MAX));
    assert!(huge.next_run(t0, t0) > t0 + Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn a_driver_on_paused_time_runs_on_schedule() {
    // The runner's loop shape, on paused time: stagger, then one run per interval.
    let s = Schedule::new(Some(INTERVAL));
    let t0 = Instant::now();
    tokio::time::sleep_until(s.first_run(t0, Duration::from_secs(3))).await;
    let mut starts = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        starts.push(started - t0);
        // A run that takes 1 s.
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::time::sleep_until(s.next_run(started, Instant::now())).await;
    }
    let secs: Vec<u64> = starts.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [3, 8, 13]);
}
