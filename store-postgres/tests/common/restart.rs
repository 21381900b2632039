//! Restarting the test server for rule 18 (`StoreFactory::restart_server`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use broker_core::{BrokerStore, StoreError};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use super::{Flavor, flavored_pool, flavored_store};

/// A store with a 1 s acquire timeout and a 3 s operation timeout must
/// answer within this, server up or down (a PostgreSQL-specific bound,
/// tighter than the suite's).
pub const OP_BOUND: Duration = Duration::from_secs(5);

fn failed(what: String) -> StoreError {
    StoreError::backend("restart_server", std::io::Error::other(what))
}

/// Whether a fresh connection to `url` succeeds within a second.
async fn answers(url: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), PgConnection::connect(url)).await,
        Ok(Ok(_))
    )
}

/// Run `cmd` (stop the server as a crash would, pause, start) and return
/// how long the server did not accept connections. Meanwhile a store with
/// short timeouts probes the server: while it is down, a call must fail
/// with `Unavailable` within [`OP_BOUND`].
pub async fn restart(cmd: &str, url: &str) -> Result<Duration, StoreError> {
    let probe = flavored_store(
        flavored_pool(url, Flavor::ShortTimeouts)
            .await
            .map_err(|e| StoreError::unavailable("restart_server", e))?,
        Flavor::ShortTimeouts,
    );
    let done = Arc::new(AtomicBool::new(false));
    let command = {
        let cmd = cmd.to_owned();
        let done = Arc::clone(&done);
        tokio::task::spawn_blocking(move || {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .status();
            done.store(true, Ordering::SeqCst);
            status
        })
    };

    // Until the command is done: find the outage and time calls during it.
    let mut went_down: Option<Instant> = None;
    let mut slowest_unavailable = Duration::ZERO;
    while !done.load(Ordering::SeqCst) {
        let start = Instant::now();
        match probe.health().await {
            Ok(()) => {}
            Err(StoreError::Unavailable { .. }) => {
                went_down.get_or_insert(start);
                slowest_unavailable = slowest_unavailable.max(start.elapsed());
            }
            Err(other) => return Err(failed(format!("probe during the restart: {other}"))),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = command
        .await
        .map_err(|e| failed(format!("restart command task: {e}")))?
        .map_err(|e| failed(format!("restart command did not run: {e}")))?;
    if !status.success() {
        return Err(failed(format!("restart command failed: {status}")));
    }
    let went_down = went_down.ok_or_else(|| {
        failed("no call failed while the restart command ran: was the server down?".into())
    })?;
    if slowest_unavailable > OP_BOUND {
        return Err(failed(format!(
            "a call took {slowest_unavailable:?} to fail while the server was down \
             (bound {OP_BOUND:?})"
        )));
    }
    for _ in 0..100 {
        if answers(url).await {
            return Ok(went_down.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(failed("the server did not come back within 10 s".into()))
}
