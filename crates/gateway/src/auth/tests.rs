//! The auth layer in front of a stand-in inner service that echoes the headers it received:
//! what is rejected never reaches it, and what reaches it carries the forwarded identity.

use std::path::PathBuf;

use jsonwebtoken::{get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::json;
use tonic::Code;
use tower::ServiceExt;

use super::*;
use crate::config::{CallerConfig, JwtConfig};

const OPS_KEY: &str = "ops-secret-key";
const VIEWER_KEY: &str = "viewer-secret-key";
const BL531_KEY: &str = "bl531-secret-key";
const HS_SECRET: &[u8] = b"a shared HS256 secret for the tests";
const ISSUER: &str = "https://login.example";
const AUDIENCE: &str = "beamline-mesh";

fn caller(name: &str, key: &str, role: Role, beamlines: &[&str]) -> CallerConfig {
    CallerConfig {
        name: name.to_string(),
        api_key_sha256: sha256_hex(key.as_bytes()),
        role,
        beamlines: beamlines.iter().map(|b| b.to_string()).collect(),
    }
}

fn jwt_config(dir: &tempfile::TempDir, es256_public_pem: Option<&str>) -> JwtConfig {
    let mut jwt = JwtConfig {
        issuer: ISSUER.to_string(),
        audience: AUDIENCE.to_string(),
        hs256_secret_file: None,
        hs256_secret_env: None,
        rs256_public_key_file: None,
        es256_public_key_file: None,
        leeway_secs: 5,
        file: "policy.toml".to_string(),
        key_line: 7,
    };
    if let Some(pem) = es256_public_pem {
        let path = dir.path().join("es256.pem");
        std::fs::write(&path, pem).unwrap();
        jwt.es256_public_key_file = Some(path);
    } else {
        let path = dir.path().join("hs256");
        // With the newline a shell `echo` leaves: not part of the secret.
        std::fs::write(&path, [HS_SECRET, b"\n"].concat()).unwrap();
        jwt.hs256_secret_file = Some(path);
    }
    jwt
}

fn authenticator(jwt: Option<JwtConfig>) -> Arc<Authenticator> {
    let config = PolicyConfig {
        callers: vec![
            caller("ops", OPS_KEY, Role::Operator, &["*"]),
            caller("viewer", VIEWER_KEY, Role::Observer, &["*"]),
            caller("bl531", BL531_KEY, Role::Operator, &["5.3.1"]),
        ],
        jwt,
        ..Default::default()
    };
    Arc::new(Authenticator::new(&config).unwrap())
}

/// Calls `method` on `beamline` through the layer with `authorization` (if any) and `extra`
/// headers; the inner service answers 200 with the headers it saw, plus `x-saw-caller` if the
/// `Caller` extension was there.
async fn call(
    auth: &Arc<Authenticator>,
    method: &str,
    beamline: &str,
    authorization: Option<&str>,
    extra: &[(&str, &str)],
) -> http::Response<Body> {
    let inner = tower::service_fn(|request: http::Request<Body>| async move {
        let mut response = http::Response::new(Body::empty());
        *response.headers_mut() = request.headers().clone();
        if let Some(caller) = request.extensions().get::<Caller>() {
            let name = HeaderValue::from_str(&caller.name).unwrap();
            response.headers_mut().insert("x-saw-caller", name);
        }
        Ok::<_, Infallible>(response)
    });
    let service = AuthLayer::new(auth.clone()).layer(inner);
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://gateway/beamline.v1.BeamlineAgent/{method}"))
        .header("content-type", "application/grpc")
        .header("x-beamline", beamline);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    service
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// The gRPC status of a trailers-only rejection, or None if the call got through.
fn rejection(response: &http::Response<Body>) -> Option<Status> {
    Status::from_header_map(response.headers())
}

fn assert_rejected(response: &http::Response<Body>, code: Code) -> String {
    let status = rejection(response).expect("the call reached the inner service");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(response.headers().get("x-saw-caller").is_none());
    status.message().to_string()
}

fn bearer(credential: &str) -> String {
    format!("Bearer {credential}")
}

fn hs256(claims: serde_json::Value) -> String {
    let key = EncodingKey::from_secret(HS_SECRET).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let now = get_current_timestamp();
    let mut claims = json!({
        "sub": "planner", "role": "operator", "beamlines": ["5.3.1"],
        "iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "iat": now,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

#[tokio::test]
async fn api_key_ok_forwards_identity_and_strips_the_credential() {
    let auth = authenticator(None);
    let forged = [("x-caller", "root"), ("x-role", "operator")];
    let response = call(
        &auth,
        "Describe",
        "5.3.1",
        Some(&bearer(VIEWER_KEY)),
        &forged,
    )
    .await;
    assert!(rejection(&response).is_none());
    let headers = response.headers();
    assert_eq!(headers.get_all("x-caller").iter().count(), 1);
    assert_eq!(headers["x-caller"], "viewer");
    assert_eq!(headers["x-role"], "observer");
    assert_eq!(headers["x-saw-caller"], "viewer");
    assert!(headers.get("authorization").is_none());
    assert_eq!(headers["x-beamline"], "5.3.1");
    assert_eq!(auth.caller_count(), 3);
    assert!(!auth.accepts_jwt());
}

#[tokio::test]
async fn wrong_or_missing_key_is_unauthenticated() {
    let auth = authenticator(None);
    let response = call(&auth, "Describe", "5.3.1", Some(&bearer("guess")), &[]).await;
    let message = assert_rejected(&response, Code::Unauthenticated);
    assert!(!message.contains("guess"), "{message}");
    let response = call(&auth, "Describe", "5.3.1", None, &[]).await;
    assert_rejected(&response, Code::Unauthenticated);
    let response = call(&auth, "Describe", "5.3.1", Some(OPS_KEY), &[]).await;
    let message = assert_rejected(&response, Code::Unauthenticated);
    assert!(!message.contains(OPS_KEY), "{message}");
    let response = call(&auth, "Describe", "5.3.1", Some("Bearer "), &[]).await;
    assert_rejected(&response, Code::Unauthenticated);
    // The scheme is case-insensitive.
    let response = call(
        &auth,
        "Describe",
        "5.3.1",
        Some(&format!("bearer {OPS_KEY}")),
        &[],
    )
    .await;
    assert!(rejection(&response).is_none());
}

#[tokio::test]
async fn observer_may_read_but_not_act() {
    let auth = authenticator(None);
    for method in ["Describe", "GetTask", "Subscribe"] {
        let response = call(&auth, method, "7.0.1", Some(&bearer(VIEWER_KEY)), &[]).await;
        assert!(rejection(&response).is_none(), "{method}");
    }
    for method in ["Execute", "Cancel"] {
        let response = call(&auth, method, "7.0.1", Some(&bearer(VIEWER_KEY)), &[]).await;
        let message = assert_rejected(&response, Code::PermissionDenied);
        for part in ["viewer", "7.0.1", method] {
            assert!(message.contains(part), "{message}");
        }
        let response = call(&auth, method, "7.0.1", Some(&bearer(OPS_KEY)), &[]).await;
        assert!(rejection(&response).is_none(), "{method}");
    }
    let response = call(&auth, "Reboot", "7.0.1", Some(&bearer(OPS_KEY)), &[]).await;
    assert_rejected(&response, Code::PermissionDenied);
}

#[tokio::test]
async fn beamline_scoped_key_stays_on_its_beamline() {
    let auth = authenticator(None);
    let response = call(&auth, "Execute", "5.3.1", Some(&bearer(BL531_KEY)), &[]).await;
    assert!(rejection(&response).is_none());
    let response = call(&auth, "Execute", "7.0.1", Some(&bearer(BL531_KEY)), &[]).await;
    let message = assert_rejected(&response, Code::PermissionDenied);
    for part in ["bl531", "7.0.1", "Execute"] {
        assert!(message.contains(part), "{message}");
    }
    let response = call(&auth, "Execute", "5..3", Some(&bearer(BL531_KEY)), &[]).await;
    assert_rejected(&response, Code::InvalidArgument);
}

#[tokio::test]
async fn hs256_jwt_ok_and_its_failures() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authenticator(Some(jwt_config(&dir, None)));
    assert!(auth.accepts_jwt());
    let token = hs256(claims(json!({})));
    let response = call(&auth, "Execute", "5.3.1", Some(&bearer(&token)), &[]).await;
    assert!(rejection(&response).is_none());
    assert_eq!(response.headers()["x-caller"], "planner");
    assert_eq!(response.headers()["x-role"], "operator");
    // Scoped by its `beamlines` claim like a key.
    let response = call(&auth, "Execute", "7.0.1", Some(&bearer(&token)), &[]).await;
    assert_rejected(&response, Code::PermissionDenied);

    let now = get_current_timestamp();
    let bad = [
        ("expired", hs256(claims(json!({"exp": now - 60})))),
        (
            "wrong audience",
            hs256(claims(json!({"aud": "someone-else"}))),
        ),
        (
            "wrong issuer",
            hs256(claims(json!({"iss": "https://evil.example"}))),
        ),
        ("not valid yet", hs256(claims(json!({"nbf": now + 120})))),
        ("missing claim `exp`", {
            let mut c = claims(json!({}));
            c.as_object_mut().unwrap().remove("exp");
            hs256(c)
        }),
        (
            "claims must include",
            hs256(claims(json!({"role": "admin"}))),
        ),
        ("bad signature", {
            let key = EncodingKey::from_secret(b"another secret").unwrap();
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(json!({})), &key).unwrap()
        }),
    ];
    for (reason, token) in bad {
        let response = call(&auth, "Describe", "5.3.1", Some(&bearer(&token)), &[]).await;
        let message = assert_rejected(&response, Code::Unauthenticated);
        assert!(message.contains(reason), "{reason}: {message}");
        assert!(!message.contains(&token), "{message}");
    }
    // Within the leeway (5 s), a just-expired token still passes.
    let token = hs256(claims(json!({"exp": now - 2})));
    let response = call(&auth, "Describe", "5.3.1", Some(&bearer(&token)), &[]).await;
    assert!(rejection(&response).is_none());
}

#[tokio::test]
async fn jwt_without_jwt_config_is_unauthenticated() {
    let auth = authenticator(None);
    let token = hs256(claims(json!({})));
    let response = call(&auth, "Describe", "5.3.1", Some(&bearer(&token)), &[]).await;
    assert_rejected(&response, Code::Unauthenticated);
}

#[tokio::test]
async fn es256_jwt_with_a_generated_key_pair() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth = authenticator(Some(jwt_config(&dir, Some(&pair.public_key_pem()))));
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let observer = claims(json!({"sub": "dashboard", "role": "observer", "beamlines": ["*"]}));
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &observer, &key).unwrap();
    let response = call(&auth, "Subscribe", "12.3.1", Some(&bearer(&token)), &[]).await;
    assert!(rejection(&response).is_none());
    assert_eq!(response.headers()["x-caller"], "dashboard");
    let response = call(&auth, "Execute", "12.3.1", Some(&bearer(&token)), &[]).await;
    assert_rejected(&response, Code::PermissionDenied);

    // Signed by another key pair; and an HS256 token where ES256 is configured.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other = EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap();
    let forged = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &observer, &other).unwrap();
    for token in [forged, hs256(observer.clone())] {
        let response = call(&auth, "Describe", "12.3.1", Some(&bearer(&token)), &[]).await;
        assert_rejected(&response, Code::Unauthenticated);
    }
}

