//! The documented shape of the policy file, an empty file, and loading one from disk.

use super::*;

#[test]
fn parses_the_documented_shape() {
    let config = PolicyConfig::parse(&full(), "policy.toml").unwrap();
    assert_eq!(config.callers.len(), 2);
    let ops = &config.callers[0];
    assert_eq!(ops.name, "ops-console");
    assert_eq!(ops.api_key_sha256, DIGEST.to_ascii_lowercase());
    assert_eq!(ops.role, Role::Operator);
    assert_eq!(ops.beamlines, ["*"]);
    assert_eq!(config.callers[1].role, Role::Observer);
    assert_eq!(config.callers[1].beamlines, ["5.3.1", "SST-1"]);
    let jwt = config.jwt.unwrap();
    assert_eq!(jwt.issuer, "https://login.example");
    assert_eq!(jwt.audience, "beamline-mesh");
    assert_eq!(
        jwt.hs256_secret_file,
        Some(PathBuf::from("/run/secrets/jwt"))
    );
    assert_eq!(jwt.leeway_secs, DEFAULT_LEEWAY_SECS);
    assert_eq!((jwt.file.as_str(), jwt.key_line), ("policy.toml", 17));
    let limits = config.limits;
    assert_eq!(
        limits.per_beamline,
        Some(Limit {
            rate: 50.0,
            burst: 100
        })
    );
    assert_eq!(
        limits.per_caller,
        Some(Limit {
            rate: 0.5,
            burst: 40
        })
    );
    assert_eq!(
        limits.beamline["8.3.2"],
        Limit {
            rate: 5.0,
            burst: 5
        }
    );
}

#[test]
fn safety_is_a_role() {
    let text = full().replace("role = \"observer\"", "role = \"safety\"");
    let config = PolicyConfig::parse(&text, "policy.toml").unwrap();
    assert_eq!(config.callers[1].role, Role::Safety);
}

#[test]
fn empty_file_is_valid() {
    let config = PolicyConfig::parse("", "policy.toml").unwrap();
    assert!(config.callers.is_empty() && config.jwt.is_none());
    assert!(config.limits.per_beamline.is_none() && config.limits.beamline.is_empty());
    PolicyConfig::parse("# nothing yet\n\n", "policy.toml").unwrap();
}

#[test]
fn load_reads_the_file_and_resolves_key_paths_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "[jwt]\nissuer = \"i\"\naudience = \"a\"\nes256_public_key_file = \"keys/es.pem\"\n",
    )
    .unwrap();
    let jwt = PolicyConfig::load(&path).unwrap().jwt.unwrap();
    assert_eq!(
        jwt.es256_public_key_file,
        Some(dir.path().join("keys/es.pem"))
    );
    let missing = PolicyConfig::load(&dir.path().join("nope.toml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
}
