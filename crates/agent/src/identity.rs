//! Who is calling, as far as an agent can trust it. The gateway authenticates callers and
//! forwards who they are in `x-caller` and `x-role`; anyone who reaches the agent directly can
//! send those headers too. So, as a tower layer in front of the agent's own service:
//!
//! - TLS on: the headers are kept, and the [`Caller`] they name is handed to capability code,
//!   only when the peer's verified client certificate carries the gateway's name
//!   (`wire::tls::GATEWAY_NAME`). From any other peer (another certificate, or none when no
//!   `--client-ca` asks for one) the headers are removed before any capability sees them.
//! - TLS off (plaintext, as in development): the headers pass through unchanged, as they always
//!   have, but nothing is verified, so no [`Caller`] is handed on: `Call::caller()` is `None`
//!   and code that must know who is calling cannot be fooled; code that reads the raw
//!   metadata does so knowing anyone could have written it.
//!
//! Owns that decision per request; it must not authenticate or authorise callers (the gateway
//! does) nor verify certificates (the TLS handshake did, against `--client-ca`).

use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::Service;

use beamline_contract::wire::header;
use beamline_contract::wire::tls::GATEWAY_NAME;

/// A caller the gateway authenticated and vouched for over a verified connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's name, as the gateway verified it (`x-caller`).
    pub name: String,
    /// The caller's role for this beamline (`observer`, `operator`: `x-role`).
    pub role: String,
}

/// The agent's service behind the identity rule above; `tls` says whether it is served over
/// TLS (without TLS, requests pass untouched).
#[derive(Clone)]
pub struct Identity<S> {
    inner: S,
    tls: bool,
}

impl<S> Identity<S> {
    pub fn new(inner: S, tls: bool) -> Identity<S> {
        Identity { inner, tls }
    }
}

impl<S, B> Service<http::Request<B>> for Identity<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if self.tls {
            let from_gateway = peer_is_gateway(request.extensions());
            vouch(&mut request, from_gateway);
        }
        self.inner.call(request)
    }
}

/// Whether the connection's verified client certificate (tonic puts the TLS peer's
/// certificates in each request's extensions) names the gateway. False without one.
fn peer_is_gateway(extensions: &http::Extensions) -> bool {
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .is_some_and(|certs| {
            certs
                .first()
                .is_some_and(|leaf| beamline_tls::has_dns_name(leaf, GATEWAY_NAME))
        })
}

/// Over TLS: a gateway's request gets its [`Caller`] (when it names one); anyone else's loses
/// the identity headers.
pub(crate) fn vouch<B>(request: &mut http::Request<B>, from_gateway: bool) {
    // Only this layer says who is calling.
    request.extensions_mut().remove::<Caller>();
    if !from_gateway {
        let headers = request.headers_mut();
        // remove() drops every value of the name, not only the first.
        headers.remove(header::CALLER);
        headers.remove(header::ROLE);
        return;
    }
    let text = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let (Some(name), Some(role)) = (text(header::CALLER), text(header::ROLE)) {
        request.extensions_mut().insert(Caller { name, role });
    }
}

#[cfg(test)]
mod tests;
