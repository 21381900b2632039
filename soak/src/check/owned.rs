//! The single-owner model: each owned jti is written, read, deleted and
//! revoked by one actor, whose operations are replayed in order over the
//! set of possible states; the final scan must show one of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Checker, ViolationKind};
use crate::log::{Contents, Op, OpKind, Outcome};

/// A revocation seen in an owner's history: its time, and whether it was
/// acknowledged (else it may or may not have happened).
type Rev = (i64, bool);

/// The possible states of one jti: absent, or holding one written session.
pub(super) type State<'a> = Vec<Option<&'a Contents>>;

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

impl<'a> Checker<'a> {
    /// Owned jtis are touched by one actor only; contested ones written by
    /// one; a revoked subject's sessions belong to the revoker; the revoke
    /// race's jtis and subjects are used by nothing else. Without that, the
    /// sequential replay would be unsound.
    pub(super) fn check_ownership(&mut self) -> bool {
        let mut owners: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut writers: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut sub_owners: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut contested: HashMap<&str, bool> = HashMap::new();
        let mut raced: HashMap<&str, bool> = HashMap::new();
        let mut raced_subs: BTreeSet<&str> = BTreeSet::new();
        for op in self.ops {
            let actor = op.begin.actor.as_str();
            if let Some(jti) = op.begin.jti.as_deref()
                && *raced.entry(jti).or_insert(op.begin.raced) != op.begin.raced
            {
                self.violation(ViolationKind::BadLog, jti, "jti both raced and owned");
                return false;
            }
            if op.begin.raced {
                let written = op.begin.written.as_ref().map(|w| w.sub.as_str());
                raced_subs.extend(written.or(op.begin.sub.as_deref()));
                continue;
            }
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
            if raced_subs.contains(sub) {
                self.violation(ViolationKind::BadLog, sub, "subject both raced and owned");
                ok = false;
            }
            if actors.len() > 1 {
                self.violation(ViolationKind::BadLog, sub, "subject used by several actors");
                ok = false;
            }
        }
        ok
    }

    /// Replay each owner's sequence; returns the possible final states of
    /// every owned jti.
    pub(super) fn replay_owners(&mut self) -> BTreeMap<&'a str, State<'a>> {
        let mut by_actor: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            if op.begin.contested || op.begin.raced {
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

    pub(super) fn check_final_owned(&mut self, states: &BTreeMap<&'a str, State<'a>>) {
        let scanned = self.scanned();
        let before_s = self.scan.before.wall_secs();
        let after_s = self.scan.after.wall_secs();
        // Every revocation of the run precedes the final scan.
        let mut revs: HashMap<&str, Vec<Rev>> = HashMap::new();
        for op in self.ops {
            if op.begin.op == OpKind::Revoke && !op.begin.raced {
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
