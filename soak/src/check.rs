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
//! Times across processes are compared by wall clock: all workers run on one
//! machine.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::log::{Contents, Op, OpKind, Outcome, Scan, Scanned};

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
        )
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

/// A revocation seen in an owner's history: its time, and whether it was
/// acknowledged (else it may or may not have happened).
type Rev = (i64, bool);

/// The possible states of one jti: absent, or holding one written session.
type State<'a> = Vec<Option<&'a Contents>>;

fn hidden_surely(c: &Contents, revs: &[Rev]) -> bool {
    revs.iter().any(|&(r, acked)| acked && r >= c.auth_time)
}

fn hidden_maybe(c: &Contents, revs: &[Rev]) -> bool {
    revs.iter().any(|&(r, _)| r >= c.auth_time)
}

fn maybe_visible(c: &Contents, before_s: i64, revs: &[Rev]) -> bool {
    c.expires_at > before_s && !hidden_surely(c, revs)
}

fn maybe_invisible(c: &Contents, after_s: i64, revs: &[Rev]) -> bool {
    c.expires_at <= after_s || hidden_maybe(c, revs)
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

    /// Checks that need no history: contents, expiry, single take.
    fn check_reads(&mut self) {
        for (i, op) in self.ops.iter().enumerate() {
            let Some(Outcome::Found { session }) = op.outcome() else {
                continue;
            };
            let jti = op.begin.jti.as_deref().unwrap_or("");
            match self.writes.get(session.generation.as_str()).copied() {
                None => self.violation(
                    ViolationKind::UnknownContents,
                    jti,
                    format!("{} returned a generation nobody wrote", op.begin.op.name()),
                ),
                Some(w) => {
                    let write = &self.ops[w];
                    if write.begin.jti.as_deref() != Some(jti) {
                        self.violation(
                            ViolationKind::UnknownContents,
                            jti,
                            "returned another session's generation",
                        );
                    } else if write.begin.written.as_ref() != Some(session) {
                        self.violation(
                            ViolationKind::UnknownContents,
                            jti,
                            format!(
                                "{} returned {} with other contents than written",
                                op.begin.op.name(),
                                session.generation
                            ),
                        );
                    } else if op.end_wall_ns() < write.begin.at.wall_ns {
                        self.violation(
                            ViolationKind::UnknownContents,
                            jti,
                            format!("returned {} before it was written", session.generation),
                        );
                    }
                }
            }
            if session.expires_at <= op.begin.at.wall_secs() {
                self.violation(
                    ViolationKind::ExpiredReturned,
                    jti,
                    format!(
                        "{} returned {} (expires_at {}) at wall time {}",
                        op.begin.op.name(),
                        session.generation,
                        session.expires_at,
                        op.begin.at.wall_secs()
                    ),
                );
            }
            if op.begin.op == OpKind::Take {
                self.takes
                    .entry(session.generation.as_str())
                    .or_default()
                    .push(i);
            }
        }
        let mut twice: Vec<(&str, usize)> = self
            .takes
            .iter()
            .filter(|(_, t)| t.len() > 1)
            .map(|(g, t)| (*g, t[0]))
            .collect();
        twice.sort();
        for (generation, first) in twice {
            let takers: BTreeSet<&str> = self.takes[generation]
                .iter()
                .map(|&t| self.ops[t].begin.actor.as_str())
                .collect();
            let jti = self.ops[first].begin.jti.clone().unwrap_or_default();
            self.violation(
                ViolationKind::TakenTwice,
                &jti,
                format!(
                    "{generation} taken {} times (by {:?})",
                    self.takes[generation].len(),
                    takers
                ),
            );
        }
        for (i, op) in self.ops.iter().enumerate() {
            let Some(Outcome::Found { session }) = op.outcome() else {
                continue;
            };
            if op.begin.op != OpKind::Get {
                continue;
            }
            let Some(takes) = self.takes.get(session.generation.as_str()) else {
                continue;
            };
            if takes
                .iter()
                .any(|&t| t != i && self.ops[t].end_wall_ns() < op.begin.at.wall_ns)
            {
                let jti = op.begin.jti.clone().unwrap_or_default();
                let detail = format!("get returned {} after it was taken", session.generation);
                self.violation(ViolationKind::ReadAfterTake, &jti, detail);
            }
        }
    }

    /// Owned jtis are touched by one actor only; contested ones written by
    /// one; a revoked subject's sessions belong to the revoker. Without
    /// that, the sequential replay would be unsound.
    fn check_ownership(&mut self) -> bool {
        let mut owners: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut writers: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut sub_owners: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut contested: HashMap<&str, bool> = HashMap::new();
        for op in self.ops {
            let actor = op.begin.actor.as_str();
            if let Some(jti) = op.begin.jti.as_deref() {
                if *contested.entry(jti).or_insert(op.begin.contested) != op.begin.contested {
                    self.violation(ViolationKind::BadLog, jti, "jti both contested and owned");
                    return false;
                }
                if op.begin.contested {
                    if op.begin.op.writes_session() {
                        writers.entry(jti).or_default().insert(actor);
                    }
                } else {
                    owners.entry(jti).or_default().insert(actor);
                }
                if let Some(w) = &op.begin.written {
                    sub_owners.entry(&w.sub).or_default().insert(actor);
                }
            }
            if op.begin.op == OpKind::Revoke {
                let sub = op.begin.sub.as_deref().unwrap_or("");
                sub_owners.entry(sub).or_default().insert(actor);
                if op.begin.revoked_at.is_none() {
                    self.violation(ViolationKind::BadLog, sub, "a revoke without its time");
                    return false;
                }
            }
        }
        let mut ok = true;
        for (jti, actors) in owners.iter().chain(writers.iter()) {
            if actors.len() > 1 {
                self.violation(ViolationKind::BadLog, jti, "jti owned by several actors");
                ok = false;
            }
        }
        for (sub, actors) in &sub_owners {
            if actors.len() > 1 {
                self.violation(ViolationKind::BadLog, sub, "subject used by several actors");
                ok = false;
            }
        }
        ok
    }

    /// Replay each owner's sequence; returns the possible final states of
    /// every owned jti.
    fn replay_owners(&mut self) -> BTreeMap<&'a str, State<'a>> {
        let mut by_actor: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            if op.begin.contested {
                continue;
            }
            by_actor.entry(&op.begin.actor).or_default().push(i);
        }
        let mut states: BTreeMap<&'a str, State<'a>> = BTreeMap::new();
        let mut revs: HashMap<&'a str, Vec<Rev>> = HashMap::new();
        let mut pending: HashMap<&'a str, State<'a>> = HashMap::new();
        let ops = self.ops;
        for (_, mut seq) in by_actor {
            seq.sort_by_key(|&i| ops[i].order());
            for i in seq {
                self.replay_one(&ops[i], &mut states, &mut revs, &mut pending);
            }
        }
        states
    }

    /// Apply one operation of an owner to the possible states. `pending`
    /// holds, per jti, the effects of its calls that failed or never
    /// finished: such a call may take effect at any later time (a statement
    /// that outlived its client's timeout, a retried command), so its effect
    /// stays possible after every later operation.
    fn replay_one(
        &mut self,
        op: &'a Op,
        states: &mut BTreeMap<&'a str, State<'a>>,
        revs: &mut HashMap<&'a str, Vec<Rev>>,
        pending: &mut HashMap<&'a str, State<'a>>,
    ) {
        let before_s = op.begin.at.wall_secs();
        let after_s = op.after().wall_secs();
        let ambiguous = op.ambiguous();
        if op.begin.op == OpKind::Revoke {
            let sub = op.begin.sub.as_deref().unwrap_or("");
            let of_sub = |p: &Option<&Contents>| p.is_some_and(|c| c.sub == sub);
            for poss in states.values_mut() {
                if !poss.iter().any(of_sub) {
                    continue;
                }
                if ambiguous {
                    push_unique(poss, None);
                } else {
                    poss.retain(|p| !of_sub(p));
                    push_unique(poss, None);
                }
            }
            let at = op.begin.revoked_at.unwrap_or(i64::MAX);
            revs.entry(sub).or_default().push((at, !ambiguous));
            return;
        }
        let Some(jti) = op.begin.jti.as_deref() else {
            return; // purge: removes expired sessions only, which no read sees anyway
        };
        let poss = states.entry(jti).or_insert_with(|| vec![None]);
        let no_revs = Vec::new();
        let revs_of = |c: &Contents| revs.get(c.sub.as_str()).unwrap_or(&no_revs);
        let written = op.begin.written.as_ref();
        match (op.begin.op, op.outcome()) {
            (OpKind::Save | OpKind::Create, None | Some(Outcome::Failed { .. })) => {
                if written.is_some() {
                    push_unique(poss, written);
                }
            }
            (OpKind::Take | OpKind::Delete, None | Some(Outcome::Failed { .. })) => {
                push_unique(poss, None);
            }
            (OpKind::Get, None | Some(Outcome::Failed { .. })) => {}
            (OpKind::Save, Some(_)) => *poss = vec![written],
            (OpKind::Create, Some(Outcome::Conflict)) => {
                let live: State<'a> = poss
                    .iter()
                    .copied()
                    .filter(|p| p.is_some_and(|c| c.expires_at > before_s))
                    .collect();
                if live.is_empty() {
                    let detail =
                        "create was refused as a conflict while no live session could be there";
                    self.violation(ViolationKind::WrongRead, jti, detail);
                } else {
                    *poss = live;
                }
            }
            (OpKind::Create, Some(_)) => {
                let surely_live = poss.iter().all(|p| {
                    p.is_some_and(|c| c.expires_at > after_s && !hidden_maybe(c, revs_of(c)))
                });
                if surely_live {
                    let detail = "create succeeded while a live session held the id";
                    self.violation(ViolationKind::CreateOverLive, jti, detail);
                }
                *poss = vec![written];
            }
            (OpKind::Delete, Some(_)) => *poss = vec![None],
            (OpKind::Get | OpKind::Take, Some(Outcome::Found { session })) => {
                let found = poss
                    .iter()
                    .copied()
                    .flatten()
                    .find(|c| c.generation == session.generation);
                match found {
                    Some(c) => {
                        if hidden_surely(c, revs_of(c)) {
                            let detail = format!(
                                "{} returned {} of a revoked subject",
                                op.begin.op.name(),
                                session.generation
                            );
                            self.violation(ViolationKind::WrongRead, jti, detail);
                        }
                        *poss = if op.begin.op == OpKind::Take {
                            vec![None]
                        } else {
                            vec![Some(c)]
                        };
                    }
                    None => {
                        if self.writes.contains_key(session.generation.as_str()) {
                            let detail = format!(
                                "{} returned {}, which the owner's history rules out \
                                 (replaced, deleted, taken or revoked)",
                                op.begin.op.name(),
                                session.generation
                            );
                            self.violation(ViolationKind::WrongRead, jti, detail);
                        }
                        if op.begin.op == OpKind::Take {
                            *poss = vec![None];
                        }
                    }
                }
            }
            (OpKind::Get | OpKind::Take, Some(_)) => {
                let explained: State<'a> = poss
                    .iter()
                    .copied()
                    .filter(|p| p.is_none_or(|c| maybe_invisible(c, after_s, revs_of(c))))
                    .collect();
                if explained.is_empty() {
                    let gens = generations(poss);
                    let detail = format!(
                        "{} found nothing, but the session had to be there as one of {gens:?}",
                        op.begin.op.name()
                    );
                    self.violation(ViolationKind::LostWrite, jti, detail);
                } else {
                    *poss = explained;
                }
            }
            (OpKind::Revoke | OpKind::Purge, _) => {}
        }
        if ambiguous {
            match op.begin.op {
                OpKind::Save | OpKind::Create if written.is_some() => {
                    pending.entry(jti).or_default().push(written);
                }
                OpKind::Take | OpKind::Delete => pending.entry(jti).or_default().push(None),
                _ => {}
            }
        }
        for &p in pending.get(jti).into_iter().flatten() {
            push_unique(poss, p);
        }
        // A revocation that failed may still delete this subject's sessions.
        let revoke_pending = poss.iter().flatten().any(|c| {
            revs.get(c.sub.as_str())
                .is_some_and(|rs| rs.iter().any(|&(_, acked)| !acked))
        });
        if revoke_pending {
            push_unique(poss, None);
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

    fn check_final_owned(&mut self, states: &BTreeMap<&'a str, State<'a>>) {
        let scanned = self.scanned();
        let before_s = self.scan.before.wall_secs();
        let after_s = self.scan.after.wall_secs();
        // Every revocation of the run precedes the final scan.
        let mut revs: HashMap<&str, Vec<Rev>> = HashMap::new();
        for op in self.ops {
            if op.begin.op == OpKind::Revoke {
                let sub = op.begin.sub.as_deref().unwrap_or("");
                let at = op.begin.revoked_at.unwrap_or(i64::MAX);
                revs.entry(sub).or_default().push((at, op.acknowledged()));
            }
        }
        let no_revs = Vec::new();
        let revs_of = |c: &Contents| revs.get(c.sub.as_str()).unwrap_or(&no_revs);
        for (&jti, poss) in states {
            let hits = scanned.get(jti).cloned().unwrap_or_default();
            let found = self.scanned_contents(jti, &hits);
            if poss.len() > 1 {
                self.figures.final_ambiguous += 1;
            }
            if let [Some(c)] = poss.as_slice()
                && maybe_visible(c, before_s, revs_of(c))
                && !maybe_invisible(c, after_s, revs_of(c))
            {
                self.figures.final_expected_present += 1;
            }
            match found {
                Some(f) if !poss.iter().flatten().any(|c| c.generation == f.generation) => {
                    let detail = format!(
                        "the scan holds {}, which the owner's history rules out",
                        f.generation
                    );
                    self.violation(ViolationKind::Phantom, jti, detail);
                }
                None if hits.is_empty()
                    && !poss
                        .iter()
                        .any(|p| p.is_none_or(|c| maybe_invisible(c, after_s, revs_of(c)))) =>
                {
                    let gens = generations(poss);
                    let detail =
                        format!("missing from the final scan; it had to hold one of {gens:?}");
                    self.violation(ViolationKind::LostWrite, jti, detail);
                }
                _ => {}
            }
        }
    }

    fn check_contested(&mut self) {
        let ops = self.ops;
        let scanned = self.scanned();
        let after_s = self.scan.after.wall_secs();
        let mut writes: BTreeMap<&'a str, Vec<usize>> = BTreeMap::new();
        let mut takes: BTreeMap<&'a str, Vec<usize>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            if !op.begin.contested {
                continue;
            }
            let Some(jti) = op.begin.jti.as_deref() else {
                continue;
            };
            if op.begin.op.writes_session() {
                writes.entry(jti).or_default().push(i);
            } else if op.begin.op == OpKind::Take {
                takes.entry(jti).or_default().push(i);
            } else {
                writes.entry(jti).or_default();
            }
        }
        for w in writes.values().flatten() {
            if matches!(ops[*w].outcome(), Some(Outcome::Done))
                && let Some(c) = &ops[*w].begin.written
                && self.takes.contains_key(c.generation.as_str())
            {
                self.figures.contested_rounds_taken += 1;
            }
        }
        for (jti, mut ws) in writes {
            ws.sort_by_key(|&i| ops[i].order());
            let hits = scanned.get(jti).cloned().unwrap_or_default();
            let found = self.scanned_contents(jti, &hits);
            // A scanned generation must not have been taken or replaced.
            if let Some(c) = found {
                let taken = self.takes.contains_key(c.generation.as_str());
                let pos = ws.iter().position(|&i| {
                    ops[i].begin.written.as_ref().map(|w| &w.generation) == Some(&c.generation)
                });
                // (A write that failed may land after later ones.)
                let replaced = pos.is_some_and(|p| {
                    ops[ws[p]].acknowledged()
                        && ws[p + 1..]
                            .iter()
                            .any(|&i| matches!(ops[i].outcome(), Some(Outcome::Done)))
                });
                if taken || replaced {
                    let detail = format!(
                        "the scan holds {}, which was {}",
                        c.generation,
                        if taken { "taken" } else { "replaced later" }
                    );
                    self.violation(ViolationKind::Phantom, jti, detail);
                }
            }
            // The last acknowledged write must be there unless something may have removed it.
            let Some(&last) = ws.last() else { continue };
            let last_op = &ops[last];
            let Some(c) = last_op.begin.written.as_ref() else {
                continue;
            };
            if !matches!(last_op.outcome(), Some(Outcome::Done)) {
                self.figures.contested_excluded += 1;
                continue;
            }
            let taken = self.takes.contains_key(c.generation.as_str());
            // A take that failed may land at any later time.
            let maybe_taken = takes
                .get(jti)
                .is_some_and(|ts| ts.iter().any(|&t| ops[t].ambiguous()));
            if taken {
                continue;
            }
            if maybe_taken || c.expires_at <= after_s {
                self.figures.contested_excluded += 1;
                continue;
            }
            self.figures.final_expected_present += 1;
            if hits.is_empty() {
                let detail = format!(
                    "missing from the final scan: {} was acknowledged and never taken",
                    c.generation
                );
                self.violation(ViolationKind::LostWrite, jti, detail);
            } else if found.is_some_and(|f| {
                f.generation != c.generation
                    && !self
                        .writes
                        .get(f.generation.as_str())
                        .is_some_and(|&w| ops[w].ambiguous())
            }) {
                let detail = format!(
                    "the scan does not hold the last acknowledged write {}",
                    c.generation
                );
                self.violation(ViolationKind::LostWrite, jti, detail);
            }
        }
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

fn push_unique<'a>(poss: &mut State<'a>, p: Option<&'a Contents>) {
    if !poss.contains(&p) {
        poss.push(p);
    }
}

