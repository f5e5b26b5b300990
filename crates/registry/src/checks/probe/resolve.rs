//! Host-name lookups for every probe (TCP, gRPC, HTTP): at most one lookup in flight per name,
//! and at most [`MAX_LOOKUPS`] at once.
//!
//! getaddrinfo blocks a thread, and a probe that times out drops its wait but not the thread:
//! with an unreachable DNS server (20 s per lookup here) every run of a check on a host name
//! used to leave one more thread behind, up to Tokio's 512 blocking threads — each with its
//! stack, malloc arena and UDP socket (RSS 18 → 132 MB), and the registry's own disk writes
//! queued behind them. Here a run that finds its name already being looked up waits for that
//! lookup instead of starting another, and lookups past the cap wait for a slot.
//!
//! Owns name resolution only; it must not dial, time out a probe (the caller's deadline bounds
//! its wait) or cache answers past their lookup (each run resolves again, as Consul's does).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{watch, Semaphore};

/// Lookups running at once, whatever the number of names.
pub const MAX_LOOKUPS: usize = 16;

/// A finished lookup: the addresses, or the error's kind and text (io::Error is not Clone).
type Outcome = Result<Vec<IpAddr>, (io::ErrorKind, String)>;
type Waiter = watch::Receiver<Option<Outcome>>;
type Lookup = dyn Fn(&str) -> io::Result<Vec<IpAddr>> + Send + Sync;

/// Lookups in flight by name, and the slots they take.
pub struct Resolver {
    in_flight: Mutex<HashMap<String, Waiter>>,
    slots: Arc<Semaphore>,
    lookup: Arc<Lookup>,
    started: AtomicU64,
}

impl Resolver {
    pub fn new(
        max_lookups: usize,
        lookup: impl Fn(&str) -> io::Result<Vec<IpAddr>> + Send + Sync + 'static,
    ) -> Arc<Resolver> {
        Arc::new(Resolver {
            in_flight: Mutex::default(),
            slots: Arc::new(Semaphore::new(max_lookups)),
            lookup: Arc::new(lookup),
            started: AtomicU64::new(0),
        })
    }

    /// The process's resolver, over the system's getaddrinfo.
    pub fn system() -> &'static Arc<Resolver> {
        static SYSTEM: OnceLock<Arc<Resolver>> = OnceLock::new();
        SYSTEM.get_or_init(|| Resolver::new(MAX_LOOKUPS, system_lookup))
    }

    /// The addresses of `host` (an IP literal is its own answer), each with `port`.
    pub async fn resolve(self: &Arc<Self>, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let mut waiter = self.join_or_start(host);
        let outcome = waiter
            .wait_for(Option::is_some)
            .await
            .map_err(|_| io::Error::other("lookup abandoned"))?
            .clone();
        match outcome {
            Some(Ok(ips)) => Ok(ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()),
            Some(Err((kind, text))) => Err(io::Error::new(kind, text)),
            None => Err(io::Error::other("lookup abandoned")),
        }
    }

    /// A wait on the lookup of `host` in flight, starting one if there is none.
    fn join_or_start(self: &Arc<Self>, host: &str) -> Waiter {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiter) = in_flight.get(host) {
            return waiter.clone();
        }
        let (done, waiter) = watch::channel(None);
        in_flight.insert(host.to_owned(), waiter.clone());
        drop(in_flight);
        // Its own task: the lookup finishes (and leaves the map) even when every caller gave up.
        let (this, host) = (Arc::clone(self), host.to_owned());
        tokio::spawn(async move {
            let outcome = this.run(&host).await;
            this.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&host);
            done.send_replace(Some(outcome));
        });
        waiter
    }

    async fn run(&self, host: &str) -> Outcome {
        let Ok(_slot) = Arc::clone(&self.slots).acquire_owned().await else {
            return Err((io::ErrorKind::Other, "resolver closed".into()));
        };
        self.started.fetch_add(1, Ordering::Relaxed);
        let (lookup, name) = (Arc::clone(&self.lookup), host.to_owned());
        match tokio::task::spawn_blocking(move || lookup(&name)).await {
            Ok(Ok(ips)) => Ok(ips),
            Ok(Err(e)) => Err((e.kind(), e.to_string())),
            Err(e) => Err((io::ErrorKind::Other, format!("lookup task failed: {e}"))),
        }
    }

    /// Names being looked up (or waiting for a slot) now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Lookups started since the resolver was made.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

fn system_lookup(host: &str) -> io::Result<Vec<IpAddr>> {
    Ok((host, 0).to_socket_addrs()?.map(|a| a.ip()).collect())
}

#[cfg(test)]
mod tests;
