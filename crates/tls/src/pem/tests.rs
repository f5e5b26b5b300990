use super::*;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_missing_file_names_the_flag_and_the_path() {
    let file = PemFile::new("--tls-cert", "/nonexistent/agent.pem");
    let error = certs(&file).unwrap_err().to_string();
    assert!(
        error.starts_with("--tls-cert /nonexistent/agent.pem: cannot read it"),
        "{error}"
    );
}

#[test]
fn files_without_what_was_asked_for_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let empty = PemFile::new("--client-ca", write(&dir, "empty.pem", ""));
    assert!(certs(&empty)
        .unwrap_err()
        .to_string()
        .contains("no certificate in it"));
    assert!(roots(&empty).is_err());
    let garbage = PemFile::new("--tls-key", write(&dir, "key.pem", "not a key"));
    let error = key(&garbage).unwrap_err().to_string();
    assert!(error.starts_with("--tls-key "), "{error}");
    assert!(error.contains("no usable private key"), "{error}");
}

#[test]
fn a_generated_certificate_and_key_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["agent.example".to_string()]).unwrap();
    let cert = PemFile::new("--tls-cert", write(&dir, "c.pem", &generated.cert.pem()));
    let key_file = PemFile::new(
        "--tls-key",
        write(&dir, "k.pem", &generated.signing_key.serialize_pem()),
    );
    assert_eq!(certs(&cert).unwrap().len(), 1);
    key(&key_file).unwrap();
    assert_eq!(roots(&cert).unwrap().len(), 1);
}
