//! The checker: reads every actor's operation log plus a final scan of the
//! store and proves that
//!
//! - **no acknowledged write was lost**: a session whose owner's history
//!   says it must be there (its last acknowledged write was a save or create
//!   and nothing later removed it, expired it or could have) is returned by
//!   every get and by the final scan, with the same contents;
//! - **no session was taken twice**: per write (generation), at most one take
//!   across all processes returned it, and no get returned it after a take
//!   of it had finished;
//! - **no expired session was returned**: no get, take or scan returned a
//!   session whose `expires_at` was at or before the wall time before the
//!   call;
//! - **no revoked session was returned** (contract rule 10): no get, take
//!   or scan that began after a revocation of a subject returned gave back
//!   a session that revocation hides, however the save raced it and
//!   whether or not its marker was purged since (see [`revocation`]);
//!
//! and, along the way, that every session returned is one that was written
//! (same contents), that an owner's reads agree with its own history, and
//! that a create never replaced a live session.
//!
//! # The model
//!
//! The workload gives every jti one *owner* actor that alone writes, reads,
//! deletes and revokes it, so its expected state is sequential. The checker
//! replays each owner's operations in order over a set of *possible*
//! states (absent, or holding generation g). An acknowledged write makes
//! the state definite; a call that failed or never finished (the worker was
//! killed) may or may not have taken effect — now or at any later time (a
//! statement that outlived its client's timeout, a retried command) — so
//! its effect is added to the possibilities and stays possible after every
//! later operation on that jti (a failed revocation, on every session of
//! its subject). A read is a violation only if no possibility explains it,
//! and it narrows the possibilities to those that do. Expiry and revocation
//! are judged with the call's wall-clock window `[before, after]` in whole
//! seconds: a session is *possibly visible* if `expires_at > before` and no
//! acknowledged revocation hides it, and *possibly invisible* if
//! `expires_at <= after` or any revocation may hide it. So a jti whose last
//! write failed is not silently passed: the final scan must still show one
//! of the states its history allows, and only if one of them is "not
//! visible" may it be missing. To keep the rest of the run strictly
//! checked, the workload moves an actor to fresh jtis and subjects (a new
//! *epoch*) after each failed call, so ambiguity stays confined to the jtis
//! it touched.
//!
//! The *contested* set is written by one owner and taken by every actor at
//! the same moment; there, the checker proves at most one take per
//! generation, and checks the last acknowledged write against the scan
//! unless a take could have removed it (one succeeded, or one failed or
//! never finished at any time).
//!
//! The *revoke race* (sessions and subjects every race actor writes, reads
//! and revokes) is outside the owner model; [`revocation`] checks it with
//! happens-before alone.
//!
//! One module per property: `reads` (no history needed), `owned` (the
//! owner model), `contested`, [`revocation`].
//!
//! Times across processes are compared by wall clock: all workers run on one
//! machine.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::log::{Contents, Op, OpKind, Outcome, Scan, Scanned};

mod contested;
mod owned;
mod reads;
pub mod revocation;
#[cfg(test)]
mod tests;

use owned::State;

/// What a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// A session that must be there was missing from a get, take or the
    /// final scan.
    LostWrite,
    /// Two takes returned the same generation.
    TakenTwice,
    /// A get, take or scan returned a session at or past its expiry.
    ExpiredReturned,
    /// A read returned something never written to that jti, with other
    /// contents, or before it was written.
    UnknownContents,
    /// A get returned a generation after a take of it had finished.
    ReadAfterTake,
    /// An owner's read disagrees with its own history (a deleted,
    /// replaced, taken or revoked session came back; a create was refused
    /// with nothing there).
    WrongRead,
    /// A create succeeded while a live session held the id.
    CreateOverLive,
    /// The final scan holds a session no history allows there.
    Phantom,
    /// The final scan found a session the vault cannot open.
    Unreadable,
    /// A get, take or scan that began after an acknowledged revocation of
    /// the subject had returned gave back a session that revocation hides
    /// (see [`revocation`]).
    RevokedReturned,
    /// The logs break the workload's own rules (ownership, unique
    /// generations), so the history cannot be judged soundly.
    BadLog,
}

/// One broken guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What kind.
    pub kind: ViolationKind,
    /// The session id concerned (a synthetic id the workload made up).
    pub jti: String,
    /// What happened.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} on {}: {}", self.kind, self.jti, self.detail)
    }
}

