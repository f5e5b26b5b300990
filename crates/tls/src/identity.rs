//! Whether a peer's certificate carries a name: how an agent tells a gateway's connection (its
//! client certificate names the gateway) from anyone else's.

use rustls_pki_types::CertificateDer;

/// Whether `cert` (already verified by the handshake) carries exactly `name` as a DNS subject
/// alternative name (ASCII case aside). A wildcard never matches: an identity is one name, and
/// a `*.beamline-mesh` certificate from the mesh's CA must not pass for the gateway. False for
/// a certificate that cannot be parsed.
pub fn has_dns_name(cert: &CertificateDer<'_>, name: &str) -> bool {
    if name.contains('*') {
        return false;
    }
    webpki::EndEntityCert::try_from(cert).is_ok_and(|end_entity| {
        end_entity
            .valid_dns_names()
            .any(|san| !san.contains('*') && san.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests;
