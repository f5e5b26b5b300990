//! What the registry process holds, read from `/proc/<pid>`: resident memory, threads, open
//! descriptors — for tests that a load leaves those bounded.
//!
//! Owns reading `/proc` only; it must not start, stop or talk to the process.

use super::Registry;

impl Registry {
    /// The running child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("registry is not running").id()
    }

    /// A numeric field of `/proc/<pid>/status` (`VmRSS` in kB, `Threads`).
    pub fn proc_status(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// Resident set size in kB.
    pub fn rss_kb(&self) -> u64 {
        self.proc_status("VmRSS")
    }

    /// Open file descriptors.
    pub fn open_fds(&self) -> usize {
        let path = format!("/proc/{}/fd", self.pid());
        std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .count()
    }
}
