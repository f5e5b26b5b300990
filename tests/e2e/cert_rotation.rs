//! Certificates renewed in place under load, as cert-manager renews them: every TLS file of the
//! mesh — an agent's certificate, key and client CA, the gateway's upstream CA, certificate and
//! key — is replaced by one from a new CA while calls flow through the gateway. No call fails,
//! nothing restarts, and connections made after the change use the new files on both ends: the
//! old instance now serves the new CA's certificate and refuses the old CA's clients, and a new
//! instance (its files from the new CA) is reached through the gateway.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::agent::*;
use crate::support::gateway::*;
use crate::support::mtls::{direct, name_of};
use crate::support::tls::TestCa;
use crate::support::*;
use beamline_mesh::proto::DescribeRequest;
use beamline_mesh::wire::tls::GATEWAY_NAME;

const BEAMLINE: &str = "6.2.1";
/// Both ends look at their files every 5 s; this leaves room on a loaded machine.
const RELOADED: Duration = Duration::from_secs(20);

/// Replaces `live` with `from` at once (write beside it, then rename), as Kubernetes swaps a
/// mounted Secret.
fn replace(live: &Path, from: &Path) {
    let next = live.with_extension("next");
    std::fs::copy(from, &next).unwrap();
    std::fs::rename(&next, live).unwrap();
}

/// The files one end reads, under `dir`: (certificate, key, CA).
struct LiveFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl LiveFiles {
    fn new(dir: &Path, prefix: &str) -> LiveFiles {
        LiveFiles {
            cert: dir.join(format!("{prefix}.crt")),
            key: dir.join(format!("{prefix}.key")),
            ca: dir.join(format!("{prefix}-ca.crt")),
        }
    }

    /// From `ca`: a leaf for `name` and the CA's certificate.
    fn take(&self, ca: &TestCa, name: &str, file: &str) {
        let (cert, key) = ca.leaf(&[name], file);
        replace(&self.cert, &cert);
        replace(&self.key, &key);
        replace(&self.ca, &ca.cert());
    }
}

fn tls_agent(registry: &Registry, files: &LiveFiles) -> AgentProc {
    AgentProc::builder(BEAMLINE)
        .registry(registry)
        .arg("--tls-cert", files.cert.display())
        .arg("--tls-key", files.key.display())
        .arg("--client-ca", files.ca.display())
        .arg("--health-listen", "127.0.0.1:0")
        .start()
}

/// The passing instances of BEAMLINE: (id, address).
async fn passing(registry: &Registry) -> Vec<(String, String)> {
    let entries = registry
        .health_service(&service_name(BEAMLINE), "passing")
        .await
        .json();
    arr(&entries)
        .iter()
        .map(|e| {
            let s = &e["Service"];
            (
                s["ID"].as_str().unwrap().to_string(),
                format!("{}:{}", s["Address"].as_str().unwrap(), s["Port"]),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tls_file_renewed_under_load_fails_no_call_and_new_connections_use_the_new_ones() {
    let (old, new) = (TestCa::new("old mesh CA"), TestCa::new("new mesh CA"));
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let agent_files = LiveFiles::new(dir.path(), "agent");
    agent_files.take(&old, &name_of(BEAMLINE), "agent-old");
    let gateway_files = LiveFiles::new(dir.path(), "gateway");
    gateway_files.take(&old, GATEWAY_NAME, "gateway-old");
    // The old CA's gateway certificate, kept to show the agent refuses it afterwards.
    let (old_client, old_client_key) = old.leaf(&[GATEWAY_NAME], "old-client");

    let _first = tls_agent(&registry, &agent_files);
    let (first_id, first_addr) = poll_for(secs(10), "the first instance passing", async || {
        passing(&registry).await.into_iter().next()
    })
    .await;
    let gateway = GatewayProc::builder(&registry)
        .arg("--upstream-ca", gateway_files.ca.display())
        .arg("--upstream-cert", gateway_files.cert.display())
        .arg("--upstream-key", gateway_files.key.display())
        .start();
    let mut client = gateway.client().await;
    poll_for(secs(10), "a Describe through the gateway", async || {
        describe(&mut client, BEAMLINE).await.ok()
    })
    .await;

    // The load: Describe through the gateway until stopped, every answer kept.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Result<String, tonic::Status>>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (stop, answers) = (Arc::clone(&stop), Arc::clone(&answers));
        let mut client = gateway.client().await;
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answer = describe(&mut client, BEAMLINE).await;
                answers.lock().unwrap().push(answer);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    poll_until(
        secs(10),
        "calls under way",
        async || answers.lock().unwrap().len(),
        |n| *n >= 50,
    )
    .await;

    // Renewal: every file of both ends, to the new CA.
    agent_files.take(&new, &name_of(BEAMLINE), "agent-new");
    gateway_files.take(&new, GATEWAY_NAME, "gateway-new");

    // The old instance's new connections: the new CA's certificate, the new CA's clients only.
    poll_for(
        RELOADED,
        "the first instance serving the new CA's certificate",
        async || {
            let mut agent = direct(
                &first_addr,
                &new.cert(),
                &name_of(BEAMLINE),
                Some((&gateway_files.cert, &gateway_files.key)),
            )
            .await
            .ok()?;
            agent.describe(DescribeRequest {}).await.ok()
        },
    )
    .await;
    let refused = match direct(
        &first_addr,
        &old.cert(),
        &name_of(BEAMLINE),
        Some((&old_client, &old_client_key)),
    )
    .await
    {
        Err(_) => true,
        Ok(mut agent) => agent.describe(DescribeRequest {}).await.is_err(),
    };
    assert!(refused, "the old CA's client was still let in");

    // A new instance, its files from the new CA: the gateway reaches it with its new files.
    let second_files = LiveFiles::new(dir.path(), "second");
    second_files.take(&new, &name_of(BEAMLINE), "second-new");
    let _second = tls_agent(&registry, &second_files);
    let second_id = poll_for(secs(10), "the second instance passing", async || {
        passing(&registry)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .find(|id| *id != first_id)
    })
    .await;
    poll_until(
        RELOADED,
        "a call through the gateway answered by the new instance",
        async || {
            answers
                .lock()
                .unwrap()
                .iter()
                .any(|a| a.as_deref().ok() == Some(second_id.as_str()))
        },
        |reached| *reached,
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let answers = answers.lock().unwrap();
    let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed during the renewal, first: {:?}",
        failed.len(),
        answers.len(),
        failed.first()
    );
}
