//! Identity headers as capability code sees them: from the gateway's certificate, a verified
//! caller; from any other certificate, no caller and no headers; without TLS, the headers as
//! sent and no verified caller.

use super::*;
use beamline_contract::wire::tls::GATEWAY_NAME;

const FORGED: &[(&str, &str)] = &[("x-caller", "mallory"), ("x-role", "operator")];

async fn mtls_agent(ca: &Ca, callers: &Ca) -> (Served, Files) {
    let files = Files::new(&ca.server(&name()), Some(callers));
    let mut f = flags();
    files.flags(&mut f);
    (serve(&f).await, files)
}

#[tokio::test]
async fn headers_from_a_peer_that_is_not_the_gateway_never_reach_a_capability() {
    let (ca, callers) = (Ca::new("mesh CA"), Ca::new("callers CA"));
    let (agent, _files) = mtls_agent(&ca, &callers).await;
    let someone = callers.client("someone.beamline-mesh");
    let channel = dial(agent.addr, &ca, &name(), Some(&someone))
        .await
        .unwrap();
    whoami(channel, FORGED).await;
    assert_eq!(*agent.seen.lock().unwrap(), [(None, false)]);
}

#[tokio::test]
async fn headers_from_the_gateways_certificate_are_the_verified_caller() {
    let (ca, callers) = (Ca::new("mesh CA"), Ca::new("callers CA"));
    let (agent, _files) = mtls_agent(&ca, &callers).await;
    let gateway = callers.client(GATEWAY_NAME);
    let channel = dial(agent.addr, &ca, &name(), Some(&gateway))
        .await
        .unwrap();
    whoami(channel, &[("x-caller", "alice"), ("x-role", "operator")]).await;
    let alice = Caller {
        name: "alice".into(),
        role: "operator".into(),
    };
    assert_eq!(*agent.seen.lock().unwrap(), [(Some(alice), true)]);
}

#[tokio::test]
async fn without_tls_headers_pass_through_but_nobody_is_verified() {
    let agent = serve(&flags()).await;
    whoami(dial_plaintext(agent.addr).await, FORGED).await;
    assert_eq!(*agent.seen.lock().unwrap(), [(None, true)]);
}
