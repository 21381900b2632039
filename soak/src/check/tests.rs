//! Hand-made histories, one kind of violation each.

use super::*;
use crate::log::{Begin, End, Scanned, Stamp, begin};

/// Wall time of the hand-made histories: whole seconds from here.
pub(super) const T0: i64 = 1_700_000_000;

/// A hand-made history: each call takes 1 ms, then the clock moves on.
#[derive(Default)]
pub(super) struct H {
    pub(super) ops: Vec<Op>,
    now_ns: i64,
    seqs: HashMap<String, u64>,
}

pub(super) fn c(generation: &str, sub: &str, expires_in: i64) -> Contents {
    Contents {
        generation: generation.into(),
        digest: format!("d-{generation}"),
        sub: sub.into(),
        expires_at: T0 + expires_in,
        auth_time: T0 - 100,
    }
}

impl H {
    pub(super) fn new() -> Self {
        Self {
            now_ns: T0 * 1_000_000_000 + 1_000,
            ..Self::default()
        }
    }

    /// Move the clock to `secs` (fractional) after `T0`.
    pub(super) fn at(&mut self, secs: f64) -> &mut Self {
        self.now_ns = T0 * 1_000_000_000 + (secs * 1e9) as i64;
        self
    }

    pub(super) fn push(&mut self, mut b: Begin, outcome: Option<Outcome>) -> &mut Self {
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

    pub(super) fn write(
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

    pub(super) fn save(&mut self, actor: &str, jti: &str, contents: Contents) -> &mut Self {
        self.write(actor, OpKind::Save, jti, contents, Some(Outcome::Done))
    }

    pub(super) fn save_failed(&mut self, actor: &str, jti: &str, contents: Contents) -> &mut Self {
        let failed = Outcome::Failed {
            error: "unavailable".into(),
        };
        self.write(actor, OpKind::Save, jti, contents, Some(failed))
    }

    pub(super) fn call(
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

    pub(super) fn found(
        &mut self,
        actor: &str,
        op: OpKind,
        jti: &str,
        contents: Contents,
    ) -> &mut Self {
        self.call(actor, op, jti, Some(Outcome::Found { session: contents }))
    }

    pub(super) fn revoke(
        &mut self,
        actor: &str,
        sub: &str,
        revoked_at: i64,
        acked: bool,
    ) -> &mut Self {
        let b = Begin {
            actor: actor.into(),
            sub: Some(sub.into()),
            revoked_at: Some(revoked_at),
            keep_until: Some(revoked_at + 86_400),
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
    pub(super) fn check(&self, at: f64, present: &[(&str, Contents)]) -> Report {
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

pub(super) fn kinds(r: &Report) -> Vec<ViolationKind> {
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
    h.save("m0", "a", c("g1", "u0", 2))
        .at(2.0)
        .found("m0", OpKind::Take, "a", c("g1", "u0", 2));
    assert_eq!(
        kinds(&h.check(10.0, &[])),
        vec![ViolationKind::ExpiredReturned]
    );
    // And in the scan.
    let mut h = H::new();
    h.save("m0", "a", c("g1", "u0", 2));
    assert!(
        kinds(&h.check(5.0, &[("a", c("g1", "u0", 2))])).contains(&ViolationKind::ExpiredReturned)
    );
}

#[test]
fn unknown_or_altered_contents_are_caught() {
    let mut h = H::new();
    h.save("m0", "a", c("g1", "u0", 3600))
        .found("m0", OpKind::Get, "a", c("nobody", "u0", 3600));
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
        kinds(&h.check(10.0, &[("a", c("g2", "u0", 3600))])).contains(&ViolationKind::WrongRead)
    );
    // A session saved after an acknowledged revocation, authenticated
    // before it, is returned.
    let mut h = H::new();
    h.revoke("m0", "u0", T0, true)
        .save("m0", "a", c("g1", "u0", 3600))
        .found("m0", OpKind::Get, "a", c("g1", "u0", 3600));
    assert_eq!(
        kinds(&h.check(10.0, &[])),
        vec![ViolationKind::RevokedReturned, ViolationKind::WrongRead]
    );
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
        // The owner model and the revocation property both see it.
        vec![ViolationKind::RevokedReturned, ViolationKind::Phantom]
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
        kinds(&h.check(10.0, &[("stray", c("g9", "u0", 3600))])).contains(&ViolationKind::Phantom)
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
    assert!(kinds(&h.check(10.0, &[("a", c("g2", "u0", 3600))])).contains(&ViolationKind::BadLog));
    let mut h = H::new();
    h.save("m0", "a", c("g1", "u0", 3600))
        .save("m0", "b", c("g1", "u0", 3600));
    assert!(kinds(&h.check(10.0, &[])).contains(&ViolationKind::BadLog));
}
