//! Child processes for multi-process tests (crash, lock, race and soak
//! tests): a guard that never leaves a child behind, and a line reader that
//! lets a test wait on a child's output with a deadline.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc::{Receiver, channel};

/// A child that is killed (SIGKILL) and reaped when dropped, so a failing
/// test never leaves a process behind or hangs on it.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a child writes, read on a thread, so the test can wait with a
/// deadline (`recv_timeout`). The channel closes at the child's end of output.
pub fn lines(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
