//! The contested set: one owner writes, every contest actor takes at the
//! same moment; at most one take per generation, and the last
//! acknowledged write is in the final scan unless a take may explain it.

use std::collections::BTreeMap;

use super::{Checker, ViolationKind};
use crate::log::{OpKind, Outcome};

impl<'a> Checker<'a> {
    pub(super) fn check_contested(&mut self) {
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
}