/// Counts of one operation kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Calls that returned a result.
    pub acknowledged: u64,
    /// Calls that returned an error.
    pub failed: u64,
    /// Calls that never finished (the worker was killed).
    pub unfinished: u64,
}

/// Figures of a checked run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Distinct actors in the logs.
    pub actors: usize,
    /// Operations by kind.
    pub ops: BTreeMap<OpKind, OpCounts>,
    /// Failed calls by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Takes of contested sessions.
    pub contested_takes: u64,
    /// Contested takes that returned a session.
    pub contested_wins: u64,
    /// Acknowledged writes of contested sessions (one contest round each).
    pub contested_rounds: u64,
    /// Contest rounds whose session was taken (by exactly one taker, or a
    /// violation is reported).
    pub contested_rounds_taken: u64,
    /// Jtis whose final state was definite and visible: they had to be in
    /// the scan with exactly that contents.
    pub final_expected_present: u64,
    /// Jtis with several possible final states (ambiguous calls).
    pub final_ambiguous: u64,
    /// Contested jtis left out of the final lost-write check (last write
    /// failed or may have been taken or expired).
    pub contested_excluded: u64,
    /// Sessions in the final scan.
    pub scanned: u64,
    /// The revoke race.
    pub revocation: revocation::RevocationFigures,
}

impl Figures {
    /// All operations.
    pub fn total(&self) -> u64 {
        self.ops
            .values()
            .map(|c| c.acknowledged + c.failed + c.unfinished)
            .sum()
    }

    /// All acknowledged operations.
    pub fn acknowledged(&self) -> u64 {
        self.ops.values().map(|c| c.acknowledged).sum()
    }

    /// All failed or unfinished operations.
    pub fn errored(&self) -> u64 {
        self.ops.values().map(|c| c.failed + c.unfinished).sum()
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unfinished: u64 = self.ops.values().map(|c| c.unfinished).sum();
        write!(
            f,
            "{} actors, {} operations: {} acknowledged, {} errored ({} failed, {} unfinished)",
            self.actors,
            self.total(),
            self.acknowledged(),
            self.errored(),
            self.errored() - unfinished,
            unfinished
        )?;
        if !self.errors.is_empty() {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            write!(f, "; failed by kind: {}", errors.join(", "))?;
        }
        let kinds: Vec<String> = self
            .ops
            .iter()
            .map(|(k, c)| {
                let mut s = format!("{} {}", k.name(), c.acknowledged + c.failed + c.unfinished);
                if c.failed + c.unfinished > 0 {
                    s += &format!(" ({} err)", c.failed + c.unfinished);
                }
                s
            })
            .collect();
        write!(
            f,
            "\n  by kind: {}\n  contested: {} takes, {} won; {} rounds, {} taken\n  \
             final: {} sessions scanned, {} jtis had to be present, {} ambiguous, \
             {} contested excluded",
            kinds.join(", "),
            self.contested_takes,
            self.contested_wins,
            self.contested_rounds,
            self.contested_rounds_taken,
            self.scanned,
            self.final_expected_present,
            self.final_ambiguous,
            self.contested_excluded
        )?;
        write!(f, "\n  {}", self.revocation)
    }
}

/// The checker's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Everything that broke; empty for a clean run.
    pub violations: Vec<Violation>,
    /// Figures of the run.
    pub figures: Figures,
}

impl Report {
    /// Violations of one kind.
    pub fn count(&self, kind: ViolationKind) -> usize {
        self.violations.iter().filter(|v| v.kind == kind).count()
    }
}

struct Checker<'a> {
    ops: &'a [Op],
    scan: &'a Scan,
    violations: Vec<Violation>,
    figures: Figures,
    /// generation -> index of the op that wrote it
    writes: HashMap<&'a str, usize>,
    /// generation -> takes that returned it
    takes: HashMap<&'a str, Vec<usize>>,
}

/// Check a run: `ops` from every actor's log, `scan` taken after all
/// actors stopped.
pub fn check(ops: &[Op], scan: &Scan) -> Report {
    let mut c = Checker {
        ops,
        scan,
        violations: Vec::new(),
        figures: Figures::default(),
        writes: HashMap::new(),
        takes: HashMap::new(),
    };
    c.count();
    c.index_writes();
    c.check_reads();
    c.check_revocations();
    if c.check_ownership() {
        let states = c.replay_owners();
        c.check_final_owned(&states);
        c.check_contested();
        c.check_scan_strays(&states);
    }
    Report {
        violations: c.violations,
        figures: c.figures,
    }
}

