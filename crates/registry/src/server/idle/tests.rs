use super::*;

#[test]
fn closes_after_the_timeout_without_bytes_or_requests() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(60);
    let mut idle = Idle::new(t0);
    assert_eq!(idle.next_check(t0, timeout), Some(t0 + timeout));
    idle.touch(t0 + Duration::from_secs(30));
    let at = t0 + Duration::from_secs(61);
    assert_eq!(
        idle.next_check(at, timeout),
        Some(t0 + Duration::from_secs(90))
    );
    assert_eq!(idle.next_check(t0 + Duration::from_secs(90), timeout), None);
}

#[test]
fn a_request_in_flight_is_never_idle() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(1);
    let mut idle = Idle::new(t0);
    idle.request_started(t0);
    let late = t0 + Duration::from_secs(600);
    assert_eq!(idle.next_check(late, timeout), Some(late + timeout));
    idle.request_ended(late);
    assert_eq!(idle.next_check(late + timeout, timeout), None);
}
