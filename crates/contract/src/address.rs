//! A host and a port written as one authority (`10.0.0.5:50051`, `[::1]:50051`): Consul keeps
//! them apart, and an IPv6 host needs brackets to be dialled.

/// `host:port`, bracketing an IPv6 host (one that contains `:` and is not bracketed already).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests;
