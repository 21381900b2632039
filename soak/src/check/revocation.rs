//! No revoked session returned (contract rule 10), by happens-before alone.
//!
//! For every acknowledged revocation `R` — its subject, `revoked_at`,
//! `keep_until` and the wall time its call *returned* — and every read that
//! *began* after that return (a get, a take, or the final scan) and
//! returned a session of that subject with `auth_time <= revoked_at`: the
//! read is a [`ViolationKind::RevokedReturned`] if `R` covers the write
//! that stored the returned generation, i.e. that write was acknowledged
//! and returned before `keep_until` (in whole seconds, as a store compares
//! it), so the store decided on it while the marker was kept. Whether the
//! save came before the revocation, raced it, or came after it returned,
//! and whether the marker has passed its keep time or been purged since,
//! does not matter: "never" has no expiry. Not covered, so never judged: a
//! write that failed or never finished (it may land at any later time), or
//! one that returned at or after `keep_until` (a refresh in flight longer
//! than the keep time is allowed to come back). A revocation that failed
//! is not used either. Each revocation is judged on its own; merged
//! markers are only wider, so this is sound for them too.
//!
//! No grace period or "within N ms" judgement is made: only the order of
//! logged stamps (one call's begin after another's end, all processes on
//! one machine, compared by wall clock) and the revocation's own times.
//!
//! The property is checked for every revocation in the logs, the mixed
//! workload's too; the [`RevocationFigures`] are of the revoke race
//! (`workload::revoke_race`), whose jtis and subjects every race actor
//! writes, reads and revokes, so they stay out of the owner model. For the
//! race's sessions in the final scan, this module also checks what needs
//! no owner: each is readable, live, written to that jti with those
//! contents, and not one a take returned; and a *later login* — a race
//! session with `auth_time` after `revoked_at`, saved after its subject's
//! every revocation returned, that no take may have removed — is there (a
//! revocation hides only up to its boundary).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::{Checker, ViolationKind};
use crate::log::{Contents, Op, OpKind, Outcome};

/// Figures of the revoke race.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevocationFigures {
    /// Acknowledged revocations of race subjects.
    pub revocations: u64,
    /// Acknowledged saves of race sessions.
    pub saves: u64,
    /// Of those, saves a revocation covers: no read begun after it
    /// returned may return them.
    pub covered: u64,
    /// Covered saves whose call overlapped the revocation's call.
    pub overlapping: u64,
    /// Covered saves begun after the revocation had returned (a refresh
    /// landing after the logout: the marker must stop it).
    pub after: u64,
    /// Reads of race sessions begun after their subject's revocation
    /// returned (each judged).
    pub reads_after: u64,
    /// Of those, begun at or after the marker's keep time.
    pub reads_past_keep: u64,
    /// Reads after a revocation that returned a later login (not hidden).
    pub later_logins_read: u64,
    /// Race sessions in the final scan (each judged).
    pub scanned: u64,
    /// Later logins that had to be in the final scan.
    pub later_logins_kept: u64,
}

impl fmt::Display for RevocationFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "revoke race: {} revocations; {} saves, {} covered ({} overlapping the revoke, \
             {} begun after it returned); {} reads after a revoke ({} past the marker's keep \
             time, {} returned a later login); {} scanned; {} later logins had to survive",
            self.revocations,
            self.saves,
            self.covered,
            self.overlapping,
            self.after,
            self.reads_after,
            self.reads_past_keep,
            self.later_logins_read,
            self.scanned,
            self.later_logins_kept
        )
    }
}

/// An acknowledged revocation.
#[derive(Debug, Clone, Copy)]
struct Rev<'a> {
    actor: &'a str,
    revoked_at: i64,
    keep_until: i64,
    begin_ns: i64,
    end_ns: i64,
}

impl Rev<'_> {
    /// True if this revocation hides `c`, stored by `write`, from every
    /// read begun after it returned.
    fn covers(&self, write: &Op, c: &Contents) -> bool {
        matches!(write.outcome(), Some(Outcome::Done))
            && c.auth_time <= self.revoked_at
            && write.after().wall_secs() < self.keep_until
    }
}

