//! The measurement: preload, then per concurrency and round the four
//! operations through the store and through the raw ceiling, alternating;
//! then purge and the paged scan.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use broker_core::{BrokerStore, StoreError, TokenVault, unix_now};

use super::raw::{self, RawBaseline};
use super::results::{OpResult, PurgeResult, ScanResult, Stats, per_sec, round};
use super::stats::Samples;
use super::sys::{reset_peak_rss, rss_kib};
use super::workload::{
    EXPIRED_SPACE, Op, PRELOAD_SPACE, TTL, Workload, drive, jti, mix, phase_space, session,
    shuffled, timed,
};
use super::{BenchArgs, OP};

/// Where progress lines go.
pub(crate) type Say = Arc<dyn Fn(String) + Send + Sync>;

/// What [`Ctx::measure`] found; [`super::run`] adds who, when and where.
pub(crate) struct Measured {
    pub(crate) sealed_bytes: usize,
    pub(crate) preload_secs: f64,
    pub(crate) raw_preload_secs: f64,
    pub(crate) results: Vec<OpResult>,
    pub(crate) purge: Vec<PurgeResult>,
    pub(crate) scan: Option<ScanResult>,
    pub(crate) peak_rss_kib: Option<u64>,
}

pub(crate) struct Ctx {
    pub(crate) args: BenchArgs,
    pub(crate) store: Arc<dyn BrokerStore>,
    pub(crate) vault: Arc<TokenVault>,
    pub(crate) raw: Arc<dyn RawBaseline>,
    pub(crate) say: Say,
}

impl Ctx {
    pub(crate) async fn measure(&self) -> Result<Measured, StoreError> {
        let a = &self.args;
        let now = unix_now();
        let sample = self
            .vault
            .seal_session(OP, &self.session(jti(0, 0), 0, now + TTL)?)
            .await?;
        let sealed_bytes = sample.sealed.len();

        // Preload: ours through the trait, concurrently; raw in bulk.
        (self.say)(format!("preloading {} sessions", a.sessions));
        let preload = self
            .write_sessions(PRELOAD_SPACE, a.sessions, now + TTL)
            .await?;
        (self.say)(format!("preloaded in {preload:.1}s; raw table next"));
        let ((), raw_preload) = timed(raw::preload(
            &self.raw,
            a.sessions,
            sealed_bytes,
            now + TTL,
            a.preload_concurrency,
        ))
        .await?;

        let mut results = Vec::new();
        for &c in &a.concurrency {
            let mut pooled: Vec<(Samples, Samples)> =
                Op::ALL.iter().map(|_| Default::default()).collect();
            for round in 0..a.rounds {
                (self.say)(format!("concurrency {c}, round {}", round + 1));
                let phases = self.round(c, round).await?;
                for (slot, (ours, raw)) in pooled.iter_mut().zip(phases) {
                    slot.0.merge(&ours);
                    slot.1.merge(&raw);
                }
            }
            for (op, (ours, raw)) in Op::ALL.into_iter().zip(pooled) {
                results.push(OpResult::new(
                    op.name(),
                    c,
                    Stats::from_samples(&ours),
                    Stats::from_samples(&raw),
                ));
            }
        }

        let mut purge = Vec::new();
        for &expired in &a.purge {
            (self.say)(format!("purge with {expired} expired sessions"));
            self.write_sessions(EXPIRED_SPACE, expired, unix_now() - 120)
                .await?;
            let (purged, took) = timed(self.store.purge_expired()).await?;
            let ms = took.as_secs_f64() * 1000.0;
            purge.push(PurgeResult {
                expired,
                live: a.sessions,
                purged,
                ms: round(ms, 2),
                us_per_expired: (expired > 0).then(|| round(ms * 1000.0 / expired as f64, 2)),
            });
        }

        let peak_rss_kib = rss_kib().map(|(_, hwm)| hwm);
        let scan = if a.page > 0 {
            (self.say)(format!("scanning in pages of {}", a.page));
            Some(self.scan(a.page).await?)
        } else {
            None
        };
        Ok(Measured {
            sealed_bytes,
            preload_secs: preload,
            raw_preload_secs: round(raw_preload.as_secs_f64(), 2),
            results,
            purge,
            scan,
            peak_rss_kib,
        })
    }

    fn session(
        &self,
        jti: String,
        i: usize,
        expires_at: i64,
    ) -> Result<broker_core::Session, StoreError> {
        session(jti, i, self.args.payload, self.args.user_info, expires_at)
    }

    /// Seal and save `count` sessions of id space `space` through the vault's
    /// sealing and the trait, `preload_concurrency` at a time; seconds taken.
    async fn write_sessions(
        &self,
        space: u64,
        count: usize,
        expires_at: i64,
    ) -> Result<f64, StoreError> {
        let (vault, store, say) = (self.vault.clone(), self.store.clone(), self.say.clone());
        let (payload, user_info) = (self.args.payload, self.args.user_info);
        let step = (count / 10).max(1_000);
        let done = Arc::new(AtomicUsize::new(0));
        let samples = drive(self.args.preload_concurrency, count, move |i| {
            let (vault, store, done, say) =
                (vault.clone(), store.clone(), done.clone(), say.clone());
            async move {
                let s = session(jti(space, i), i, payload, user_info, expires_at)?;
                let record = vault.seal_session(OP, &s).await?;
                store.save_session(&record).await?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % step == 0 {
                    say(format!("  {n}/{count} written"));
                }
                Ok(true)
            }
        })
        .await?;
        Ok(samples.elapsed.as_secs_f64())
    }

