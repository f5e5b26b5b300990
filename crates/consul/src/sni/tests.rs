use super::*;

#[test]
fn a_dns_server_name_over_https_is_carried_by_the_url() {
    let (base, pinned) = rewrite("https://127.0.0.1:8501", Some("consul.example")).unwrap();
    assert_eq!(base, "https://consul.example:8501");
    assert_eq!(pinned.target, "127.0.0.1");
    let (base, pinned) = rewrite("https://[::1]", Some("consul.example")).unwrap();
    assert_eq!(base, "https://consul.example:443");
    assert_eq!(pinned.target, "::1");
}

#[test]
fn nothing_to_rewrite_for_http_an_ip_name_or_the_same_host() {
    assert!(rewrite("http://127.0.0.1:8500", Some("consul.example")).is_none());
    assert!(rewrite("https://127.0.0.1:8501", Some("10.0.0.1")).is_none());
    assert!(rewrite("https://Consul.Example:8501", Some("consul.example")).is_none());
    assert!(rewrite("https://127.0.0.1:8501", None).is_none());
}

#[tokio::test]
async fn the_name_resolves_to_the_configured_host() {
    let (_, pinned) = rewrite("https://127.0.0.1:8501", Some("consul.example")).unwrap();
    let addrs: Vec<_> = pinned
        .resolve("consul.example".parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert_eq!(addrs, vec!["127.0.0.1:0".parse().unwrap()]);
}
