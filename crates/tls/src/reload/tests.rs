use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Reloading, Stamps};
use crate::{certs, PemFile};

fn write(path: &PathBuf, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn cert_pem(name: &str) -> String {
    rcgen::generate_simple_self_signed(vec![name.to_string()])
        .unwrap()
        .cert
        .pem()
}

#[test]
fn stamps_differ_exactly_when_a_file_changed_or_went() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.pem");
    write(&path, "one");
    let paths = vec![path.clone()];
    let before = Stamps::of(&paths);
    assert_eq!(before, Stamps::of(&paths));
    write(&path, "a longer text");
    assert_ne!(before, Stamps::of(&paths));
    let after = Stamps::of(&paths);
    std::fs::remove_file(&path).unwrap();
    assert_ne!(after, Stamps::of(&paths));
}

#[test]
fn a_change_rebuilds_and_a_broken_file_keeps_the_previous_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    write(&path, &cert_pem("first.example"));
    let builds = Arc::new(AtomicUsize::new(0));
    let file = PemFile::new("--client-ca", path.clone());
    let counted = Arc::clone(&builds);
    let reloading = Reloading::new("test", vec![path.clone()], move || {
        counted.fetch_add(1, Ordering::SeqCst);
        certs(&file)
    })
    .unwrap();
    let first = reloading.current();
    assert!(!reloading.refresh().unwrap(), "nothing changed");
    assert_eq!(builds.load(Ordering::SeqCst), 1);

    write(&path, &cert_pem("second.example.org"));
    assert!(reloading.refresh().unwrap());
    assert_ne!(reloading.current(), first);
    let second = reloading.current();

    // Half-written: an error, and the last good value stays in use.
    write(&path, "-----BEGIN CERTIFICATE-----\ntrunc");
    let error = reloading.refresh().unwrap_err().to_string();
    assert!(error.starts_with("--client-ca "), "{error}");
    assert_eq!(reloading.current(), second);
    // Said once: the same broken file is not rebuilt at every look.
    let builds_now = builds.load(Ordering::SeqCst);
    assert!(!reloading.refresh().unwrap());
    assert_eq!(builds.load(Ordering::SeqCst), builds_now);
}

#[tokio::test(start_paused = true)]
async fn the_watch_picks_up_a_change_and_ends_with_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    write(&path, &cert_pem("first.example"));
    let file = PemFile::new("--client-ca", path.clone());
    let reloading = Reloading::new("test", vec![path.clone()], move || certs(&file)).unwrap();
    let first = reloading.current();
    let watch = reloading.watch(std::time::Duration::from_secs(5));
    write(&path, &cert_pem("second.example.org"));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while reloading.current() == first {
        assert!(tokio::time::Instant::now() < deadline, "not reloaded");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    drop(reloading);
    tokio::time::timeout(std::time::Duration::from_secs(30), watch)
        .await
        .expect("the watch ends once the value is gone")
        .unwrap();
}
