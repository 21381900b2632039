//! The CPU cost of the vault on the per-request path, and of the once-per-process
//! key derivation.
//!
//! - `seal_open/{1KiB,16KiB}`: [`TokenVault::seal_session`] then
//!   [`TokenVault::open_session`] of one session (what a save plus a get
//!   cost in CPU on top of the store). Target: under 2 µs for 1 KiB.
//! - `seal/…`, `open/…`: the two halves.
//! - `keyring/…`: the AEAD alone ([`Keyring`](broker_core::crypto::Keyring)
//!   seal/open of a plaintext of the same size), to tell crypto from framing.
//! - `argon2id_derive/default`: stretching a passphrase with the default
//!   parameters, paid once when a vault opens with a passphrase.
//! - `passphrase_vault_get/x10000`: 10 000 gets through a vault opened with a
//!   passphrase on a `MemoryStore`: per-get cost stays in microseconds, so no
//!   Argon2 runs per operation.
//!
//! Run with `cargo bench -p broker-core --bench vault`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use broker_core::crypto::{Binding, EncryptionKey, OVERHEAD};
use broker_core::keys::KdfParams;
use broker_core::{KeyConfig, MemoryStore, Session, TokenVault, unix_now};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use secrecy::SecretString;

/// Run `fut` to completion: poll once with a no-op waker (the vault's fast
/// paths never wait), else hand it to the runtime. Keeps executor overhead
/// out of the measured CPU cost.
fn run<F: Future>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => rt.block_on(fut),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A session with a `token_len`-byte refresh token and typical claims.
fn session(jti: &str, token_len: usize) -> Session {
    let now = unix_now();
    Session {
        jti: jti.to_owned(),
        sub: "248289761001".to_owned(),
        refresh_token: SecretString::from("r".repeat(token_len)),
        user_info: serde_json::json!({
            "sub": "248289761001",
            "email": "jane.doe@example.org",
            "name": "Jane Doe",
            "preferred_username": "jdoe",
            "groups": ["staff", "admins"],
        })
        .into(),
        expires_at: now + 3600,
        auth_time: now,
    }
}

fn vault(rt: &tokio::runtime::Runtime, keys: KeyConfig) -> TokenVault {
    rt.block_on(TokenVault::open(Arc::new(MemoryStore::new()), keys))
        .expect("vault opens")
}

fn seal_open(c: &mut Criterion) {
    let rt = runtime();
    let v = vault(&rt, KeyConfig::new(EncryptionKey::generate()));
    for (label, len) in [("1KiB", 1024), ("16KiB", 16 * 1024)] {
        let s = session("bench-jti-0001", len);
        let record = run(&rt, v.seal_session("bench", &s)).expect("seal");
        let mut group = c.benchmark_group("session");
        group.throughput(Throughput::Bytes(record.sealed.len() as u64));
        group.bench_with_input(BenchmarkId::new("seal_open", label), &s, |b, s| {
            b.iter(|| {
                let record = run(&rt, v.seal_session("bench", black_box(s))).expect("seal");
                black_box(v.open_session("bench", &record).expect("open"))
            })
        });
        group.bench_with_input(BenchmarkId::new("seal", label), &s, |b, s| {
            b.iter(|| black_box(run(&rt, v.seal_session("bench", black_box(s))).expect("seal")))
        });
        group.bench_with_input(BenchmarkId::new("open", label), &record, |b, r| {
            b.iter(|| black_box(v.open_session("bench", black_box(r)).expect("open")))
        });
        group.finish();

        // The AEAD alone (no framing, JSON or secret wrapping), same plaintext size.
        let binding = Binding::Session {
            namespace: "broker",
            jti: &record.jti,
            sub: &record.sub,
            expires_at: record.expires_at,
            auth_time: record.auth_time,
        };
        let plain = vec![7u8; record.sealed.len() - OVERHEAD];
        let sealed = v.keyring().seal(&binding, &plain).expect("seal");
        let mut group = c.benchmark_group("keyring");
        group.throughput(Throughput::Bytes(plain.len() as u64));
        group.bench_with_input(BenchmarkId::new("seal_open", label), &plain, |b, p| {
            b.iter(|| {
                let sealed = v.keyring().seal(&binding, black_box(p)).expect("seal");
                black_box(v.keyring().open(&binding, &sealed).expect("open"))
            })
        });
        group.bench_with_input(BenchmarkId::new("open", label), &sealed, |b, s| {
            b.iter(|| black_box(v.keyring().open(&binding, black_box(s)).expect("open")))
        });
        group.finish();
    }
}

fn key_derivation(c: &mut Criterion) {
    let params = KdfParams::generate();
    let passphrase = SecretString::from("correct horse battery staple".to_owned());
    let mut group = c.benchmark_group("argon2id_derive");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("default", |b| {
        b.iter(|| black_box(params.derive(black_box(&passphrase)).expect("derive")))
    });
    group.finish();
}

fn passphrase_gets(c: &mut Criterion) {
    const GETS: usize = 10_000;
    let rt = runtime();
    // Argon2id runs here, once, as in an application's start-up.
    let v = vault(
        &rt,
        KeyConfig::passphrase(SecretString::from(
            "correct horse battery staple".to_owned(),
        )),
    );
    let jtis: Vec<String> = (0..100).map(|i| format!("bench-jti-{i:04}")).collect();
    for jti in &jtis {
        rt.block_on(v.save_session(&session(jti, 1024)))
            .expect("save");
    }
    let mut group = c.benchmark_group("passphrase_vault_get");
    group.throughput(Throughput::Elements(GETS as u64));
    group.sample_size(20);
    group.bench_function("x10000", |b| {
        b.iter(|| {
            for i in 0..GETS {
                let got = run(&rt, v.get_session(&jtis[i % jtis.len()])).expect("get");
                black_box(got.expect("stored"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, seal_open, key_derivation, passphrase_gets);
criterion_main!(benches);
