//! Whether a peer's certificate carries a name: how an agent tells a gateway's connection (its
//! client certificate names the gateway) from anyone else's.

use rustls_pki_types::{CertificateDer, ServerName};

/// Whether `cert` (already verified by the handshake) carries `name` as a DNS subject
/// alternative name. False for a name that is not a DNS name, or a certificate that cannot be
/// parsed.
pub fn has_dns_name(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|end_entity| end_entity.verify_is_valid_for_subject_name(&name).is_ok())
}

#[cfg(test)]
mod tests;
