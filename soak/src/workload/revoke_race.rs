//! The revoke race (contract rule 10 across processes): a revocation of a
//! subject races every process's saves of that subject, and reads go on
//! long after, past the revocation marker's keep time.
//!
//! Round `n` is a wall-clock slot shared by every process and concerns
//! subject [`race_subject`]`(n)`. Each revoke-race actor of each process:
//!
//! 1. at the start of the slot saves a "login" session
//!    [`race_jti`]`(n, actor, 'a')`;
//! 2. a quarter into the slot, at a random moment within a short window,
//!    refreshes it: takes the login and saves the rotated session
//!    [`race_jti`]`(n, actor, 'b')` (saved whatever the take returned: a
//!    refresh in flight);
//! 3. one actor per round (`n` modulo the number of actors, so it is in
//!    some process) revokes the subject within the same window, through
//!    the store with an explicit [`Revocation`]: `revoked_at` is the
//!    slot's start second and `keep_until` [`KEEP_SECS`] later, so the
//!    marker passes its keep time and purges may forget it during the run;
//! 4. in the second half of the slot reads its own rotated session, then
//!    random sessions of every actor of recent rounds (up to
//!    [`LOOKBACK_MS`] back, well past the keep time, and not before its own
//!    first round): mostly get, now and then take; the revoker purges now
//!    and then.
//!
//! Every session's `auth_time` is mostly the revocation second itself (the
//! inclusive boundary) or the second before, so the round's revocation
//! hides it; now and then the second after (a login after the logout),
//! which it must not hide. Every write has a unique generation, so the
//! checker (`check::revocation`) can tell, from the logged call times
//! alone, whether a read that began after the revocation returned returned
//! a session the revocation hides.

use std::io;
use std::sync::Arc;

use broker_core::{Revocation, TokenVault, unix_now};

use super::{Actor, Plan, Totals, make_session, roll, sleep_until_wall_ms, wall_ms};
use crate::log::{OpKind, Outcome, begin};

/// How long (seconds after `revoked_at`) a race round's revocation marker
/// is kept: short, so markers pass their keep time during the run.
pub const KEEP_SECS: i64 = 2;

/// How far back (ms) the race actors read earlier rounds: more than twice
/// [`KEEP_SECS`], so many reads concern rounds whose marker has passed its
/// keep time and may have been purged.
pub const LOOKBACK_MS: i64 = 5_000;

/// The subject of race round `round`.
pub fn race_subject(round: i64) -> String {
    format!("rr{round}")
}

/// The session id race actor `actor` writes in round `round`: `part` is
/// `'a'` for the login, `'b'` for the rotated session.
pub fn race_jti(round: i64, actor: u32, part: char) -> String {
    format!("rr{round}.r{actor}.{part}")
}

impl Actor<'_> {
    async fn race_save(
        &mut self,
        jti: &str,
        sub: &str,
        auth_time: i64,
        expires_at: i64,
    ) -> io::Result<Outcome> {
        let generation = self.generation();
        let (session, contents) = make_session(jti, sub, &generation, expires_at, auth_time);
        let mut b = begin(OpKind::Save);
        b.jti = Some(jti.to_owned());
        b.raced = true;
        b.written = Some(contents);
        self.store_session(b, session).await
    }

    async fn race_read(&mut self, op: OpKind, jti: &str, sub: &str) -> io::Result<Outcome> {
        let mut b = begin(op);
        b.jti = Some(jti.to_owned());
        b.sub = Some(sub.to_owned());
        b.raced = true;
        self.read_logged(b).await
    }
}

/// One revoke-race actor (see the module docs), named `r{index}`.
pub(super) async fn revoke_race(
    vault: Arc<TokenVault>,
    plan: Plan,
    index: u32,
) -> io::Result<Totals> {
    let name = format!("r{index}");
    let mut actor = Actor {
        vault: &vault,
        log: crate::log::OpLog::create(&plan.log_dir, &name, plan.incarnation)?,
        totals: Totals::default(),
        revoked: Default::default(),
    };
    let participants = (plan.workers * plan.race_tasks).max(1);
    let slot = i64::try_from(plan.slot_ms.max(8)).unwrap_or(500);
    let window = u32::try_from((slot / 10).clamp(2, 25)).unwrap_or(2);
    let back = u32::try_from((LOOKBACK_MS / slot).max(1)).unwrap_or(1);
    let gap = u32::try_from(slot / 16).unwrap_or(0);
    let mut first = None;
    loop {
        let n = wall_ms() / slot + 1;
        let start = n * slot;
        if start + slot > plan.until_wall_ms {
            break;
        }
        sleep_until_wall_ms(start).await;
        let first = *first.get_or_insert(n);
        let sub = race_subject(n);
        let revoked_at = start.div_euclid(1000);
        let auth_time = match roll(100) {
            0..60 => revoked_at,
            60..80 => revoked_at - 1,
            _ => revoked_at + 1,
        };
        let expires_at = unix_now() + 3600;
        let login = race_jti(n, index, 'a');
        actor.race_save(&login, &sub, auth_time, expires_at).await?;

        let revoker = n.rem_euclid(i64::from(participants)) == i64::from(index);
        let refresh_at = start + slot / 4 + i64::from(roll(window));
        let revoke_at = start + slot / 4 + i64::from(roll(window));
        let revocation = Revocation {
            sub: sub.clone(),
            revoked_at,
            keep_until: revoked_at + KEEP_SECS,
        };
        let mut pending = revoker.then_some(revocation);
        if revoke_at < refresh_at
            && let Some(r) = pending.take()
        {
            sleep_until_wall_ms(revoke_at).await;
            actor.revoke_logged(r, true).await?;
        }
        sleep_until_wall_ms(refresh_at).await;
        actor.race_read(OpKind::Take, &login, &sub).await?;
        let rotated = race_jti(n, index, 'b');
        actor
            .race_save(&rotated, &sub, auth_time, expires_at)
            .await?;
        if let Some(r) = pending.take() {
            sleep_until_wall_ms(revoke_at).await;
            actor.revoke_logged(r, true).await?;
        }

        for k in 0..4i64 {
            sleep_until_wall_ms(start + slot / 2 + k * slot / 8 + i64::from(roll(gap))).await;
            if wall_ms() >= plan.until_wall_ms {
                break;
            }
            let (m, who, part) = if k == 0 {
                (n, index, 'b')
            } else {
                let part = if roll(2) == 0 { 'a' } else { 'b' };
                let back = u32::try_from(n - first).map_or(back, |run| run.min(back));
                (n - i64::from(roll(back + 1)), roll(participants), part)
            };
            let op = if k > 0 && roll(100) < 20 {
                OpKind::Take
            } else {
                OpKind::Get
            };
            actor
                .race_read(op, &race_jti(m, who, part), &race_subject(m))
                .await?;
        }
        if revoker && roll(3) == 0 {
            actor.purge(true).await?;
        }
    }
    Ok(actor.totals)
}
