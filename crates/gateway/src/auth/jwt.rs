//! Bearer JWTs at the gateway: loading the configured key (HS256 secret, RS256 or ES256 public
//! key) and verifying tokens against it — signature, issuer, audience, exp/nbf with leeway.
//!
//! Owns what a valid token is; turning its claims into a caller and authorizing it is `auth`'s.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tonic::Status;

use crate::caller::Role;
use crate::config::{ConfigError, JwtConfig};

/// A `[jwt]` key with the checks every token must pass.
pub(super) struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

/// The claims a gateway JWT carries besides the registered ones jsonwebtoken checks.
#[derive(serde::Deserialize)]
pub(super) struct Claims {
    pub sub: String,
    pub role: Role,
    pub beamlines: Vec<String>,
}

impl JwtVerifier {
    /// Loads the configured key now, so that a missing or bad key stops the gateway at start.
    pub(super) fn new(config: &JwtConfig) -> Result<JwtVerifier, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: config.file.clone(),
            line: config.key_line,
            field: format!("jwt.{field}"),
            message,
        };
        let read = |field: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display())))
        };
        let (algorithm, key) = if let Some(path) = &config.hs256_secret_file {
            let secret = trim_newline(read("hs256_secret_file", path)?);
            if secret.is_empty() {
                return Err(invalid(
                    "hs256_secret_file",
                    format!("{} is empty", path.display()),
                ));
            }
            let key = DecodingKey::from_secret(&secret)
                .map_err(|e| invalid("hs256_secret_file", format!("unusable secret: {e}")))?;
            (Algorithm::HS256, key)
        } else if let Some(var) = &config.hs256_secret_env {
            let secret = std::env::var(var)
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    invalid("hs256_secret_env", format!("${var} is not set or empty"))
                })?;
            let key = DecodingKey::from_secret(secret.as_bytes())
                .map_err(|e| invalid("hs256_secret_env", format!("unusable secret: {e}")))?;
            (Algorithm::HS256, key)
        } else if let Some(path) = &config.rs256_public_key_file {
            let pem = read("rs256_public_key_file", path)?;
            let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                invalid(
                    "rs256_public_key_file",
                    format!("{}: not an RSA public key PEM: {e}", path.display()),
                )
            })?;
            (Algorithm::RS256, key)
        } else if let Some(path) = &config.es256_public_key_file {
            let pem = read("es256_public_key_file", path)?;
            let key = DecodingKey::from_ec_pem(&pem).map_err(|e| {
                invalid(
                    "es256_public_key_file",
                    format!("{}: not an EC public key PEM: {e}", path.display()),
                )
            })?;
            (Algorithm::ES256, key)
        } else {
            return Err(invalid("", "no key source".to_string()));
        };
        // One algorithm per key: accepting others would let a token signed with, say, HS256 and
        // the RSA public key as the secret pass as RS256 (algorithm confusion).
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = config.leeway_secs;
        Ok(JwtVerifier { key, validation })
    }

    /// The token's claims if it is signed by our key, for us, and current; otherwise
    /// UNAUTHENTICATED saying why (never quoting the token).
    pub(super) fn verify(&self, token: &str) -> Result<Claims, Status> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| Status::unauthenticated(format!("invalid JWT: {}", reason(e.kind()))))
    }
}

/// Secret files are often written with a trailing newline that is not part of the secret.
fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    bytes
}

/// Three non-empty base64url parts separated by dots: a compact JWS. API keys never look so
/// (`hash-key` users pick opaque random strings), and a key that did would just fail as a JWT.
pub(super) fn looks_like_jwt(credential: &str) -> bool {
    let base64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    // Three parts, counted without collecting them: this runs on every call.
    let mut parts = credential.split('.');
    parts.by_ref().take(3).filter(|p| base64url(p)).count() == 3 && parts.next().is_none()
}

fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "expired".into(),
        ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidAlgorithm => "unexpected algorithm".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim `{claim}`"),
        ErrorKind::InvalidClaimFormat(claim) => format!("malformed claim `{claim}`"),
        // serde's message could quote claim values; a fixed text is enough to act on.
        ErrorKind::Json(_) => "claims must include `sub`, `role` (operator|observer|safety) \
                               and `beamlines` (ids or [\"*\"])"
            .into(),
        _ => "malformed token".into(),
    }
}
