//! Certificates renewed in place: the next connection is served with the new ones, a
//! connection already open keeps working.

use super::*;

#[tokio::test]
async fn a_renewed_certificate_is_used_by_new_connections_and_open_ones_keep_working() {
    let (ca, callers) = (Ca::new("mesh CA"), Ca::new("callers CA"));
    let client = callers.client("mesh.test");
    let files = Files::new(&ca.server(&name()), Some(&callers));
    let mut f = flags();
    files.flags(&mut f);
    let agent = serve(&f).await;
    let open = dial(agent.addr, &ca, &name(), Some(&client)).await.unwrap();
    describe(open.clone()).await.unwrap();

    // The renewal names something else, so a client can tell which certificate it was given.
    files.server(&ca.server("renewed.test"));
    eventually(|| describe_anew(agent.addr, &ca, "renewed.test", Some(&client)))
        .await
        .unwrap();
    assert!(describe_anew(agent.addr, &ca, &name(), Some(&client))
        .await
        .is_err());
    // Verified against the old certificate, which the open connection still uses.
    describe(open).await.unwrap();
}
