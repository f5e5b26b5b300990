//! The gateway's policy layers end to end (registry, demo agents, `beamline-mesh gateway
//! --auth-file`, real tonic clients): credentials (API keys, HS256 JWTs) → UNAUTHENTICATED when
//! missing or bad; roles and beamline lists → PERMISSION_DENIED naming caller, beamline and
//! method; a per-beamline limit → RESOURCE_EXHAUSTED without slowing another beamline; TLS at
//! the door; start-up refusals (auth without TLS, a bad auth file); `hash-key`.
//!
//! Metrics, the status page and the access log are in gateway_policy_observe.rs.
//!
//! Identity forwarding (`x-caller`/`x-role` reach the agent, the credential never does) is not
//! checked here: the demo agent does not expose the metadata it received; the gateway's unit
//! tests cover it.

use crate::support;

use crate::support::agent::run_to_exit;
use crate::support::gateway::*;
use crate::support::policy::*;
use crate::support::*;
use beamline_mesh::proto::{DescribeRequest, ExecuteRequest};
use tonic::Code;

/// The status of a Describe through the gateway that must fail.
async fn describe_fails(
    stack: &PolicyStack,
    beamline: &str,
    credential: Option<&str>,
) -> tonic::Status {
    let mut client = stack.client().await;
    match describe_as(&mut client, beamline, credential).await {
        Ok(id) => panic!("Describe of {beamline} with {credential:?} succeeded (answered by {id})"),
        Err(status) => status,
    }
}

/// Execute `status` through the gateway as `credential`, to the end of the stream.
async fn execute_status(
    stack: &PolicyStack,
    beamline: &str,
    credential: &str,
) -> Result<usize, tonic::Status> {
    let mut client = stack.client().await;
    let request = with_credential(
        beamline,
        Some(credential),
        ExecuteRequest {
            capability: "status".into(),
            params: None,
            idempotency_key: String::new(),
        },
    );
    let call = async {
        let mut stream = client.execute(request).await?.into_inner();
        let mut events = 0;
        while stream.message().await?.is_some() {
            events += 1;
        }
        Ok(events)
    };
    match tokio::time::timeout(CALL_BOUND, call).await {
        Ok(result) => result,
        Err(_) => panic!("Execute status on {beamline} did not end within {CALL_BOUND:?}"),
    }
}

