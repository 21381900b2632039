//! The workload: session ids, payloads, the sessions themselves, and the
//! driver that runs an operation from many tasks and times each call.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker_core::{Session, SessionRecord, StoreError};
use secrecy::SecretString;

use super::OP;
use super::stats::Samples;

/// Sessions live this long in the bench (seconds).
pub(crate) const TTL: i64 = 3600;

/// Id space of the sessions stored before measuring.
pub(crate) const PRELOAD_SPACE: u64 = 1;
/// Id space of the expired sessions written before each purge.
pub(crate) const EXPIRED_SPACE: u64 = 2;

/// Id space of the sessions saved (then taken or deleted) at concurrency
/// `c` in round `round`.
pub(crate) fn phase_space(concurrency: usize, round: usize) -> u64 {
    1000 + (concurrency as u64) * 100 + round as u64
}

/// A well-spread 64-bit hash (splitmix64), for session ids and random picks.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Session id `i` of id space `space` (random-looking, like real jtis).
pub(crate) fn jti(space: u64, i: usize) -> String {
    format!("{:016x}{:08x}", mix((space << 40) ^ i as u64), i)
}

/// `len` incompressible bytes (the raw preload's values, and the tokens).
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed;
    while out.len() < len {
        x = mix(x);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A permutation of `0..n` (Fisher–Yates with [`mix`]).
pub(crate) fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (mix(seed ^ ((i as u64) << 20)) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// The claims every bench session carries before padding.
fn base_claims(i: usize) -> serde_json::Map<String, serde_json::Value> {
    let sub = format!("user{:06}", i % 100_000);
    let serde_json::Value::Object(claims) = serde_json::json!({
        "sub": sub,
        "email": "jane.doe@example.org",
        "name": "Jane Doe",
        "preferred_username": "jdoe",
        "groups": ["staff", "admins"],
    }) else {
        unreachable!("an object literal")
    };
    claims
}

/// The size of a `user_info` before `--user-info` existed: the base claims
/// alone (what runs recorded without the option used).
pub(crate) const LEGACY_USER_INFO_BYTES: usize = 125;

/// The smallest `--user-info`: the base claims plus an empty `pad` claim.
pub(crate) fn min_user_info() -> usize {
    user_info_json(0, 0).len()
}

/// The `user_info` JSON text of session `i`: the base claims padded with a
/// `pad` claim to `bytes` bytes (or the base claims and an empty pad if
/// `bytes` is smaller than that).
pub(crate) fn user_info_json(i: usize, bytes: usize) -> String {
    let mut claims = base_claims(i);
    claims.insert("pad".into(), "".into());
    let base = serde_json::Value::Object(claims.clone()).to_string().len();
    claims.insert("pad".into(), "x".repeat(bytes.saturating_sub(base)).into());
    serde_json::Value::Object(claims).to_string()
}

/// Session `i` with id `jti`: a refresh token of `payload` hex characters and
/// a `user_info` of `user_info` bytes.
pub(crate) fn session(
    jti: String,
    i: usize,
    payload: usize,
    user_info: usize,
    expires_at: i64,
) -> Result<Session, StoreError> {
    let mut token = hex::encode(noise(i as u64, payload.div_ceil(2)));
    token.truncate(payload);
    let claims: serde_json::Value = serde_json::from_str(&user_info_json(i, user_info))
        .map_err(|e| StoreError::invalid(OP, format!("bench user_info: {e}")))?;
    Ok(Session {
        jti,
        sub: format!("user{:06}", i % 100_000),
        refresh_token: SecretString::from(token),
        user_info: claims.into(),
        expires_at,
        auth_time: expires_at - TTL,
    })
}

/// The four timed operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Save,
    Get,
    Take,
    Delete,
}

impl Op {
    /// In the order a round runs them.
    pub(crate) const ALL: [Op; 4] = [Op::Save, Op::Get, Op::Take, Op::Delete];

    /// The name in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Save => "save",
            Op::Get => "get",
            Op::Take => "take",
            Op::Delete => "delete",
        }
    }
}

/// One cell's operations: the sealed sessions saved, the jtis read, and the
/// order in which takes and deletes remove the saved ones.
pub(crate) struct Workload {
    pub(crate) records: Vec<SessionRecord>,
    pub(crate) get_keys: Vec<String>,
    pub(crate) order: Vec<usize>,
}

impl Workload {
    /// The jti the `i`-th take or delete removes.
    pub(crate) fn taken(&self, i: usize) -> &str {
        &self.records[self.order[i]].jti
    }
}

/// Run `f(0..count)` from `concurrency` tasks and time every call; `f`
/// returns whether it found something. Stops at the first error.
pub(crate) async fn drive<F, Fut>(
    concurrency: usize,
    count: usize,
    f: F,
) -> Result<Samples, StoreError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, StoreError>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let concurrency = concurrency.clamp(1, count.max(1));
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| {
            let (f, next, failed) = (f.clone(), next.clone(), failed.clone());
            tokio::spawn(async move {
                let mut samples = Samples::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let t = Instant::now();
                    match f(i).await {
                        Ok(hit) => samples.record(t.elapsed(), hit),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
                Ok(samples)
            })
        })
        .collect();
    let mut out = Samples::default();
    let mut first_err = None;
    for h in handles {
        match h.await.map_err(|e| StoreError::backend(OP, e)) {
            Ok(Ok(samples)) => out.merge(&samples),
            Ok(Err(e)) | Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    // The tasks' own wall times overlap: the measurement's is the whole.
    out.elapsed = started.elapsed();
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Wall time of `f`.
pub(crate) async fn timed<T>(
    f: impl Future<Output = Result<T, StoreError>>,
) -> Result<(T, Duration), StoreError> {
    let t = Instant::now();
    let out = f.await?;
    Ok((out, t.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_across_spaces_and_shuffle_is_a_permutation() {
        let a: std::collections::BTreeSet<String> = (0..1000)
            .flat_map(|i| [jti(PRELOAD_SPACE, i), jti(phase_space(32, 0), i)])
            .collect();
        assert_eq!(a.len(), 2000);
        let mut p = shuffled(1000, 7);
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn user_info_has_the_size_asked_for() {
        for bytes in [min_user_info(), 300, 1000] {
            let text = user_info_json(42, bytes);
            assert_eq!(text.len(), bytes, "{text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["sub"], "user000042");
        }
        // Too small: the base claims and an empty pad.
        assert_eq!(user_info_json(1, 10).len(), min_user_info());
        // The claims of runs recorded before `--user-info`.
        let legacy = serde_json::Value::Object(base_claims(0)).to_string();
        assert_eq!(legacy.len(), LEGACY_USER_INFO_BYTES, "{legacy}");
    }

    #[test]
    fn tokens_are_hex_of_the_size_asked_for() {
        for payload in [0, 1, 1023, 1024] {
            let s = session(jti(1, 3), 3, payload, 300, 100).unwrap();
            use secrecy::ExposeSecret;
            let t = s.refresh_token.expose_secret();
            assert_eq!(t.len(), payload);
            assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[tokio::test]
    async fn drive_counts_every_call_and_stops_at_an_error() {
        let s = drive(4, 100, |i| async move { Ok(i % 10 != 0) })
            .await
            .unwrap();
        assert_eq!((s.len(), s.misses), (100, 10));
        let e = drive(4, 100, |i| async move {
            if i == 50 {
                Err(StoreError::invalid(OP, "boom"))
            } else {
                Ok(true)
            }
        })
        .await;
        assert!(e.is_err());
    }
}
