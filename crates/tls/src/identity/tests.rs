use super::has_dns_name;

#[test]
fn a_certificate_carries_its_dns_names_and_no_other() {
    let generated =
        rcgen::generate_simple_self_signed(vec!["gateway.beamline-mesh".to_string()]).unwrap();
    let der = generated.cert.der();
    assert!(has_dns_name(der, "gateway.beamline-mesh"));
    assert!(!has_dns_name(der, "intruder.example"));
    assert!(!has_dns_name(der, "not a name"));
}

/// An identity is one exact name: a wildcard certificate from the same CA is not the gateway.
#[test]
fn a_wildcard_never_passes_for_a_name() {
    let wildcard = rcgen::generate_simple_self_signed(vec!["*.beamline-mesh".to_string()]).unwrap();
    assert!(!has_dns_name(wildcard.cert.der(), "gateway.beamline-mesh"));
    assert!(!has_dns_name(wildcard.cert.der(), "*.beamline-mesh"));
    let upper =
        rcgen::generate_simple_self_signed(vec!["Gateway.Beamline-Mesh".to_string()]).unwrap();
    assert!(has_dns_name(upper.cert.der(), "gateway.beamline-mesh"));
}
