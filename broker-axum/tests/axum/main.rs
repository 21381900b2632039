//! broker-axum against an in-process TestIdp, every request through
//! `tower::ServiceExt::oneshot` (no socket on the broker's side):
//! BROKER.md §6 A24–A27 and the bad-input list of issue 19.

mod bad_input;
mod common;
mod flows;
mod protect;
