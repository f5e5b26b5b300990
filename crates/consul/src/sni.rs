//! `CONSUL_TLS_SERVER_NAME` as the SNI too, as Go's `tls.Config.ServerName` makes it: reqwest
//! sends the request URL's host as SNI, so the URL carries the name, and a resolver sends that
//! name back to the host of the address actually configured (an IP, or a name looked up as
//! usual). Only for a DNS name over https; an IP address is never sent as SNI, so it only
//! changes what the certificate is verified against (`tls`).
//!
//! Owns that rewrite; it must not change which address is dialled, nor what errors show (they
//! keep the configured address).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The base URL to send requests to and the resolver that makes it reach `addr`, when
/// `server_name` has to be the SNI of `addr` (https, a DNS name that is not already the host).
pub fn rewrite(addr: &str, server_name: Option<&str>) -> Option<(String, Arc<Pinned>)> {
    let name = server_name?;
    if name.parse::<IpAddr>().is_ok() {
        return None;
    }
    let url = reqwest::Url::parse(addr).ok()?;
    let host = url.host_str()?;
    if url.scheme() != "https" || host.eq_ignore_ascii_case(name) {
        return None;
    }
    let port = url.port_or_known_default()?;
    let target = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let base = format!("https://{name}:{port}");
    let pinned = Pinned {
        name: name.to_ascii_lowercase(),
        target,
    };
    Some((base, Arc::new(pinned)))
}

/// Resolves `name` as `target` (the configured host); any other name as usual.
#[derive(Debug)]
pub struct Pinned {
    name: String,
    target: String,
}

impl Resolve for Pinned {
    fn resolve(&self, name: Name) -> Resolving {
        let host = if name.as_str().eq_ignore_ascii_case(&self.name) {
            self.target.clone()
        } else {
            name.as_str().to_string()
        };
        Box::pin(async move {
            // The connector puts the URL's port on each address.
            if let Ok(ip) = host.parse::<IpAddr>() {
                let one: Addrs = Box::new(std::iter::once(SocketAddr::new(ip, 0)));
                return Ok(one);
            }
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let addrs: Addrs = Box::new(found.collect::<Vec<_>>().into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests;
