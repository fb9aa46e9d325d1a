//! The agent's library half: the modules whose parsers take input from
//! outside (EMQX answers, EMQX log files), exposed so that the fuzz runner
//! (`fuzz/`, crate `ecp-fuzz`) can call them. The binary (`main.rs`) uses
//! them from here. `metrics` (the EMQX metrics and alarms collector) is
//! here too, so its tests can run it against `emqx-sim` in-process.

pub mod emqx;
pub mod home;
pub mod logship;
pub mod metrics;
