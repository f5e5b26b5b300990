//! Consul's JSON shapes for our records: AgentService, the health API's Node/Service/Checks
//! entries, HealthCheck, catalog ServiceNode, KV pairs. Field names and the "[] not null" rule
//! follow Consul's api package, so Consul clients decode them unchanged.
//!
//! Owns presentation only; what to include in a result is the HTTP layer's decision.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::model::{Check, CheckKind, KvEntry, Service};
use super::state::State;
use super::Node;
use beamline_consul::duration::format_go;

/// The synthetic node-level check every Consul node has while its agent is alive.
pub const SERF_CHECK_ID: &str = "serfHealth";

pub fn node(node: &Node) -> Value {
    json!({
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": {
            "lan": node.address, "lan_ipv4": node.address,
            "wan": node.address, "wan_ipv4": node.address,
        },
        "Meta": {"consul-network-segment": ""},
        "CreateIndex": 1,
        "ModifyIndex": 1,
    })
}

fn tagged_addresses(s: &Service) -> Value {
    Value::Object(
        s.tagged_addresses
            .iter()
            .map(|(k, a)| (k.clone(), json!({"Address": a.address, "Port": a.port})))
            .collect(),
    )
}

fn meta(s: &Service) -> Value {
    Value::Object(
        s.meta
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// `/v1/agent/services` and `/v1/agent/service/:id` entries.
pub fn agent_service(s: &Service, datacenter: &str) -> Value {
    let mut v = json!({
        "ID": s.id,
        "Service": s.name,
        "Tags": s.tags,
        "Meta": meta(s),
        "Port": s.port,
        "Address": s.address,
        "Weights": {"Passing": s.weights.passing, "Warning": s.weights.warning},
        "EnableTagOverride": s.enable_tag_override,
        "Datacenter": datacenter,
    });
    if !s.tagged_addresses.is_empty() {
        v["TaggedAddresses"] = tagged_addresses(s);
    }
    v
}

/// The `Service` object of a health entry (Consul's NodeService).
pub fn node_service(s: &Service) -> Value {
    json!({
        "Kind": s.kind,
        "ID": s.id,
        "Service": s.name,
        "Tags": s.tags,
        "Address": s.address,
        "TaggedAddresses": tagged_addresses(s),
        "Meta": meta(s),
        "Port": s.port,
        "Weights": {"Passing": s.weights.passing, "Warning": s.weights.warning},
        "EnableTagOverride": s.enable_tag_override,
        "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "Connect": {},
        "PeerName": "",
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
}

/// A catalog `ServiceNode` (`/v1/catalog/service/:name`).
pub fn catalog_service(s: &Service, n: &Node) -> Value {
    let node = self::node(n);
    json!({
        "ID": n.id,
        "Node": n.name,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": node["TaggedAddresses"],
        "NodeMeta": node["Meta"],
        "ServiceKind": s.kind,
        "ServiceID": s.id,
        "ServiceName": s.name,
        "ServiceTags": s.tags,
        "ServiceAddress": s.address,
        "ServiceTaggedAddresses": tagged_addresses(s),
        "ServiceWeights": {"Passing": s.weights.passing, "Warning": s.weights.warning},
        "ServiceMeta": meta(s),
        "ServicePort": s.port,
        "ServiceSocketPath": "",
        "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
}

fn definition(check: &Check) -> Value {
    let mut d = Map::new();
    let mut put = |k: &str, v: Value| {
        d.insert(k.to_string(), v);
    };
    match &check.def.kind {
        Some(CheckKind::Http { probe, interval }) => {
            put("HTTP", json!(probe.url));
            put("Header", json!(probe.header));
            put("Method", json!(probe.method));
            put("Body", json!(probe.body));
            put("TLSServerName", json!(probe.tls_server_name));
            put("TLSSkipVerify", json!(probe.tls_skip_verify));
            put("Interval", json!(format_go(*interval)));
        }
        Some(CheckKind::Tcp { addr, interval }) => {
            put("TCP", json!(addr));
            put("Interval", json!(format_go(*interval)));
        }
        Some(CheckKind::Grpc { probe, interval }) => {
            put("GRPC", json!(probe.target));
            put("GRPCUseTLS", json!(probe.use_tls));
            put("TLSServerName", json!(probe.tls_server_name));
            put("TLSSkipVerify", json!(probe.tls_skip_verify));
            put("Interval", json!(format_go(*interval)));
        }
        Some(CheckKind::Ttl { ttl }) => put("TTL", json!(format_go(*ttl))),
        None => {}
    }
    if check
        .def
        .kind
        .as_ref()
        .is_some_and(|k| k.interval().is_some())
    {
        put("Timeout", json!(format_go(check.def.timeout)));
    }
    if let Some(after) = check.def.deregister_critical_after {
        put("DeregisterCriticalServiceAfter", json!(format_go(after)));
    }
    Value::Object(d)
}

/// A HealthCheck (`/v1/health/checks`, `/v1/agent/checks`, health entries' `Checks`).
pub fn health_check(check: &Check, state: &State, node_name: &str) -> Value {
    let service = state.services.get(&check.def.service_id);
    let kind = check.def.kind.as_ref();
    json!({
        "Node": node_name,
        "CheckID": check.def.id,
        "Name": check.def.name,
        "Status": check.status.as_str(),
        "Notes": check.def.notes,
        "Output": check.output,
        "ServiceID": check.def.service_id,
        "ServiceName": service.map_or("", |s| s.name.as_str()),
        "ServiceTags": service.map_or(&[][..], |s| s.tags.as_slice()),
        "Type": kind.map_or("", |k| k.type_name()),
        "Interval": kind.and_then(|k| k.interval()).map_or(String::new(), format_go),
        "Timeout": if kind.and_then(|k| k.interval()).is_some() {
            format_go(check.def.timeout)
        } else {
            String::new()
        },
        "ExposedPort": 0,
        "Definition": definition(check),
        "CreateIndex": check.create_index,
        "ModifyIndex": check.modify_index,
    })
}

/// The node's liveness check, always passing while this registry answers.
pub fn serf_check(node_name: &str) -> Value {
    json!({
        "Node": node_name,
        "CheckID": SERF_CHECK_ID,
        "Name": "Serf Health Status",
        "Status": "passing",
        "Notes": "",
        "Output": "Agent alive and reachable",
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Type": "",
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": 1,
        "ModifyIndex": 1,
    })
}

pub fn kv_entry(e: &KvEntry) -> Value {
    let value = if e.value.is_empty() {
        Value::Null
    } else {
        Value::String(base64::engine::general_purpose::STANDARD.encode(&e.value))
    };
    json!({
        "LockIndex": e.lock_index,
        "Key": e.key,
        "Flags": e.flags,
        "Value": value,
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    })
}
