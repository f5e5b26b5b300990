//! A child's stdout: its first line (the listening line every process of the harness prints)
//! and every line after it, kept, so the child never blocks on a full pipe.
//!
//! Owns reading the pipe; what a line means is the caller's.

use std::io::{BufRead, BufReader};
use std::process::ChildStdout;
use std::sync::{mpsc, Arc, Mutex};

/// Reads `stdout` on a thread of its own: the first line (or why there is none) goes to the
/// receiver, every later line into `rest`.
pub fn follow_stdout(
    stdout: ChildStdout,
    rest: Arc<Mutex<Vec<String>>>,
) -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap_or_else(|| {
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "stdout closed before the listening line",
            ))
        });
        let _ = tx.send(first);
        for line in lines.map_while(Result::ok) {
            rest.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    rx
}
