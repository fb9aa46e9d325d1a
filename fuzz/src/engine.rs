//! The mutation engine and the loop that drives one target.
//!
//! Inputs come from a corpus that starts with the target's seeds (valid
//! inputs of every shape the code under test sees). Each input is a corpus
//! entry changed by the target's structure-aware mutator (when it has one:
//! a random frame, a recomposed log line, a changed JSON tree) and/or by a
//! stack of byte-level "havoc" mutations (bit flips, interesting values,
//! dictionary tokens, splices with other entries, deletions, repeats, UTF-8
//! fragments). An input whose outcome class (the `u64` a check returns) was
//! not seen before joins the corpus, so the search keeps going from inputs
//! that reached somewhere new. Everything derives from one `u64` seed: the
//! same seed and target give the same inputs in the same order.

use std::collections::HashSet;
use std::io::{Seek, SeekFrom, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A small, fast, seedable generator (wyrand). Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }
    /// Uniform in `0..n` (`n` > 0; 0 gives 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
    /// Small numbers far more often than large ones: `0..2^(0..=bits)`.
    pub fn skewed(&mut self, bits: u32) -> usize {
        let b = self.below(bits as usize + 1) as u32;
        self.below(1usize << b)
    }
}

/// What the code under test did with one input: `Ok(class)` when every
/// property held (`class` is a coarse outcome, e.g. "decoded a Report",
/// used only to grow the corpus), `Err(why)` when a property failed. A
/// panic is caught and counts as a failure too.
pub type Outcome = Result<u64, String>;

/// Makes a new input from a corpus entry (or from scratch).
pub type Mutator = fn(&mut Rng, &[u8]) -> Option<Vec<u8>>;

/// One fuzz target. See `targets/mod.rs` for how to add one.
pub struct Target {
    /// Name used on the command line and in crash file names.
    pub name: &'static str,
    /// One line: what is called and which properties are checked.
    pub about: &'static str,
    /// Valid inputs of every shape the code under test sees.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens the byte mutator inserts or writes over (keywords, markers).
    pub dict: &'static [&'static [u8]],
    /// Structure-aware mutation of a corpus entry (it may ignore the entry
    /// and make a fresh input); `None` falls back to byte mutation.
    pub structured: Option<Mutator>,
    /// Inputs are cut to this many bytes.
    pub max_len: usize,
    /// Runs the code under test on one input and checks the properties.
    pub check: fn(&[u8]) -> Outcome,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub inputs: u64,
    pub seed: u64,
    /// Stop after this long even if fewer inputs ran.
    pub time: Option<Duration>,
    /// Write every input to this file before running it, from input number
    /// `.0` on (to catch one that aborts the process: the file then holds it).
    pub trace: Option<(u64, PathBuf)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Crash {
    /// 0-based number of the input in this run.
    pub index: u64,
    pub input: Vec<u8>,
    pub reason: String,
}

#[derive(Debug)]
pub struct Stats {
    pub inputs: u64,
    pub elapsed: Duration,
    pub corpus: usize,
    pub classes: usize,
    pub crash: Option<Crash>,
}

impl Stats {
    pub fn per_sec(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The panic message of the last caught panic (the hook writes it).
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());
/// One run at a time per process: the panic hook and the allocation
/// counter are process-wide.
static RUNNING: Mutex<()> = Mutex::new(());

/// Runs `check` on `input`, turning a panic into `Err`. Replays use this.
pub fn execute(check: fn(&[u8]) -> Outcome, input: &[u8]) -> Outcome {
    match panic::catch_unwind(AssertUnwindSafe(|| check(input))) {
        Ok(r) => r,
        Err(_) => {
            let msg = LAST_PANIC
                .lock()
                .map(|m| m.clone())
                .unwrap_or_else(|e| e.into_inner().clone());
            Err(format!("panic: {msg}"))
        }
    }
}

/// Installs the quiet panic hook for the duration of `f`.
pub fn with_quiet_panics<R>(f: impl FnOnce() -> R) -> R {
    let _one = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        if let Ok(mut m) = LAST_PANIC.lock() {
            *m = info.to_string();
        }
    }));
    let r = f();
    panic::set_hook(previous);
    r
}

const CORPUS_CAP: usize = 4096;
/// `run` reports progress after every this many inputs.
pub const PROGRESS_EVERY: u64 = 65_536;

