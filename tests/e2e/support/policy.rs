//! The gateway's policy inputs and credentials: an auth file (callers, JWT, limits) written to a
//! temporary directory, TLS certificates (rcgen: a CA and a server certificate for localhost and
//! 127.0.0.1), HS256 JWTs, requests that carry a credential, a TLS tonic client, and one-shot
//! commands fed on stdin (such as `hash-key`).
//!
//! API keys are known here in clear; the auth file holds only their SHA-256, computed here with
//! `sha2` (not with the crate's own helper), so the tests check the digest format independently.
//!
//! Owns what a caller presents and what the gateway is configured with; it must not start
//! processes (`stack`) or read what the gateway reports (`metrics`, `access_log`).

mod access_log;
mod fleet;
mod metrics;
mod stack;

// Tests reach these as `support::policy::NAME`; a binary that uses none of one file's items must
// not warn.
#[allow(unused_imports)]
pub use access_log::*;
#[allow(unused_imports)]
pub use fleet::*;
#[allow(unused_imports)]
pub use metrics::*;
#[allow(unused_imports)]
pub use stack::*;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::DescribeRequest;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::agent::{run_bounded, Exited};
use super::gateway::{to, CALL_BOUND};
use super::secs;

/// `ops-console`: operator on every beamline.
pub const OPS_KEY: &str = "ops-console-key-7f3a9c1e";
/// `viewer`: observer on every beamline.
pub const VIEWER_KEY: &str = "viewer-key-52be01d4";
/// `team-531`: operator on 5.3.1 only.
pub const TEAM_531_KEY: &str = "team-531-key-c0ffee42";
/// A key nobody has.
pub const WRONG_KEY: &str = "not-a-configured-key";
pub const JWT_SECRET: &str = "hs256-test-secret-0123456789abcdef0123456789";
pub const JWT_ISSUER: &str = "https://login.test";
pub const JWT_AUDIENCE: &str = "beamline-mesh";
/// The beamline with a `[limits.beamline."8.3.2"]` override (rate 5, burst 5).
pub const LIMITED: &str = "8.3.2";

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The policy every scenario uses: three API-key callers, HS256 JWTs from the file
/// `jwt-secret` beside the auth file, generous default limits and a tight override for
/// [`LIMITED`].
pub fn standard_policy() -> String {
    format!(
        r#"# written by tests/support/policy.rs
[[caller]]
name = "ops-console"
api_key_sha256 = "{ops}"
role = "operator"
beamlines = ["*"]

[[caller]]
name = "viewer"
api_key_sha256 = "{viewer}"
role = "observer"
beamlines = ["*"]

[[caller]]
name = "team-531"
api_key_sha256 = "{team}"
role = "operator"
beamlines = ["5.3.1"]

[jwt]
issuer = "{JWT_ISSUER}"
audience = "{JWT_AUDIENCE}"
hs256_secret_file = "jwt-secret"
leeway_secs = 2

[limits]
per_beamline = {{ rate = 1000, burst = 1000 }}
per_caller = {{ rate = 1000, burst = 1000 }}

[limits.beamline."{LIMITED}"]
rate = 5
burst = 5
"#,
        ops = sha256_hex(OPS_KEY.as_bytes()),
        viewer = sha256_hex(VIEWER_KEY.as_bytes()),
        team = sha256_hex(TEAM_531_KEY.as_bytes()),
    )
}

/// An HS256 JWT over `claims`.
pub fn jwt_hs256(secret: &[u8], claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret).expect("HS256 encoding key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &key,
    )
    .expect("encode JWT")
}

/// Claims valid from a minute ago for an hour, with the test issuer and audience.
pub fn claims(sub: &str, role: &str, beamlines: &[&str]) -> Value {
    let now = now_secs();
    json!({
        "sub": sub,
        "role": role,
        "beamlines": beamlines,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
    })
}

/// Certificates for the gateway: a CA, and a server certificate it signed for `localhost` and
/// `127.0.0.1`.
pub struct TlsFiles {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A temporary directory holding the auth file, the JWT secret and the certificates.
pub struct PolicyDir {
    dir: tempfile::TempDir,
}

impl Default for PolicyDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyDir {
    pub fn new() -> PolicyDir {
        PolicyDir {
            dir: tempfile::Builder::new()
                .prefix("beamline-policy-test-")
                .tempdir()
                .expect("create temp dir for the policy"),
        }
    }

    /// Writes `name` in the directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        path
    }

    /// `jwt-secret` and `auth.toml` with [`standard_policy`]; returns the auth file.
    pub fn standard(&self) -> PathBuf {
        self.write("jwt-secret", JWT_SECRET);
        self.write("auth.toml", &standard_policy())
    }

    /// Generates [`TlsFiles`] into the directory.
    pub fn tls(&self) -> TlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "beamline-mesh test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "beamline-mesh gateway");
        let cert = params.signed_by(&key, &issuer).expect("sign server cert");

        let ca_pem = ca_cert.pem();
        TlsFiles {
            cert: self.write("gateway.pem", &cert.pem()),
            key: self.write("gateway-key.pem", &key.serialize_pem()),
            ca_pem,
        }
    }
}

/// `message` for `beamline` with `authorization: Bearer <credential>` (none when `None`).
pub fn with_credential<T>(
    beamline: &str,
    credential: Option<&str>,
    message: T,
) -> tonic::Request<T> {
    with_bearer(to(beamline, message), credential)
}

/// `request` with `authorization: Bearer <credential>` (unchanged when `None`).
pub fn with_bearer<T>(
    mut request: tonic::Request<T>,
    credential: Option<&str>,
) -> tonic::Request<T> {
    if let Some(credential) = credential {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {credential}")
                .parse()
                .expect("credential as a metadata value"),
        );
    }
    request
}

/// A tonic client to the gateway over TLS, trusting only `ca_pem`, verifying the name
/// `localhost`.
pub async fn tls_client(
    addr: SocketAddr,
    ca_pem: &str,
) -> Result<BeamlineAgentClient<Channel>, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("https endpoint")
        .tls_config(tls)?
        .connect_timeout(secs(5))
        .connect()
        .await?;
    Ok(BeamlineAgentClient::new(channel))
}

/// Describe through the gateway with a credential; the answering instance's id. Bounded by
/// [`CALL_BOUND`].
pub async fn describe_as(
    client: &mut BeamlineAgentClient<Channel>,
    beamline: &str,
    credential: Option<&str>,
) -> Result<String, tonic::Status> {
    let request = with_credential(beamline, credential, DescribeRequest {});
    match tokio::time::timeout(CALL_BOUND, client.describe(request)).await {
        Ok(result) => result.map(|r| r.into_inner().instance_id),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "TEST: no answer through the gateway within {CALL_BOUND:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// One-shot commands
// ---------------------------------------------------------------------------------------------

/// Runs `beamline-mesh <args>` with `stdin` as its standard input, to its exit, bounded by
/// `timeout` (then it is killed and this panics).
pub fn run_with_stdin(args: &[&str], stdin: &str, timeout: Duration) -> Exited {
    let mut command = Command::new(env!("CARGO_BIN_EXE_beamline-mesh"));
    command
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN");
    run_bounded(command, Some(stdin), timeout)
}
