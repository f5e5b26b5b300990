//! What one registry process is told (`RegistryConfig`) and what it is (`Node`: the one node
//! this registry is, with a node ID stable across restarts).
//!
//! Owns settings and the node's identity; it opens nothing and runs nothing.

use std::path::PathBuf;

/// Settings of one registry process.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub datacenter: String,
    pub node_name: String,
    /// When set, every request must carry this token.
    pub acl_token: Option<String>,
    /// When set, state is kept in SQLite under this directory.
    pub data_dir: Option<PathBuf>,
    /// Budget of the answer cache (rendered blocking-read answers), in bytes.
    pub answer_cache_bytes: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            datacenter: "dc1".to_string(),
            node_name: hostname(),
            acl_token: None,
            data_dir: None,
            answer_cache_bytes: crate::http::DEFAULT_ANSWER_CACHE_BYTES,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "beamline-mesh".to_string())
}

/// The one node this registry is: what Consul calls the agent's own node.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
}

/// A stable node ID derived from the node name, so it survives restarts without being stored.
pub(crate) fn node_id(name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, name).hash(&mut h);
        h.finish()
    };
    let bits = (u128::from(half(1)) << 64) | u128::from(half(2));
    uuid::Builder::from_u128(bits)
        .with_variant(uuid::Variant::RFC4122)
        .with_version(uuid::Version::Random)
        .into_uuid()
        .to_string()
}
