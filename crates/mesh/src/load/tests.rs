use super::*;

#[tokio::test(start_paused = true)]
async fn peaks_count_at_once_and_decay_over_time() {
    let decay = 5e9;
    let t0 = Instant::now();
    let mut e = Estimate {
        rtt_ns: 100_000.0,
        updated: t0,
    };
    e.record(t0, 5_000_000.0, decay);
    assert_eq!(e.rtt_ns, 5_000_000.0, "a peak is taken at once");
    tokio::time::advance(Duration::from_secs(5)).await;
    let later = e.decayed(Instant::now(), decay);
    assert!(later < 2_000_000.0 && later > 1_500_000.0, "{later}");
}

#[test]
fn estimates_compare_in_powers_of_two_above_the_floor() {
    let ms = 1_000_000.0;
    assert_eq!(bucket(0.3 * ms, ms), ms);
    assert_eq!(
        bucket(1.38 * ms, ms),
        ms,
        "a small peak ties with the floor"
    );
    assert_eq!(bucket(2.5 * ms, ms), 2.0 * ms);
    assert_eq!(
        bucket(5.0 * ms, ms),
        4.0 * ms,
        "a real slowdown still counts"
    );
    assert_eq!(bucket(0.3 * ms, 0.0), 0.3 * ms, "no floor: raw estimates");
}

#[tokio::test(start_paused = true)]
async fn failed_calls_do_not_lower_the_estimate() {
    let svc = tower::service_fn(|fail: bool| async move {
        tokio::time::sleep(Duration::from_millis(if fail { 0 } else { 10 })).await;
        if fail {
            Err("refused")
        } else {
            Ok(())
        }
    });
    let mut ewma = PeakEwma::new(
        svc,
        Duration::from_micros(100),
        Duration::from_secs(5),
        Duration::ZERO,
    );
    ewma.call(false).await.unwrap();
    let after_ok = ewma.load();
    assert!(after_ok.0 >= 9_000_000.0, "{after_ok:?}");
    for _ in 0..10 {
        assert!(ewma.call(true).await.is_err());
    }
    assert!(
        ewma.load().0 >= after_ok.0 * 0.99,
        "errors kept out of the estimate"
    );
}
