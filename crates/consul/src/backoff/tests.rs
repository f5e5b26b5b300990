use std::time::Duration;

use super::Backoff;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn pauses_double_up_to_the_cap_with_up_to_half_again_as_jitter() {
    let mut backoff = Backoff::new(ms(100), ms(1000));
    assert_eq!(backoff.next(0.0), ms(100));
    assert_eq!(backoff.next(1.0), ms(300), "200 plus half of it");
    assert_eq!(backoff.next(0.5), ms(500), "400 plus a quarter of it");
    assert_eq!(backoff.next(0.0), ms(800));
    assert_eq!(backoff.next(0.0), ms(1000), "capped");
    assert_eq!(backoff.next(0.0), ms(1000));
    // Jitter outside 0..=1 is clamped, never a negative or unbounded pause.
    assert_eq!(backoff.next(-3.0), ms(1000));
    assert_eq!(backoff.next(7.0), ms(1500));
}

#[test]
fn a_success_starts_again_from_the_minimum() {
    let mut backoff = Backoff::new(ms(100), ms(1000));
    backoff.next(0.0);
    backoff.next(0.0);
    assert_eq!(backoff.current(), ms(400));
    backoff.reset();
    assert_eq!(backoff.current(), ms(100));
    assert_eq!(backoff.next(0.0), ms(100));
}

#[test]
fn a_cap_near_the_largest_duration_saturates_instead_of_panicking() {
    let mut backoff = Backoff::new(Duration::MAX / 3, Duration::MAX);
    for _ in 0..4 {
        backoff.next(1.0);
    }
    assert_eq!(backoff.current(), Duration::MAX);
    assert_eq!(backoff.next(1.0), Duration::MAX);
}

#[test]
fn a_cap_below_the_minimum_is_the_minimum() {
    let mut backoff = Backoff::new(ms(100), ms(10));
    assert_eq!(backoff.next(0.0), ms(100));
    assert_eq!(backoff.next(0.0), ms(100));
}
