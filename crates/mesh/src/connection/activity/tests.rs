use super::*;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn resumed_waits_for_a_call_started_after_the_sample_and_ignores_older_wakeups() {
    let activity = Arc::new(Activity::default());
    // A call before the sample leaves a stored wake-up behind.
    drop(CallInFlight::start(&activity));
    let since = activity.sample().started;
    let waiting = tokio::time::timeout(Duration::from_secs(60), activity.resumed(since));
    assert!(waiting.await.is_err(), "no call since the sample");

    let waiter = {
        let activity = activity.clone();
        tokio::spawn(async move { activity.resumed(since).await })
    };
    tokio::task::yield_now().await;
    let call = CallInFlight::start(&activity);
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("a new call wakes the waiter")
        .unwrap();
    assert_eq!(
        activity.sample(),
        Sample {
            started: 2,
            in_flight: 1
        }
    );
    drop(call);
    assert_eq!(activity.sample().in_flight, 0);
}
