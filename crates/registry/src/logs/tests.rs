use super::*;

#[test]
fn one_line_per_period_with_the_count_held_back() {
    let t0 = Instant::now();
    let s = |n: u64| t0 + Duration::from_millis(n);
    let mut limiter = LogLimiter::new(Duration::from_secs(30));
    assert_eq!(limiter.admit("web", s(0)), Some(0));
    for i in 1..=99 {
        assert_eq!(limiter.admit("web", s(i * 100)), None, "flap {i}");
    }
    assert_eq!(limiter.admit("db", s(500)), Some(0), "another subject");
    assert_eq!(limiter.admit("web", s(30_000)), Some(99));
    assert_eq!(limiter.admit("web", s(30_001)), None);
    assert_eq!(limiter.admit("web", s(60_000)), Some(1));
}

#[test]
fn subjects_stay_bounded() {
    let t0 = Instant::now();
    let mut limiter = LogLimiter::new(Duration::from_secs(1));
    for i in 0..10_000u64 {
        let now = t0 + Duration::from_millis(i);
        assert_eq!(limiter.admit(&format!("check-{i}"), now), Some(0));
        assert!(limiter.subjects() <= MAX_SUBJECTS);
    }
}

#[test]
fn chains_name_the_os_error() {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot accept a connection")]
    struct Accept(#[source] std::io::Error);
    let err = Accept(std::io::Error::from_raw_os_error(24));
    assert_eq!(
        chain(&err),
        "cannot accept a connection: Too many open files (os error 24)"
    );
    let quoted = std::io::Error::other(format!("lookup: {}", "x"));
    assert_eq!(chain(&quoted), "lookup: x");
}
