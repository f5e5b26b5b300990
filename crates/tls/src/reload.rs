//! Key material that follows its files: a value (a rustls configuration) rebuilt when any of
//! its files changes, kept as it was when the new files do not make a valid one (a renewal
//! caught half-written is taken on the next look). Whether to rebuild is a comparison of two
//! [`Stamps`]; the loop that looks is thin.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use super::pem::TlsError;

/// What each watched file was when last looked at: its length and modification time (`None`
/// when it could not be read). Two differ exactly when a file was rewritten, replaced (a
/// symlink swapped, as Kubernetes does for Secrets) or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamps(Vec<Option<(u64, SystemTime)>>);

impl Stamps {
    pub fn of(paths: &[PathBuf]) -> Stamps {
        Stamps(
            paths
                .iter()
                .map(|p| {
                    std::fs::metadata(p)
                        .ok()
                        .and_then(|m| Some((m.len(), m.modified().ok()?)))
                })
                .collect(),
        )
    }
}

type Build<C> = Box<dyn Fn() -> Result<C, TlsError> + Send + Sync>;

/// A value built from files, rebuilt by [`Reloading::refresh`] when they change.
pub struct Reloading<C> {
    what: String,
    paths: Vec<PathBuf>,
    build: Build<C>,
    state: Mutex<(Stamps, Arc<C>)>,
}

impl<C: Send + Sync + 'static> Reloading<C> {
    /// Builds the value now (an error is the caller's start-up error) and remembers the files'
    /// stamps. `what` names it in logs (`agent TLS`).
    pub fn new(
        what: impl Into<String>,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<C, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Reloading<C>>, TlsError> {
        let stamps = Stamps::of(&paths);
        let value = build()?;
        Ok(Arc::new(Reloading {
            what: what.into(),
            paths,
            build: Box::new(build),
            state: Mutex::new((stamps, Arc::new(value))),
        }))
    }

    /// The value to use for the next connection.
    pub fn current(&self) -> Arc<C> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Looks at the files: if any changed, rebuilds. `Ok(true)` when a new value is in use;
    /// an error leaves the old value in use (and is reported again at the next change).
    pub fn refresh(&self) -> Result<bool, TlsError> {
        let stamps = Stamps::of(&self.paths);
        if stamps == self.state.lock().unwrap_or_else(|e| e.into_inner()).0 {
            return Ok(false);
        }
        let built = (self.build)();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Remembered either way: a broken file is reported once, not at every look.
        state.0 = stamps;
        state.1 = Arc::new(built?);
        Ok(true)
    }

    /// Refreshes every `every` while the value is alive (the task holds it weakly), logging
    /// what changed; abort the task to stop earlier.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else {
                    return;
                };
                match this.refresh() {
                    Ok(true) => tracing::info!(what = %this.what, "reloaded TLS certificates"),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(
                        what = %this.what,
                        %error,
                        "TLS files changed but do not make a valid configuration; \
                         keeping the previous one"
                    ),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
