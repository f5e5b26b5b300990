//! `beamline-mesh agents`: every beamline registered in Consul, with its instances.
//!
//! The beamlines are the Consul services tagged `beamline-agent` (`GET /v1/catalog/services`),
//! each read with `GET /v1/health/service/<name>` (all instances, healthy or not). The beamline
//! id is each instance's `Meta.beamline`, never the service name read backwards (`5.3.1` and
//! `5-3-1` share the service `beamline-5-3-1`). An instance's status is its worst check
//! (critical > warning > passing); it counts as healthy only when passing, as in `?passing`.
//!
//! Output: a table for people, or with `--json`
//! `[{"beamline": "5.3.1", "service": "beamline-5-3-1", "instances": [{"id": "…", "address":
//! "host:port", "status": "passing"}]}]`, sorted by beamline (numeric parts as numbers), then
//! by instance id.
//!
//! With `--capabilities` it prints the gateway's fleet catalog instead (`catalog`): cards,
//! halts and locks live there, not in Consul.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;
use serde::Serialize;

mod catalog;

use super::printable::printable;
use beamline_mesh::beamline::{natural_cmp, AGENT_TAG};
use beamline_mesh::consul::{CheckStatus, ConsulClient, ConsulConfig, ServiceEntry};

#[derive(clap::Args)]
pub struct AgentsArgs {
    /// Consul's HTTP address (default: $CONSUL_HTTP_ADDR, else 127.0.0.1:8500; the token, if
    /// any, comes from $CONSUL_HTTP_TOKEN).
    #[arg(long, value_name = "ADDR", conflicts_with = "capabilities")]
    consul: Option<String>,
    /// Print JSON instead of a table (with --capabilities: the catalog as proto3 JSON).
    #[arg(long)]
    json: bool,
    /// Print the fleet catalog from the gateway: per beamline its instances, halt and lock, and
    /// each capability (actuating or read-only) with its description.
    #[arg(long)]
    capabilities: bool,
    /// With --capabilities: the gateway (a gRPC URL, http(s)://HOST:PORT; default
    /// http://127.0.0.1:8080, as for `call`).
    #[arg(long, value_name = "URL", requires = "capabilities")]
    gateway: Option<String>,
    /// With --capabilities: the credential for a gateway with authentication (an API key or a
    /// JWT), sent as `authorization: Bearer …`.
    #[arg(long, env = "BEAMLINE_MESH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// With --capabilities: PEM CA certificate(s) to trust for an https:// gateway (default:
    /// the public web roots).
    #[arg(long, value_name = "FILE", requires = "capabilities")]
    ca_cert: Option<std::path::PathBuf>,
}

/// One beamline: the instances registered with this `Meta.beamline` under `service`.
#[derive(Debug, Clone, Serialize)]
pub struct Beamline {
    pub beamline: String,
    pub service: String,
    pub instances: Vec<InstanceRow>,
}

/// One registered instance of a beamline's agent.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceRow {
    /// The Consul service ID (the agent's instance id).
    pub id: String,
    /// `host:port` to dial.
    pub address: String,
    /// The worst of its checks: `passing`, `warning` or `critical`.
    pub status: CheckStatus,
}

impl Beamline {
    pub fn healthy(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.status == CheckStatus::Passing)
            .count()
    }
}

