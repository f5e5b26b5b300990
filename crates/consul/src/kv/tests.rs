use super::*;

#[test]
fn key_paths_keep_separators_and_encode_segments() {
    assert_eq!(
        key_path("beamline-mesh/halt/5.3.1"),
        "/v1/kv/beamline-mesh/halt/5.3.1"
    );
    assert_eq!(key_path("a b/c?d"), "/v1/kv/a%20b/c%3Fd");
    assert_eq!(key_path("beamline-mesh/"), "/v1/kv/beamline-mesh/");
}

#[test]
fn values_are_decoded_from_base64_and_a_null_value_is_empty() {
    let wire = vec![
        WireEntry {
            key: "k".to_string(),
            value: Some("aGVsbG8=".to_string()),
            create_index: 1,
            modify_index: 2,
        },
        WireEntry {
            key: "folder/".to_string(),
            value: None,
            create_index: 3,
            modify_index: 3,
        },
    ];
    let entries = decode("read", wire).unwrap();
    assert_eq!(entries[0].value, b"hello");
    assert_eq!(entries[0].modify_index, 2);
    assert!(entries[1].value.is_empty());
    let bad = vec![WireEntry {
        key: "k".to_string(),
        value: Some("***".to_string()),
        create_index: 1,
        modify_index: 1,
    }];
    assert!(decode("read", bad)
        .unwrap_err()
        .to_string()
        .contains("not base64"));
}

/// A client of a server that serves `answer` (a whole HTTP/1.1 response) to every request: a
/// server at CONSUL_HTTP_ADDR that may or may not answer as Consul does.
pub(crate) async fn answering(answer: &'static str) -> ConsulClient {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    let addr = format!("127.0.0.1:{}", addr.port());
    ConsulClient::new(crate::ConsulConfig::new(&addr).unwrap())
}

#[tokio::test]
async fn a_404_without_an_index_is_not_an_empty_prefix() {
    // A proxy or load balancer's 404 for /v1/kv/…: not Consul's "no keys".
    let client = answering(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
    )
    .await;
    let error = client
        .kv_list("beamline-mesh/", 0, Duration::ZERO)
        .await
        .expect_err("no index: not Consul's answer");
    let text = error.to_string();
    assert!(
        matches!(error, ConsulError::Status { status: 404, .. }),
        "{text}"
    );
    assert!(text.contains("X-Consul-Index"), "{text}");
    assert!(text.contains("CONSUL_HTTP_ADDR"), "{text}");
    let error = client.kv_get("beamline-mesh/halt/_all").await.unwrap_err();
    assert!(error.to_string().contains("X-Consul-Index"), "{error}");
}

#[tokio::test]
async fn a_200_without_an_index_is_an_error_too() {
    let client = answering(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\n[]",
    )
    .await;
    let error = client
        .kv_list("beamline-mesh/", 0, Duration::ZERO)
        .await
        .expect_err("no index: not Consul's answer");
    assert!(
        matches!(error, ConsulError::Status { status: 200, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("X-Consul-Index"), "{error}");
}

#[tokio::test]
async fn consuls_404_with_an_index_is_an_empty_prefix() {
    let client = answering(
        "HTTP/1.1 404 Not Found\r\nX-Consul-Index: 12\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    let answer = client
        .kv_list("beamline-mesh/", 0, Duration::ZERO)
        .await
        .expect("Consul's answer for an empty prefix");
    assert!(answer.value.is_empty());
    assert_eq!(answer.index, 12);
    assert!(!answer.filtered_by_acls);
}

#[tokio::test]
async fn the_follower_of_a_server_without_indexes_stays_unreadable() {
    let client =
        answering("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    let settings = crate::control::FollowSettings {
        wait: Duration::from_secs(30),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(2),
    };
    let watch = crate::control::spawn(client, settings);
    let mut view = watch.subscribe();
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        view.wait_for(|v| {
            v.unreadable
                .as_deref()
                .is_some_and(|u| u.contains("X-Consul-Index"))
        }),
    )
    .await
    .expect("the failure is published")
    .unwrap()
    .clone();
    assert_eq!(seen.index, 0, "never taken for an answer");
}
