//! Step 5 of the demo, with `--mtls` only: a Describe straight to an agent's TLS port, bypassing
//! the gateway and claiming a caller in `x-caller`/`x-role`, without a client certificate and
//! with a gateway certificate from another CA — both must fail in the TLS handshake, and the
//! demo prints what the caller saw and what the agent logged — while the same Describe through
//! the gateway is answered.
//!
//! Owns that step's calls and what it prints; the stack and its certificates are the stack's.

use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::causes::chain;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::DescribeRequest;
use beamline_mesh::wire;

use super::super::stack::{impostor_client, Proc, Stack};
use super::{request, CALL_TIMEOUT, FORGED_TARGET};

/// Step 5: Describe straight to [`FORGED_TARGET`]'s agent, bypassing the gateway and claiming
/// to be an operator, with no client certificate and then with one from another CA (each must
/// fail, and says why), then the same call through the gateway (must be answered).
pub(super) async fn forged_call(stack: &Stack, gateway: &super::AgentClient) -> anyhow::Result<()> {
    let certs = stack.certs.as_ref().context("no certificates")?;
    let agent = stack
        .agents
        .iter()
        .find(|a| a.beamline == FORGED_TARGET)
        .with_context(|| format!("no {FORGED_TARGET} agent"))?;
    let id = BeamlineId::parse(FORGED_TARGET)?;
    let server_name = wire::tls::agent_name(&id);
    let addr = &agent.proc.addr;
    println!(
        "5. A forged call: Describe straight to {FORGED_TARGET}'s agent at {addr} (not through the \
         gateway), claiming x-caller: intruder, x-role: operator"
    );
    println!(
        "   the client trusts the stack's CA and checks the agent's name {server_name}; only the \
         client certificate differs"
    );
    let impostor = impostor_client().context("cannot make the impostor's certificate")?;
    let attempts = [
        ("without a client certificate", None),
        (
            "with a certificate for gateway.beamline-mesh from another CA",
            Some(impostor),
        ),
    ];
    for (label, identity) in attempts {
        let before = agent.proc.log_tail();
        match direct_describe(addr, &server_name, certs.ca_pem(), identity).await {
            Ok(instance) => {
                println!("   {label}: ANSWERED by {instance}");
                anyhow::bail!("a forged direct call {label} was answered by {instance}");
            }
            Err(why) => {
                println!("   {label}: refused");
                println!("     the caller saw:    {why}");
                match agent_refusal(&agent.proc, &before).await {
                    Some(reason) => println!("     the agent logged:  {reason}"),
                    None => println!("     the agent logged:  (no refused handshake within 2 s)"),
                }
            }
        }
    }
    let card = gateway
        .clone()
        .describe(forged(request(FORGED_TARGET, DescribeRequest {})))
        .await
        .with_context(|| format!("Describe {FORGED_TARGET} through the gateway"))?
        .into_inner();
    println!(
        "   through the gateway (its client certificate from the stack's CA): answered by {}",
        card.instance_id
    );
    Ok(())
}

/// The agent's own account of the handshake it refused: the first `TLS handshake failed` line
/// in its log that was not in `before`, from `TLS handshake failed` on. Waits up to 2 s (the
/// log is copied from the child's stderr as it comes).
async fn agent_refusal(proc: &Proc, before: &[String]) -> Option<String> {
    const MARK: &str = "TLS handshake failed";
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let found = proc
            .log_tail()
            .into_iter()
            .filter(|line| line.contains(MARK) && !before.contains(line))
            .find_map(|line| line.find(MARK).map(|at| line[at..].to_string()));
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The forged caller's headers on `request`.
fn forged<T>(mut request: tonic::Request<T>) -> tonic::Request<T> {
    let metadata = request.metadata_mut();
    metadata.insert(
        wire::header::CALLER,
        tonic::metadata::MetadataValue::from_static("intruder"),
    );
    metadata.insert(
        wire::header::ROLE,
        tonic::metadata::MetadataValue::from_static("operator"),
    );
    request
}

/// Describe over TLS straight to `addr`, trusting `ca_pem` and verifying `server_name`,
/// presenting `identity` (PEM chain, PEM key) if any. Bounded by [`CALL_TIMEOUT`]. The error is
/// what failed and why, as one line.
async fn direct_describe(
    addr: &str,
    server_name: &str,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> Result<String, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(server_name);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let attempt = async {
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| format!("bad address {addr}: {}", chain(&e)))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(CALL_TIMEOUT)
            .tls_config(tls)
            .map_err(|e| format!("TLS settings: {}", chain(&e)))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("connecting: {}", explain(chain(&e))))?;
        let mut request = forged(tonic::Request::new(DescribeRequest {}));
        request.set_timeout(CALL_TIMEOUT);
        BeamlineAgentClient::new(channel)
            .describe(request)
            .await
            .map(|card| card.into_inner().instance_id)
            .map_err(|status| format!("the call: {}", explain(status_chain(&status))))
    };
    match tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(1), attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// `status`'s code, message and the errors under it, as one line.
fn status_chain(status: &tonic::Status) -> String {
    let mut out = format!("{:?}", status.code());
    let message = status.message();
    if !message.is_empty() {
        out.push_str(": ");
        out.push_str(message);
    }
    if let Some(source) = std::error::Error::source(status) {
        let causes = chain(source);
        if !out.contains(&causes) {
            out.push_str(": ");
            out.push_str(&causes);
        }
    }
    out
}

/// `why` with what a TLS alert from the agent means, when it carries one.
fn explain(why: String) -> String {
    let meaning = if why.contains("CertificateRequired") {
        "the agent asks every client for a certificate from its CA"
    } else if why.contains("UnknownCA") || why.contains("BadCertificate") {
        "the agent does not trust the CA of the certificate presented"
    } else {
        return why;
    };
    format!("{why} ({meaning})")
}
