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
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// A DNS server that does not answer: each lookup holds its thread until `release`.
    fn stuck(
        release: Arc<(Mutex<bool>, std::sync::Condvar)>,
        running: Arc<AtomicUsize>,
    ) -> Arc<Resolver> {
        Resolver::new(4, move |_| {
            running.fetch_add(1, Ordering::SeqCst);
            let (lock, cv) = &*release;
            let mut go = lock.lock().unwrap();
            while !*go {
                go = cv.wait(go).unwrap();
            }
            running.fetch_sub(1, Ordering::SeqCst);
            Err(io::Error::other("lookup slow.example: i/o timeout"))
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_that_time_out_share_one_lookup_per_name_and_the_cap_holds() {
        let release = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let resolver = stuck(release.clone(), running.clone());
        // 500 probe runs of one name, each giving up after 1 ms, as a 1 ms check timeout would.
        for _ in 0..500 {
            let r = tokio::time::timeout(
                Duration::from_millis(1),
                resolver.resolve("slow.example", 80),
            );
            assert!(r.await.is_err(), "the lookup is stuck");
        }
        assert_eq!(
            resolver.started(),
            1,
            "one lookup for every run of the same name"
        );
        // 50 names: never more than the cap's threads.
        for i in 0..50 {
            let name = format!("slow{i}.example");
            let _ =
                tokio::time::timeout(Duration::from_millis(1), resolver.resolve(&name, 80)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            running.load(Ordering::SeqCst),
            4,
            "lookups capped at 4 threads"
        );
        assert_eq!(resolver.in_flight(), 51);
        *release.0.lock().unwrap() = true;
        release.1.notify_all();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while resolver.in_flight() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "lookups never finished"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(resolver.started(), 51);
    }

    #[tokio::test]
    async fn answers_and_errors_reach_every_waiter() {
        let resolver = Resolver::new(2, |host| match host {
            "ok.example" => Ok(vec!["127.0.0.2".parse().unwrap()]),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        });
        let addrs = resolver.resolve("ok.example", 81).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.2:81".parse().unwrap()]);
        let err = resolver.resolve("bad.example", 81).await.unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string()),
            (io::ErrorKind::NotFound, "no such host".into())
        );
        let literal = resolver.resolve("::1", 82).await.unwrap();
        assert_eq!(literal, vec!["[::1]:82".parse().unwrap()]);
        assert_eq!(resolver.started(), 2, "an IP literal needs no lookup");
    }
}
