//! Every fuzz target, by name.
//!
//! # Adding a target
//!
//! 1. Write `targets/NAME.rs` with `pub const TARGET: Target = Target { … }`
//!    (copy `frame.rs` or `logline.rs`): `seeds` returns valid inputs of
//!    every shape the function sees, `dict` the tokens it reacts to,
//!    `structured` (optional) makes a new input from a corpus entry, and
//!    `check` calls the function on one input and returns `Err(why)` when a
//!    property fails (a panic is caught and counts as a crash) or `Ok(class)`,
//!    a coarse outcome that grows the corpus when new.
//! 2. Add `pub mod NAME;` below and `&NAME::TARGET` to [`ALL`].
//! 3. `tests/short_pass.rs` runs every target in [`ALL`] (nothing to add
//!    unless it needs a different count); `scripts/fuzz` runs it too.

pub mod bounds;
pub mod emqx;
pub mod frame;
pub mod logline;
pub mod metrics;
pub mod path;

use crate::engine::Target;

/// Every target, in the order `scripts/fuzz` runs them.
pub const ALL: &[&Target] = &[
    &frame::TARGET,
    &logline::TARGET,
    &emqx::V5,
    &emqx::V4,
    &metrics::TARGET,
    &path::TARGET,
    &bounds::TARGET,
];

pub fn by_name(name: &str) -> Option<&'static Target> {
    ALL.iter().copied().find(|t| t.name == name)
}
