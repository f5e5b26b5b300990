//! A check definition as Consul's agent accepts it (CheckType + CheckDefinition fields), and the
//! rules that turn it into one of the check kinds this registry runs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::json::decode_failed;
use crate::checks::probe::{GrpcProbe, HttpProbe};
use crate::error::{bad_request, RegistryError};
use crate::model::{CheckDefinition, CheckKind, CheckStatus};
use beamline_consul::duration;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct CheckIn {
    #[serde(rename = "CheckID")]
    check_id: Option<String>,
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "Name")]
    pub(super) name: Option<String>,
    #[serde(rename = "Notes")]
    notes: Option<String>,
    #[serde(rename = "ServiceID")]
    pub(super) service_id: Option<String>,
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

pub(super) fn nonempty(s: &Option<String>) -> bool {
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

pub(super) fn parse_status(
    status: &Option<String>,
    message: &str,
) -> Result<Option<CheckStatus>, RegistryError> {
    match status.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<CheckStatus>()
            .map(Some)
            .map_err(|_| bad_request(message)),
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
    pub(super) fn definition(
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

    pub(super) fn explicit_id(&self) -> Option<String> {
        [&self.check_id, &self.id]
            .into_iter()
            .find(|s| nonempty(s))
            .and_then(|s| s.clone())
    }
}
