//! The gateway's policy layers end to end: an auth file (callers, JWT, limits) written to a
//! temporary directory, TLS certificates (rcgen: a CA and a server certificate for localhost and
//! 127.0.0.1), HS256 JWTs, requests that carry a credential, a TLS tonic client, the metrics
//! listener (GET with a timeout, a minimal Prometheus text parser) and the JSON access log.
//!
//! API keys are known here in clear; the auth file holds only their SHA-256, computed here with
//! `sha2` (not with the crate's own helper), so the tests check the digest format independently.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::DescribeRequest;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use super::agent::{run_bounded, AgentProc, Exited};
use super::gateway::{start_agent, to, GatewayBuilder, GatewayProc, CALL_BOUND};
use super::{secs, Registry, POLL_INTERVAL, REQUEST_TIMEOUT};

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
    pub ca: PathBuf,
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

    pub fn path(&self) -> &Path {
        self.dir.path()
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
            ca: self.write("ca.pem", &ca_pem),
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
    let mut request = to(beamline, message);
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
// A registry, one demo agent per beamline and a gateway with the standard policy
// ---------------------------------------------------------------------------------------------

/// Fields drop in order: gateway, agents, registry, then the directory.
pub struct PolicyStack {
    pub gateway: GatewayProc,
    /// `(beamline, agent, instance id)`.
    pub agents: Vec<(String, AgentProc, String)>,
    pub registry: Registry,
    pub dir: PolicyDir,
    pub tls: Option<TlsFiles>,
}

impl PolicyStack {
    /// One agent per beamline, passing in Consul, and a gateway with `--auth-file` (the
    /// standard policy) and either TLS (generated certificates) or `--allow-plaintext`, further
    /// configured by `configure`. Returns once every beamline answers an operator's Describe.
    pub async fn start(
        beamlines: &[&str],
        tls: bool,
        configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> PolicyStack {
        let dir = PolicyDir::new();
        let auth = dir.standard();
        let registry = Registry::start();
        let started =
            futures::future::join_all(beamlines.iter().map(|b| start_agent(&registry, b))).await;
        let agents: Vec<(String, AgentProc, String)> = beamlines
            .iter()
            .zip(started)
            .map(|(b, (agent, id, _))| (b.to_string(), agent, id))
            .collect();
        let mut builder = GatewayProc::builder(&registry).auth_file(&auth);
        let tls = tls.then(|| dir.tls());
        builder = match &tls {
            Some(files) => builder
                .arg("--tls-cert", files.cert.display())
                .arg("--tls-key", files.key.display()),
            None => builder.flag("--allow-plaintext"),
        };
        let gateway = configure(builder).start();
        let stack = PolicyStack {
            gateway,
            agents,
            registry,
            dir,
            tls,
        };
        for beamline in beamlines {
            stack.wait_routable(beamline, secs(15)).await;
        }
        stack
    }

    /// A client to the gateway (over TLS when the stack has it).
    pub async fn client(&self) -> BeamlineAgentClient<Channel> {
        match &self.tls {
            Some(files) => tls_client(self.gateway.addr, &files.ca_pem)
                .await
                .unwrap_or_else(|e| panic!("TLS connect to gateway {}: {e:?}", self.gateway.addr)),
            None => self.gateway.client().await,
        }
    }

    /// Instance id of the agent of `beamline`.
    pub fn instance(&self, beamline: &str) -> &str {
        self.agents
            .iter()
            .find(|(b, _, _)| b == beamline)
            .map(|(_, _, id)| id.as_str())
            .unwrap_or_else(|| panic!("no agent of {beamline} in the stack"))
    }

    /// Polls an operator's Describe of `beamline` until it succeeds (UNAVAILABLE and
    /// RESOURCE_EXHAUSTED are retried; anything else fails at once).
    pub async fn wait_routable(&self, beamline: &str, timeout: Duration) {
        let mut client = self.client().await;
        let deadline = Instant::now() + timeout;
        loop {
            match describe_as(&mut client, beamline, Some(OPS_KEY)).await {
                Ok(_) => return,
                Err(status)
                    if matches!(status.code(), Code::Unavailable | Code::ResourceExhausted)
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(status) => panic!(
                    "{beamline} not routable through the gateway within {timeout:?}: {status:?}"
                ),
            }
        }
    }

    /// `http://ADDR` of the metrics listener, from its stdout line.
    pub async fn metrics_base(&self) -> String {
        let addr = self
            .gateway
            .wait_stdout_line("metrics listening on ", secs(10))
            .await;
        if addr.starts_with("http://") {
            addr
        } else {
            format!("http://{addr}")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The metrics listener
// ---------------------------------------------------------------------------------------------

/// GET `url` (timeout [`REQUEST_TIMEOUT`]); status, content type and body.
pub async fn http_get(url: &str) -> (u16, String, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("build reqwest client");
    let resp = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body: {e:?}"));
    (status, content_type, body)
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped, label values unescaped);
/// panics naming the line it cannot parse.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| parse_sample(line).unwrap_or_else(|| panic!("bad metrics line {line:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end;
        loop {
            while chars
                .peek()
                .is_some_and(|(_, c)| *c == ',' || c.is_whitespace())
            {
                chars.next();
            }
            if let Some(&(i, '}')) = chars.peek() {
                end = i + 1;
                break;
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key.trim().to_string(), value);
        }
        rest = &after[end..];
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Per metric name, the sum of the samples that `pred` selects.
pub fn sums_by_name(samples: &[Sample], pred: impl Fn(&Sample) -> bool) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for s in samples.iter().filter(|s| pred(s)) {
        *sums.entry(s.name.clone()).or_insert(0.0) += s.value;
    }
    sums
}

// ---------------------------------------------------------------------------------------------
// The access log
// ---------------------------------------------------------------------------------------------

/// The JSON lines of `stderr` whose target is `access`.
pub fn access_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v["target"] == "access")
        .collect()
}

/// A field of a JSON log line: under `fields` (tracing-subscriber's default) or at the top.
pub fn log_field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line.get("fields")
        .and_then(|f| f.get(name))
        .or_else(|| line.get(name))
}

/// A log field as text (strings as they are, other values as JSON).
pub fn log_text(line: &Value, name: &str) -> Option<String> {
    log_field(line, name).map(|v| match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    })
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
