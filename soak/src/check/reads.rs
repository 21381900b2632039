//! Checks that need no history: every returned session was written with
//! those contents, none was expired, none was taken twice or read after a
//! take.

use std::collections::BTreeSet;

use super::{Checker, ViolationKind};
use crate::log::{OpKind, Outcome};

impl<'a> Checker<'a> {
    /// Checks that need no history: contents, expiry, single take.
    pub(super) fn check_reads(&mut self) {
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
}
