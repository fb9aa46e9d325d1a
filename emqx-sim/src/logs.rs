//! EMQX-style wrap logs: `emqx.log.1..N` plus `emqx.log.idx` / `emqx.log.siz`,
//! written like OTP's `disk_log` wrap handler: when the current file is full,
//! writing moves to the next index and, past N, wraps to `.1` and reuses it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

pub struct WrapLog {
    dir: PathBuf,
    max_bytes: u64,
    max_files: u32,
    current: u32,
    written: u64,
    file: File,
    pub format: Format,
    seq: u64,
}

const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

impl WrapLog {
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        max_files: u32,
        format: Format,
    ) -> std::io::Result<WrapLog> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("emqx.log.siz"),
            format!("{max_bytes} {max_files}\n"),
        )?;
        let file = Self::reuse(dir, 1)?;
        let mut log = WrapLog {
            dir: dir.to_path_buf(),
            max_bytes,
            max_files: max_files.max(1),
            current: 1,
            written: 0,
            file,
            format,
            seq: 0,
        };
        log.write_idx()?;
        Ok(log)
    }

    fn reuse(dir: &Path, n: u32) -> std::io::Result<File> {
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(dir.join(format!("emqx.log.{n}")))
    }

    fn write_idx(&mut self) -> std::io::Result<()> {
        // disk_log keeps the current index in a small binary file.
        std::fs::write(self.dir.join("emqx.log.idx"), [0u8, self.current as u8])
    }

    /// Writes one line for `node`; returns what was written.
    pub fn line(
        &mut self,
        node: &str,
        level_index: usize,
        message: &str,
    ) -> std::io::Result<Written> {
        self.seq += 1;
        let level = LEVELS[level_index % LEVELS.len()];
        let now = SystemTime::now();
        let time_us = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        // Both forms carry the same microseconds.
        let at = UNIX_EPOCH + std::time::Duration::from_micros(time_us);
        let line = match self.format {
            Format::Text => format!(
                "{} [{level}] msg: {message}, node: {node}, seq: {}",
                humantime::format_rfc3339_micros(at),
                self.seq
            ),
            Format::Json => serde_json::json!({"time": time_us, "level": level, "msg": message, "node": node, "seq": self.seq}).to_string(),
        };
        let bytes = line.len() as u64 + 1;
        if self.written + bytes > self.max_bytes && self.written > 0 {
            self.current = if self.current >= self.max_files {
                1
            } else {
                self.current + 1
            };
            self.file = Self::reuse(&self.dir, self.current)?;
            self.written = 0;
            self.write_idx()?;
        }
        writeln!(self.file, "{line}")?;
        self.written += bytes;
        Ok(Written {
            seq: self.seq,
            time_us,
            level,
            message: message.to_string(),
            line,
        })
    }
}

/// One line as written, for tests that compare what was collected.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub seq: u64,
    pub time_us: u64,
    pub level: &'static str,
    pub message: String,
    pub line: String,
}

/// A log writing job (`POST /__sim/logs`): `lines` lines at `rate` per
/// second into `dir`, every line also appended as JSON to `record`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub dir: PathBuf,
    pub node: String,
    #[serde(default)]
    pub json: bool,
    pub lines: u64,
    pub rate: u64,
    pub rotation_size: u64,
    pub rotation_count: u32,
    pub record: PathBuf,
}

/// Runs a job on the calling thread; bumps `written` as it goes.
pub fn run_job(job: &Job, written: &std::sync::atomic::AtomicU64) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    let format = if job.json { Format::Json } else { Format::Text };
    let mut log = WrapLog::open(&job.dir, job.rotation_size, job.rotation_count, format)?;
    let mut record = std::io::BufWriter::new(File::create(&job.record)?);
    let start = std::time::Instant::now();
    let rate = job.rate.max(1);
    let mut n = 0u64;
    while n < job.lines {
        // Keep to the rate in 5 ms slices.
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64 + 1;
        let due = due.min(job.lines);
        while n < due {
            let seq = n + 1;
            let message = if seq % 1000 == 0 {
                format!("alarm raised: disk usage high {seq}")
            } else {
                format!("simulated event {seq}")
            };
            let w = log.line(&job.node, (seq as usize * 5) % 8, &message)?;
            serde_json::to_writer(&mut record, &w)?;
            record.write_all(b"\n")?;
            n += 1;
        }
        written.store(n, Ordering::Relaxed);
        if n < job.lines {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    record.flush()?;
    written.store(n, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_reuses_files() {
        let dir = std::env::temp_dir().join(format!("emqx-sim-wrap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = WrapLog::open(&dir, 200, 3, Format::Text).expect("open");
        for i in 0..40 {
            log.line("emqx@n1", i, "hello").expect("line");
        }
        for n in 1..=3 {
            assert!(dir.join(format!("emqx.log.{n}")).exists());
        }
        assert!(!dir.join("emqx.log.4").exists(), "wrapped to .1 instead");
        assert!(dir.join("emqx.log.idx").exists() && dir.join("emqx.log.siz").exists());
        let first = std::fs::read_to_string(dir.join("emqx.log.1")).expect("read");
        assert!(first
            .lines()
            .all(|l| l.contains(" [") && l.contains("msg: hello")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
