//! Request bodies decoded the way a Consul agent decodes them: JSON keys match field names
//! case-insensitively (Go's encoding/json), check fields also accept Consul's snake_case aliases,
//! unknown fields are refused (`Request decode failed: json: unknown field "X"`), and durations are
//! Go strings or integer nanoseconds.
//!
//! Owns turning bytes into validated model values; it never touches registry state, so a request
//! that fails here has changed nothing.

mod check;
mod json;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use super::error::{bad_request, quote, RegistryError};
use super::model::{CheckDefinition, CheckStatus, Service, ServiceAddress, Weights};
use check::{nonempty, CheckIn};
use json::{parse_body, CHECK_FIELDS, CHECK_UPDATE_FIELDS, SERVICE_FIELDS};

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AddressIn {
    address: Option<String>,
    port: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct WeightsIn {
    passing: Option<i64>,
    warning: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ServiceIn {
    kind: Option<String>,
    #[serde(rename = "ID")]
    id: Option<String>,
    name: Option<String>,
    tags: Option<Vec<String>>,
    port: Option<i64>,
    address: Option<String>,
    socket_path: Option<String>,
    tagged_addresses: Option<BTreeMap<String, AddressIn>>,
    enable_tag_override: Option<bool>,
    meta: Option<BTreeMap<String, String>>,
    weights: Option<WeightsIn>,
    check: Option<CheckIn>,
    checks: Option<Vec<Option<CheckIn>>>,
    proxy: Option<Value>,
    connect: Option<Value>,
    namespace: Option<String>,
    partition: Option<String>,
    locality: Option<Value>,
}

/// Consul's `ValidateServiceMetadata` rules.
fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), RegistryError> {
    if meta.len() > 64 {
        return Err(bad_request(
            "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs",
        ));
    }
    for (key, value) in meta {
        let problem = if key.is_empty() {
            Some("Key cannot be blank")
        } else if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            Some("Key contains invalid characters")
        } else if key.len() > 128 {
            Some("Key is too long (limit: 128 characters)")
        } else if key.starts_with("consul-") {
            Some("Key prefix 'consul-' is reserved for internal use")
        } else if value.len() > 512 {
            Some("Value is too long (limit: 512 characters)")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(bad_request(format!(
                "Invalid Service Meta: Couldn't load metadata pair ({}, {}): {problem}",
                quote(key),
                quote(value)
            )));
        }
    }
    Ok(())
}

fn port(v: Option<i64>, what: &str) -> Result<u16, RegistryError> {
    u16::try_from(v.unwrap_or(0))
        .map_err(|_| bad_request(format!("Invalid {what}: port must be between 0 and 65535")))
}

