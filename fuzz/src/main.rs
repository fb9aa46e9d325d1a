//! `ecp-fuzz`: runs the fuzz targets (usually through `scripts/fuzz`).
//!
//! ```text
//! ecp-fuzz [--target NAME]... [--inputs N] [--seed S] [--time SECS] [--crash-dir DIR]
//! ecp-fuzz --replay FILE [--target NAME]
//! ecp-fuzz --list
//! ```
//!
//! Each target runs in a child process of its own, so one that aborts the
//! process (stack overflow, failed allocation) cannot take the others down:
//! the parent then runs it again from its last progress mark with every
//! input written to a file first, and that file is the crashing input.

use ecp_fuzz::engine::{self, fnv, Options, PROGRESS_EVERY};
use ecp_fuzz::targets::{by_name, ALL};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

const USAGE: &str =
    "usage: ecp-fuzz [--target NAME]... [--inputs N] [--seed S] [--time SECS] [--crash-dir DIR]
       ecp-fuzz --replay FILE [--target NAME]
       ecp-fuzz --list
N accepts 10000000, 10_000_000, 10M or 500k. Defaults: every target, 10M inputs,
seed 1, no time limit, crash dir target/fuzz-crashes.";

struct Args {
    targets: Vec<String>,
    inputs: u64,
    seed: u64,
    time: Option<Duration>,
    crash_dir: PathBuf,
    replay: Option<PathBuf>,
    list: bool,
    /// Internal: run one target in this process and report on stdout.
    worker: bool,
    trace_from: Option<u64>,
}

