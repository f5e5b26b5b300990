use super::host_port;

#[test]
fn ipv6_hosts_are_bracketed_once_and_others_are_joined_as_they_are() {
    assert_eq!(host_port("10.0.0.5", 50051), "10.0.0.5:50051");
    assert_eq!(host_port("agent.example", 80), "agent.example:80");
    assert_eq!(host_port("::1", 50051), "[::1]:50051");
    assert_eq!(host_port("[::1]", 50051), "[::1]:50051");
}