impl<'a> Checker<'a> {
    pub(super) fn check_revocations(&mut self) {
        let ops = self.ops;
        let mut revs: HashMap<&'a str, Vec<Rev<'a>>> = HashMap::new();
        let mut unsure: BTreeSet<&'a str> = BTreeSet::new();
        for op in ops.iter().filter(|op| op.begin.op == OpKind::Revoke) {
            let sub = op.begin.sub.as_deref().unwrap_or("");
            if !op.acknowledged() {
                unsure.insert(sub);
                continue;
            }
            let (Some(revoked_at), Some(keep_until)) = (op.begin.revoked_at, op.begin.keep_until)
            else {
                self.violation(ViolationKind::BadLog, sub, "a revoke without its times");
                continue;
            };
            if op.begin.raced {
                self.figures.revocation.revocations += 1;
            }
            revs.entry(sub).or_default().push(Rev {
                actor: &op.begin.actor,
                revoked_at,
                keep_until,
                begin_ns: op.begin.at.wall_ns,
                end_ns: op.end_wall_ns(),
            });
        }
        self.count_saves(&revs);
        for op in ops {
            if !matches!(op.begin.op, OpKind::Get | OpKind::Take) {
                continue;
            }
            let jti = op.begin.jti.as_deref().unwrap_or("");
            let began = op.begin.at.wall_ns;
            let after: Vec<&Rev<'_>> = match (op.begin.raced, op.begin.sub.as_deref()) {
                (true, Some(sub)) => revs
                    .get(sub)
                    .into_iter()
                    .flatten()
                    .filter(|r| r.end_ns < began)
                    .collect(),
                _ => Vec::new(),
            };
            if !after.is_empty() {
                self.figures.revocation.reads_after += 1;
                let secs = op.begin.at.wall_secs();
                if after.iter().any(|r| secs >= r.keep_until) {
                    self.figures.revocation.reads_past_keep += 1;
                }
            }
            if let Some(Outcome::Found { session }) = op.outcome() {
                self.judge(op.begin.op.name(), jti, began, session, &revs);
                if !after.is_empty() && after.iter().all(|r| session.auth_time > r.revoked_at) {
                    self.figures.revocation.later_logins_read += 1;
                }
            }
        }
        self.check_race_scan(&revs, &unsure);
    }

    fn count_saves(&mut self, revs: &HashMap<&'a str, Vec<Rev<'a>>>) {
        let figures = &mut self.figures.revocation;
        for op in self.ops {
            let Some(c) = op.begin.written.as_ref() else {
                continue;
            };
            if !op.begin.raced || !matches!(op.outcome(), Some(Outcome::Done)) {
                continue;
            }
            figures.saves += 1;
            let covering: Vec<&Rev<'_>> = revs
                .get(c.sub.as_str())
                .into_iter()
                .flatten()
                .filter(|r| r.covers(op, c))
                .collect();
            if covering.is_empty() {
                continue;
            }
            figures.covered += 1;
            let (begin, end) = (op.begin.at.wall_ns, op.end_wall_ns());
            if covering
                .iter()
                .any(|r| begin <= r.end_ns && end >= r.begin_ns)
            {
                figures.overlapping += 1;
            }
            if covering.iter().any(|r| begin > r.end_ns) {
                figures.after += 1;
            }
        }
    }

    /// Judge one returned session: a violation if a revocation that
    /// returned before `began_ns` hides it.
    fn judge(
        &mut self,
        what: &str,
        jti: &str,
        began_ns: i64,
        session: &Contents,
        revs: &HashMap<&'a str, Vec<Rev<'a>>>,
    ) {
        // Other checks report unknown or altered contents.
        let Some(&w) = self.writes.get(session.generation.as_str()) else {
            return;
        };
        let write = &self.ops[w];
        let Some(c) = write.begin.written.as_ref() else {
            return;
        };
        if write.begin.jti.as_deref() != Some(jti) || c != session {
            return;
        }
        let Some(r) = revs
            .get(c.sub.as_str())
            .into_iter()
            .flatten()
            .find(|r| r.end_ns < began_ns && r.covers(write, c))
        else {
            return;
        };
        let saved = if write.end_wall_ns() < r.begin_ns {
            "before the revocation began"
        } else if write.begin.at.wall_ns > r.end_ns {
            "after the revocation returned"
        } else {
            "while the revocation ran"
        };
        let past = if began_ns.div_euclid(1_000_000_000) >= r.keep_until {
            ", past the marker's keep time"
        } else {
            ""
        };
        let detail = format!(
            "revoked session returned: {what} began {:.1} ms after the revocation of {} \
             (revoked_at {}, keep_until {}, by {}) returned{past}, and returned {} \
             (auth_time {}), saved {saved} by {}",
            (began_ns - r.end_ns) as f64 / 1e6,
            c.sub,
            r.revoked_at,
            r.keep_until,
            r.actor,
            c.generation,
            c.auth_time,
            write.begin.actor
        );
        self.violation(ViolationKind::RevokedReturned, jti, detail);
    }

    fn check_race_scan(
        &mut self,
        revs: &HashMap<&'a str, Vec<Rev<'a>>>,
        unsure: &BTreeSet<&'a str>,
    ) {
        let ops = self.ops;
        let scan = self.scan;
        let began = scan.before.wall_ns;
        for s in &scan.sessions {
            if let Some(c) = &s.contents {
                self.judge("the final scan", &s.jti, began, c, revs);
            }
        }
        let mut jtis: BTreeMap<&'a str, (Vec<&'a Op>, Vec<&'a Op>)> = BTreeMap::new();
        for op in ops.iter().filter(|op| op.begin.raced) {
            let Some(jti) = op.begin.jti.as_deref() else {
                continue;
            };
            let (writes, takes) = jtis.entry(jti).or_default();
            if op.begin.op.writes_session() {
                writes.push(op);
            } else if op.begin.op == OpKind::Take {
                takes.push(op);
            }
        }
        let scanned = self.scanned();
        for (jti, (writes, takes)) in jtis {
            let hits = scanned.get(jti).cloned().unwrap_or_default();
            self.figures.revocation.scanned += hits.len() as u64;
            if let Some(found) = self.scanned_contents(jti, &hits) {
                let ours = writes
                    .iter()
                    .any(|w| w.begin.written.as_ref() == Some(found));
                if !ours {
                    let detail = format!(
                        "the scan holds {} under a jti it was not written to",
                        found.generation
                    );
                    self.violation(ViolationKind::UnknownContents, jti, detail);
                } else if self.takes.contains_key(found.generation.as_str()) {
                    let detail =
                        format!("the scan holds {}, which a take returned", found.generation);
                    self.violation(ViolationKind::Phantom, jti, detail);
                }
            }
            // A later login that nothing may have removed must be there.
            let [write] = writes.as_slice() else {
                continue;
            };
            let Some(c) = write.begin.written.as_ref() else {
                continue;
            };
            let of_sub = revs.get(c.sub.as_str()).map_or(&[][..], Vec::as_slice);
            let later_login = matches!(write.outcome(), Some(Outcome::Done))
                && !unsure.contains(c.sub.as_str())
                && !of_sub.is_empty()
                && of_sub
                    .iter()
                    .all(|r| r.end_ns < write.begin.at.wall_ns && c.auth_time > r.revoked_at);
            let maybe_taken = takes.iter().any(|t| {
                t.ambiguous()
                    || matches!(t.outcome(), Some(Outcome::Found { session }) if session == c)
            });
            if !later_login || maybe_taken || c.expires_at <= scan.after.wall_secs() {
                continue;
            }
            self.figures.revocation.later_logins_kept += 1;
            if !hits
                .iter()
                .any(|h| h.contents.as_ref().is_some_and(|f| f == c))
            {
                let detail = format!(
                    "missing from the final scan: {} (auth_time {}) was saved after every \
                     revocation of {} returned, later than all of them, and never taken",
                    c.generation, c.auth_time, c.sub
                );
                self.violation(ViolationKind::LostWrite, jti, detail);
            }
        }
    }
}

#[cfg(test)]
mod tests;