fn count(s: &str) -> Result<u64, String> {
    let s = s.replace('_', "");
    let (digits, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000),
        _ => (s.as_str(), 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("not a count: {s}"))
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        targets: Vec::new(),
        inputs: 10_000_000,
        seed: 1,
        time: None,
        crash_dir: PathBuf::from("target/fuzz-crashes"),
        replay: None,
        list: false,
        worker: false,
        trace_from: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--target" | "-t" => a.targets.push(value()?),
            "--inputs" | "-n" => a.inputs = count(&value()?)?,
            "--seed" => a.seed = count(&value()?)?,
            "--time" => {
                let secs: f64 = value()?.parse().map_err(|_| "--time takes seconds")?;
                a.time = Some(Duration::from_secs_f64(secs.max(0.0)));
            }
            "--crash-dir" => a.crash_dir = PathBuf::from(value()?),
            "--replay" => a.replay = Some(PathBuf::from(value()?)),
            "--list" => a.list = true,
            "--worker" => a.worker = true,
            "--trace-from" => a.trace_from = Some(count(&value()?)?),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    for t in &a.targets {
        if by_name(t).is_none() {
            return Err(format!("no target {t} (see --list)"));
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("ecp-fuzz: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.list {
        for t in ALL {
            println!("{:<10} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    if let Some(file) = &args.replay {
        return replay(file, args.targets.first().map(String::as_str));
    }
    if args.worker {
        return worker(&args);
    }
    let names: Vec<&str> = if args.targets.is_empty() {
        ALL.iter().map(|t| t.name).collect()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    println!(
        "ecp-fuzz: {} input(s) per target, seed {}{}",
        args.inputs,
        args.seed,
        args.time
            .map(|t| format!(", at most {:.0} s per target", t.as_secs_f64()))
            .unwrap_or_default()
    );
    let mut failed = 0;
    for name in names {
        if !supervise(&args, name) {
            failed += 1;
        }
    }
    if failed > 0 {
        println!("ecp-fuzz: {failed} target(s) crashed; see above");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Runs one target in a child process; `false` when it found a crash.
fn supervise(args: &Args, name: &str) -> bool {
    let Ok(exe) = std::env::current_exe() else {
        println!("{name}: cannot find this program's path");
        return false;
    };
    let child = |trace_from: Option<u64>| {
        // The abort came before the next progress mark: a traced run
        // needs to go no further than that.
        let inputs = match trace_from {
            Some(from) => args.inputs.min(from + PROGRESS_EVERY),
            None => args.inputs,
        };
        let mut c = Command::new(&exe);
        c.args(["--worker", "--target", name])
            .args(["--inputs", &inputs.to_string()])
            .args(["--seed", &args.seed.to_string()])
            .arg("--crash-dir")
            .arg(&args.crash_dir)
            .stdout(Stdio::piped());
        if let Some(t) = args.time {
            c.args(["--time", &t.as_secs_f64().to_string()]);
        }
        if let Some(from) = trace_from {
            c.args(["--trace-from", &from.to_string()]);
        }
        c
    };
    let (status, mark) = run_child(child(None));
    match status {
        Some(0) => true,
        Some(1) => false,
        _ => {
            // Aborted: again from the last mark, writing each input first.
            println!("{name}: the process aborted after input {mark}; running again from there to catch the input");
            let (status, _) = run_child(child(Some(mark)));
            let trace = trace_path(&args.crash_dir, name);
            match status {
                Some(0) => println!("{name}: the second run did not abort (not reproducible)"),
                Some(1) => {}
                _ => match std::fs::read(&trace) {
                    Ok(input) => {
                        let file = save(&args.crash_dir, name, &input);
                        println!("{name}: CRASH (process aborted, see its message above)");
                        println!("  input saved to {}", file.display());
                        println!("  replay: scripts/fuzz --replay {}", file.display());
                    }
                    Err(e) => println!("{name}: no traced input ({e})"),
                },
            }
            let _ = std::fs::remove_file(trace);
            false
        }
    }
}

/// Runs a worker, echoing its report; returns its exit code and the last
/// progress mark it printed.
fn run_child(mut c: Command) -> (Option<i32>, u64) {
    let mut mark = 0;
    let Ok(mut child) = c.spawn() else {
        return (None, 0);
    };
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("progress ") {
                mark = n.trim().parse().unwrap_or(mark);
            } else {
                println!("{line}");
            }
        }
    }
    let code = child.wait().ok().and_then(|s| s.code());
    (code, mark)
}

fn trace_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-last-input.bin"))
}

fn save(dir: &Path, name: &str, input: &[u8]) -> PathBuf {
    let file = dir.join(format!("{name}-{:016x}.bin", fnv(input)));
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&file, input)) {
        println!("  cannot save the input to {}: {e}", file.display());
    }
    file
}

fn worker(args: &Args) -> ExitCode {
    let Some(t) = args.targets.first().and_then(|n| by_name(n)) else {
        return ExitCode::from(2);
    };
    let trace = args.trace_from.map(|from| {
        let _ = std::fs::create_dir_all(&args.crash_dir);
        (from, trace_path(&args.crash_dir, t.name))
    });
    let o = Options {
        inputs: args.inputs,
        seed: args.seed,
        time: args.time,
        trace,
    };
    let s = engine::run(t, &o, |n| println!("progress {n}"));
    println!(
        "{:<8} {:>11} inputs in {:>6.1} s = {:>9.0} inputs/s (corpus {}, {} outcome classes){}",
        t.name,
        s.inputs,
        s.elapsed.as_secs_f64(),
        s.per_sec(),
        s.corpus,
        s.classes,
        if s.crash.is_none() { ", no crash" } else { "" }
    );
    match s.crash {
        None => ExitCode::SUCCESS,
        Some(c) => {
            let file = save(&args.crash_dir, t.name, &c.input);
            println!("{}: CRASH at input {}: {}", t.name, c.index, c.reason);
            println!(
                "  input ({} bytes) saved to {}",
                c.input.len(),
                file.display()
            );
            println!("  replay: scripts/fuzz --replay {}", file.display());
            ExitCode::from(1)
        }
    }
}

/// Runs one saved input through its target, with the ordinary panic hook
/// (set RUST_BACKTRACE=1 for a backtrace). The target comes from the file
/// name (`NAME-HASH.bin`) unless `--target` names it.
fn replay(file: &Path, target: Option<&str>) -> ExitCode {
    let from_name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit_once('-'))
        .map(|(name, _)| name);
    let Some(t) = target.or(from_name).and_then(by_name) else {
        eprintln!("ecp-fuzz: which target? name it with --target");
        return ExitCode::from(2);
    };
    let input = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ecp-fuzz: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    println!(
        "replaying {} ({} bytes) through {}",
        file.display(),
        input.len(),
        t.name
    );
    println!(
        "input: {:?}",
        String::from_utf8_lossy(&input[..input.len().min(512)])
    );
    match (t.check)(&input) {
        Ok(class) => {
            println!("{}: passes (outcome class {class:#x})", t.name);
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("{}: FAILS: {why}", t.name);
            ExitCode::from(1)
        }
    }
}
