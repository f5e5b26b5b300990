use super::*;

fn ids(beamlines: &[&str]) -> BTreeMap<String, BeamlineId> {
    beamlines
        .iter()
        .map(|b| (b.to_string(), BeamlineId::parse(b).unwrap()))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn writes_the_ca_the_gateway_and_one_certificate_per_beamline() {
    let parent = tempfile::tempdir().unwrap();
    let certs = MeshCerts::generate_in(parent.path(), &ids(&["5.3.1", "12.3.1"])).unwrap();
    assert!(certs.dir().starts_with(parent.path()));
    assert!(read(&certs.ca).starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(read(&certs.ca), certs.ca_pem());
    assert!(read(&certs.gateway.cert).starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(read(&certs.gateway.key).contains("PRIVATE KEY"));
    let agent = certs.agent("5.3.1").expect("5.3.1's certificate");
    assert_eq!(agent.cert, certs.dir().join("beamline-5-3-1.pem"));
    assert!(read(&agent.key).contains("PRIVATE KEY"));
    assert!(certs.agent("12.3.1").is_some());
    assert!(certs.agent("7.0.1").is_none());
    // Only the CA's certificate is written, never its key: 1 + 2 × (gateway + 2 agents).
    let files = std::fs::read_dir(certs.dir()).unwrap().count();
    assert_eq!(files, 7);
}

#[cfg(unix)]
#[test]
fn keys_and_the_directory_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let certs = MeshCerts::generate_in(parent.path(), &ids(&["7.0.1"])).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(certs.dir()), 0o700);
    assert_eq!(mode(&certs.gateway.key), 0o600);
    assert_eq!(mode(&certs.agent("7.0.1").unwrap().key), 0o600);
}

#[test]
fn dropping_removes_the_directory() {
    let parent = tempfile::tempdir().unwrap();
    let certs = MeshCerts::generate_in(parent.path(), &ids(&["5.3.1"])).unwrap();
    let dir = certs.dir().to_path_buf();
    assert!(dir.is_dir());
    drop(certs);
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn each_stack_gets_its_own_ca_and_directory() {
    let parent = tempfile::tempdir().unwrap();
    let a = MeshCerts::generate_in(parent.path(), &ids(&["5.3.1"])).unwrap();
    let b = MeshCerts::generate_in(parent.path(), &ids(&["5.3.1"])).unwrap();
    assert_ne!(a.dir(), b.dir());
    assert_ne!(a.ca_pem(), b.ca_pem());
}

#[test]
fn a_bad_beamline_is_an_error_naming_it() {
    let error = MeshCerts::generate(&["5.3.1".into(), "not a beamline".into()]).unwrap_err();
    assert!(
        format!("{error:#}").contains("\"not a beamline\""),
        "{error:#}"
    );
}

#[test]
fn an_impostor_has_a_gateway_certificate_from_another_ca() {
    let (cert, key) = impostor_client().unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(key.contains("PRIVATE KEY"));
}
