//! The crate's tests, in one binary (one link): the suite on `MemoryStore`,
//! the planted-bug stores it must catch, and what a factory returning
//! `None` does with and without `CI=true`.

mod broken_stores;
mod common;
mod memory_store;
mod skips;
