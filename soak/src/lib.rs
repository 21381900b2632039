//! Cross-process races and a soak workload with a checker, for every broker
//! store backend.
//!
//! - [`workload`]: what the `broker-soak` worker binary does — the
//!   signing-key race ([`workload::open_vault`], [`workload::candidate_pem`],
//!   [`workload::fingerprint`]) and the mixed workload, contested takes
//!   and revoke race ([`workload::run_work`]) that log every call, plus
//!   the final [`workload::scan`].
//! - [`log`]: the operation log (a begin and an end JSON line per call).
//! - [`check`](mod@check): the checker that proves, from the logs and the final scan,
//!   that no acknowledged write was lost, no session was taken twice, no
//!   expired session was returned and no session was returned after a
//!   revocation that hides it ([`check::revocation`]).
//!
//! The tests in `tests/` run the worker as separate OS processes against
//! every backend; see the crate README.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod log;
pub mod workload;

pub use check::{Figures, Report, Violation, ViolationKind, check};
