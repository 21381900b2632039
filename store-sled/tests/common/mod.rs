//! Helpers for tests that re-execute this test binary as a child process.

#![allow(dead_code)] // each test binary uses a subset

use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// This test binary, set to run only the (ignored) test `test`.
pub fn child_test(test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args([
        "--ignored",
        "--exact",
        test,
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd
}

pub use conformance::process::{Guard, lines};

/// The next line holding `marker` (children print markers on their own
/// line, but libtest may put its "test name ... " in front), with what
/// follows the marker. `None` at end of output; panics at the deadline.
pub fn next_marked(rx: &Receiver<String>, marker: &str, deadline: Instant) -> Option<String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => {
                if let Some(pos) = line.find(marker) {
                    return Some(line[pos + marker.len()..].to_owned());
                }
            }
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => panic!("no `{marker}` line from the child in time"),
        }
    }
}
