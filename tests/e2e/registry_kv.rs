//! KV: put/get (base64 Value), raw, flags, cas, recurse, keys + separator, delete (recurse, cas),
//! 404 for absent keys, blocking GET, the 512 KB value limit.

use std::sync::Arc;
use std::time::Instant;

use crate::support::*;
use base64::Engine;
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(
            v.as_str()
                .unwrap_or_else(|| panic!("Value is not a string: {v}")),
        )
        .expect("Value is base64")
}

async fn put_ok(reg: &Registry, path: &str, body: &[u8]) -> bool {
    let r = reg.put_bytes(path, body.to_vec()).await.expect_status(200);
    match r.json() {
        Value::Bool(b) => b,
        other => panic!("PUT {path} answered {other}, not true/false"),
    }
}

async fn get_entry(reg: &Registry, key: &str) -> Value {
    let r = reg
        .get(&format!("/v1/kv/{key}"))
        .await
        .expect_status(200)
        .expect_read_headers();
    let list = r.json();
    assert_eq!(arr(&list).len(), 1, "GET one key: {list}");
    list[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_raw_and_flags() {
    let reg = Registry::start();
    assert!(put_ok(&reg, "/v1/kv/config/app", b"hello world").await);
    let e = get_entry(&reg, "config/app").await;
    assert_eq!(e["Key"], "config/app");
    assert_eq!(e["Value"], b64(b"hello world").as_str());
    assert_eq!(e["Flags"], 0);
    assert_eq!(e["LockIndex"], 0);
    let create = e["CreateIndex"].as_u64().expect("CreateIndex");
    let modify = e["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert!(create > 0 && modify == create, "{e}");

    let raw = reg.get("/v1/kv/config/app?raw").await.expect_status(200);
    assert_eq!(raw.body, b"hello world");

    // Binary values survive unchanged.
    let binary: Vec<u8> = (0..=255u8).chain([0, 0xff, 0xfe]).collect();
    assert!(put_ok(&reg, "/v1/kv/bin?flags=42", &binary).await);
    let e = get_entry(&reg, "bin").await;
    assert_eq!(unb64(&e["Value"]), binary);
    assert_eq!(e["Flags"], 42);
    let raw = reg.get("/v1/kv/bin?raw=true").await.expect_status(200);
    assert_eq!(raw.body, binary);

    // Overwrite: ModifyIndex grows, CreateIndex stays.
    assert!(put_ok(&reg, "/v1/kv/config/app", b"v2").await);
    let e2 = get_entry(&reg, "config/app").await;
    assert_eq!(unb64(&e2["Value"]), b"v2");
    assert_eq!(e2["CreateIndex"].as_u64(), Some(create));
    assert!(e2["ModifyIndex"].as_u64().unwrap() > modify);

    // An empty value.
    assert!(put_ok(&reg, "/v1/kv/empty", b"").await);
    let raw = reg.get("/v1/kv/empty?raw").await.expect_status(200);
    assert!(raw.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_keys_are_404() {
    let reg = Registry::start();
    let r = reg.get("/v1/kv/nope").await.expect_status(404);
    assert!(r.index() > 0, "a 404 still carries X-Consul-Index");
    reg.get("/v1/kv/nope?raw").await.expect_status(404);
    reg.get("/v1/kv/nope/?recurse").await.expect_status(404);
    reg.get("/v1/kv/nope/?keys").await.expect_status(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_semantics() {
    let reg = Registry::start();
    // cas=0: create only.
    assert!(put_ok(&reg, "/v1/kv/lock?cas=0", b"first").await);
    assert!(!put_ok(&reg, "/v1/kv/lock?cas=0", b"second").await);
    let e = get_entry(&reg, "lock").await;
    assert_eq!(unb64(&e["Value"]), b"first");
    let idx = e["ModifyIndex"].as_u64().unwrap();

    // Wrong index → false, unchanged.
    assert!(!put_ok(&reg, &format!("/v1/kv/lock?cas={}", idx + 1000), b"nope").await);
    assert_eq!(unb64(&get_entry(&reg, "lock").await["Value"]), b"first");
    // Right index → true.
    assert!(put_ok(&reg, &format!("/v1/kv/lock?cas={idx}"), b"third").await);
    let e = get_entry(&reg, "lock").await;
    assert_eq!(unb64(&e["Value"]), b"third");
    // The old index no longer works.
    assert!(!put_ok(&reg, &format!("/v1/kv/lock?cas={idx}"), b"stale").await);

    // Delete with cas.
    let new_idx = e["ModifyIndex"].as_u64().unwrap();
    let r = reg
        .delete(&format!("/v1/kv/lock?cas={idx}"))
        .await
        .expect_status(200);
    assert_eq!(r.json(), json!(false));
    get_entry(&reg, "lock").await;
    let r = reg
        .delete(&format!("/v1/kv/lock?cas={new_idx}"))
        .await
        .expect_status(200);
    assert_eq!(r.json(), json!(true));
    reg.get("/v1/kv/lock").await.expect_status(404);

    // A malformed cas is refused (Consul: an error status), and stores nothing.
    reg.put_bytes("/v1/kv/lock?cas=abc", "x")
        .await
        .expect_error();
    reg.get("/v1/kv/lock").await.expect_status(404);
}

async fn seed(reg: &Registry) {
    for key in [
        "app/a",
        "app/b",
        "app/sub/c",
        "app/sub/deep/d",
        "apple",
        "other/x",
    ] {
        assert!(put_ok(reg, &format!("/v1/kv/{key}"), key.as_bytes()).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurse_and_keys() {
    let reg = Registry::start();
    seed(&reg).await;

    let r = reg
        .get("/v1/kv/app/?recurse")
        .await
        .expect_status(200)
        .expect_read_headers();
    let entries = r.json();
    let got: Vec<&str> = arr(&entries)
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        ["app/a", "app/b", "app/sub/c", "app/sub/deep/d"],
        "sorted by key"
    );
    for e in arr(&entries) {
        assert_eq!(unb64(&e["Value"]), e["Key"].as_str().unwrap().as_bytes());
    }
    // A prefix without the slash matches "apple" too.
    let r = reg.get("/v1/kv/app?recurse").await.expect_status(200);
    assert_eq!(arr(&r.json()).len(), 5);

    let r = reg
        .get("/v1/kv/app/?keys")
        .await
        .expect_status(200)
        .expect_read_headers();
    assert_eq!(
        r.json(),
        json!(["app/a", "app/b", "app/sub/c", "app/sub/deep/d"])
    );
    let r = reg
        .get("/v1/kv/app/?keys&separator=/")
        .await
        .expect_status(200);
    assert_eq!(r.json(), json!(["app/a", "app/b", "app/sub/"]));
    let r = reg.get("/v1/kv/?keys&separator=/").await.expect_status(200);
    assert_eq!(r.json(), json!(["app/", "apple", "other/"]));
    let r = reg.get("/v1/kv/?keys").await.expect_status(200);
    assert_eq!(arr(&r.json()).len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_delete_recurse() {
    let reg = Registry::start();
    seed(&reg).await;
    let r = reg.delete("/v1/kv/app/a").await.expect_status(200);
    assert_eq!(r.json(), json!(true));
    reg.get("/v1/kv/app/a").await.expect_status(404);
    // Deleting an absent key is fine.
    reg.delete("/v1/kv/app/a").await.expect_status(200);

    let r = reg.delete("/v1/kv/app/?recurse").await.expect_status(200);
    assert_eq!(r.json(), json!(true));
    reg.get("/v1/kv/app/?recurse").await.expect_status(404);
    // Siblings outside the prefix remain.
    get_entry(&reg, "apple").await;
    get_entry(&reg, "other/x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_get_woken_by_put() {
    let reg = Arc::new(Registry::start());
    assert!(put_ok(&reg, "/v1/kv/cfg", b"one").await);
    let idx = reg.get("/v1/kv/cfg").await.expect_status(200).index();

    let r2 = Arc::clone(&reg);
    let waiter = tokio::spawn(async move {
        r2.get_blocking(&format!("/v1/kv/cfg?index={idx}&wait=10s"), secs(20))
            .await
    });
    // Scenario timing: let the blocked GET reach the server (see registry_blocking.rs).
    tokio::time::sleep(ms(200)).await;
    assert!(
        !waiter.is_finished(),
        "blocked GET returned before any change"
    );

    let t0 = Instant::now();
    assert!(put_ok(&reg, "/v1/kv/cfg", b"two").await);
    let r = waiter.await.unwrap().expect_status(200);
    assert!(r.received_at - t0 < secs(1), "woken by the put");
    assert!(r.index() > idx);
    assert_eq!(unb64(&r.json()[0]["Value"]), b"two");

    // No change → returns after wait with the same index.
    let idx = r.index();
    let r = reg
        .get_blocking(&format!("/v1/kv/cfg?index={idx}&wait=300ms"), secs(10))
        .await
        .expect_status(200);
    assert!(r.elapsed() >= ms(300));
    assert_eq!(r.index(), idx);
}

/// Values up to 512 KB are accepted; larger bodies are 413 and store nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_size_limit() {
    let reg = Registry::start();
    let max: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    assert!(put_ok(&reg, "/v1/kv/big", &max).await);
    let raw = reg.get("/v1/kv/big?raw").await.expect_status(200);
    assert_eq!(raw.body.len(), max.len());
    assert!(raw.body == max, "512 KB value round-trips");

    let too_big = vec![b'x'; 512 * 1024 + 1];
    reg.put_bytes("/v1/kv/huge", too_big)
        .await
        .expect_status(413);
    reg.get("/v1/kv/huge").await.expect_status(404);
    // And the registry is still fine.
    assert_eq!(
        reg.get("/v1/kv/big?raw")
            .await
            .expect_status(200)
            .body
            .len(),
        max.len()
    );
}

/// A recurse watcher is woken by a put or a delete under its prefix (the index grows even when
/// the remaining entries are older), but not by writes elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_recurse_is_per_prefix() {
    let reg = Arc::new(Registry::start());
    seed(&reg).await;
    let idx = reg
        .get("/v1/kv/app/?recurse")
        .await
        .expect_status(200)
        .index();

    let spawn = |path: String| {
        let r = Arc::clone(&reg);
        tokio::spawn(async move { r.get_blocking(&path, secs(20)).await })
    };
    let quiet = spawn(format!("/v1/kv/app/?recurse&index={idx}&wait=1s"));
    tokio::time::sleep(ms(200)).await; // scenario timing, see registry_blocking.rs
    assert!(put_ok(&reg, "/v1/kv/other/y", b"elsewhere").await);
    assert!(put_ok(&reg, "/v1/kv/apple", b"not under app/").await);
    let r = quiet.await.unwrap().expect_status(200);
    assert!(
        r.elapsed() >= secs(1),
        "woken after {:?} by writes outside app/",
        r.elapsed()
    );
    assert_eq!(r.index(), idx);

    // Delete the newest entry under the prefix: the watcher must still see a higher index.
    let deleter = spawn(format!("/v1/kv/app/?recurse&index={idx}&wait=10s"));
    tokio::time::sleep(ms(200)).await;
    assert!(!deleter.is_finished());
    let t0 = Instant::now();
    reg.delete("/v1/kv/app/sub/deep/d").await.expect_status(200);
    let r = deleter.await.unwrap().expect_status(200);
    assert!(
        r.received_at - t0 < secs(1),
        "delete under the prefix wakes the watcher"
    );
    assert!(
        r.index() > idx,
        "index grew on delete: {idx} -> {}",
        r.index()
    );
    assert_eq!(arr(&r.json()).len(), 3);

    // A watcher of an absent key is woken by its creation.
    let absent = reg.get("/v1/kv/later").await.expect_status(404);
    let aidx = absent.index();
    let creator = spawn(format!("/v1/kv/later?index={aidx}&wait=10s"));
    tokio::time::sleep(ms(200)).await;
    assert!(!creator.is_finished());
    let t0 = Instant::now();
    assert!(put_ok(&reg, "/v1/kv/later", b"now").await);
    let r = creator.await.unwrap().expect_status(200);
    assert!(r.received_at - t0 < secs(1));
    assert_eq!(unb64(&r.json()[0]["Value"]), b"now");
}

/// Keys are URL-decoded from the path; the root lists everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_keys_and_root_listing() {
    let reg = Registry::start();
    assert!(put_ok(&reg, "/v1/kv/dir/with%20space", b"1").await);
    assert!(put_ok(&reg, "/v1/kv/dir/caf%C3%A9", b"2").await);
    let e = get_entry(&reg, "dir/with%20space").await;
    assert_eq!(e["Key"], "dir/with space");
    let e = get_entry(&reg, "dir/caf%C3%A9").await;
    assert_eq!(e["Key"], "dir/café");
    let all = reg.get("/v1/kv/?recurse").await.expect_status(200).json();
    let got: Vec<&str> = arr(&all)
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["dir/café", "dir/with space"]);
}