fn is_unspecified_address(address: &str) -> bool {
    address
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// A decoded `/v1/agent/service/register` body.
pub struct ServiceRegistration {
    /// Indexes are left at 0; the registry sets them.
    pub service: Service,
    pub checks: Vec<CheckDefinition>,
}

pub fn service_registration(body: &[u8]) -> Result<ServiceRegistration, RegistryError> {
    let input: ServiceIn = parse_body(body, SERVICE_FIELDS)?;
    let _ = (
        &input.proxy,
        &input.connect,
        &input.namespace,
        &input.partition,
        &input.locality,
    );
    let name = input.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(bad_request("Missing service name"));
    }
    if nonempty(&input.socket_path) {
        return Err(bad_request(
            "Invalid service: SocketPath is not supported by this registry",
        ));
    }
    let kind = input.kind.clone().unwrap_or_default();
    if !kind.is_empty() {
        return Err(bad_request(format!(
            "Invalid service: Kind {} is not supported by this registry",
            quote(&kind)
        )));
    }
    let id = input
        .id
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| name.clone());
    let address = input.address.clone().unwrap_or_default();
    if is_unspecified_address(&address) {
        return Err(bad_request("Invalid service address"));
    }
    let service_port = port(input.port, "service port")?;
    let meta = input.meta.clone().unwrap_or_default();
    validate_meta(&meta)?;

    let mut tagged_addresses = BTreeMap::new();
    for (tag, addr) in input.tagged_addresses.iter().flatten() {
        let address = addr.address.clone().unwrap_or_default();
        if is_unspecified_address(&address) {
            return Err(bad_request(format!(
                "Invalid tagged address: {}",
                quote(tag)
            )));
        }
        let port = port(addr.port, "tagged address")?;
        tagged_addresses.insert(tag.clone(), ServiceAddress { address, port });
    }
    // A Consul agent adds these whenever the address is an IP; clients read them.
    if let Ok(ip) = address.parse::<IpAddr>() {
        let (lan, wan) = if ip.is_ipv4() {
            ("lan_ipv4", "wan_ipv4")
        } else {
            ("lan_ipv6", "wan_ipv6")
        };
        for tag in [lan, wan] {
            tagged_addresses
                .entry(tag.to_string())
                .or_insert_with(|| ServiceAddress {
                    address: address.clone(),
                    port: service_port,
                });
        }
    }

    let weights = match &input.weights {
        None => Weights::default(),
        Some(w) => {
            let weights = Weights {
                passing: w.passing.unwrap_or(0),
                warning: w.warning.unwrap_or(0),
            };
            if weights.passing < 1 {
                return Err(bad_request("Passing must be greater than 0"));
            }
            weights
        }
    };

    let mut check_inputs: Vec<&CheckIn> = Vec::new();
    if let Some(check) = &input.check {
        check_inputs.push(check);
    }
    check_inputs.extend(input.checks.iter().flatten().flatten());
    let numbered = check_inputs.len() > 1;
    let mut checks = Vec::with_capacity(check_inputs.len());
    for (i, check) in check_inputs.iter().enumerate() {
        let check_id = check.explicit_id().unwrap_or_else(|| {
            if numbered {
                format!("service:{id}:{}", i + 1)
            } else {
                format!("service:{id}")
            }
        });
        let check_name = check
            .name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("Service '{name}' check"));
        checks.push(check.definition(
            check_id,
            check_name,
            id.clone(),
            "Status for checks must 'passing', 'warning', 'critical'",
        )?);
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = checks.iter().find(|c| !seen.insert(c.id.as_str())) {
        return Err(bad_request(format!(
            "Invalid check: duplicate CheckID {}",
            quote(&dup.id)
        )));
    }

    Ok(ServiceRegistration {
        service: Service {
            id,
            name,
            kind,
            tags: input.tags.clone().unwrap_or_default(),
            address,
            port: service_port,
            meta,
            tagged_addresses,
            weights,
            enable_tag_override: input.enable_tag_override.unwrap_or(false),
            create_index: 0,
            modify_index: 0,
        },
        checks,
    })
}

/// A decoded `/v1/agent/check/register` body.
pub fn check_registration(body: &[u8]) -> Result<CheckDefinition, RegistryError> {
    let input: CheckIn = parse_body(body, CHECK_FIELDS)?;
    let name = input.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(bad_request("Missing check name"));
    }
    let id = input.explicit_id().unwrap_or_else(|| name.clone());
    let service_id = input.service_id.clone().unwrap_or_default();
    input.definition(id, name, service_id, "Bad check status")
}

/// A decoded `/v1/agent/check/update/:id` body: `{Status, Output}`.
pub fn check_update(body: &[u8]) -> Result<(CheckStatus, String), RegistryError> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct UpdateIn {
        status: Option<String>,
        output: Option<String>,
    }
    let input: UpdateIn = parse_body(body, CHECK_UPDATE_FIELDS)?;
    let status = input.status.unwrap_or_default();
    let status = status
        .parse::<CheckStatus>()
        .map_err(|_| bad_request(format!("Invalid check status: {}", quote(&status))))?;
    Ok((status, input.output.unwrap_or_default()))
}

#[cfg(test)]
mod tests;
