//! Rule 18: the server restarts under a running workload.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use broker_core::{BrokerStore, SessionRecord, StoreError};

use super::{ready, record};
use crate::{CaseResult, Ctx, Failure, Outcome};

/// No operation may take longer than this, outage or not: every store
/// bounds its calls with timeouts of a few seconds.
pub const OPERATION_BOUND: Duration = Duration::from_secs(30);

/// An outage at least this long must be seen by the workload.
const NOTICEABLE_OUTAGE: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Tally {
    acked: Vec<SessionRecord>,
    unavailable: usize,
    ok_ops: usize,
    wrong: Vec<String>,
    slowest: Duration,
}

/// Save and read until `stop`, tallying what happened.
async fn workload(
    store: Arc<dyn BrokerStore>,
    probe: SessionRecord,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut t = Tally::default();
    let mut i = 0u32;
    let now = store.clock().now();
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let s = record(
            &format!("during-{i}"),
            "restart-user",
            now + 3600,
            now - 5,
            (i % 250) as u8 + 1,
        );
        let start = Instant::now();
        let saved = store.save_session(&s).await;
        let read = store.get_session(&probe.jti).await;
        t.slowest = t.slowest.max(start.elapsed());
        match saved {
            Ok(()) => {
                t.ok_ops += 1;
                t.acked.push(s);
            }
            Err(StoreError::Unavailable { .. }) => t.unavailable += 1,
            Err(e) => t.wrong.push(format!("save_session: {e:?}")),
        }
        match read {
            Ok(Some(got)) if got == probe => t.ok_ops += 1,
            Ok(other) => t.wrong.push(format!(
                "get_session: an acknowledged session read back as {:?}",
                other.map(|s| s.jti)
            )),
            Err(StoreError::Unavailable { .. }) => t.unavailable += 1,
            Err(e) => t.wrong.push(format!("get_session: {e:?}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t
}

/// Rule 18: restart the server (through [`crate::StoreFactory::restart_server`])
/// while a workload saves and reads. Calls made during the outage fail
/// with `Unavailable` within [`OPERATION_BOUND`], never another error; the
/// same store object works afterwards without being rebuilt; every write
/// acknowledged before or around the restart is still there.
pub async fn rule_18_server_restart_loses_nothing(ctx: &Ctx) -> CaseResult {
    let store = Arc::clone(ready(ctx).await?);
    let now = store.clock().now();
    let mut before = Vec::new();
    for i in 0..100u8 {
        let s = record(
            &format!("before-{i}"),
            "restart-user",
            now + 3600,
            now - 5,
            i + 1,
        );
        store.save_session(&s).await?;
        before.push(s);
    }
    let key = store
        .create_record("signing-key", b"\x01sealed-key")
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(workload(
        Arc::clone(&store),
        before[7].clone(),
        Arc::clone(&stop),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = ctx.factory().restart_server().await;
    let Ok(Some(down)) = &restarted else {
        stop.store(true, Ordering::Relaxed);
        let _ = running.await;
        return match restarted {
            Err(e) => Err(e.into()),
            _ => Ok(Outcome::Skipped(
                "the factory cannot restart its server (StoreFactory::restart_server)".into(),
            )),
        };
    };
    let down = *down;
    // Let the workload run against the restarted server for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = running
        .await
        .map_err(|e| Failure(format!("the workload panicked: {e}")))?;

    ensure!(
        tally.wrong.is_empty(),
        "failures other than Unavailable: {:?}",
        tally.wrong
    );
    if down >= NOTICEABLE_OUTAGE {
        ensure!(
            tally.unavailable > 0,
            "no call failed while the server was down for {down:?} ({} succeeded)",
            tally.ok_ops
        );
    }
    ensure!(
        tally.slowest <= OPERATION_BOUND,
        "a call took {:?} (bound {OPERATION_BOUND:?})",
        tally.slowest
    );
    ensure!(tally.ok_ops > 0, "no call succeeded around the restart");

    // The same store object works again.
    store.health().await?;
    let after = record("after", "restart-user", now + 3600, now - 5, 9);
    store.create_session(&after).await?;
    ensure_eq!(
        store.take_session("after").await?,
        Some(after),
        "a session taken after the restart"
    );

    // Nothing acknowledged was lost.
    let mut lost = Vec::new();
    for s in before.iter().chain(&tally.acked) {
        if store.get_session(&s.jti).await?.as_ref() != Some(s) {
            lost.push(s.jti.clone());
        }
    }
    ensure!(
        lost.is_empty(),
        "acknowledged writes lost in the restart: {lost:?}"
    );
    ensure_eq!(
        store.get_record("signing-key").await?,
        Some(key),
        "the create-once record after the restart"
    );
    Ok(Outcome::Passed)
}
