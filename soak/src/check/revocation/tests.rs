//! Hand-made revoke-race histories: what the revocation property judges,
//! and what it leaves alone.

use super::super::tests::{H, T0, c, kinds};
use crate::check::ViolationKind::{LostWrite, Phantom, RevokedReturned};
use crate::log::{Begin, Contents, OpKind, Outcome, Stamp, begin};

const SUB: &str = "rr1";

/// A race session of `SUB` authenticated at `auth` seconds after `T0`.
fn s(generation: &str, auth: i64) -> Contents {
    Contents {
        auth_time: T0 + auth,
        ..c(generation, SUB, 3600)
    }
}

fn failed() -> Option<Outcome> {
    Some(Outcome::Failed {
        error: "unavailable".into(),
    })
}

impl H {
    fn race_save(&mut self, actor: &str, jti: &str, contents: Contents, acked: bool) -> &mut Self {
        let b = Begin {
            actor: actor.into(),
            jti: Some(jti.into()),
            raced: true,
            written: Some(contents),
            ..begin(OpKind::Save)
        };
        self.push(b, if acked { Some(Outcome::Done) } else { failed() })
    }

    fn race_read(
        &mut self,
        actor: &str,
        op: OpKind,
        jti: &str,
        found: Option<Contents>,
    ) -> &mut Self {
        let b = Begin {
            actor: actor.into(),
            jti: Some(jti.into()),
            sub: Some(SUB.into()),
            raced: true,
            ..begin(op)
        };
        let outcome = found.map_or(Outcome::Missing, |session| Outcome::Found { session });
        self.push(b, Some(outcome))
    }

    /// A revocation of `SUB` at `T0`, kept 2 s.
    fn race_revoke(&mut self, actor: &str, acked: bool) -> &mut Self {
        let b = Begin {
            actor: actor.into(),
            sub: Some(SUB.into()),
            raced: true,
            revoked_at: Some(T0),
            keep_until: Some(T0 + 2),
            ..begin(OpKind::Revoke)
        };
        let outcome = if acked {
            Some(Outcome::Count { n: 0 })
        } else {
            failed()
        };
        self.push(b, outcome)
    }

    /// Let the last call end `secs` after `T0` (a call that ran long).
    fn ends_at(&mut self, secs: f64) -> &mut Self {
        let end = self.ops.last_mut().and_then(|op| op.end.as_mut()).unwrap();
        end.at = Stamp {
            wall_ns: T0 * 1_000_000_000 + (secs * 1e9) as i64,
            mono_ns: 0,
        };
        self
    }
}

#[test]
fn a_hidden_session_read_after_the_revocation_returned_is_caught() {
    // Saved before the revocation (which must delete it), read after it.
    let mut h = H::new();
    h.race_save("r0", "rr1.r0.a", s("g1", -1), true)
        .race_revoke("r1", true)
        .race_read("r0", OpKind::Get, "rr1.r0.a", Some(s("g1", -1)));
    let r = h.check(10.0, &[]);
    assert_eq!(kinds(&r), vec![RevokedReturned]);
    assert!(
        r.violations[0]
            .detail
            .contains("saved before the revocation began")
    );
    assert_eq!(r.figures.revocation.revocations, 1);
    assert_eq!(r.figures.revocation.covered, 1);
    assert_eq!(r.figures.revocation.reads_after, 1);
    // Saved after it returned (a refresh in flight: the marker must stop
    // it), on the inclusive boundary (auth_time == revoked_at), taken.
    let mut h = H::new();
    h.race_revoke("r1", true)
        .race_save("r0", "rr1.r0.b", s("g1", 0), true)
        .race_read("r2", OpKind::Take, "rr1.r0.b", Some(s("g1", 0)));
    let r = h.check(10.0, &[]);
    assert_eq!(kinds(&r), vec![RevokedReturned]);
    assert!(
        r.violations[0]
            .detail
            .contains("saved after the revocation returned")
    );
    assert_eq!(r.figures.revocation.after, 1);
    // Saved while the revocation ran.
    let mut h = H::new();
    h.race_revoke("r1", true)
        .ends_at(0.5)
        .race_save("r0", "rr1.r0.b", s("g1", 0), true)
        .at(0.6)
        .race_read("r0", OpKind::Get, "rr1.r0.b", Some(s("g1", 0)));
    let r = h.check(10.0, &[]);
    assert_eq!(kinds(&r), vec![RevokedReturned]);
    assert_eq!(r.figures.revocation.overlapping, 1);
}

