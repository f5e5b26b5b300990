//! Signals to the processes a test started (SIGTERM, SIGINT, SIGSTOP, SIGCONT), sent with
//! kill(2) rather than by spawning the `kill` utility.

/// Sends `signal` (e.g. `libc::SIGTERM`) to `pid`; panics if it cannot be sent.
pub fn send(pid: u32, signal: libc::c_int) {
    let target = i32::try_from(pid).expect("a pid fits in pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is a child
    // this test started and still holds (not reaped), so it names no other process.
    let sent = unsafe { libc::kill(target, signal) };
    assert_eq!(
        sent,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}
