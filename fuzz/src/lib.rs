//! Fuzzing on stable Rust of everything that parses input from the agent
//! side: the frame decoder, the agent's log line parser, its parsers of
//! EMQX v4/v5 answers. A mutation engine seeded with valid inputs
//! (`engine.rs`), the targets (`targets/`), a runner binary (`main.rs`,
//! driven by `scripts/fuzz`) and a short pass in the test suite
//! (`tests/short_pass.rs`).

pub mod engine;
pub mod json;
pub mod targets;

pub use engine::{Options, Outcome, Rng, Stats, Target};

/// Counts live heap bytes, so a target can check what a call allocates.
#[global_allocator]
pub static ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;
