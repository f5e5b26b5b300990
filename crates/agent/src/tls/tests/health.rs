//! The plaintext health listener beside a mutual-TLS agent: health, without a certificate, and
//! nothing else.

use super::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn the_health_listener_answers_health_alone_and_needs_no_certificate() {
    let (ca, callers) = (Ca::new("mesh CA"), Ca::new("callers CA"));
    let files = Files::new(&ca.server(&name()), Some(&callers));
    let mut f = flags();
    files.flags(&mut f);
    f.health_listen = Some("127.0.0.1:0".parse().unwrap());
    let agent = serve(&f).await;
    let health_addr = agent.health.expect("a health listener");
    assert_ne!(health_addr, agent.addr);

    let channel = dial_plaintext(health_addr).await;
    for service in ["", "beamline.v1.BeamlineAgent"] {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let refused = describe(channel).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn without_a_health_listener_there_is_none() {
    let agent = serve(&flags()).await;
    assert!(agent.health.is_none());
}
