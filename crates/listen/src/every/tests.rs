//! Unit tests of `Every`: one line per period, then the count of the rest.

use super::Every;
use std::time::{Duration, Instant};

#[test]
fn one_line_per_period_then_the_count_of_the_rest() {
    let start = Instant::now();
    let mut every = Every::new(Duration::from_secs(10));
    assert_eq!(every.admit(start), Some(0));
    for i in 1..=99 {
        assert_eq!(every.admit(start + Duration::from_millis(i * 10)), None);
    }
    assert_eq!(every.admit(start + Duration::from_secs(10)), Some(99));
    assert_eq!(every.admit(start + Duration::from_secs(11)), None);
    assert_eq!(every.admit(start + Duration::from_secs(20)), Some(1));
}
