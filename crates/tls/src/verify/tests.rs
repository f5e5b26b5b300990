use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{any_server_certificate, verify_as};
use crate::provider;

/// A CA, and a leaf it signed for `name`.
fn ca_and_leaf(name: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca.der().clone(), leaf.der().clone())
}

fn webpki(ca: CertificateDer<'static>) -> Arc<WebPkiServerVerifier> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).unwrap();
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap()
}

#[test]
fn a_renamed_verifier_checks_the_fixed_name_not_the_dialled_host() {
    let (ca, leaf) = ca_and_leaf("consul.internal");
    let dialled = ServerName::try_from("127.0.0.1").unwrap();
    let now = UnixTime::now();
    let plain = webpki(ca.clone());
    assert!(
        plain
            .verify_server_cert(&leaf, &[], &dialled, &[], now)
            .is_err(),
        "the address is not in the certificate"
    );
    let renamed = verify_as(plain, ServerName::try_from("consul.internal").unwrap());
    renamed
        .verify_server_cert(&leaf, &[], &dialled, &[], now)
        .expect("the fixed name is");
    let wrong = verify_as(webpki(ca), ServerName::try_from("other.internal").unwrap());
    assert!(wrong
        .verify_server_cert(&leaf, &[], &dialled, &[], now)
        .is_err());
}

#[test]
fn the_insecure_verifier_accepts_a_certificate_no_one_trusts() {
    let (_, leaf) = ca_and_leaf("anything.example");
    let any = any_server_certificate(provider());
    let name = ServerName::try_from("elsewhere.example").unwrap();
    any.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
        .expect("accepted");
    assert!(!any.supported_verify_schemes().is_empty());
}
