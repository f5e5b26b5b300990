//! `beamline-mesh hash-key`: reads an API key on stdin and prints its SHA-256 in hex, the form
//! the gateway's policy file takes (`api_key_sha256`), so a key is never written down in clear.
//!
//! Only the trailing newline is removed (as `echo` or a terminal adds one): any other byte is
//! part of the key, and trimming more would make the digest disagree with what clients send.

use std::io::Read;

use anyhow::{bail, Context};

use beamline_mesh::gateway::auth::sha256_hex;

#[derive(clap::Args)]
pub struct HashKeyArgs {}

pub async fn run(_args: HashKeyArgs) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the key from stdin")?;
    println!("{}", digest_of(&input)?);
    Ok(())
}

/// The digest of the key in `input` (one trailing newline removed).
pub fn digest_of(input: &str) -> anyhow::Result<String> {
    let key = input
        .strip_suffix('\n')
        .map(|k| k.strip_suffix('\r').unwrap_or(k))
        .unwrap_or(input);
    if key.is_empty() {
        bail!("no key on stdin (usage: printf '%s' \"$KEY\" | beamline-mesh hash-key)");
    }
    Ok(sha256_hex(key.as_bytes()))
}

#[cfg(test)]
mod tests;
