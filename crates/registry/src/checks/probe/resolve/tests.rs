use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::*;

/// A DNS server that does not answer: each lookup holds its thread until `release`.
fn stuck(
    release: Arc<(Mutex<bool>, std::sync::Condvar)>,
    running: Arc<AtomicUsize>,
) -> Arc<Resolver> {
    Resolver::new(4, move |_| {
        running.fetch_add(1, Ordering::SeqCst);
        let (lock, cv) = &*release;
        let mut go = lock.lock().unwrap();
        while !*go {
            go = cv.wait(go).unwrap();
        }
        running.fetch_sub(1, Ordering::SeqCst);
        Err(io::Error::other("lookup slow.example: i/o timeout"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_time_out_share_one_lookup_per_name_and_the_cap_holds() {
    let release = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let running = Arc::new(AtomicUsize::new(0));
    let resolver = stuck(release.clone(), running.clone());
    // 500 probe runs of one name, each giving up after 1 ms, as a 1 ms check timeout would.
    for _ in 0..500 {
        let r = tokio::time::timeout(
            Duration::from_millis(1),
            resolver.resolve("slow.example", 80),
        );
        assert!(r.await.is_err(), "the lookup is stuck");
    }
    assert_eq!(
        resolver.started(),
        1,
        "one lookup for every run of the same name"
    );
    // 50 names: never more than the cap's threads.
    for i in 0..50 {
        let name = format!("slow{i}.example");
        let _ = tokio::time::timeout(Duration::from_millis(1), resolver.resolve(&name, 80)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        running.load(Ordering::SeqCst),
        4,
        "lookups capped at 4 threads"
    );
    assert_eq!(resolver.in_flight(), 51);
    *release.0.lock().unwrap() = true;
    release.1.notify_all();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while resolver.in_flight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lookups never finished"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(resolver.started(), 51);
}

#[tokio::test]
async fn answers_and_errors_reach_every_waiter() {
    let resolver = Resolver::new(2, |host| match host {
        "ok.example" => Ok(vec!["127.0.0.2".parse().unwrap()]),
        _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
    });
    let addrs = resolver.resolve("ok.example", 81).await.unwrap();
    assert_eq!(addrs, vec!["127.0.0.2:81".parse().unwrap()]);
    let err = resolver.resolve("bad.example", 81).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.to_string()),
        (io::ErrorKind::NotFound, "no such host".into())
    );
    let literal = resolver.resolve("::1", 82).await.unwrap();
    assert_eq!(literal, vec!["[::1]:82".parse().unwrap()]);
    assert_eq!(resolver.started(), 2, "an IP literal needs no lookup");
}
