//! `beamline-mesh agents --capabilities`: the fleet catalog as the gateway knows it
//! (`beamline.v1.Fleet/ListBeamlines`): per beamline its instances, whether it is halted or
//! locked, and each capability of its card, actuating or read-only, with its description. With
//! `--json`, the snapshot as canonical proto3 JSON.
//!
//! The catalog lives in the gateway (cards are learnt there by push); this asks it, reaching it
//! as `call` does (`call::dial`: the same `--gateway`, `--token` and `--ca-cert`, the same
//! default gateway). Owns the request and the text; it must not read Consul (`agents` without
//! `--capabilities` does).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

use beamline_mesh::proto::fleet_client::FleetClient;
use beamline_mesh::proto::{
    BeamlineEntry, FleetSnapshot, HaltState, ListBeamlinesRequest, LockState,
};

use crate::cli::call::dial::{bearer, bounded, dial, grpc_uri, DialError, DEFAULT_GATEWAY};
use crate::cli::call::{describe_status, error_chain};
use crate::cli::printable::printable;

/// How long to wait for the connection, and for the answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the gateway is and how to be let in.
pub struct Access<'a> {
    pub gateway: Option<&'a str>,
    pub token: Option<&'a str>,
    pub ca_cert: Option<&'a Path>,
}

/// The catalog from the gateway.
pub async fn fetch(access: Access<'_>) -> anyhow::Result<FleetSnapshot> {
    let uri = grpc_uri(access.gateway.unwrap_or(DEFAULT_GATEWAY), "--gateway")?;
    let authorization = bearer(access.token)?;
    let channel = dial(&uri, access.ca_cert, CONNECT_TIMEOUT)
        .await
        .map_err(|e| match e {
            DialError::Flags(e) => e,
            DialError::Unreachable(status) => anyhow::anyhow!(describe_status(&status)),
        })?;
    let mut request = tonic::Request::new(ListBeamlinesRequest {});
    request.set_timeout(ANSWER_TIMEOUT);
    if let Some(authorization) = authorization {
        request
            .metadata_mut()
            .insert("authorization", authorization);
    }
    let mut client = FleetClient::new(channel);
    let answer = bounded(
        ANSWER_TIMEOUT,
        "ListBeamlines",
        client.list_beamlines(request),
    )
    .await
    .map_err(|status| anyhow::anyhow!(describe_status(&status)))
    .with_context(|| format!("the fleet catalog from the gateway at {uri}"))?;
    Ok(answer.into_inner())
}

/// The snapshot as canonical proto3 JSON (prost's types know nothing of JSON: it is read again
/// through the descriptor set).
pub fn json(snapshot: &FleetSnapshot) -> anyhow::Result<String> {
    let pool = DescriptorPool::decode(beamline_mesh::proto::FILE_DESCRIPTOR_SET)
        .context("the embedded descriptor set does not decode")?;
    let descriptor = pool
        .get_message_by_name("beamline.v1.FleetSnapshot")
        .context("beamline.v1.FleetSnapshot is not in the descriptor set")?;
    let dynamic = DynamicMessage::decode(descriptor, snapshot.encode_to_vec().as_slice())
        .context("re-decoding the snapshot")?;
    let mut text =
        serde_json::to_string_pretty(&dynamic).map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    text.push('\n');
    Ok(text)
}

/// The catalog for people: the fleet-wide halt first, then per beamline a header line (health,
/// halt, lock), its instances, and its capabilities. Every text the gateway passes on (agents'
/// cards and addresses, reasons and notes from KV) is printed with its control characters
/// escaped (`printable`).
pub fn text(snapshot: &FleetSnapshot) -> String {
    let mut out = String::new();
    if let Some(all) = snapshot.fleet_halt.as_ref().filter(|h| h.halted) {
        let _ = writeln!(out, "EVERY BEAMLINE {}\n", halt_words(all));
    }
    if snapshot.beamlines.is_empty() {
        out.push_str("no beamlines in the gateway's catalog\n");
        return out;
    }
    for (i, entry) in snapshot.beamlines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        beamline(&mut out, entry);
    }
    out
}

fn beamline(out: &mut String, entry: &BeamlineEntry) {
    let healthy = entry.instances.iter().filter(|i| i.healthy).count();
    let mut header = format!(
        "{}  {healthy}/{} healthy",
        printable(&entry.beamline),
        entry.instances.len()
    );
    if let Some(halt) = entry.halt.as_ref().filter(|h| h.halted) {
        let _ = write!(header, "  {}", halt_words(halt));
    }
    if let Some(lock) = entry.lock.as_ref().filter(|l| l.locked) {
        let _ = write!(header, "  {}", lock_words(lock));
    }
    let _ = writeln!(out, "{header}");
    for instance in &entry.instances {
        let mut line = format!(
            "  instance {}  {}  {}",
            printable(&instance.instance_id),
            printable(&instance.address),
            if instance.healthy {
                "healthy"
            } else {
                "unhealthy"
            }
        );
        if !instance.sdk_version.is_empty() {
            let _ = write!(line, "  sdk {}", printable(&instance.sdk_version));
        }
        if !instance.card_revision.is_empty() {
            let _ = write!(line, "  card {}", printable(&instance.card_revision));
        }
        if !instance.enforces_halt {
            line.push_str("  (too old to halt itself: only the gateway stops it)");
        }
        let _ = writeln!(out, "{line}");
    }
    if !entry.card_error.is_empty() {
        let _ = writeln!(out, "  card unavailable: {}", printable(&entry.card_error));
    }
    let Some(card) = &entry.card else {
        if entry.card_error.is_empty() {
            out.push_str("  card not learnt yet\n");
        }
        return;
    };
    let width = card
        .capabilities
        .iter()
        .map(|c| printable(&c.name).chars().count())
        .max()
        .unwrap_or(0);
    for capability in &card.capabilities {
        let kind = if capability.actuating {
            "actuating"
        } else {
            "read-only"
        };
        let line = format!(
            "  {:<width$}  {kind:<9}  {}",
            printable(&capability.name),
            printable(&capability.description)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn time(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .map_or_else(|| "?".to_string(), |t| t.to_string())
}

/// `HALTED by alice since …: why`.
fn halt_words(halt: &HaltState) -> String {
    words("HALTED", &halt.by, "since", &halt.since, &halt.reason)
}

/// `LOCKED by alice until …: why`.
fn lock_words(lock: &LockState) -> String {
    words("LOCKED", &lock.holder, "until", &lock.expires, &lock.note)
}

fn words(
    what: &str,
    who: &str,
    when: &str,
    at: &Option<prost_types::Timestamp>,
    why: &str,
) -> String {
    format!(
        "{what} by {} {when} {}: {}",
        printable(who),
        time(at),
        printable(why)
    )
}

#[cfg(test)]
mod tests;
