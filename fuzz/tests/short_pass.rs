//! A short fuzz pass of every target, part of `cargo test`: each runs its
//! seeds and then mutated inputs for at most SHORT_INPUTS inputs or
//! SHORT_SECS seconds (debug build). `scripts/fuzz` does the long runs.
//! ECP_FUZZ_SEED=N picks another seed (default 1, so CI is repeatable).

use ecp_fuzz::targets::ALL;
use ecp_fuzz::Options;
use std::time::Duration;

const SHORT_INPUTS: u64 = 50_000;
const SHORT_SECS: f64 = 2.0;

#[test]
fn every_target_survives_a_short_pass() {
    let seed = std::env::var("ECP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let o = Options {
        inputs: SHORT_INPUTS,
        seed,
        time: Some(Duration::from_secs_f64(SHORT_SECS)),
        trace: None,
    };
    let mut failures = Vec::new();
    for t in ALL {
        let s = ecp_fuzz::engine::run(t, &o, |_| {});
        println!(
            "{}: {} inputs in {:.2} s ({:.0}/s), corpus {}",
            t.name,
            s.inputs,
            s.elapsed.as_secs_f64(),
            s.per_sec(),
            s.corpus
        );
        assert!(
            s.inputs >= (t.seeds)().len() as u64,
            "{}: ran no input",
            t.name
        );
        if let Some(c) = s.crash {
            failures.push(format!(
                "{} (seed {seed}, input {}): {}\n  input: {:?}",
                t.name,
                c.index,
                c.reason,
                String::from_utf8_lossy(&c.input[..c.input.len().min(600)])
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
