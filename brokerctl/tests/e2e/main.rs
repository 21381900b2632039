//! `brokerctl` end to end, in one test binary (one link instead of four):
//! the commands, `bench` and `migrate` on every backend the environment
//! names, and graceful shutdown against MongoDB.

mod bench;
mod cli;
mod migrate;
mod shutdown;
