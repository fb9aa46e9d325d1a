//! Stopping what a test started: a signal the process handles (SIGTERM),
//! then waiting until it is gone; SIGKILL only for one that outlives
//! `patience`. Blocking on purpose, so `Drop` can use it: a test ends only
//! once its processes have. `scripts/no-leftovers` checks the whole run.

use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Our own child: SIGTERM, wait (reaping it) up to `patience`, else SIGKILL
/// and wait again. False if it had to be killed.
pub fn child(child: &mut tokio::process::Child, patience: Duration) -> bool {
    let Some(pid) = child.id() else {
        return true; // already reaped
    };
    signal(pid, "TERM");
    if reaped(child, patience) {
        return true;
    }
    eprintln!("process {pid} ignored SIGTERM for {patience:?}: SIGKILL");
    let _ = child.start_kill();
    if !reaped(child, Duration::from_secs(10)) {
        eprintln!("process {pid} is still there after SIGKILL");
    }
    false
}

fn reaped(child: &mut tokio::process::Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(POLL),
        }
    }
}

/// The start time of `pid` (clock ticks since boot), which tells a process
/// from a later one given the same pid; `None` once it is gone or a zombie
/// (its parent reaps it; it runs no more).
pub fn started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every living descendant of `root`, with its start time.
pub fn descendants(root: u32) -> Vec<(u32, u64)> {
    let all: Vec<(u32, u32)> = pids()
        .into_iter()
        .filter_map(|p| Some((p, parent(p)?)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found
        .into_iter()
        .skip(1)
        .filter_map(|p| Some((p, started(p)?)))
        .collect()
}

/// Every living process whose command line mentions `needle` (a path only
/// this test uses), with its start time.
pub fn mentioning(needle: &str) -> Vec<(u32, u64)> {
    pids()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .filter_map(|p| Some((p, started(p)?)))
        .collect()
}

fn alive(pid: u32, since: u64) -> bool {
    started(pid) == Some(since)
}

/// Waits up to `within` until each of `procs` is reaped too: not even a
/// zombie is left under its pid (its parent, here init, reaps it a moment
/// after it exits). For callers about to start it again: a zombie still
/// counts as running for `kill -0` checks such as `emqxee-agent start`'s.
pub fn gone_and_reaped(procs: &[(u32, u64)], within: Duration) -> bool {
    let present = |pid: u32, since: u64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let rest = &stat[stat.rfind(')')? + 2..];
                rest.split(' ').nth(19)?.parse::<u64>().ok()
            })
            == Some(since)
    };
    let deadline = Instant::now() + within;
    while procs.iter().any(|(p, s)| present(*p, *s)) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Processes that are not our children (a detached agent, a browser's
/// helpers): wait up to `grace` for them to go by themselves, then SIGTERM
/// up to `patience`, then SIGKILL. Each is known by pid and start time, so
/// a pid given to a newer process is never signalled.
pub fn others(procs: &[(u32, u64)], grace: Duration, patience: Duration) {
    let wait = |within: Duration| {
        let deadline = Instant::now() + within;
        while procs.iter().any(|(p, s)| alive(*p, *s)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    };
    wait(grace);
    for (sig, within) in [("TERM", patience), ("KILL", Duration::from_secs(10))] {
        let left: Vec<u32> = procs
            .iter()
            .filter(|(p, s)| alive(*p, *s))
            .map(|(p, _)| *p)
            .collect();
        if left.is_empty() {
            return;
        }
        if sig == "KILL" {
            eprintln!("processes {left:?} ignored SIGTERM for {patience:?}: SIGKILL");
        }
        for p in left {
            signal(p, sig);
        }
        wait(within);
    }
}