    /// One round at concurrency `c`: (ours, raw) samples of save, get, take
    /// and delete, alternating sides operation by operation.
    async fn round(&self, c: usize, round: usize) -> Result<Vec<(Samples, Samples)>, StoreError> {
        let a = &self.args;
        let space = phase_space(c, round);
        let expires_at = unix_now() + TTL;
        // Sealed before timing: the measurement is the store's, with blobs
        // exactly as the vault makes them; raw writes the same bytes.
        let mut records = Vec::with_capacity(a.ops);
        for i in 0..a.ops {
            let s = self.session(jti(space, i), i, expires_at)?;
            records.push(self.vault.seal_session(OP, &s).await?);
        }
        // Gets read random stored sessions (the preloaded ones, else the fresh ones).
        let get_keys = (0..a.ops)
            .map(|i| {
                if a.sessions > 0 {
                    let pick = mix((space << 32) ^ i as u64) % a.sessions as u64;
                    jti(PRELOAD_SPACE, pick as usize)
                } else {
                    records[i].jti.clone()
                }
            })
            .collect();
        let w = Arc::new(Workload {
            records,
            get_keys,
            // Takes and deletes in another order than the saves.
            order: shuffled(a.ops, space),
        });
        let raw_first = round % 2 == 1;
        let mut out = Vec::new();
        for op in Op::ALL {
            if op == Op::Delete {
                // Put the taken sessions back (untimed) so delete finds them.
                self.ours(Op::Save, c, &w).await?;
                self.raw_side(Op::Save, c, &w).await?;
            }
            let (ours, raw) = if raw_first {
                let raw = self.raw_side(op, c, &w).await?;
                (self.ours(op, c, &w).await?, raw)
            } else {
                let ours = self.ours(op, c, &w).await?;
                (ours, self.raw_side(op, c, &w).await?)
            };
            out.push((ours, raw));
        }
        Ok(out)
    }

    async fn ours(&self, op: Op, c: usize, w: &Arc<Workload>) -> Result<Samples, StoreError> {
        let (store, w) = (self.store.clone(), Arc::clone(w));
        drive(c, w.records.len(), move |i| {
            let (store, w) = (store.clone(), Arc::clone(&w));
            async move {
                Ok(match op {
                    Op::Save => {
                        store.save_session(&w.records[i]).await?;
                        true
                    }
                    Op::Get => black_box(store.get_session(&w.get_keys[i]).await?).is_some(),
                    Op::Take => black_box(store.take_session(w.taken(i)).await?).is_some(),
                    Op::Delete => store.delete_session(w.taken(i)).await?,
                })
            }
        })
        .await
    }

    async fn raw_side(&self, op: Op, c: usize, w: &Arc<Workload>) -> Result<Samples, StoreError> {
        let (raw, w) = (self.raw.clone(), Arc::clone(w));
        drive(c, w.records.len(), move |i| {
            let (raw, w) = (raw.clone(), Arc::clone(&w));
            async move {
                match op {
                    Op::Save => {
                        let r = &w.records[i];
                        raw.save(&r.jti, &r.sealed, r.expires_at).await?;
                        Ok(true)
                    }
                    Op::Get => raw.get(&w.get_keys[i]).await,
                    Op::Take => raw.take(w.taken(i)).await,
                    Op::Delete => raw.delete(w.taken(i)).await,
                }
            }
        })
        .await
    }

    async fn scan(&self, page: usize) -> Result<ScanResult, StoreError> {
        let rss_before_kib = rss_kib().map(|(rss, _)| rss);
        let peak_isolated = reset_peak_rss();
        let started = Instant::now();
        let (mut sessions, mut pages) = (0u64, 0u64);
        let mut cursor: Option<String> = None;
        loop {
            let p = self.store.scan_sessions(cursor.as_deref(), page).await?;
            pages += 1;
            sessions += p.sessions.len() as u64;
            black_box(&p.sessions);
            match p.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(ScanResult {
            sessions,
            pages,
            page,
            secs: round(secs, 2),
            sessions_per_sec: round(per_sec(sessions as f64, secs), 1),
            rss_before_kib,
            peak_rss_kib: rss_kib().map(|(_, hwm)| hwm),
            peak_isolated,
        })
    }
}

/// Every id the raw side may have written: the preloaded ones and each
/// round's (for a raw ceiling that cannot drop its keys in one call).
pub(crate) fn written_ids(args: &BenchArgs) -> Vec<String> {
    let mut ids: Vec<String> = (0..args.sessions).map(|i| jti(PRELOAD_SPACE, i)).collect();
    for &c in &args.concurrency {
        for r in 0..args.rounds {
            ids.extend((0..args.ops).map(|i| jti(phase_space(c, r), i)));
        }
    }
    ids
}