impl<'a> Checker<'a> {
    fn violation(&mut self, kind: ViolationKind, jti: &str, detail: impl Into<String>) {
        self.violations.push(Violation {
            kind,
            jti: jti.to_owned(),
            detail: detail.into(),
        });
    }

    fn contents(&self, generation: &str) -> Option<&'a Contents> {
        self.writes
            .get(generation)
            .and_then(|&i| self.ops[i].begin.written.as_ref())
    }

    fn count(&mut self) {
        let mut actors = BTreeSet::new();
        for op in self.ops {
            actors.insert(op.begin.actor.as_str());
            let counts = self.figures.ops.entry(op.begin.op).or_default();
            match op.outcome() {
                None => counts.unfinished += 1,
                Some(Outcome::Failed { error }) => {
                    counts.failed += 1;
                    *self.figures.errors.entry(error.clone()).or_default() += 1;
                }
                Some(_) => counts.acknowledged += 1,
            }
            if op.begin.contested && op.begin.op == OpKind::Take {
                self.figures.contested_takes += 1;
                if matches!(op.outcome(), Some(Outcome::Found { .. })) {
                    self.figures.contested_wins += 1;
                }
            }
            if op.begin.contested
                && op.begin.op.writes_session()
                && matches!(op.outcome(), Some(Outcome::Done))
            {
                self.figures.contested_rounds += 1;
            }
        }
        self.figures.actors = actors.len();
        self.figures.scanned = self.scan.sessions.len() as u64;
    }

    fn index_writes(&mut self) {
        for (i, op) in self.ops.iter().enumerate() {
            let jti = op.begin.jti.as_deref().unwrap_or("");
            match (&op.begin.written, op.begin.op.writes_session()) {
                (Some(w), true) if !jti.is_empty() => {
                    if self.writes.insert(&w.generation, i).is_some() {
                        self.violation(
                            ViolationKind::BadLog,
                            jti,
                            "a generation was written twice",
                        );
                    }
                }
                (None, false) => {}
                _ => self.violation(
                    ViolationKind::BadLog,
                    jti,
                    "a write without contents or jti, or contents on a non-write",
                ),
            }
        }
    }

    fn scanned(&self) -> BTreeMap<&'a str, Vec<&'a Scanned>> {
        let mut map: BTreeMap<&str, Vec<&Scanned>> = BTreeMap::new();
        let scan: &'a Scan = self.scan;
        for s in &scan.sessions {
            map.entry(s.jti.as_str()).or_default().push(s);
        }
        map
    }

    /// A scanned session must be readable, live, and written with those
    /// contents; returns its contents.
    fn scanned_contents(&mut self, jti: &str, hits: &[&'a Scanned]) -> Option<&'a Contents> {
        if hits.len() > 1 {
            self.violation(
                ViolationKind::Phantom,
                jti,
                "the scan returned the session twice",
            );
        }
        let hit = hits.first()?;
        let Some(c) = hit.contents.as_ref() else {
            let detail = format!(
                "the scan found a session the vault cannot open ({})",
                hit.error.as_deref().unwrap_or("?")
            );
            self.violation(ViolationKind::Unreadable, jti, detail);
            return None;
        };
        if c.expires_at <= self.scan.before.wall_secs() {
            let detail = format!("the scan returned {} past its expiry", c.generation);
            self.violation(ViolationKind::ExpiredReturned, jti, detail);
        }
        match self.contents(&c.generation) {
            Some(w) if w == c => {}
            _ => {
                let detail = format!("the scan returned {} with unknown contents", c.generation);
                self.violation(ViolationKind::UnknownContents, jti, detail);
            }
        }
        Some(c)
    }

    /// Scanned sessions no operation ever touched.
    fn check_scan_strays(&mut self, states: &BTreeMap<&'a str, State<'a>>) {
        let known: BTreeSet<&str> = self
            .ops
            .iter()
            .filter_map(|op| op.begin.jti.as_deref())
            .collect();
        let strays: BTreeSet<&str> = self
            .scan
            .sessions
            .iter()
            .map(|s| s.jti.as_str())
            .filter(|j| !known.contains(j) && !states.contains_key(j))
            .collect();
        for jti in strays {
            self.violation(
                ViolationKind::Phantom,
                jti,
                "the scan holds a session nobody wrote",
            );
        }
    }
}
