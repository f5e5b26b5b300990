//! Authentication and authorization at the gateway: a tower layer in front of the routing
//! service. It reads `authorization: Bearer <credential>` (an API key or a JWT), decides who is
//! calling and whether they may call this method on this beamline, and only then lets the call
//! through — with the credential stripped and the identity forwarded as `x-caller`/`x-role`
//! (the contract's `wire::header::{CALLER, ROLE}`).
//!
//! Owns credential checks and the role/beamline rules; the policy file's shape is `config`'s.
//! Rejections are trailers-only gRPC responses (UNAUTHENTICATED, INVALID_ARGUMENT,
//! PERMISSION_DENIED) built here: nothing rejected reaches the inner service, so never an agent.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures::future::{Either, Ready};
use http::header::AUTHORIZATION;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

use super::caller::{method_of, Beamlines, Caller, Role};
use super::config::{is_caller_name, ConfigError, PolicyConfig};
use beamline_contract::beamline::BeamlineId;
use beamline_contract::wire::{header, FleetRpc, Rpc};

mod jwt;
use jwt::{looks_like_jwt, JwtVerifier};

/// Whether `role` may call `rpc`: an observer reads only, an operator also acts on the beamline;
/// `safety` is an observer on the agents' RPCs (its powers are the Fleet service's: halting,
/// resuming and breaking locks, authorized there).
pub fn role_may_call(role: Role, rpc: Rpc) -> bool {
    match role {
        Role::Observer | Role::Safety => rpc.is_read(),
        Role::Operator => true,
    }
}

/// The SHA-256 of `key` in lower-case hex: how API keys are written in the policy file.
pub fn sha256_hex(key: &[u8]) -> String {
    Sha256::digest(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A configured API key: the caller it identifies, by the digest of the key, and the caller's
/// `x-caller` value, built once here: a clone of it per call is a reference count.
struct KeyedCaller {
    digest: [u8; 32],
    caller: Caller,
    name: HeaderValue,
}

/// Who is calling, from the request's credential; built once from the policy file.
pub struct Authenticator {
    callers: Vec<KeyedCaller>,
    jwt: Option<JwtVerifier>,
}

impl Authenticator {
    /// Builds the authenticator, loading the JWT key (file or environment variable) now so that
    /// a missing or bad key stops the gateway at start rather than failing every call.
    pub fn new(config: &PolicyConfig) -> Result<Authenticator, ConfigError> {
        let mut callers = Vec::with_capacity(config.callers.len());
        for (i, c) in config.callers.iter().enumerate() {
            let invalid = |message: String| ConfigError::Invalid {
                path: "policy".to_string(),
                line: 0,
                field: format!("caller[{}].api_key_sha256", i + 1),
                message,
            };
            let digest = decode_hex32(&c.api_key_sha256)
                .ok_or_else(|| invalid("expected 64 hex digits".to_string()))?;
            let beamlines = beamlines_of(&c.beamlines).map_err(invalid)?;
            let name = caller_header(&c.name).map_err(|_| ConfigError::Invalid {
                path: "policy".to_string(),
                line: 0,
                field: format!("caller[{}].name", i + 1),
                message: "not valid gRPC metadata".to_string(),
            })?;
            let caller = Caller {
                name: Arc::from(c.name.as_str()),
                role: c.role,
                beamlines: Arc::new(beamlines),
            };
            callers.push(KeyedCaller {
                digest,
                caller,
                name,
            });
        }
        let jwt = config.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        Ok(Authenticator { callers, jwt })
    }

    /// How many API-key callers are configured.
    pub fn caller_count(&self) -> usize {
        self.callers.len()
    }

    /// Whether bearer JWTs are accepted (a `[jwt]` section is configured).
    pub fn accepts_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// The caller a request's headers identify, or UNAUTHENTICATED. Messages never contain the
    /// credential: they end up in clients' logs and ours.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Caller, Status> {
        self.identify(headers).map(|(caller, _)| caller)
    }

    /// The caller, as [`Authenticator::authenticate`], and its `x-caller` value (prebuilt for
    /// an API key's caller; a JWT's is built now, UNAUTHENTICATED if it is not metadata).
    fn identify(&self, headers: &http::HeaderMap) -> Result<(Caller, HeaderValue), Status> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(Status::unauthenticated(
                "expected one `authorization: Bearer <API key or JWT>` metadata entry",
            ));
        };
        let credential = bearer(value).ok_or_else(|| {
            Status::unauthenticated("authorization must be `Bearer <API key or JWT>`")
        })?;
        if looks_like_jwt(credential) {
            let caller = self.verify_jwt(credential)?;
            let name = caller_header(&caller.name)
                .map_err(|_| Status::unauthenticated("caller name is not valid metadata"))?;
            Ok((caller, name))
        } else {
            self.caller_by_key(credential)
        }
    }

    fn caller_by_key(&self, key: &str) -> Result<(Caller, HeaderValue), Status> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Compare against every configured digest, in constant time and without stopping at a
        // match, so that timing tells an attacker nothing about how close a guess came.
        let mut found = None;
        for keyed in &self.callers {
            if bool::from(keyed.digest.ct_eq(&digest)) {
                found = Some(keyed);
            }
        }
        found
            .map(|keyed| (keyed.caller.clone(), keyed.name.clone()))
            .ok_or_else(|| Status::unauthenticated("unknown API key"))
    }

    fn verify_jwt(&self, token: &str) -> Result<Caller, Status> {
        let Some(jwt) = &self.jwt else {
            return Err(Status::unauthenticated(
                "JWTs are not accepted here (no [jwt] in the gateway's policy)",
            ));
        };
        let claims = jwt.verify(token)?;
        if !is_caller_name(&claims.sub) {
            return Err(Status::unauthenticated(
                "invalid JWT: `sub` must be printable ASCII",
            ));
        }
        let beamlines = beamlines_of(&claims.beamlines)
            .map_err(|e| Status::unauthenticated(format!("invalid JWT: `beamlines`: {e}")))?;
        Ok(Caller {
            name: Arc::from(claims.sub),
            role: claims.role,
            beamlines: Arc::new(beamlines),
        })
    }
}

