//! `brokerctl` end to end, in one test binary (one link instead of five):
//! the commands, `bench` and `migrate` on every backend the environment
//! names, graceful shutdown against MongoDB, and the issuer's keys and
//! peers (`issuer`).

mod bench;
mod cli;
mod issuer;
mod migrate;
mod shutdown;
