use super::*;

fn sample(started: u64, in_flight: usize) -> Sample {
    Sample { started, in_flight }
}

/// Drives the clock as the health watch does: sleep to the next look, look.
async fn run_until_release(clock: &mut IdleClock, samples: impl Fn(Instant) -> Sample) {
    loop {
        tokio::time::sleep_until(clock.next_look()).await;
        let now = Instant::now();
        if clock.look(now, samples(now)) == Verdict::Release {
            return;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_connection_is_released_between_after_and_a_quarter_more() {
    let start = Instant::now();
    let after = Duration::from_secs(60);
    let mut clock = IdleClock::new(after, start, sample(7, 0));
    run_until_release(&mut clock, |_| sample(7, 0)).await;
    let took = start.elapsed();
    assert!(took >= after && took <= after + after / 4, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn calls_started_or_in_flight_keep_it() {
    let start = Instant::now();
    let after = Duration::from_secs(60);
    // A call every 10 s for the first 100 s, then silence.
    let mut clock = IdleClock::new(after, start, sample(0, 0));
    run_until_release(&mut clock, |now| {
        let secs = now.duration_since(start).as_secs();
        sample(secs.min(100) / 10, 0)
    })
    .await;
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(160), "{took:?}");
    assert!(
        took <= Duration::from_secs(100) + after + after / 4 + after / 4,
        "{took:?}"
    );

    // One long call (a stream) in flight for 5 minutes, started before the clock: kept.
    let start = Instant::now();
    let mut clock = IdleClock::new(after, start, sample(1, 1));
    run_until_release(&mut clock, |now| {
        let streaming = now.duration_since(start) < Duration::from_secs(300);
        sample(1, usize::from(streaming))
    })
    .await;
    let took = start.elapsed();
    let ended = Duration::from_secs(300);
    assert!(
        took >= ended + after && took <= ended + after + after / 4,
        "{took:?}"
    );
}

#[test]
fn a_look_before_the_bound_keeps_and_says_when_to_look_again() {
    let start = Instant::now();
    let mut clock = IdleClock::new(Duration::from_secs(4), start, sample(0, 0));
    let now = start + Duration::from_secs(1);
    assert_eq!(clock.look(now, sample(0, 0)), Verdict::Keep);
    assert_eq!(clock.next_look(), now + Duration::from_secs(1));
    assert_eq!(
        clock.look(start + Duration::from_secs(4), sample(0, 0)),
        Verdict::Release
    );
}
