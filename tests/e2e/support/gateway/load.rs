//! A load generator: concurrent callers doing Describe through the gateway until stopped,
//! recording every call with its timing, so a scenario can assert what callers saw while agents
//! came and went.
//!
//! Owns the callers and their records; it must not start or stop processes (`cluster` and the
//! process types do).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{describe, GatewayProc};
use crate::support::deadline::poll_until;

/// One call of a [`Load`].
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub started: Instant,
    pub finished: Instant,
    /// The answering instance id, or the status.
    pub result: Result<String, tonic::Status>,
}

/// Concurrent callers doing Describe through the gateway in a loop (each on its own
/// connection, paced by `pause`) until stopped, recording every call.
pub struct Load {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<CallRecord>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub async fn start(
        gateway: &GatewayProc,
        beamline: &str,
        workers: usize,
        pause: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let mut client = gateway.client().await;
            let stop = Arc::clone(&stop);
            let records = Arc::clone(&records);
            let beamline = beamline.to_string();
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = describe(&mut client, &beamline).await;
                    let finished = Instant::now();
                    records.lock().unwrap().push(CallRecord {
                        started,
                        finished,
                        result,
                    });
                    tokio::time::sleep(pause).await;
                }
            }));
        }
        Load {
            stop,
            records,
            tasks,
        }
    }

    /// Every call finished so far.
    pub fn records(&self) -> Vec<CallRecord> {
        self.records.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// Waits (polling) until at least `n` calls have finished.
    pub async fn wait_calls(&self, n: usize, timeout: Duration) {
        poll_until(
            timeout,
            &format!("{n} calls of the load to finish"),
            async || self.len(),
            |len| *len >= n,
        )
        .await;
    }

    /// Stops the callers, waits for their last calls, and returns every record.
    pub async fn stop(self) -> Vec<CallRecord> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load worker panicked");
        }
        let records = self.records.lock().unwrap().clone();
        records
    }
}

/// The failed calls of `records`, for an assertion message.
pub fn failures(records: &[CallRecord]) -> Vec<&CallRecord> {
    records.iter().filter(|r| r.result.is_err()).collect()
}

/// Calls answered per instance id.
pub fn per_instance(records: &[CallRecord]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        if let Ok(id) = &r.result {
            *counts.entry(id.clone()).or_insert(0) += 1;
        }
    }
    counts
}