/// A key pair made for this test alone (`openssl genpkey -algorithm RSA`); it signs nothing
/// else. RSA keys are checked in because no dependency of the crate generates them.
const RS256_PRIVATE: &str = include_str!("../testdata/rs256_private.pem");
const RS256_PUBLIC: &str = include_str!("../testdata/rs256_public.pem");

#[tokio::test]
async fn rs256_jwt_with_a_checked_in_test_key_pair() {
    let dir = tempfile::tempdir().unwrap();
    let mut jwt = jwt_config(&dir, None);
    jwt.hs256_secret_file = None;
    let path = dir.path().join("rs256.pem");
    std::fs::write(&path, RS256_PUBLIC).unwrap();
    jwt.rs256_public_key_file = Some(path);
    let auth = authenticator(Some(jwt));
    let key = EncodingKey::from_rsa_pem(RS256_PRIVATE.as_bytes()).unwrap();
    let operator = claims(json!({"sub": "planner", "role": "operator", "beamlines": ["7.0.1"]}));
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &operator, &key).unwrap();
    let response = call(&auth, "Execute", "7.0.1", Some(&bearer(&token)), &[]).await;
    assert!(rejection(&response).is_none());
    assert_eq!(response.headers()["x-caller"], "planner");
    assert_eq!(response.headers()["x-role"], "operator");
    let response = call(&auth, "Execute", "5.3.1", Some(&bearer(&token)), &[]).await;
    assert_rejected(&response, Code::PermissionDenied);

    // Tampered claims under the same signature; and an HS256 token where RS256 is configured.
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let widened = claims(json!({"sub": "planner", "role": "operator", "beamlines": ["*"]}));
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&widened).unwrap(),
    );
    let tampered = format!("{head}.{payload}.{signature}");
    for token in [tampered, hs256(operator.clone())] {
        let response = call(&auth, "Describe", "5.3.1", Some(&bearer(&token)), &[]).await;
        assert_rejected(&response, Code::Unauthenticated);
    }
}

