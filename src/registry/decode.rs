//! Request bodies decoded the way a Consul agent decodes them: JSON keys match field names
//! case-insensitively (Go's encoding/json), check fields also accept Consul's snake_case aliases,
//! unknown fields are refused (`Request decode failed: json: unknown field "X"`), and durations are
//! Go strings or integer nanoseconds.
//!
//! Owns turning bytes into validated model values; it never touches registry state, so a request
//! that fails here has changed nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::checks::probe::{GrpcProbe, HttpProbe};
use super::duration;
use super::error::{bad_request, RegistryError};
use super::model::{CheckDefinition, CheckKind, CheckStatus, Service, ServiceAddress, Weights};

/// A field of a request object: its canonical name, extra spellings, and how to decode below it.
struct Field {
    name: &'static str,
    aliases: &'static [&'static str],
    nested: Nested,
}

enum Nested {
    /// A scalar, or a map whose keys are user data (Meta, Header): left as is.
    Leaf,
    Object(&'static [Field]),
    ArrayOf(&'static [Field]),
    /// A map of user keys to objects (TaggedAddresses).
    MapOf(&'static [Field]),
}

const fn leaf(name: &'static str) -> Field {
    Field {
        name,
        aliases: &[],
        nested: Nested::Leaf,
    }
}

const fn alias(name: &'static str, aliases: &'static [&'static str]) -> Field {
    Field {
        name,
        aliases,
        nested: Nested::Leaf,
    }
}

const ADDRESS_FIELDS: &[Field] = &[leaf("Address"), leaf("Port")];
const WEIGHTS_FIELDS: &[Field] = &[leaf("Passing"), leaf("Warning")];

/// Consul's CheckType and CheckDefinition fields (agent/structs/check_type.go, check_definition.go).
const CHECK_FIELDS: &[Field] = &[
    leaf("CheckID"),
    leaf("ID"),
    leaf("Name"),
    leaf("Notes"),
    alias("ServiceID", &["service_id"]),
    leaf("Status"),
    leaf("Namespace"),
    leaf("Partition"),
    alias("ScriptArgs", &["args", "script_args"]),
    leaf("HTTP"),
    leaf("Method"),
    leaf("Header"),
    leaf("Body"),
    leaf("DisableRedirects"),
    leaf("TCP"),
    alias("TCPUseTLS", &["tcp_use_tls"]),
    leaf("UDP"),
    leaf("GRPC"),
    alias("GRPCUseTLS", &["grpc_use_tls"]),
    leaf("H2PING"),
    alias("H2PingUseTLS", &["h2ping_use_tls"]),
    leaf("OSService"),
    leaf("AliasNode"),
    leaf("AliasService"),
    alias("DockerContainerID", &["docker_container_id"]),
    leaf("Shell"),
    alias("TLSServerName", &["tls_server_name"]),
    alias("TLSSkipVerify", &["tls_skip_verify"]),
    leaf("Interval"),
    leaf("Timeout"),
    leaf("TTL"),
    leaf("SuccessBeforePassing"),
    leaf("FailuresBeforeWarning"),
    leaf("FailuresBeforeCritical"),
    alias(
        "DeregisterCriticalServiceAfter",
        &["deregister_critical_service_after"],
    ),
    leaf("OutputMaxSize"),
    leaf("ProxyHTTP"),
    leaf("ProxyGRPC"),
];

const SERVICE_FIELDS: &[Field] = &[
    leaf("Kind"),
    leaf("ID"),
    leaf("Name"),
    leaf("Tags"),
    leaf("Port"),
    leaf("Address"),
    leaf("SocketPath"),
    Field {
        name: "TaggedAddresses",
        aliases: &[],
        nested: Nested::MapOf(ADDRESS_FIELDS),
    },
    leaf("EnableTagOverride"),
    leaf("Meta"),
    Field {
        name: "Weights",
        aliases: &[],
        nested: Nested::Object(WEIGHTS_FIELDS),
    },
    Field {
        name: "Check",
        aliases: &[],
        nested: Nested::Object(CHECK_FIELDS),
    },
    Field {
        name: "Checks",
        aliases: &[],
        nested: Nested::ArrayOf(CHECK_FIELDS),
    },
    leaf("Proxy"),
    leaf("Connect"),
    leaf("Namespace"),
    leaf("Partition"),
    leaf("Locality"),
];

const CHECK_UPDATE_FIELDS: &[Field] = &[leaf("Status"), leaf("Output")];

fn decode_failed(msg: impl std::fmt::Display) -> RegistryError {
    bad_request(format!("Request decode failed: {msg}"))
}

/// Rewrites every known key to its canonical spelling; an unknown key is a decode error.
fn canonicalize(value: Value, fields: &[Field]) -> Result<Value, RegistryError> {
    let object = match value {
        Value::Object(object) => object,
        Value::Null => return Ok(Value::Null),
        other => {
            return Err(decode_failed(format!(
                "json: cannot unmarshal {} into an object",
                json_kind(&other)
            )))
        }
    };
    let mut out = Map::new();
    for (key, value) in object {
        let field = fields
            .iter()
            .find(|f| {
                f.name.eq_ignore_ascii_case(&key)
                    || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(&key))
            })
            .ok_or_else(|| decode_failed(format!("json: unknown field \"{key}\"")))?;
        let value = match (&field.nested, value) {
            (Nested::Leaf, v) | (_, v @ Value::Null) => v,
            (Nested::Object(inner), v) => canonicalize(v, inner)?,
            (Nested::ArrayOf(inner), Value::Array(items)) => Value::Array(
                items
                    .into_iter()
                    .map(|item| canonicalize(item, inner))
                    .collect::<Result<_, _>>()?,
            ),
            (Nested::MapOf(inner), Value::Object(map)) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| Ok((k, canonicalize(v, inner)?)))
                    .collect::<Result<_, RegistryError>>()?,
            ),
            (_, other) => {
                return Err(decode_failed(format!(
                    "json: cannot unmarshal {} into field {}",
                    json_kind(&other),
                    field.name
                )))
            }
        };
        out.insert(field.name.to_string(), value);
    }
    Ok(Value::Object(out))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    fields: &[Field],
) -> Result<T, RegistryError> {
    let raw: Value = if body.iter().all(u8::is_ascii_whitespace) {
        // Consul decodes an empty body as an empty object.
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(decode_failed)?
    };
    let canonical = canonicalize(raw, fields)?;
    serde_json::from_value(canonical).map_err(decode_failed)
}

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

#[derive(Deserialize, Default)]
#[serde(default)]
struct CheckIn {
    #[serde(rename = "CheckID")]
    check_id: Option<String>,
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Notes")]
    notes: Option<String>,
    #[serde(rename = "ServiceID")]
    service_id: Option<String>,
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "Namespace")]
    _namespace: Option<String>,
    #[serde(rename = "Partition")]
    _partition: Option<String>,
    #[serde(rename = "ScriptArgs")]
    script_args: Option<Vec<String>>,
    #[serde(rename = "HTTP")]
    http: Option<String>,
    #[serde(rename = "Method")]
    method: Option<String>,
    #[serde(rename = "Header")]
    header: Option<BTreeMap<String, Vec<String>>>,
    #[serde(rename = "Body")]
    body: Option<String>,
    #[serde(rename = "DisableRedirects")]
    _disable_redirects: Option<bool>,
    #[serde(rename = "TCP")]
    tcp: Option<String>,
    #[serde(rename = "TCPUseTLS")]
    tcp_use_tls: Option<bool>,
    #[serde(rename = "UDP")]
    udp: Option<String>,
    #[serde(rename = "GRPC")]
    grpc: Option<String>,
    #[serde(rename = "GRPCUseTLS")]
    grpc_use_tls: Option<bool>,
    #[serde(rename = "H2PING")]
    h2ping: Option<String>,
    #[serde(rename = "H2PingUseTLS")]
    _h2ping_use_tls: Option<bool>,
    #[serde(rename = "OSService")]
    os_service: Option<String>,
    #[serde(rename = "AliasNode")]
    alias_node: Option<String>,
    #[serde(rename = "AliasService")]
    alias_service: Option<String>,
    #[serde(rename = "DockerContainerID")]
    docker_container_id: Option<String>,
    #[serde(rename = "Shell")]
    _shell: Option<String>,
    #[serde(rename = "TLSServerName")]
    tls_server_name: Option<String>,
    #[serde(rename = "TLSSkipVerify")]
    tls_skip_verify: Option<bool>,
    #[serde(rename = "Interval")]
    interval: Option<Value>,
    #[serde(rename = "Timeout")]
    timeout: Option<Value>,
    #[serde(rename = "TTL")]
    ttl: Option<Value>,
    #[serde(rename = "SuccessBeforePassing")]
    success_before_passing: Option<i64>,
    #[serde(rename = "FailuresBeforeWarning")]
    failures_before_warning: Option<i64>,
    #[serde(rename = "FailuresBeforeCritical")]
    failures_before_critical: Option<i64>,
    #[serde(rename = "DeregisterCriticalServiceAfter")]
    deregister_critical_service_after: Option<Value>,
    #[serde(rename = "OutputMaxSize")]
    _output_max_size: Option<i64>,
    #[serde(rename = "ProxyHTTP")]
    _proxy_http: Option<String>,
    #[serde(rename = "ProxyGRPC")]
    _proxy_grpc: Option<String>,
}