/// Fuzzes one target. `progress` is called with the number of inputs run
/// every [`PROGRESS_EVERY`] inputs.
pub fn run(t: &Target, o: &Options, mut progress: impl FnMut(u64)) -> Stats {
    with_quiet_panics(|| {
        let mut rng = Rng::new(o.seed ^ fnv(t.name.as_bytes()));
        let seeds = (t.seeds)();
        let mut corpus: Vec<Vec<u8>> = seeds.clone();
        let mut classes: HashSet<u64> = HashSet::new();
        let mut trace_file = o
            .trace
            .as_ref()
            .and_then(|(_, path)| std::fs::File::create(path).ok());
        let start = Instant::now();
        let mut n = 0u64;
        let mut crash = None;
        while n < o.inputs {
            // The seeds go first, unchanged: they must pass too.
            let input = match seeds.get(n as usize) {
                Some(s) => s.clone(),
                None => next_input(&mut rng, t, &corpus),
            };
            if let (Some((from, _)), Some(f)) = (&o.trace, trace_file.as_mut()) {
                if n >= *from {
                    // Rewritten in place: a few syscalls, no open/close.
                    let _ = f
                        .seek(SeekFrom::Start(0))
                        .and_then(|_| f.write_all(&input))
                        .and_then(|_| f.set_len(input.len() as u64));
                }
            }
            match execute(t.check, &input) {
                Ok(class) => {
                    if classes.insert(class) {
                        if corpus.len() < CORPUS_CAP {
                            corpus.push(input);
                        } else {
                            let i = seeds.len() + rng.below(CORPUS_CAP - seeds.len());
                            corpus[i] = input;
                        }
                    }
                }
                Err(reason) => {
                    crash = Some(Crash {
                        index: n,
                        input,
                        reason,
                    });
                    n += 1;
                    break;
                }
            }
            n += 1;
            if n % PROGRESS_EVERY == 0 {
                progress(n);
            }
            if n % 1024 == 0 && o.time.is_some_and(|limit| start.elapsed() >= limit) {
                break;
            }
        }
        Stats {
            inputs: n,
            elapsed: start.elapsed(),
            corpus: corpus.len(),
            classes: classes.len(),
            crash,
        }
    })
}

fn next_input(rng: &mut Rng, t: &Target, corpus: &[Vec<u8>]) -> Vec<u8> {
    let base = rng.pick(corpus);
    let mut out = None;
    if let Some(structured) = t.structured {
        if rng.below(3) < 2 {
            out = structured(rng, base);
        }
    }
    let mut input = match out {
        Some(s) => {
            if rng.one_in(3) {
                havoc(rng, s, t.dict, corpus, t.max_len)
            } else {
                s
            }
        }
        None => havoc(rng, base.clone(), t.dict, corpus, t.max_len),
    };
    input.truncate(t.max_len);
    input
}

/// Byte values that tend to sit on edges: varint markers, ASCII syntax.
const INTERESTING: &[u8] = &[
    0, 1, 2, 0x7f, 0x80, 0xff, 250, 251, 252, 253, 254, b'0', b'9', b'-', b'+', b'.', b'"', b'\\',
    b'{', b'}', b'[', b']', b',', b':', b' ', b'\n', b'\r', b'\t', b'T', b'Z', b'e', b'@',
];

const INTERESTING_WIDE: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
    1 << 20,
    (1 << 20) + 1,
];

/// UTF-8 pieces, whole and broken: char boundaries are a classic panic.
const UTF8: &[&[u8]] = &[
    "é".as_bytes(),
    "€".as_bytes(),
    "𝄞".as_bytes(),
    "\u{fffd}".as_bytes(),
    "\u{200b}".as_bytes(),
    &[0xc3],
    &[0xe2, 0x82],
    &[0xf0, 0x9f, 0x98],
    &[0xff],
    &[0xed, 0xa0, 0x80],
];

/// A stack of 1–16 byte-level mutations.
pub fn havoc(
    rng: &mut Rng,
    mut d: Vec<u8>,
    dict: &[&[u8]],
    corpus: &[Vec<u8>],
    max_len: usize,
) -> Vec<u8> {
    let rounds = 1 << rng.below(5);
    for _ in 0..rounds {
        mutate_once(rng, &mut d, dict, corpus, max_len);
    }
    d
}