pub async fn run(args: AgentsArgs) -> anyhow::Result<()> {
    if args.capabilities {
        let access = catalog::Access {
            gateway: args.gateway.as_deref(),
            token: args.token.as_deref(),
            ca_cert: args.ca_cert.as_deref(),
        };
        // As `call` and `halt` report a gateway's answer: one line, exit 1.
        let snapshot = catalog::fetch(access).await.unwrap_or_else(|e| {
            eprintln!("error: {}", printable(&format!("{e:#}")));
            std::process::exit(1)
        });
        let text = if args.json {
            catalog::json(&snapshot)?
        } else {
            catalog::text(&snapshot)
        };
        return print(&text);
    }
    let config = ConsulConfig::from_env_or(args.consul.as_deref())
        .context("Consul client configuration (--consul and CONSUL_* variables)")?;
    let beamlines = list(&config).await?;
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&beamlines)?;
        json.push('\n');
        json
    } else if beamlines.is_empty() {
        format!(
            "no beamline agents registered in Consul at {}\n",
            config.addr
        )
    } else {
        table(&beamlines)
    };
    print(&text)
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Every beamline registered in the Consul at `config`, sorted (see the module doc).
pub async fn list(config: &ConsulConfig) -> anyhow::Result<Vec<Beamline>> {
    let client = ConsulClient::new(config.clone());
    let services = agent_services(&client).await?;
    let mut groups: BTreeMap<(String, String), Vec<InstanceRow>> = BTreeMap::new();
    for service in services {
        let answer = client
            .health_service(&service, 0, std::time::Duration::ZERO)
            .await
            .with_context(|| format!("cannot read the health of {service}"))?;
        for entry in answer.value {
            if !entry.service.tags.iter().any(|t| t == AGENT_TAG) {
                continue;
            }
            let Some(beamline) = entry.service.meta.get("beamline").cloned() else {
                tracing::warn!(
                    service = %service,
                    id = %entry.service.id,
                    "instance tagged {AGENT_TAG} has no Meta.beamline; not listed"
                );
                continue;
            };
            groups
                .entry((beamline, service.clone()))
                .or_default()
                .push(InstanceRow {
                    id: entry.service.id.clone(),
                    address: entry.address(),
                    status: worst_status(&entry),
                });
        }
    }
    let mut beamlines: Vec<Beamline> = groups
        .into_iter()
        .map(|((beamline, service), mut instances)| {
            instances.sort_by(|a, b| a.id.cmp(&b.id));
            Beamline {
                beamline,
                service,
                instances,
            }
        })
        .collect();
    beamlines.sort_by(|a, b| {
        natural_cmp(&a.beamline, &b.beamline).then_with(|| a.service.cmp(&b.service))
    });
    Ok(beamlines)
}

/// The names of the Consul services tagged [`AGENT_TAG`] (`GET /v1/catalog/services`).
async fn agent_services(client: &ConsulClient) -> anyhow::Result<Vec<String>> {
    let (services, filtered) = client.services().await?;
    if filtered {
        tracing::warn!(
            "Consul hid services this token may not read (it needs service:read on the \
             beamline services): the list may be incomplete"
        );
    }
    Ok(services
        .into_iter()
        .filter(|(_, tags)| tags.iter().any(|t| t == AGENT_TAG))
        .map(|(name, _)| name)
        .collect())
}

/// The worst status among the instance's checks (node checks included, as Consul's `?passing`
/// counts them); no checks at all is passing.
fn worst_status(entry: &ServiceEntry) -> CheckStatus {
    entry
        .checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(CheckStatus::Passing)
}

/// The human table: one line per instance, the beamline's columns on its first line only.
/// What Consul holds is anyone's who may register: printed with its control characters escaped.
pub fn table(beamlines: &[Beamline]) -> String {
    let headers = [
        "BEAMLINE", "SERVICE", "HEALTHY", "INSTANCE", "ADDRESS", "STATUS",
    ];
    let mut rows: Vec<[String; 6]> = Vec::new();
    for b in beamlines {
        let healthy = format!("{}/{}", b.healthy(), b.instances.len());
        for (i, inst) in b.instances.iter().enumerate() {
            let first = i == 0;
            let once = |text: &str| {
                if first {
                    printable(text).into_owned()
                } else {
                    String::new()
                }
            };
            rows.push([
                once(&b.beamline),
                once(&b.service),
                once(&healthy),
                printable(&inst.id).into_owned(),
                printable(&inst.address).into_owned(),
                inst.status.to_string(),
            ]);
        }
    }
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let _ = write!(text, "{cell:<w$}  ", w = widths[i]);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&headers);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

#[cfg(test)]
mod tests;
