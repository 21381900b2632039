//! Rule 18 on PostgreSQL, as the suite's reusable case: the server restarts
//! (a crash: `pg_ctl stop -m immediate`, a pause, a start, through
//! `BROKER_TEST_POSTGRES_RESTART_CMD`) under a workload. The factory's
//! stores wait at most 1 s for a connection and 3 s per operation, and its
//! restart hook also checks that, while the server is down, a call fails
//! with `Unavailable` within 5 s. Its own test binary, because the restart
//! disturbs every other test talking to the server.
//!
//! Under `CI=true` a missing restart command is a failure, not a skip.

mod common;

use common::{Flavor, PgFactory};

async fn factory() -> Option<PgFactory> {
    let mut factory = PgFactory::with_flavor(Flavor::ShortTimeouts).await?;
    match std::env::var("BROKER_TEST_POSTGRES_RESTART_CMD") {
        Ok(cmd) if !cmd.trim().is_empty() => factory.restart_cmd = Some(cmd),
        _ => assert!(
            !conformance::provision::in_ci(),
            "CI=true and BROKER_TEST_POSTGRES_RESTART_CMD is not set \
             (eval \"$(scripts/servers/postgres.sh start)\"): rule 18 cannot be skipped in CI"
        ),
    }
    Some(factory)
}

conformance::restart_suite!(factory);