#[test]
fn never_has_no_expiry() {
    // Read long after the marker's keep time (and any purge): still hidden.
    let mut h = H::new();
    h.race_revoke("r1", true)
        .race_save("r0", "rr1.r0.b", s("g1", 0), true)
        .at(30.0)
        .race_read("r0", OpKind::Get, "rr1.r0.b", Some(s("g1", 0)));
    let r = h.check(60.0, &[]);
    assert_eq!(kinds(&r), vec![RevokedReturned]);
    assert!(
        r.violations[0]
            .detail
            .contains("past the marker's keep time")
    );
    assert_eq!(r.figures.revocation.reads_past_keep, 1);
    // And in the final scan.
    let mut h = H::new();
    h.race_revoke("r1", true)
        .race_save("r0", "rr1.r0.b", s("g1", 0), true);
    let r = h.check(60.0, &[("rr1.r0.b", s("g1", 0))]);
    assert_eq!(kinds(&r), vec![RevokedReturned]);
    assert!(r.violations[0].detail.contains("the final scan"));
}

#[test]
fn only_reads_begun_after_the_revocation_returned_are_judged() {
    // A get while the revocation still ran may see the session.
    let mut h = H::new();
    h.race_save("r0", "rr1.r0.a", s("g1", 0), true)
        .race_revoke("r1", true)
        .ends_at(0.5)
        .race_read("r2", OpKind::Get, "rr1.r0.a", Some(s("g1", 0)));
    let r = h.check(10.0, &[]);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.figures.revocation.reads_after, 0);
    // A revocation that failed may not have happened.
    let mut h = H::new();
    h.race_revoke("r1", false)
        .race_save("r0", "rr1.r0.b", s("g1", 0), true)
        .race_read("r0", OpKind::Get, "rr1.r0.b", Some(s("g1", 0)));
    let r = h.check(10.0, &[("rr1.r0.b", s("g1", 0))]);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

#[test]
fn sessions_the_revocation_does_not_cover_may_be_returned() {
    // A later login (auth_time after revoked_at).
    let mut h = H::new();
    h.race_revoke("r1", true)
        .race_save("r0", "rr1.r0.b", s("g1", 1), true)
        .race_read("r2", OpKind::Get, "rr1.r0.b", Some(s("g1", 1)));
    let r = h.check(10.0, &[("rr1.r0.b", s("g1", 1))]);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.figures.revocation.later_logins_read, 1);
    assert_eq!(r.figures.revocation.later_logins_kept, 1);
    // A save that failed may land any time later, after the keep time too.
    let mut h = H::new();
    h.race_revoke("r1", true)
        .race_save("r0", "rr1.r0.b", s("g1", 0), false)
        .race_read("r0", OpKind::Get, "rr1.r0.b", Some(s("g1", 0)));
    assert!(h.check(10.0, &[]).violations.is_empty());
    // A save that returned at or after keep_until (a refresh in flight
    // longer than the keep time) may be stored.
    let mut h = H::new();
    h.race_revoke("r1", true)
        .race_save("r0", "rr1.r0.b", s("g1", 0), true)
        .ends_at(2.0)
        .at(2.5)
        .race_read("r0", OpKind::Get, "rr1.r0.b", Some(s("g1", 0)));
    let r = h.check(10.0, &[("rr1.r0.b", s("g1", 0))]);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.figures.revocation.covered, 0);
}

#[test]
fn a_later_login_must_survive_unless_taken() {
    let mut h = H::new();
    h.race_revoke("r1", true)
        .race_save("r0", "rr1.r0.b", s("g1", 1), true);
    assert_eq!(kinds(&h.check(10.0, &[])), vec![LostWrite]);
    // Saved before the revocation returned: the revocation may delete it.
    let mut h = H::new();
    h.race_save("r0", "rr1.r0.b", s("g1", 1), true)
        .race_revoke("r1", true);
    assert!(h.check(10.0, &[]).violations.is_empty());
    // Taken (or a take failed): gone.
    let mut h = H::new();
    h.race_revoke("r1", true)
        .race_save("r0", "rr1.r0.b", s("g1", 1), true)
        .race_read("r2", OpKind::Take, "rr1.r0.b", Some(s("g1", 1)));
    assert!(h.check(10.0, &[]).violations.is_empty());
    // A taken session is not in the scan.
    assert_eq!(
        kinds(&h.check(10.0, &[("rr1.r0.b", s("g1", 1))])),
        vec![Phantom]
    );
}