#[track_caller]
fn assert_code(status: &tonic::Status, code: Code, what: &str) {
    assert_eq!(status.code(), code, "{what}: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_bad_credentials_are_unauthenticated() {
    let stack = PolicyStack::start(&["5.3.1"], false, |g| g).await;
    let secret = JWT_SECRET.as_bytes();

    // The positive controls: the operator's API key and a valid JWT both pass.
    let mut client = stack.client().await;
    describe_as(&mut client, "5.3.1", Some(OPS_KEY))
        .await
        .expect("Describe with the operator's API key");
    let good = jwt_hs256(secret, &claims("jwt-operator", "operator", &["*"]));
    describe_as(&mut client, "5.3.1", Some(&good))
        .await
        .expect("Describe with a valid JWT");

    let status = describe_fails(&stack, "5.3.1", None).await;
    assert_code(&status, Code::Unauthenticated, "no credential");

    let status = describe_fails(&stack, "5.3.1", Some(WRONG_KEY)).await;
    assert_code(&status, Code::Unauthenticated, "a wrong API key");

    let mut expired = claims("jwt-operator", "operator", &["*"]);
    let now = now_secs();
    expired["nbf"] = (now - 7200).into();
    expired["iat"] = (now - 7200).into();
    expired["exp"] = (now - 3600).into();
    let status = describe_fails(&stack, "5.3.1", Some(&jwt_hs256(secret, &expired))).await;
    assert_code(&status, Code::Unauthenticated, "an expired JWT");

    let forged = jwt_hs256(
        b"some-other-secret-0123456789abcdef0123456789",
        &claims("jwt-operator", "operator", &["*"]),
    );
    let status = describe_fails(&stack, "5.3.1", Some(&forged)).await;
    assert_code(
        &status,
        Code::Unauthenticated,
        "a JWT signed with another secret",
    );

    let mut foreign = claims("jwt-operator", "operator", &["*"]);
    foreign["aud"] = "someone-else".into();
    let status = describe_fails(&stack, "5.3.1", Some(&jwt_hs256(secret, &foreign))).await;
    assert_code(&status, Code::Unauthenticated, "a JWT for another audience");

    // Not a bearer credential at all.
    let mut request = to("5.3.1", DescribeRequest {});
    request
        .metadata_mut()
        .insert("authorization", format!("Basic {OPS_KEY}").parse().unwrap());
    let status = tokio::time::timeout(CALL_BOUND, client.describe(request))
        .await
        .expect("bounded")
        .expect_err("a Basic credential must not pass");
    assert_code(&status, Code::Unauthenticated, "authorization: Basic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_may_describe_but_not_execute() {
    let stack = PolicyStack::start(&["5.3.1"], false, |g| g).await;
    let mut client = stack.client().await;
    describe_as(&mut client, "5.3.1", Some(VIEWER_KEY))
        .await
        .expect("an observer may Describe");

    let status = execute_status(&stack, "5.3.1", VIEWER_KEY)
        .await
        .expect_err("an observer must not Execute");
    assert_code(&status, Code::PermissionDenied, "observer Execute");
    for needle in ["viewer", "5.3.1", "Execute"] {
        assert!(
            status.message().contains(needle),
            "the denial should name {needle:?}: {status:?}"
        );
    }

    // The same with a JWT saying role observer.
    let token = jwt_hs256(
        JWT_SECRET.as_bytes(),
        &claims("jwt-viewer", "observer", &["*"]),
    );
    let status = execute_status(&stack, "5.3.1", &token)
        .await
        .expect_err("a JWT observer must not Execute");
    assert_code(&status, Code::PermissionDenied, "JWT observer Execute");
    assert!(status.message().contains("jwt-viewer"), "{status:?}");

    // An operator may.
    let events = execute_status(&stack, "5.3.1", OPS_KEY)
        .await
        .expect("an operator may Execute");
    assert!(events >= 1, "the Execute stream carried no event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_for_one_beamline_cannot_call_another() {
    let stack = PolicyStack::start(&["5.3.1", "7.0.1"], false, |g| g).await;
    let mut client = stack.client().await;
    let id = describe_as(&mut client, "5.3.1", Some(TEAM_531_KEY))
        .await
        .expect("team-531 may call 5.3.1");
    assert_eq!(id, stack.instance("5.3.1"));
    execute_status(&stack, "5.3.1", TEAM_531_KEY)
        .await
        .expect("team-531 may Execute on 5.3.1");

    let status = describe_fails(&stack, "7.0.1", Some(TEAM_531_KEY)).await;
    assert_code(&status, Code::PermissionDenied, "team-531 calling 7.0.1");
    for needle in ["team-531", "7.0.1", "Describe"] {
        assert!(
            status.message().contains(needle),
            "the denial should name {needle:?}: {status:?}"
        );
    }
    let status = execute_status(&stack, "7.0.1", TEAM_531_KEY)
        .await
        .expect_err("team-531 must not Execute on 7.0.1");
    assert_code(&status, Code::PermissionDenied, "team-531 Execute on 7.0.1");

    // The same bound from a JWT's `beamlines` claim.
    let token = jwt_hs256(
        JWT_SECRET.as_bytes(),
        &claims("jwt-team-531", "operator", &["5.3.1"]),
    );
    describe_as(&mut client, "5.3.1", Some(&token))
        .await
        .expect("a 5.3.1 JWT may call 5.3.1");
    let status = describe_fails(&stack, "7.0.1", Some(&token)).await;
    assert_code(&status, Code::PermissionDenied, "a 5.3.1 JWT calling 7.0.1");
    assert!(status.message().contains("jwt-team-531"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_beamline_is_exhausted_while_another_is_not() {
    const CALLS: usize = 30;
    let stack = PolicyStack::start(&[LIMITED, "5.3.1"], false, |g| g).await;

    // Both beamlines at once, each call on its own connection-sharing client clone.
    let client = stack.client().await;
    let burst = |beamline: &'static str| {
        let client = client.clone();
        async move {
            let calls = (0..CALLS).map(|_| {
                let mut client = client.clone();
                async move {
                    let started = std::time::Instant::now();
                    let result = describe_as(&mut client, beamline, Some(OPS_KEY)).await;
                    (result, started.elapsed())
                }
            });
            futures::future::join_all(calls).await
        }
    };
    let (limited, other) = tokio::join!(burst(LIMITED), burst("5.3.1"));

    let exhausted: Vec<_> = limited
        .iter()
        .filter(|(r, _)| matches!(r, Err(s) if s.code() == Code::ResourceExhausted))
        .collect();
    let unexpected: Vec<_> = limited
        .iter()
        .filter(|(r, _)| matches!(r, Err(s) if s.code() != Code::ResourceExhausted))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{LIMITED}: errors other than RESOURCE_EXHAUSTED: {unexpected:?}"
    );
    // Burst 5 (some refilled at 5/s while the burst runs): most of the 30 must be refused.
    assert!(
        exhausted.len() >= CALLS - 12,
        "{LIMITED} (rate 5, burst 5): only {} of {CALLS} calls were RESOURCE_EXHAUSTED",
        exhausted.len()
    );
    // Refused quickly, not queued.
    for (result, took) in &exhausted {
        assert!(
            took.as_millis() < 2000,
            "a refusal took {took:?}: {result:?}"
        );
    }

    let failed: Vec<_> = other.iter().filter(|(r, _)| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "5.3.1 (default limits) had {} failed calls while {LIMITED} was hammered: {failed:?}",
        failed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_generated_ca_succeeds_and_plaintext_fails() {
    let stack = PolicyStack::start(&["5.3.1"], true, |g| g).await;
    let ca_pem = &stack.tls.as_ref().expect("TLS files").ca_pem;

    let mut client = tls_client(stack.gateway.addr, ca_pem)
        .await
        .expect("TLS connection with the generated CA");
    let id = describe_as(&mut client, "5.3.1", Some(OPS_KEY))
        .await
        .expect("Describe over TLS");
    assert_eq!(id, stack.instance("5.3.1"));

    // Plaintext HTTP/2 to the TLS port: the connection or the call fails, bounded.
    let plaintext = async {
        let channel = tonic::transport::Endpoint::from_shared(stack.gateway.endpoint())
            .unwrap()
            .connect_timeout(secs(5))
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let mut client =
            beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient::new(channel);
        describe_as(&mut client, "5.3.1", Some(OPS_KEY))
            .await
            .map_err(|s| format!("{s:?}"))
    };
    let result = tokio::time::timeout(secs(15), plaintext)
        .await
        .expect("plaintext attempt bounded");
    assert!(
        result.is_err(),
        "a plaintext call to the TLS port succeeded: {result:?}"
    );

    // A client that does not trust the CA is refused as well.
    let other = PolicyDir::new().tls();
    let untrusted = async {
        let mut client = tls_client(stack.gateway.addr, &other.ca_pem)
            .await
            .map_err(|e| format!("{e:?}"))?;
        describe_as(&mut client, "5.3.1", Some(OPS_KEY))
            .await
            .map_err(|s| format!("{s:?}"))
    };
    let result = tokio::time::timeout(secs(15), untrusted)
        .await
        .expect("untrusted attempt bounded");
    assert!(
        result.is_err(),
        "a client trusting another CA got through: {result:?}"
    );
}

#[tokio::test]
async fn auth_without_tls_refuses_to_start_unless_allow_plaintext() {
    let dir = PolicyDir::new();
    let auth = dir.standard();
    let auth = auth.to_str().unwrap();
    let out = run_to_exit(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--consul",
            "127.0.0.1:1",
            "--auth-file",
            auth,
        ],
        secs(20),
    );
    assert!(!out.status.success(), "started without TLS: {out:?}");
    assert!(
        !out.stdout.contains("gateway listening on"),
        "it must not listen: {out:?}"
    );
    let stderr = out.stderr.to_lowercase();
    assert!(
        stderr.contains("--allow-plaintext") && stderr.contains("tls"),
        "stderr should say why (TLS off, --allow-plaintext): {:?}",
        out.stderr
    );

    // Neither an auth file nor --insecure-no-auth: refused too.
    let out = run_to_exit(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--consul",
            "127.0.0.1:1",
        ],
        secs(20),
    );
    assert!(!out.status.success(), "started without auth: {out:?}");
    assert!(
        out.stderr.contains("--auth-file") || out.stderr.contains("--insecure-no-auth"),
        "stderr should name the missing choice: {:?}",
        out.stderr
    );
}

#[tokio::test]
async fn a_bad_auth_file_is_refused_naming_line_and_field() {
    let dir = PolicyDir::new();
    let bad = dir.write(
        "bad.toml",
        &format!(
            "[[caller]]\nname = \"ops\"\napi_key_sha256 = \"{}\"\nrole = \"admin\"\nbeamlines = [\"*\"]\n",
            sha256_hex(OPS_KEY.as_bytes())
        ),
    );
    let out = run_to_exit(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--consul",
            "127.0.0.1:1",
            "--allow-plaintext",
            "--auth-file",
            bad.to_str().unwrap(),
        ],
        secs(20),
    );
    assert!(
        !out.status.success(),
        "started with role = \"admin\": {out:?}"
    );
    assert!(!out.stdout.contains("gateway listening on"), "{out:?}");
    let line = regex::Regex::new(r"(:4:|line 4\b)").unwrap();
    assert!(
        line.is_match(&out.stderr),
        "stderr should name line 4: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains("role"),
        "stderr should name the field role: {:?}",
        out.stderr
    );
}

#[test]
fn hash_key_prints_the_sha256_of_a_known_key() {
    // SHA-256("abc"), FIPS 180-2 appendix B.1.
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    for input in ["abc", "abc\n"] {
        let out = run_with_stdin(&["hash-key"], input, secs(20));
        assert!(
            out.status.success(),
            "hash-key failed on {input:?}: {out:?}"
        );
        assert_eq!(out.stdout.trim(), abc, "hash-key of {input:?}: {out:?}");
    }
    assert_eq!(sha256_hex(b"abc"), abc, "the test's own digest");
    let out = run_with_stdin(&["hash-key"], OPS_KEY, secs(20));
    assert_eq!(out.stdout.trim(), sha256_hex(OPS_KEY.as_bytes()), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_listener_answers_in_plaintext_beside_a_tls_gateway() {
    use std::io::BufRead;
    let dir = support::policy::PolicyDir::new();
    let certs = dir.tls();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_beamline-mesh"))
        .args(["gateway", "--listen", "127.0.0.1:0", "--insecure-no-auth"])
        .args(["--consul", "127.0.0.1:1", "--health-listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&certs.cert)
        .arg("--tls-key")
        .arg(&certs.key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut health = None;
    while health.is_none() {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the health listening line");
        health = line
            .strip_prefix("health listening on ")
            .map(str::to_string);
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", health.unwrap()))
        .unwrap()
        .connect()
        .await
        .expect("plaintext connection to the health port");
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: "beamline.v1.BeamlineAgent".into(),
        })
        .await
        .expect("health check over plaintext")
        .into_inner()
        .status();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}
