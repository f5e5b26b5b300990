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