fn mutate_once(rng: &mut Rng, d: &mut Vec<u8>, dict: &[&[u8]], corpus: &[Vec<u8>], max_len: usize) {
    let len = d.len();
    match rng.below(18) {
        0 if len > 0 => {
            let i = rng.below(len);
            d[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            d[i] = rng.byte();
        }
        2 if len > 0 => {
            let i = rng.below(len);
            d[i] = *rng.pick(INTERESTING);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let delta = 1 + rng.below(35) as u8;
            d[i] = if rng.one_in(2) {
                d[i].wrapping_add(delta)
            } else {
                d[i].wrapping_sub(delta)
            };
        }
        4 if len > 0 => {
            let v = *rng.pick(INTERESTING_WIDE);
            let v = if rng.one_in(4) { v.wrapping_neg() } else { v };
            let width = *rng.pick(&[2usize, 4, 8]);
            let bytes = if rng.one_in(2) {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            let bytes = if rng.one_in(2) {
                &bytes[..width]
            } else {
                &bytes[8 - width..]
            };
            overwrite(d, rng.below(len), bytes);
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let bits = if rng.one_in(8) { 16 } else { 4 };
            let n = 1 + rng.skewed(bits);
            d.drain(at..(at + n).min(len));
        }
        6 => {
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            insert(d, rng.below(len + 1), &bytes);
        }
        7 => {
            let n = 1 + rng.skewed(6);
            let b = if rng.one_in(2) {
                rng.byte()
            } else {
                *rng.pick(INTERESTING)
            };
            insert(d, rng.below(len + 1), &vec![b; n]);
        }
        8 if len > 0 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(64));
            let chunk = d[from..from + n].to_vec();
            insert(d, rng.below(len + 1), &chunk);
        }
        9 if len > 0 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(64));
            let chunk = d[from..from + n].to_vec();
            overwrite(d, rng.below(len), &chunk);
        }
        10 | 11 if !dict.is_empty() => {
            let tok = *rng.pick(dict);
            insert(d, rng.below(len + 1), tok);
        }
        12 if !dict.is_empty() && len > 0 => {
            let tok = *rng.pick(dict);
            overwrite(d, rng.below(len), tok);
        }
        13 => {
            // Splice: a piece of another corpus entry.
            let other = rng.pick(corpus);
            if !other.is_empty() {
                let from = rng.below(other.len());
                let n = 1 + rng.below(other.len() - from);
                let chunk = other[from..from + n].to_vec();
                if rng.one_in(2) || len == 0 {
                    insert(d, rng.below(len + 1), &chunk);
                } else {
                    let at = rng.below(len);
                    d.truncate(at);
                    d.extend_from_slice(&chunk);
                }
            }
        }
        14 if len > 0 => {
            d.truncate(rng.below(len));
        }
        15 => {
            let piece = *rng.pick(UTF8);
            insert(d, rng.below(len + 1), piece);
        }
        16 => {
            // A run of digits: numbers past every integer width.
            let n = 1 + rng.below(25);
            let digits: Vec<u8> = (0..n).map(|_| b'0' + rng.below(10) as u8).collect();
            if len > 0 && rng.one_in(2) {
                overwrite(d, rng.below(len), &digits);
            } else {
                insert(d, rng.below(len + 1), &digits);
            }
        }
        17 if len > 0 && rng.one_in(8) => {
            // Repeat a chunk many times (long strings, long lists).
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(128));
            let times = 1 + rng.skewed(12);
            let chunk = d[from..from + n].repeat(times);
            if len + chunk.len() <= max_len {
                insert(d, from, &chunk);
            }
        }
        _ => {}
    }
}

fn insert(d: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let at = at.min(d.len());
    d.splice(at..at, bytes.iter().copied());
}

fn overwrite(d: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        match d.get_mut(at + i) {
            Some(x) => *x = *b,
            None => d.push(*b),
        }
    }
}

/// FNV-1a, for mixing names into seeds and naming crash files.
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_spread() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        assert!(xs.iter().all(|x| *x == b.next_u64()));
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            counts[a.below(10)] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    fn boom(input: &[u8]) -> Outcome {
        if input.starts_with(b"bo") {
            let v: Vec<u8> = Vec::new();
            return Ok(u64::from(v[input.len()]));
        }
        if input.starts_with(b"ba") {
            return Err("a property failed".into());
        }
        Ok(input.first().copied().map(u64::from).unwrap_or(0))
    }

    fn seeds() -> Vec<Vec<u8>> {
        vec![b"b".to_vec(), b"xyz".to_vec()]
    }

    const T: Target = Target {
        name: "test",
        about: "finds a panic behind a two-byte prefix",
        seeds,
        dict: &[b"o"],
        structured: None,
        max_len: 64,
        check: boom,
    };

    #[test]
    fn a_panic_is_caught_reported_and_replays() {
        let o = Options {
            inputs: 1_000_000,
            seed: 1,
            time: None,
            trace: None,
        };
        let s = run(&T, &o, |_| {});
        let c = s.crash.expect("the engine finds the panic or the failure");
        assert!(c.input.starts_with(b"bo") || c.input.starts_with(b"ba"));
        let again = with_quiet_panics(|| execute(T.check, &c.input));
        assert_eq!(again, Err(c.reason.clone()));
        // Same seed, same inputs.
        assert_eq!(run(&T, &o, |_| {}).crash, Some(c));
    }

    #[test]
    fn havoc_stays_within_the_length_cap() {
        let mut rng = Rng::new(3);
        let corpus = vec![vec![1u8; 50]];
        for _ in 0..10_000 {
            let d = havoc(&mut rng, vec![2u8; 60], &[b"tok"], &corpus, 100);
            // Inserting may pass the cap by a few small pieces; `next_input`
            // cuts to `max_len`. The repeat mutation itself respects it.
            assert!(d.len() < 100 + 16 * 64, "{}", d.len());
        }
    }
}