fn generations<'a>(poss: &State<'a>) -> Vec<&'a str> {
    poss.iter()
        .flatten()
        .map(|c| c.generation.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Begin, End, Scanned, Stamp, begin};

    /// Wall time of the hand-made histories: whole seconds from here.
    const T0: i64 = 1_700_000_000;

    /// A hand-made history: each call takes 1 ms, then the clock moves on.
    #[derive(Default)]
    struct H {
        ops: Vec<Op>,
        now_ns: i64,
        seqs: HashMap<String, u64>,
    }

    fn c(generation: &str, sub: &str, expires_in: i64) -> Contents {
        Contents {
            generation: generation.into(),
            digest: format!("d-{generation}"),
            sub: sub.into(),
            expires_at: T0 + expires_in,
            auth_time: T0 - 100,
        }
    }

    impl H {
        fn new() -> Self {
            Self {
                now_ns: T0 * 1_000_000_000 + 1_000,
                ..Self::default()
            }
        }

        /// Move the clock to `secs` (fractional) after `T0`.
        fn at(&mut self, secs: f64) -> &mut Self {
            self.now_ns = T0 * 1_000_000_000 + (secs * 1e9) as i64;
            self
        }

        fn push(&mut self, mut b: Begin, outcome: Option<Outcome>) -> &mut Self {
            let seq = self.seqs.entry(b.actor.clone()).or_default();
            b.seq = *seq;
            *seq += 1;
            b.at = Stamp {
                wall_ns: self.now_ns,
                mono_ns: 0,
            };
            let end = outcome.map(|outcome| End {
                actor: b.actor.clone(),
                incarnation: b.incarnation,
                seq: b.seq,
                at: Stamp {
                    wall_ns: self.now_ns + 1_000_000,
                    mono_ns: 0,
                },
                outcome,
            });
            self.now_ns += 2_000_000;
            self.ops.push(Op { begin: b, end });
            self
        }

        fn write(
            &mut self,
            actor: &str,
            op: OpKind,
            jti: &str,
            contents: Contents,
            outcome: Option<Outcome>,
        ) -> &mut Self {
            let b = Begin {
                actor: actor.into(),
                jti: Some(jti.into()),
                contested: jti.starts_with('x'),
                written: Some(contents),
                ..begin(op)
            };
            self.push(b, outcome)
        }

        fn save(&mut self, actor: &str, jti: &str, contents: Contents) -> &mut Self {
            self.write(actor, OpKind::Save, jti, contents, Some(Outcome::Done))
        }

        fn save_failed(&mut self, actor: &str, jti: &str, contents: Contents) -> &mut Self {
            let failed = Outcome::Failed {
                error: "unavailable".into(),
            };
            self.write(actor, OpKind::Save, jti, contents, Some(failed))
        }

        fn call(
            &mut self,
            actor: &str,
            op: OpKind,
            jti: &str,
            outcome: Option<Outcome>,
        ) -> &mut Self {
            let b = Begin {
                actor: actor.into(),
                jti: Some(jti.into()),
                contested: jti.starts_with('x'),
                ..begin(op)
            };
            self.push(b, outcome)
        }

        fn found(&mut self, actor: &str, op: OpKind, jti: &str, contents: Contents) -> &mut Self {
            self.call(actor, op, jti, Some(Outcome::Found { session: contents }))
        }

        fn revoke(&mut self, actor: &str, sub: &str, revoked_at: i64, acked: bool) -> &mut Self {
            let b = Begin {
                actor: actor.into(),
                sub: Some(sub.into()),
                revoked_at: Some(revoked_at),
                ..begin(OpKind::Revoke)
            };
            let outcome = if acked {
                Outcome::Count { n: 1 }
            } else {
                Outcome::Failed {
                    error: "unavailable".into(),
                }
            };
            self.push(b, Some(outcome))
        }

        /// Check against a final scan holding `present`, taken at `at` seconds.
        fn check(&self, at: f64, present: &[(&str, Contents)]) -> Report {
            let wall_ns = T0 * 1_000_000_000 + (at * 1e9) as i64;
            let scan = Scan {
                before: Stamp {
                    wall_ns,
                    mono_ns: 0,
                },
                after: Stamp {
                    wall_ns: wall_ns + 10_000_000,
                    mono_ns: 0,
                },
                sessions: present
                    .iter()
                    .map(|(jti, c)| Scanned {
                        jti: (*jti).into(),
                        contents: Some(c.clone()),
                        error: None,
                    })
                    .collect(),
            };
            check(&self.ops, &scan)
        }
    }

    fn kinds(r: &Report) -> Vec<ViolationKind> {
        r.violations.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_clean_history_passes_and_is_counted() {
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .found("m0", OpKind::Get, "a", c("g1", "u0", 3600))
            .found("m0", OpKind::Take, "a", c("g1", "u0", 3600))
            .call("m0", OpKind::Get, "a", Some(Outcome::Missing))
            .save("m0", "a", c("g2", "u0", 3600))
            .write(
                "m0",
                OpKind::Create,
                "a",
                c("g3", "u0", 3600),
                Some(Outcome::Conflict),
            )
            .save("m0", "b", c("g4", "u0", 3600))
            .call(
                "m0",
                OpKind::Delete,
                "b",
                Some(Outcome::Deleted { existed: true }),
            );
        let r = h.check(10.0, &[("a", c("g2", "u0", 3600))]);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.figures.actors, 1);
        assert_eq!(r.figures.total(), 8);
        assert_eq!(r.figures.ops[&OpKind::Save].acknowledged, 3);
        assert_eq!(r.figures.final_expected_present, 1, "a had to be there");
    }

    #[test]
    fn an_acknowledged_save_missing_from_the_scan_is_a_lost_write() {
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600));
        let r = h.check(10.0, &[]);
        assert_eq!(kinds(&r), vec![ViolationKind::LostWrite]);
        // Gone because it expired before the scan: fine.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 5));
        assert!(h.check(10.0, &[]).violations.is_empty());
    }

    #[test]
    fn a_get_finding_nothing_where_a_session_must_be_is_a_lost_write() {
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .call("m0", OpKind::Get, "a", Some(Outcome::Missing));
        let r = h.check(10.0, &[("a", c("g1", "u0", 3600))]);
        assert_eq!(kinds(&r), vec![ViolationKind::LostWrite]);
    }

    #[test]
    fn failed_writes_are_ambiguous_but_not_passed_everywhere() {
        // Last write failed on an empty jti: present or absent are both fine.
        for present in [vec![], vec![("a", c("g1", "u0", 3600))]] {
            let mut h = H::new();
            h.save_failed("m0", "a", c("g1", "u0", 3600));
            let r = h.check(10.0, &present);
            assert!(r.violations.is_empty(), "{:?}", r.violations);
            assert_eq!(r.figures.final_ambiguous, 1);
            assert_eq!(r.figures.ops[&OpKind::Save].failed, 1);
        }
        // A failed save over an acknowledged one: one of the two must be there.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .save_failed("m0", "a", c("g2", "u0", 3600));
        assert!(
            h.check(10.0, &[("a", c("g1", "u0", 3600))])
                .violations
                .is_empty()
        );
        assert!(
            h.check(10.0, &[("a", c("g2", "u0", 3600))])
                .violations
                .is_empty()
        );
        assert_eq!(kinds(&h.check(10.0, &[])), vec![ViolationKind::LostWrite]);
        // A failed take may have removed it: absent is fine, but nothing else appears.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600)).call(
            "m0",
            OpKind::Take,
            "a",
            Some(Outcome::Failed {
                error: "unavailable".into(),
            }),
        );
        assert!(h.check(10.0, &[]).violations.is_empty());
        // A call the killed worker never finished is just as ambiguous.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .call("m0", OpKind::Delete, "a", None);
        let r = h.check(10.0, &[]);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.figures.ops[&OpKind::Delete].unfinished, 1);
        // A get narrows the possibilities: after seeing g2, g1 may not come back.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .save_failed("m0", "a", c("g2", "u0", 3600))
            .found("m0", OpKind::Get, "a", c("g2", "u0", 3600));
        assert_eq!(
            kinds(&h.check(10.0, &[("a", c("g1", "u0", 3600))])),
            vec![ViolationKind::Phantom]
        );
    }

    #[test]
    fn failed_calls_may_land_later_but_only_on_their_own_jti() {
        let failed = || {
            Some(Outcome::Failed {
                error: "unavailable".into(),
            })
        };
        // A failed save may land after a later acknowledged one.
        let mut h = H::new();
        h.save_failed("m0", "a", c("g1", "u0", 3600))
            .save("m0", "a", c("g2", "u0", 3600))
            .found("m0", OpKind::Get, "a", c("g1", "u0", 3600));
        assert!(
            h.check(10.0, &[("a", c("g1", "u0", 3600))])
                .violations
                .is_empty()
        );
        // A failed delete may land after a later save; b is still strict.
        let mut h = H::new();
        h.call("m0", OpKind::Delete, "a", failed())
            .save("m0", "a", c("g1", "u0", 3600))
            .save("m0", "b", c("g2", "u0", 3600));
        assert!(
            h.check(10.0, &[("b", c("g2", "u0", 3600))])
                .violations
                .is_empty()
        );
        let r = h.check(10.0, &[("a", c("g1", "u0", 3600))]);
        assert_eq!(kinds(&r), vec![ViolationKind::LostWrite]);
        assert_eq!(r.violations[0].jti, "b");
        // A failed revocation may still delete its subject's later sessions,
        // not another subject's.
        let mut h = H::new();
        h.revoke("m0", "u0", T0 - 1000, false)
            .save("m0", "a", c("g1", "u0", 3600))
            .save("m0", "b", c("g2", "u1", 3600));
        assert!(
            h.check(10.0, &[("b", c("g2", "u1", 3600))])
                .violations
                .is_empty()
        );
        assert_eq!(
            kinds(&h.check(10.0, &[("a", c("g1", "u0", 3600))])),
            vec![ViolationKind::LostWrite]
        );
        // A contested take that failed long before may still take the last write.
        let mut h = H::new();
        h.call("c1", OpKind::Take, "x1", failed())
            .save("c0", "x1", c("g1", "c0.u", 3600));
        assert!(h.check(10.0, &[]).violations.is_empty());
    }

    #[test]
    fn two_takes_of_one_generation_are_caught() {
        let mut h = H::new();
        h.save("c0", "x1", c("g1", "c0.u", 3600))
            .found("c0", OpKind::Take, "x1", c("g1", "c0.u", 3600))
            .found("c1", OpKind::Take, "x1", c("g1", "c0.u", 3600))
            .call("c2", OpKind::Take, "x1", Some(Outcome::Missing));
        let r = h.check(10.0, &[]);
        assert_eq!(kinds(&r), vec![ViolationKind::TakenTwice]);
        assert_eq!(r.figures.contested_takes, 3);
        assert_eq!(r.figures.contested_wins, 2);
        // One winner is fine.
        let mut h = H::new();
        h.save("c0", "x1", c("g1", "c0.u", 3600))
            .found("c1", OpKind::Take, "x1", c("g1", "c0.u", 3600))
            .call("c0", OpKind::Take, "x1", Some(Outcome::Missing));
        let r = h.check(10.0, &[]);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.figures.contested_rounds_taken, 1);
    }

    #[test]
    fn a_get_after_a_finished_take_is_caught() {
        let mut h = H::new();
        h.save("c0", "x1", c("g1", "c0.u", 3600))
            .found("c1", OpKind::Take, "x1", c("g1", "c0.u", 3600))
            .found("c2", OpKind::Get, "x1", c("g1", "c0.u", 3600));
        assert_eq!(
            kinds(&h.check(10.0, &[])),
            vec![ViolationKind::ReadAfterTake]
        );
    }

    #[test]
    fn an_expired_session_returned_is_caught() {
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 2))
            .found("m0", OpKind::Get, "a", c("g1", "u0", 2)) // at T0: live
            .at(2.5)
            .found("m0", OpKind::Get, "a", c("g1", "u0", 2)); // at T0+2.5: expired
        let r = h.check(10.0, &[]);
        assert_eq!(kinds(&r), vec![ViolationKind::ExpiredReturned]);
        // expires_at equal to the second of the call is expired too.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 2)).at(2.0).found(
            "m0",
            OpKind::Take,
            "a",
            c("g1", "u0", 2),
        );
        assert_eq!(
            kinds(&h.check(10.0, &[])),
            vec![ViolationKind::ExpiredReturned]
        );
        // And in the scan.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 2));
        assert!(
            kinds(&h.check(5.0, &[("a", c("g1", "u0", 2))]))
                .contains(&ViolationKind::ExpiredReturned)
        );
    }

    #[test]
    fn unknown_or_altered_contents_are_caught() {
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600)).found(
            "m0",
            OpKind::Get,
            "a",
            c("nobody", "u0", 3600),
        );
        assert!(
            kinds(&h.check(10.0, &[("a", c("g1", "u0", 3600))]))
                .contains(&ViolationKind::UnknownContents)
        );
        let mut altered = c("g1", "u0", 3600);
        altered.digest = "other".into();
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .found("m0", OpKind::Get, "a", altered.clone());
        assert_eq!(
            kinds(&h.check(10.0, &[("a", c("g1", "u0", 3600))])),
            vec![ViolationKind::UnknownContents]
        );
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600));
        assert_eq!(
            kinds(&h.check(10.0, &[("a", altered)])),
            vec![ViolationKind::UnknownContents]
        );
    }

    #[test]
    fn reads_contradicting_the_owners_history_are_caught() {
        // A deleted session comes back on get.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .call(
                "m0",
                OpKind::Delete,
                "a",
                Some(Outcome::Deleted { existed: true }),
            )
            .found("m0", OpKind::Get, "a", c("g1", "u0", 3600));
        assert_eq!(kinds(&h.check(10.0, &[])), vec![ViolationKind::WrongRead]);
        // A replaced generation comes back.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .save("m0", "a", c("g2", "u0", 3600))
            .found("m0", OpKind::Get, "a", c("g1", "u0", 3600));
        assert!(
            kinds(&h.check(10.0, &[("a", c("g2", "u0", 3600))]))
                .contains(&ViolationKind::WrongRead)
        );
        // A session saved after an acknowledged revocation, authenticated
        // before it, is returned.
        let mut h = H::new();
        h.revoke("m0", "u0", T0, true)
            .save("m0", "a", c("g1", "u0", 3600))
            .found("m0", OpKind::Get, "a", c("g1", "u0", 3600));
        assert_eq!(kinds(&h.check(10.0, &[])), vec![ViolationKind::WrongRead]);
        // The same after a revocation that failed is possible.
        let mut h = H::new();
        h.revoke("m0", "u0", T0, false)
            .save("m0", "a", c("g1", "u0", 3600))
            .found("m0", OpKind::Get, "a", c("g1", "u0", 3600));
        assert!(h.check(10.0, &[]).violations.is_empty());
        // A conflict on a jti with nothing in it.
        let mut h = H::new();
        h.write(
            "m0",
            OpKind::Create,
            "a",
            c("g1", "u0", 3600),
            Some(Outcome::Conflict),
        );
        assert_eq!(kinds(&h.check(10.0, &[])), vec![ViolationKind::WrongRead]);
    }

    #[test]
    fn revocations_remove_the_subjects_sessions() {
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .save("m0", "b", c("g2", "u1", 3600))
            .revoke("m0", "u0", T0, true);
        assert!(
            h.check(10.0, &[("b", c("g2", "u1", 3600))])
                .violations
                .is_empty()
        );
        assert_eq!(
            kinds(&h.check(
                10.0,
                &[("a", c("g1", "u0", 3600)), ("b", c("g2", "u1", 3600))]
            )),
            vec![ViolationKind::Phantom]
        );
        assert_eq!(kinds(&h.check(10.0, &[])), vec![ViolationKind::LostWrite]);
    }

    #[test]
    fn a_create_over_a_live_session_is_caught() {
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600)).write(
            "m0",
            OpKind::Create,
            "a",
            c("g2", "u0", 3600),
            Some(Outcome::Done),
        );
        assert_eq!(
            kinds(&h.check(10.0, &[("a", c("g2", "u0", 3600))])),
            vec![ViolationKind::CreateOverLive]
        );
        // Over an expired one it is fine.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 1)).at(3.0).write(
            "m0",
            OpKind::Create,
            "a",
            c("g2", "u0", 3600),
            Some(Outcome::Done),
        );
        assert!(
            h.check(10.0, &[("a", c("g2", "u0", 3600))])
                .violations
                .is_empty()
        );
    }

    #[test]
    fn the_scan_may_not_hold_deleted_taken_or_unknown_sessions() {
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600)).call(
            "m0",
            OpKind::Delete,
            "a",
            Some(Outcome::Deleted { existed: true }),
        );
        assert_eq!(
            kinds(&h.check(10.0, &[("a", c("g1", "u0", 3600))])),
            vec![ViolationKind::Phantom]
        );
        let mut h = H::new();
        h.save("c0", "x1", c("g1", "c0.u", 3600)).found(
            "c1",
            OpKind::Take,
            "x1",
            c("g1", "c0.u", 3600),
        );
        assert_eq!(
            kinds(&h.check(10.0, &[("x1", c("g1", "c0.u", 3600))])),
            vec![ViolationKind::Phantom]
        );
        let h = H::new();
        assert!(
            kinds(&h.check(10.0, &[("stray", c("g9", "u0", 3600))]))
                .contains(&ViolationKind::Phantom)
        );
        // Twice in one scan.
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600));
        assert_eq!(
            kinds(&h.check(
                10.0,
                &[("a", c("g1", "u0", 3600)), ("a", c("g1", "u0", 3600))]
            )),
            vec![ViolationKind::Phantom]
        );
    }

    #[test]
    fn contested_lost_writes_are_caught_unless_a_take_may_explain_them() {
        // Acknowledged, never taken, missing: lost.
        let mut h = H::new();
        h.save("c0", "x1", c("g1", "c0.u", 3600)).call(
            "c1",
            OpKind::Take,
            "x1",
            Some(Outcome::Missing),
        );
        assert_eq!(kinds(&h.check(10.0, &[])), vec![ViolationKind::LostWrite]);
        // A take that failed after the write may have taken it: excluded.
        let mut h = H::new();
        h.save("c0", "x1", c("g1", "c0.u", 3600)).call(
            "c1",
            OpKind::Take,
            "x1",
            Some(Outcome::Failed {
                error: "unavailable".into(),
            }),
        );
        let r = h.check(10.0, &[]);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.figures.contested_excluded, 1);
        // A replaced generation may not be in the scan.
        let mut h = H::new();
        h.save("c0", "x1", c("g1", "c0.u", 3600))
            .save("c0", "x1", c("g2", "c0.u", 3600));
        assert_eq!(
            kinds(&h.check(10.0, &[("x1", c("g1", "c0.u", 3600))])),
            vec![ViolationKind::Phantom, ViolationKind::LostWrite]
        );
    }

    #[test]
    fn logs_breaking_ownership_are_refused() {
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .save("m1", "a", c("g2", "u0", 3600));
        assert!(
            kinds(&h.check(10.0, &[("a", c("g2", "u0", 3600))])).contains(&ViolationKind::BadLog)
        );
        let mut h = H::new();
        h.save("m0", "a", c("g1", "u0", 3600))
            .save("m0", "b", c("g1", "u0", 3600));
        assert!(kinds(&h.check(10.0, &[])).contains(&ViolationKind::BadLog));
    }
}
