//! The agent runtime's life in Consul, end to end: the real `beamline-mesh agent` against the real
//! `beamline-mesh registry`. It registers once serving (gRPC check passing, Meta, tag, address),
//! deregisters and exits 0 on SIGTERM, goes critical when killed, registers again after a registry
//! restarted without data, registers once an absent registry appears, and refuses bad flags.

use crate::support::agent::*;
use crate::support::*;
use beamline_mesh::proto::DescribeRequest;

const BEAMLINE: &str = "5.3.1";
const SERVICE: &str = "beamline-5-3-1";
/// Registration, check runs (300ms intervals) and keep-alive (300ms) all fit well inside this.
const REGISTER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

async fn instance_id(agent: &AgentProc) -> String {
    let card = agent
        .client()
        .await
        .describe(DescribeRequest {})
        .await
        .expect("Describe")
        .into_inner();
    assert!(!card.instance_id.is_empty(), "empty instance_id: {card:?}");
    card.instance_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_a_passing_grpc_check_meta_tag_and_address() {
    let reg = Registry::start();
    let agent = AgentProc::start(BEAMLINE, &reg);
    let card = agent
        .client()
        .await
        .describe(DescribeRequest {})
        .await
        .expect("Describe")
        .into_inner();
    let id = card.instance_id.clone();

    let entry = wait_passing(&reg, SERVICE, &id, REGISTER_DEADLINE).await;
    let svc = &entry["Service"];
    assert_eq!(svc["ID"], id.as_str(), "{entry}");
    assert_eq!(svc["Service"], SERVICE, "{entry}");
    assert_eq!(svc["Meta"]["beamline"], BEAMLINE, "{entry}");
    assert_eq!(svc["Meta"]["instance_id"], id.as_str(), "{entry}");
    assert_eq!(
        svc["Meta"]["agent_version"],
        card.agent_version.as_str(),
        "{entry}"
    );
    assert!(!card.agent_version.is_empty(), "{card:?}");
    assert!(
        arr(&svc["Tags"]).iter().any(|t| t == "beamline-agent"),
        "tag beamline-agent missing: {entry}"
    );
    assert_eq!(svc["Address"], agent.addr.ip().to_string(), "{entry}");
    assert_eq!(svc["Port"], agent.addr.port(), "{entry}");
    assert_eq!(card.beamline, BEAMLINE);

    // Its one service check is a passing gRPC check against the advertised address.
    let checks = service_checks(&entry);
    assert_eq!(checks.len(), 1, "one service check expected: {entry}");
    let check = &checks[0];
    assert_eq!(check["Type"], "grpc", "{check}");
    assert_eq!(check["Status"], "passing", "{check}");
    assert_eq!(check["ServiceID"], id.as_str(), "{check}");
    let listed = reg
        .check(check["CheckID"].as_str().unwrap())
        .await
        .expect("the check in /v1/agent/checks");
    assert_eq!(listed["Status"], "passing", "{listed}");

    // Only this one instance is registered under the service name.
    let all = reg.health_service(SERVICE, "").await.json();
    assert_eq!(service_ids(&all), vec![id.clone()]);
    // The check definition as the agent sent it: target, interval, timeout, deregister-after.
    let def = &check["Definition"];
    assert_eq!(def["GRPC"], agent.addr.to_string(), "{check}");
    assert_eq!(def["Interval"], "300ms", "{check}");
    assert_eq!(def["Timeout"], "300ms", "{check}");
    assert_eq!(def["DeregisterCriticalServiceAfter"], "1m0s", "{check}");
    let ours = reg
        .get(&format!("/v1/agent/service/{id}"))
        .await
        .expect_status(200)
        .json();
    assert_eq!(ours["ID"], id.as_str(), "{ours}");
    assert_eq!(ours["Port"], agent.addr.port(), "{ours}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_deregisters_and_exits_zero() {
    let reg = Registry::start();
    let mut agent = AgentProc::start(BEAMLINE, &reg);
    let id = instance_id(&agent).await;
    wait_passing(&reg, SERVICE, &id, REGISTER_DEADLINE).await;

    agent.sigterm();
    let status = agent.wait_exit(secs(10)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}\n{}",
        agent.stderr()
    );
    // Gone, not just critical: no entry at all, and the service id is unknown.
    let all = reg.health_service(SERVICE, "").await.json();
    assert!(
        service_ids(&all).is_empty(),
        "still registered after exit: {all}"
    );
    reg.get(&format!("/v1/agent/service/{id}"))
        .await
        .expect_status(404);
    assert!(
        reg.check(&format!("service:{id}")).await.is_none(),
        "its check outlived it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_turns_the_check_critical_and_leaves_passing() {
    let reg = Registry::start();
    let mut agent = AgentProc::builder(BEAMLINE)
        .registry(&reg)
        .arg("--deregister-after", "1m")
        .start();
    let id = instance_id(&agent).await;
    let entry = wait_passing(&reg, SERVICE, &id, REGISTER_DEADLINE).await;
    let check_id = service_checks(&entry)[0]["CheckID"]
        .as_str()
        .unwrap()
        .to_string();

    agent.kill9();
    reg.wait_check_status(&check_id, "critical", secs(5)).await;
    poll_until(
        secs(5),
        "the instance to leave ?passing",
        async || health_entry(&reg, SERVICE, &id, true).await,
        Option::is_none,
    )
    .await;
    // Still registered (deregister-after is long), with its check critical.
    let entry = health_entry(&reg, SERVICE, &id, false)
        .await
        .expect("still listed without ?passing");
    assert_eq!(
        find_check(&entry, &check_id)["Status"],
        "critical",
        "{entry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_restarted_without_data_gets_the_agent_again() {
    let port = closed_port_addr();
    let mut reg = Registry::builder().listen(port).start();
    assert_eq!(reg.addr, port);
    let agent = AgentProc::start(BEAMLINE, &reg);
    let id = instance_id(&agent).await;
    wait_passing(&reg, SERVICE, &id, REGISTER_DEADLINE).await;

    reg.restart();
    assert_eq!(reg.addr, port, "the registry came back on another port");
    // The registry starts empty (no --data-dir), so only the agent can bring the instance back.
    let entry = wait_passing(&reg, SERVICE, &id, secs(5)).await;
    assert_eq!(entry["Service"]["Meta"]["instance_id"], id.as_str());
    assert_eq!(entry["Service"]["Port"], agent.addr.port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_absent_at_start_then_the_agent_registers_when_it_appears() {
    let port = closed_port_addr();
    let agent = AgentProc::builder(BEAMLINE).consul(port).start();
    // Serving without Consul.
    let id = instance_id(&agent).await;

    let reg = Registry::builder().listen(port).start();
    let entry = wait_passing(&reg, SERVICE, &id, secs(5)).await;
    assert_eq!(entry["Service"]["Port"], agent.addr.port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_listen_with_advertise_registers_the_advertised_address() {
    let reg = Registry::start();
    let free = closed_port_addr();
    let agent = AgentProc::builder(BEAMLINE)
        .registry(&reg)
        .arg("--listen", format!("0.0.0.0:{}", free.port()))
        .arg("--advertise", format!("127.0.0.1:{}", free.port()))
        .start();
    assert_eq!(agent.addr.port(), free.port());
    let id = instance_id(&agent).await;
    let entry = wait_passing(&reg, SERVICE, &id, REGISTER_DEADLINE).await;
    assert_eq!(entry["Service"]["Address"], "127.0.0.1", "{entry}");
    assert_eq!(entry["Service"]["Port"], free.port(), "{entry}");
}

#[test]
fn an_invalid_beamline_is_refused_naming_it() {
    let consul = closed_port_addr().to_string();
    for bad in ["5..3.1", "5.3.1/x", "-5.3.1", &"9".repeat(33)] {
        // `--beamline=ID`, so that an id starting with '-' is not taken for a flag.
        let flag = format!("--beamline={bad}");
        let out = run_to_exit(&["agent", &flag, "--consul", &consul], secs(10));
        assert!(
            !out.status.success(),
            "--beamline {bad:?} was accepted: {out:?}"
        );
        assert!(
            out.stderr.contains(bad) && out.stderr.contains("beamline"),
            "the message does not name the bad id {bad:?}: {out:?}"
        );
        assert!(
            !out.stdout.contains("listening"),
            "it listened anyway: {out:?}"
        );
    }
}

#[test]
fn a_wildcard_listen_without_advertise_is_refused() {
    let consul = closed_port_addr().to_string();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = run_to_exit(
            &[
                "agent",
                "--beamline",
                BEAMLINE,
                "--listen",
                listen,
                "--consul",
                &consul,
            ],
            secs(10),
        );
        assert!(
            !out.status.success(),
            "--listen {listen} without --advertise was accepted: {out:?}"
        );
        assert!(
            out.stderr.contains("--advertise"),
            "the message does not say --advertise is needed: {out:?}"
        );
        assert!(
            !out.stdout.contains("listening"),
            "it listened anyway: {out:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_like_sigterm() {
    let reg = Registry::start();
    let mut agent = AgentProc::start(BEAMLINE, &reg);
    let id = instance_id(&agent).await;
    wait_passing(&reg, SERVICE, &id, REGISTER_DEADLINE).await;
    agent.sigint();
    let status = agent.wait_exit(secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGINT: {status}");
    reg.get(&format!("/v1/agent/service/{id}"))
        .await
        .expect_status(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_registry_unreachable_still_exits_zero() {
    let mut agent = AgentProc::builder(BEAMLINE)
        .consul(closed_port_addr())
        .start();
    instance_id(&agent).await;
    let t = std::time::Instant::now();
    agent.sigterm();
    let status = agent.wait_exit(secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(t.elapsed() < secs(5), "took {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_name_is_derived_and_meta_keeps_the_id() {
    let reg = Registry::start();
    let agent = AgentProc::start("SST-1", &reg);
    let id = instance_id(&agent).await;
    let entry = wait_passing(&reg, "beamline-sst-1", &id, REGISTER_DEADLINE).await;
    assert_eq!(entry["Service"]["Service"], "beamline-sst-1", "{entry}");
    assert_eq!(entry["Service"]["Meta"]["beamline"], "SST-1", "{entry}");

    let reg2 = Registry::start();
    let agent2 = AgentProc::start("12.3.1", &reg2);
    let id2 = instance_id(&agent2).await;
    let entry = wait_passing(&reg2, "beamline-12-3-1", &id2, REGISTER_DEADLINE).await;
    assert_eq!(entry["Service"]["Meta"]["beamline"], "12.3.1", "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_address_and_token_come_from_the_environment() {
    let reg = Registry::builder()
        .acl_token("s3cret-token")
        .send_token()
        .start();
    // No --consul: CONSUL_HTTP_ADDR (bare host:port, normalised) and CONSUL_HTTP_TOKEN.
    let agent = AgentProc::builder(BEAMLINE)
        .env("CONSUL_HTTP_ADDR", reg.addr)
        .env("CONSUL_HTTP_TOKEN", "s3cret-token")
        .start();
    let id = instance_id(&agent).await;
    wait_passing(&reg, SERVICE, &id, REGISTER_DEADLINE).await;

    // The --consul flag wins over the environment.
    let other = Registry::builder()
        .acl_token("s3cret-token")
        .send_token()
        .start();
    let agent2 = AgentProc::builder(BEAMLINE)
        .consul(format!("http://{}/", other.addr))
        .env("CONSUL_HTTP_ADDR", reg.addr)
        .env("CONSUL_HTTP_TOKEN", "s3cret-token")
        .start();
    let id2 = instance_id(&agent2).await;
    wait_passing(&other, SERVICE, &id2, REGISTER_DEADLINE).await;
    assert!(health_entry(&reg, SERVICE, &id2, false).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_an_acl_registry_refuses_and_the_agent_serves_anyway() {
    let reg = Registry::builder()
        .acl_token("s3cret-token")
        .send_token()
        .start();
    let mut agent = AgentProc::start(BEAMLINE, &reg);
    let id = instance_id(&agent).await;
    // Never registered; still serving; the failure is logged.
    poll_until(
        secs(5),
        "the agent to log the refused registration",
        async || agent.stderr(),
        |s| s.contains(&id) && (s.contains("403") || s.to_lowercase().contains("denied")),
    )
    .await;
    assert!(health_entry(&reg, SERVICE, &id, false).await.is_none());
    assert!(agent.is_running());
    instance_id(&agent).await;
}

#[test]
fn a_bad_advertise_address_is_refused() {
    let consul = closed_port_addr().to_string();
    for advertise in ["0.0.0.0:5000", "127.0.0.1:0", "127.0.0.1", ":5000"] {
        let flag = format!("--advertise={advertise}");
        let out = run_to_exit(
            &["agent", "--beamline", BEAMLINE, &flag, "--consul", &consul],
            secs(10),
        );
        assert!(
            !out.status.success(),
            "--advertise {advertise} was accepted: {out:?}"
        );
        assert!(
            out.stderr.contains("--advertise") && out.stderr.contains(advertise),
            "the message does not name --advertise {advertise}: {out:?}"
        );
    }
}
