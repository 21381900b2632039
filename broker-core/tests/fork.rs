//! SECURITY.md requirement 16: nonces stay unique when a process forks.
//!
//! A user-space generator seeded once (such as `rand`'s `ThreadRng`) is
//! copied into the child by `fork`, so parent and child would draw the same
//! nonces under the same key. The parent seals once (initialising whatever
//! generator it uses), forks, and both seal 100 000 times: no nonce may
//! repeat, within either process or between them.
//!
//! This file holds a single test so that no other test thread is running
//! (and holding a lock) when it forks.
#![cfg(unix)]

use std::collections::HashSet;
use std::io::Write as _;

use broker_core::crypto::{Binding, EncryptionKey, Keyring, NONCE_LEN};

const SEALS: usize = 100_000;
const PLACE: Binding<'static> = Binding::SigningKey {
    namespace: "fork",
    name: "signing_key",
};

/// The nonces of `n` seals, concatenated.
fn seal_nonces(ring: &Keyring, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * NONCE_LEN);
    for _ in 0..n {
        let sealed = ring.seal(&PLACE, b"same plaintext").expect("seal");
        out.extend_from_slice(&sealed[5..5 + NONCE_LEN]);
    }
    out
}

#[test]
fn nonces_do_not_repeat_across_fork() {
    let ring = Keyring::new(EncryptionKey::from_bytes(&[3; 32]).unwrap(), []).unwrap();
    // The parent seals before forking, as a worker that forks would.
    let before = seal_nonces(&ring, 1);
    let dir = std::env::temp_dir().join(format!("broker-fork-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child_file = dir.join("child-nonces");

    // SAFETY: the child only seals, writes a file and calls `_exit`; it
    // never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let nonces = seal_nonces(&ring, SEALS);
        let ok = std::fs::File::create(&child_file)
            .and_then(|mut f| f.write_all(&nonces))
            .is_ok();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let parent = seal_nonces(&ring, SEALS);
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed ({status})"
    );
    let child = std::fs::read(&child_file).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(child.len(), SEALS * NONCE_LEN);

    let mut seen = HashSet::with_capacity(2 * SEALS + 1);
    let mut repeats = 0usize;
    for nonce in before
        .chunks_exact(NONCE_LEN)
        .chain(parent.chunks_exact(NONCE_LEN))
        .chain(child.chunks_exact(NONCE_LEN))
    {
        if !seen.insert(nonce) {
            repeats += 1;
        }
    }
    assert_eq!(
        repeats,
        0,
        "{repeats} of {} nonces repeated after fork",
        2 * SEALS + 1
    );
}
