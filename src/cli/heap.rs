//! Gives freed heap back to the kernel. glibc's malloc returns memory to the kernel only from
//! the top of an arena; what is freed below live allocations stays resident, in malloc's free
//! lists, until `malloc_trim`. A long-lived server that lets much go at once — a gateway whose
//! 1,000 idle agent connections (33 KB allocated each, interleaved with what stays) were
//! just closed — would otherwise keep every page of it: measured at 1,000 beamlines, the gateway's RSS did
//! not move (61.8 → 62.0 MB) when all its agent connections went.
//!
//! Owns when to trim: every [`EVERY`] it reads how much malloc holds free (`mallinfo2`), and
//! trims once that grew by more than [`THRESHOLD`] since the last trim (a trim leaves the
//! count as it was — the bytes are still free, only no longer resident — so the growth is what
//! says something new was let go). The trim runs on a blocking thread, never on a call's path.
//! Other allocators and C libraries (musl) return memory their own way: there this is a no-op.

use std::time::Duration;

/// How often malloc's free bytes are read.
pub const EVERY: Duration = Duration::from_secs(10);
/// Growth of malloc's free bytes since the last trim that makes the next one worth its pass
/// over the heap.
pub const THRESHOLD: usize = 8 * 1024 * 1024;

/// When to trim, from the free-byte readings it is given.
#[derive(Debug, Default)]
struct Trimmer {
    /// Free bytes after the last trim, or the lowest reading since (memory reused).
    baseline: usize,
}

impl Trimmer {
    /// Whether, with malloc holding `free` bytes free now, a trim is due.
    fn look(&mut self, free: usize) -> bool {
        self.baseline = self.baseline.min(free);
        free > self.baseline.saturating_add(THRESHOLD)
    }

    /// A trim ran; `free` was read after it.
    fn trimmed(&mut self, free: usize) {
        self.baseline = free;
    }
}

/// Reads every [`EVERY`] and trims when due; runs until the process ends.
pub async fn return_freed_memory() {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trimmer = Trimmer::default();
    loop {
        tick.tick().await;
        let Some(free) = malloc_free_bytes() else {
            return;
        };
        if !trimmer.look(free) {
            continue;
        }
        let trimmed = tokio::task::spawn_blocking(move || {
            trim();
            malloc_free_bytes()
        })
        .await;
        if let Ok(Some(after)) = trimmed {
            trimmer.trimmed(after);
            tracing::debug!(free_bytes = after, "heap trimmed");
        }
    }
}

/// Bytes malloc holds free (in its free lists and at the top of its arenas), where the C
/// library can say.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc_free_bytes() -> Option<usize> {
    // SAFETY: mallinfo2 only reads malloc's statistics (glibc ≥ 2.33).
    let info = unsafe { libc::mallinfo2() };
    Some(info.fordblks)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_free_bytes() -> Option<usize> {
    None
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim releases free pages of every arena; it takes malloc's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests;
