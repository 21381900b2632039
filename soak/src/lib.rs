#![doc = include_str!("../README.md")]
//!
//! # Modules
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
//! every backend.
//!
//! # What it proves
//!
//! - **Races** (`tests/races.rs`, contract rules 1 and 13): 8 OS processes of
//!   the `broker-soak` worker are released at once (each connects, says
//!   `ready`, blocks on stdin; the test then writes to all of them) against a
//!   fresh namespace and run `setup` + `load_or_create_signing_key`, each with
//!   its own candidate key. Exactly one candidate wins, all 8 report the same
//!   key (SHA-256 fingerprint of the PEM, never the key), no process fails, and
//!   a later opener gets that key too. sled lets one process at a time open a
//!   database, so there each process retries opening until the lock is free.
//! - **Soak** (`tests/soak.rs`): a mixed workload — save, create, get, take,
//!   delete, revoke-by-subject, purge, and contested takes of one jti by every
//!   process at the same moment — from 4 processes (sled: 1 process with 8
//!   tasks) for `SOAK_SECONDS` (default 60), with one restart in the middle:
//!   the server's `BROKER_TEST_<NAME>_RESTART_CMD`, or for sled a SIGKILL of the
//!   process and a fresh start on the same database. Every call is logged with
//!   its wall and monotonic time before and after, and its result or error
//!   kind. Then the checker (`src/check/`) proves from the logs and a final
//!   scan: **no acknowledged write was lost, no session was taken twice, no
//!   expired session was returned, no revoked session was returned** — plus
//!   every returned session was written with those contents, every owner's
//!   read agrees with its own history, and a create never replaced a live
//!   session. Failed or unfinished calls are
//!   ambiguous (may or may not have applied) and widen the set of allowed
//!   states instead of being ignored. Also: every error is `unavailable`, and
//!   every actor has calls acknowledged after the restart.
//! - **Revoke race** (`src/workload/revoke_race.rs`, `src/check/revocation.rs`,
//!   contract rule 10 across processes): in wall-clock rounds (`--slot-ms`),
//!   every process's race actors save a session of the round's subject
//!   (unique generation, `auth_time` at or on the boundary of the revocation
//!   time, now and then just after it), then refresh it (take, save the
//!   rotated session) at a random moment of a short window in which one actor
//!   of some process revokes the subject with an explicit `Revocation` kept
//!   2 s; afterwards they keep reading (get, sometimes take) their own and
//!   other processes' sessions of the last 5 s of rounds — past the markers'
//!   keep time — and purge now and then. The property: for every acknowledged
//!   revocation and every get, take or final scan that *began after it
//!   returned*, no session it hides comes back — hidden meaning `auth_time <=
//!   revoked_at` and stored by an acknowledged save that returned before
//!   `keep_until`, whether that save came before, during or after the
//!   revocation, and however long ago the marker was kept or purged. Pure
//!   happens-before on the logged stamps, no grace period. It is applied to
//!   the mixed workload's revocations too. A later login (after the boundary)
//!   saved after the revocation returned must survive to the final scan.
//! - **The checker can fail** (`src/check/tests.rs`,
//!   `src/check/revocation/tests.rs`: hand-made logs with each kind of
//!   violation; `tests/in_process.rs`: the real workload on a `MemoryStore`
//!   passes, and stores with planted bugs — a take that does not delete,
//!   dropped saves, reads ignoring expiry, a revocation that keeps no marker,
//!   one whose hidden sessions come back once the marker's keep time is over —
//!   are caught).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod log;
pub mod workload;

pub use check::{Figures, Report, Violation, ViolationKind, check};