#[test]
fn unloadable_keys_are_config_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut jwt = jwt_config(&dir, None);
    jwt.hs256_secret_file = Some(PathBuf::from("/nonexistent/jwt-secret"));
    let config = PolicyConfig {
        jwt: Some(jwt.clone()),
        ..Default::default()
    };
    let error = Authenticator::new(&config).err().unwrap().to_string();
    assert!(
        error.starts_with("policy.toml:7: jwt.hs256_secret_file: cannot read"),
        "{error}"
    );

    jwt.hs256_secret_file = None;
    jwt.hs256_secret_env = Some("BEAMLINE_MESH_TEST_UNSET_SECRET".to_string());
    let config = PolicyConfig {
        jwt: Some(jwt.clone()),
        ..Default::default()
    };
    let error = Authenticator::new(&config).err().unwrap().to_string();
    assert!(error.contains("jwt.hs256_secret_env"), "{error}");

    let path = dir.path().join("not-a-key.pem");
    std::fs::write(&path, "hello").unwrap();
    jwt.hs256_secret_env = None;
    jwt.rs256_public_key_file = Some(path);
    let config = PolicyConfig {
        jwt: Some(jwt),
        ..Default::default()
    };
    let error = Authenticator::new(&config).err().unwrap().to_string();
    assert!(error.contains("jwt.rs256_public_key_file"), "{error}");
}

#[test]
fn jwt_shape_and_digests() {
    assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
    assert!(!looks_like_jwt("plain-api-key"));
    assert!(!looks_like_jwt("a.b"));
    assert!(!looks_like_jwt("a..c"));
    assert!(!looks_like_jwt("a.b.c/d"));
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

mod safety;