/// Whether `caller` may call the RPC at `path` on `beamline`, or PERMISSION_DENIED naming the
/// caller, the beamline and the method.
pub fn authorize(caller: &Caller, path: &str, beamline: &BeamlineId) -> Result<(), Status> {
    let method = method_of(path);
    let allowed = Rpc::of_path(path).is_some_and(|rpc| role_may_call(caller.role, rpc));
    let (name, role) = (&caller.name, caller.role.as_str());
    if !allowed {
        return Err(Status::permission_denied(format!(
            "caller {name:?} ({role}) may not call {method} on beamline {beamline}"
        )));
    }
    if !caller.beamlines.allows(beamline.as_str()) {
        return Err(Status::permission_denied(format!(
            "caller {name:?} may not call {method} on beamline {beamline}: not one of its beamlines"
        )));
    }
    Ok(())
}

/// A caller's `x-caller` value: one copy of the name; the first clone makes its buffer shared
/// (in place), and every later clone is a reference count.
fn caller_header(name: &str) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    HeaderValue::from_str(name)
}

/// `Bearer <credential>` (the scheme is case-insensitive, RFC 6750), or None.
fn bearer(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (scheme, credential) = text.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// A caller's beamlines from the configured or claimed list: `["*"]` or valid ids.
fn beamlines_of(ids: &[String]) -> Result<Beamlines, String> {
    if ids.iter().any(|id| id == "*") {
        return Ok(Beamlines::All);
    }
    if ids.is_empty() {
        return Err("no beamlines".to_string());
    }
    let mut set = std::collections::BTreeSet::new();
    for id in ids {
        set.insert(
            BeamlineId::parse(id)
                .map_err(|e| e.to_string())?
                .to_string(),
        );
    }
    Ok(Beamlines::Only(set))
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Authenticates and authorizes every request before the inner (routing) service sees it.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> AuthLayer {
        AuthLayer { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service [`AuthLayer`] produces.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> Auth<S> {
    /// The checks in order: who (UNAUTHENTICATED), which beamline (INVALID_ARGUMENT), may they
    /// (PERMISSION_DENIED). On success the request carries the identity and not the credential.
    /// The admitted caller, or the refusal — with the caller when it is known, so the access
    /// log names who was denied.
    fn admit(&self, request: &mut http::Request<Body>) -> Result<Caller, (Status, Option<Caller>)> {
        let (caller, name) = self
            .auth
            .identify(request.headers())
            .map_err(|status| (status, None))?;
        if request.uri().path().starts_with(FleetRpc::PATH_PREFIX) {
            // The Fleet service names its beamlines in the request message: it authorizes each
            // RPC itself, from the caller this layer established.
            request.headers_mut().remove(AUTHORIZATION);
            request.extensions_mut().insert(caller.clone());
            return Ok(caller);
        }
        let checked = super::beamline_of(&mut *request)
            .and_then(|beamline| authorize(&caller, request.uri().path(), &beamline));
        if let Err(status) = checked {
            return Err((status, Some(caller)));
        }
        let headers = request.headers_mut();
        headers.remove(AUTHORIZATION);
        // insert() replaces every value a client may have sent: the identity must be ours.
        headers.insert(header::CALLER, name);
        headers.insert(header::ROLE, HeaderValue::from_static(caller.role.as_str()));
        request.extensions_mut().insert(caller.clone());
        Ok(caller)
    }
}

impl<S> Service<http::Request<Body>> for Auth<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    /// The inner service's future with the caller handed on, or the refusal: no allocation of
    /// this layer's own per call.
    type Future = Either<Admitted<S::Future>, Ready<Result<http::Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let caller = match self.admit(&mut request) {
            Ok(caller) => caller,
            Err((status, caller)) => {
                let mut response = status.into_http();
                if let Some(caller) = caller {
                    response.extensions_mut().insert(caller);
                }
                return Either::Right(futures::future::ready(Ok(response)));
            }
        };
        Either::Left(Admitted {
            inner: self.inner.call(request),
            caller: Some(caller),
        })
    }
}

pin_project_lite::pin_project! {
    /// An admitted call's response to come; the caller goes into its extensions.
    pub struct Admitted<F> {
        #[pin]
        inner: F,
        caller: Option<Caller>,
    }
}

impl<F> Future for Admitted<F>
where
    F: Future<Output = Result<http::Response<Body>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        // Layers outside this one (access log, metrics) see the response, not the request this
        // layer changed: hand them the caller there.
        if let Some(caller) = this.caller.take() {
            response.extensions_mut().insert(caller);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests;
