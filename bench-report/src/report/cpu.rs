//! The criterion benches: sealing and key derivation.

use super::Doc;
use super::fmt::{num, us};
use crate::docs::{BenchDir, CriterionBench};

/// The seal + open bench with a target (< 2 µs).
pub(crate) const SEAL_OPEN: &str = "session/seal_open/1KiB";

fn find<'a>(benches: &'a [CriterionBench], id: &str) -> Option<&'a CriterionBench> {
    benches.iter().find(|b| b.id == id)
}

pub(crate) fn section(d: &mut Doc, dir: &BenchDir) {
    let Some(crit) = &dir.criterion else { return };
    let b = &crit.benches;
    d.w("## CPU: sealing and key derivation (criterion)");
    d.w("");
    if let Some(note) = dir.earlier(crit.started_at) {
        d.w(note);
        d.w("");
    }
    d.w("| bench | mean | 95% CI | target |");
    d.w("|---|---:|---|---|");
    for r in b {
        let m = r.mean_ns;
        let (val, ci) = if m > 1e6 {
            (
                format!("{} ms", num(m / 1e6, 2)),
                format!(
                    "{}–{} ms",
                    num(r.ci_low_ns / 1e6, 2),
                    num(r.ci_high_ns / 1e6, 2)
                ),
            )
        } else {
            (
                format!("{} µs", num(us(m), 2)),
                format!(
                    "{}–{} µs",
                    num(us(r.ci_low_ns), 2),
                    num(us(r.ci_high_ns), 2)
                ),
            )
        };
        let target = match r.id.as_str() {
            SEAL_OPEN if m < 2000.0 => "**met** (< 2 µs)".to_owned(),
            SEAL_OPEN => format!(
                "**missed** by {} µs ({}× the 2 µs target)",
                num(us(m) - 2.0, 2),
                num(m / 2000.0, 2)
            ),
            "passphrase_vault_get/x10000" => format!("{} µs per get", num(us(m) / 10000.0, 2)),
            _ => String::new(),
        };
        d.w(format!("| `{}` | {val} | {ci} | {target} |", r.id));
    }
    d.w("");
    if let (Some(ar), Some(gx)) = (
        find(b, "argon2id_derive/default"),
        find(b, "passphrase_vault_get/x10000"),
    ) {
        let per_get = gx.mean_ns / 10000.0;
        d.w(format!(
            "Key derivation happens once per process: Argon2id at the default parameters costs \
             {} ms, while each of 10 000 gets through a vault opened with a passphrase costs {} µs \
             ({}× less) — **met**: no Argon2 per operation.",
            num(ar.mean_ns / 1e6, 1),
            num(us(per_get), 2),
            num(ar.mean_ns / per_get, 0)
        ));
        d.w("");
    }
    if let (Some(so), Some(ko)) = (find(b, SEAL_OPEN), find(b, "keyring/seal_open/1KiB")) {
        d.w(format!(
            "Of the {} µs of a 1 KiB session seal + open, the AEAD itself (`Keyring` seal + open \
             of the same plaintext size, AES-256-GCM with the binding as associated data) is {} \
             µs; the rest is the session framing: serialising `user_info` (the bench seals claims \
             built as a `serde_json::Value`; claims opened from a store are resealed as their JSON \
             text without serialising), checking the opened JSON without building it (parsed only \
             when the application reads it), copying the token into a `SecretString`, and the \
             nonce-budget counter. The AEAD is RustCrypto's `aes-gcm`, which SECURITY.md requires \
             (AES-NI and CLMUL are detected at run time; it encrypts and then hashes in two passes, \
             while stitched assembly implementations such as ring's interleave them). Criterion's \
             interval covers one run; separate runs on this virtual machine differ by up to a \
             fifth, so a figure near the target can land on either side of it.",
            num(us(so.mean_ns), 2),
            num(us(ko.mean_ns), 2)
        ));
        d.w("");
    }
    let Some(native) = &dir.native else { return };
    d.w(
        "The same benches built for this CPU (`-C target-cpu=native`: the AES-NI and CLMUL code \
         is compiled in and inlined instead of chosen at run time), a separate run:",
    );
    d.w("");
    d.w("| bench | default build | `target-cpu=native` | target |");
    d.w("|---|---:|---:|---|");
    for r in &native.benches {
        let m = r.mean_ns;
        let target = match r.id.as_str() {
            SEAL_OPEN if m < 2000.0 => "**met** (< 2 µs)".to_owned(),
            SEAL_OPEN => format!("missed by {} µs", num(us(m) - 2.0, 2)),
            _ => String::new(),
        };
        let default =
            find(b, &r.id).map_or("–".into(), |d| format!("{} µs", num(us(d.mean_ns), 2)));
        d.w(format!(
            "| `{}` | {default} | {} µs | {target} |",
            r.id,
            num(us(m), 2)
        ));
    }
    d.w("");
    if find(&native.benches, SEAL_OPEN).is_some_and(|n| n.mean_ns < 2000.0) {
        d.w(
            "A deployment that builds its binary for the CPUs it runs on meets the target; the \
             default build stays portable to any x86-64.",
        );
    } else {
        d.w(
            "Building for the CPU moves these figures by less than the run-to-run spread: the \
             AEAD's two passes over the data, not dispatch, set its cost.",
        );
    }
    d.w("");
}
