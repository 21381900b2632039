//! Tests of the TestIdp itself: every flow and every knob, observably.
//! One binary (one link) for all of them.

mod common;
mod flows;
mod knobs;