/// Consul's default check timeout.
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

fn nonempty(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.is_empty())
}

fn opt_duration(v: &Option<Value>, field: &str) -> Result<Duration, RegistryError> {
    match v {
        None | Some(Value::Null) => Ok(Duration::ZERO),
        Some(v) => duration::from_json(v).map_err(|e| decode_failed(format!("{field}: {e}"))),
    }
}

fn count(v: Option<i64>) -> u32 {
    v.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32
}

fn parse_status(
    status: &Option<String>,
    message: &str,
) -> Result<Option<CheckStatus>, RegistryError> {
    match status.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => CheckStatus::parse(s)
            .map(Some)
            .ok_or_else(|| bad_request(message)),
    }
}

impl CheckIn {
    /// Consul's CheckType.Validate plus the check kinds this registry runs.
    fn kind(&self) -> Result<CheckKind, RegistryError> {
        let interval = opt_duration(&self.interval, "Interval")?;
        let ttl = opt_duration(&self.ttl, "TTL")?;
        let unsupported = [
            (
                self.script_args.as_ref().is_some_and(|a| !a.is_empty()),
                "script",
            ),
            (nonempty(&self.docker_container_id), "docker"),
            (nonempty(&self.udp), "UDP"),
            (nonempty(&self.h2ping), "H2PING"),
            (nonempty(&self.os_service), "OSService"),
            (
                nonempty(&self.alias_node) || nonempty(&self.alias_service),
                "alias",
            ),
            (self.tcp_use_tls == Some(true), "TCP+TLS"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(set, _)| *set) {
            return Err(bad_request(format!(
                "Invalid check: {what} checks are not supported by this registry"
            )));
        }
        let interval_check = nonempty(&self.http) || nonempty(&self.tcp) || nonempty(&self.grpc);
        if !interval.is_zero() && !ttl.is_zero() {
            return Err(bad_request(
                "Invalid check: Interval and TTL cannot both be specified",
            ));
        }
        if interval_check && interval.is_zero() {
            return Err(bad_request(
                "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks",
            ));
        }
        let tls_server_name = self.tls_server_name.clone().unwrap_or_default();
        let tls_skip_verify = self.tls_skip_verify.unwrap_or(false);
        if let Some(url) = self.http.as_ref().filter(|s| !s.is_empty()) {
            return Ok(CheckKind::Http {
                probe: HttpProbe {
                    url: url.clone(),
                    method: self.method.clone().unwrap_or_default(),
                    header: self.header.clone().unwrap_or_default(),
                    body: self.body.clone().unwrap_or_default(),
                    tls_server_name,
                    tls_skip_verify,
                },
                interval,
            });
        }
        if let Some(addr) = self.tcp.as_ref().filter(|s| !s.is_empty()) {
            return Ok(CheckKind::Tcp {
                addr: addr.clone(),
                interval,
            });
        }
        if let Some(target) = self.grpc.as_ref().filter(|s| !s.is_empty()) {
            return Ok(CheckKind::Grpc {
                probe: GrpcProbe {
                    target: target.clone(),
                    use_tls: self.grpc_use_tls.unwrap_or(false),
                    tls_server_name,
                    tls_skip_verify,
                },
                interval,
            });
        }
        if ttl.is_zero() {
            return Err(bad_request("Invalid check: TTL must be > 0 for TTL checks"));
        }
        Ok(CheckKind::Ttl { ttl })
    }

    /// The definition, with `id` and `name` already chosen by the caller's rules.
    fn definition(
        &self,
        id: String,
        name: String,
        service_id: String,
        status_message: &str,
    ) -> Result<CheckDefinition, RegistryError> {
        let initial_status =
            parse_status(&self.status, status_message)?.unwrap_or(CheckStatus::Critical);
        let kind = self.kind()?;
        let timeout = match opt_duration(&self.timeout, "Timeout")? {
            d if d.is_zero() => DEFAULT_CHECK_TIMEOUT,
            d => d,
        };
        let deregister = opt_duration(
            &self.deregister_critical_service_after,
            "DeregisterCriticalServiceAfter",
        )?;
        Ok(CheckDefinition {
            id,
            name,
            notes: self.notes.clone().unwrap_or_default(),
            service_id,
            kind: Some(kind),
            timeout,
            initial_status,
            success_before_passing: count(self.success_before_passing),
            failures_before_warning: count(self.failures_before_warning),
            failures_before_critical: count(self.failures_before_critical),
            deregister_critical_after: (!deregister.is_zero()).then_some(deregister),
        })
    }

    fn explicit_id(&self) -> Option<String> {
        [&self.check_id, &self.id]
            .into_iter()
            .find(|s| nonempty(s))
            .and_then(|s| s.clone())
    }
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
                "Invalid Service Meta: Couldn't load metadata pair ('{key}', '{value}'): {problem}"
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
            "Invalid service: Kind {kind:?} is not supported by this registry"
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
            return Err(bad_request(format!("Invalid tagged address: {tag}")));
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
            "Invalid check: duplicate CheckID {:?}",
            dup.id
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
    let status = CheckStatus::parse(&status)
        .ok_or_else(|| bad_request(format!("Invalid check status: '{status}'")))?;
    Ok((status, input.output.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_case_insensitively_and_aliases_apply() {
        let body = br#"{"name":"web","id":"web-1","port":80,"address":"10.0.0.1",
            "check":{"ttl":"10s","deregister_critical_service_after":"1m","status":"passing"}}"#;
        let reg = service_registration(body).unwrap();
        assert_eq!(reg.service.id, "web-1");
        assert_eq!(reg.checks[0].id, "service:web-1");
        assert_eq!(reg.checks[0].name, "Service 'web' check");
        assert_eq!(reg.checks[0].initial_status, CheckStatus::Passing);
        assert_eq!(
            reg.checks[0].deregister_critical_after,
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            reg.service.tagged_addresses["lan_ipv4"],
            ServiceAddress {
                address: "10.0.0.1".into(),
                port: 80
            }
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let err = |b: &[u8]| service_registration(b).err().unwrap().to_string();
        assert!(err(br#"{"Name":"a","Bogus":1}"#).starts_with("Request decode failed"));
        assert!(err(br#"{"Name":"a","Check":{"Bogus":1}}"#).starts_with("Request decode failed"));
        assert_eq!(err(br#"{"ID":"a"}"#), "Missing service name");
        assert!(err(br#"{"Name":"a","Check":{"TTL":"1s","Interval":"1s"}}"#).contains("both"));
        assert!(err(br#"{"Name":"a","Check":{}}"#).contains("TTL must be > 0"));
        assert!(
            err(br#"{"Name":"a","Check":{"TTL":"1s","Status":"fluffy"}}"#)
                .starts_with("Status for checks")
        );
        assert!(err(br#"{"Name":"a","Meta":{"a b":"c"}}"#).starts_with("Invalid Service Meta"));
        assert!(err(br#"{"Name":"a","Check":{"TTL":"nope"}}"#).contains("invalid duration"));
        assert!(err(b"{not json").starts_with("Request decode failed"));
        assert_eq!(
            err(br#"{"Name":"a","Address":"0.0.0.0"}"#),
            "Invalid service address"
        );
    }

    #[test]
    fn several_checks_are_numbered_and_durations_accept_nanoseconds() {
        let body = br#"{"Name":"foo","Checks":[{"TTL":15000000000},{"TTL":"30s"}]}"#;
        let reg = service_registration(body).unwrap();
        let ids: Vec<_> = reg.checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["service:foo:1", "service:foo:2"]);
        assert_eq!(
            reg.checks[0].kind,
            Some(CheckKind::Ttl {
                ttl: Duration::from_secs(15)
            })
        );
    }
}
