//! Many clusters reporting EMQX metrics into one `ecp` node: creates N
//! clusters with one agent each, opens protocol-3 sessions, then
//! 1. backfills one hour of samples per cluster (the backlog path: one
//!    batch of `3600 / interval` samples, acknowledged once stored) and
//!    prints the store's growth for that hour, and
//! 2. reports one sample per cluster every interval, spread like real
//!    agents, and prints the server's CPU and RSS over the measurement.
//!
//! Storage is read by the caller-supplied command (`--storage-cmd`, which
//! prints bytes: the embedded store's file size, or Redis `used_memory`),
//! so the same binary measures both back ends. Run it in a process of its
//! own (see `scripts/bench-metrics`).

use clap::Parser;
use ecp_protocol::{Frame, Health, MetricSample, MetricsBatch};
use ecp_testkit::bench::{cluster_with_token, login};
use ecp_testkit::procstat::{clk_tck, cpu_ticks, rss_kib};
use ecp_testkit::{register, register_body, Session};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

#[derive(Parser)]
struct Args {
    /// Base URL of the ecp node.
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "admin")]
    username: String,
    #[arg(long, env = "ECP_ADMIN_PASSWORD")]
    password: String,
    /// PID of the ecp process (its RSS and CPU time are read from /proc).
    #[arg(long)]
    server_pid: u32,
    #[arg(long, default_value_t = 1_000)]
    clusters: usize,
    /// Seconds between samples (the server's `metrics.collect_interval_secs`).
    #[arg(long, default_value_t = 15)]
    interval_secs: u64,
    /// How long to measure CPU while the clusters report, in seconds.
    #[arg(long, default_value_t = 60)]
    measure_secs: u64,
    /// A shell command printing the store's size in bytes.
    #[arg(long)]
    storage_cmd: String,
    /// Number of 127.0.0.x source addresses (from 127.0.0.2).
    #[arg(long, default_value_t = 4)]
    source_ips: u8,
    /// Samples per backlog batch (the agent's `BATCH_SAMPLES`).
    #[arg(long, default_value_t = 60)]
    batch_samples: usize,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A sample as an EMQX 5 Enterprise cluster's agent sends it.
fn sample(at_ms: u64, i: usize, k: u64) -> MetricSample {
    let c = (1_000 + (i as u64 * 37 + k * 11) % 2_000) as f64;
    let values = [
        ("connections", c),
        ("live_connections", c - 3.0),
        ("received_msg_rate", (k % 97) as f64 * 10.5),
        ("sent_msg_rate", (k % 89) as f64 * 9.25),
        ("dropped_msg_rate", (k % 7) as f64),
        ("subscriptions", c * 2.0),
        ("topics", c / 2.0),
        ("retained_msg_count", 12.0),
        ("shared_subscriptions", 4.0),
        ("license_quota", 10_000.0),
        ("license_expiry_at", 1_900_000_000.0),
        ("nodes_running", 3.0),
        ("nodes_total", 3.0),
    ];
    MetricSample {
        at_ms,
        values: values.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
    }
}

fn storage(cmd: &str) -> u64 {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// Waits for the MetricsAck of `batch`, answering nothing else.
async fn acked(s: &mut Session, batch: u64) -> Result<(), String> {
    loop {
        match s.next_frame(Duration::from_secs(120)).await {
            Ok(Some(Frame::MetricsAck { batch: b })) if b == batch => return Ok(()),
            Ok(Some(_)) => continue,
            Ok(None) => return Err(format!("closed: {:?}", s.close_reason)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), ecp_testkit::Error> {
    let a = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let token = login(&http, &a.url, &a.username, &a.password).await?;
    let t0 = Instant::now();
    let mut regs = Vec::new();
    for i in 0..a.clusters {
        let (_, t) = cluster_with_token(&http, &a.url, &token, &format!("metrics {i}")).await?;
        let body = register_body(
            &t,
            &format!("metrics-{i}"),
            &format!("emqx@metrics-{i}"),
            "5.6.0",
        );
        let r = register(&http, &a.url, &body)
            .await
            .map_err(|(s, v)| format!("register failed: {s} {v}"))?;
        regs.push(r);
    }
    println!(
        "created and registered {} clusters in {:.1?}",
        a.clusters,
        t0.elapsed()
    );

    let per_hour = 3_600 / a.interval_secs.max(1);
    let size0 = storage(&a.storage_cmd);
    let rss0 = rss_kib(a.server_pid);
    let backfilled = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let sem = Arc::new(Semaphore::new(64));
    let t0 = Instant::now();
    let start = now_ms();
    for (i, r) in regs.into_iter().enumerate() {
        let ip = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            2 + (i % usize::from(a.source_ips.max(1))) as u8,
        ));
        let (url, sem, backfilled, failed, sent, stop) = (
            a.url.clone(),
            sem.clone(),
            backfilled.clone(),
            failed.clone(),
            sent.clone(),
            stop.clone(),
        );
        let interval_ms = a.interval_secs * 1000;
        let batch_samples = a.batch_samples;
        tokio::spawn(async move {
            let permit = sem.acquire().await;
            let fail = |e: String| {
                if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("cluster {i}: {e}");
                }
            };
            let mut s =
                match Session::connect_speaking(3, &url, &r.token, &r.agent_id, Some(ip)).await {
                    Ok(s) => s,
                    Err(e) => return fail(format!("connect: {e}")),
                };
            let node = format!("emqx@metrics-{i}");
            if let Err(e) = s.report(Health::Healthy, &[(node.as_str(), true)]).await {
                return fail(format!("report: {e}"));
            }
            // The hour before `start`, as a backlog sent like the agent
            // sends one: batches of `batch_samples`, one in flight.
            let first = start - per_hour * interval_ms;
            let all: Vec<MetricSample> = (0..per_hour)
                .map(|k| sample(first + k * interval_ms, i, k))
                .collect();
            let mut n = 0u64;
            for chunk in all.chunks(batch_samples.max(1)) {
                n += 1;
                let batch = Frame::Metrics(MetricsBatch {
                    batch: n,
                    samples: chunk.to_vec(),
                });
                if let Err(e) = s.send(&batch).await {
                    return fail(format!("send: {e}"));
                }
                if let Err(e) = acked(&mut s, n).await {
                    return fail(format!("backfill: {e}"));
                }
            }
            drop(permit);
            backfilled.fetch_add(1, Ordering::Relaxed);
            // Then live, one sample per interval, spread over the interval.
            let offset = (i as u64 * 997) % interval_ms;
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + Duration::from_millis(offset),
                Duration::from_millis(interval_ms),
            );
            loop {
                tokio::select! {
                    _ = stop.notified() => return,
                    _ = tick.tick() => {
                        n += 1;
                        let f = Frame::Metrics(MetricsBatch { batch: n, samples: vec![sample(now_ms(), i, per_hour + n)] });
                        if let Err(e) = s.send(&f).await { return fail(format!("send: {e}")); }
                        if let Err(e) = acked(&mut s, n).await { return fail(format!("live: {e}")); }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while backfilled.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < a.clusters {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fill_secs = t0.elapsed().as_secs_f64();
    let n = backfilled.load(Ordering::Relaxed);
    // Let the stores settle (embedded: the file is written at commit).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let size1 = storage(&a.storage_cmd);
    let samples = n as u64 * per_hour;
    println!(
        "backfilled one hour ({per_hour} samples) for {n} clusters ({} failed) in {fill_secs:.1} s: {:.0} samples/s",
        failed.load(Ordering::Relaxed),
        samples as f64 / fill_secs
    );

    let rss1 = rss_kib(a.server_pid);
    let tck = clk_tck();
    let sent0 = sent.load(Ordering::Relaxed);
    let c0 = cpu_ticks(a.server_pid);
    let m0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.measure_secs)).await;
    let c1 = cpu_ticks(a.server_pid);
    let secs = m0.elapsed().as_secs_f64();
    let live = sent.load(Ordering::Relaxed) - sent0;
    let rss2 = rss_kib(a.server_pid);
    let cpu = (c1 - c0) as f64 / tck as f64 / secs * 100.0;
    stop.notify_waiters();
    let growth = size1.saturating_sub(size0);
    let per_cluster_hour = growth as f64 / n.max(1) as f64;
    println!("--- results ---");
    println!(
        "store growth, one hour of {n} clusters: {:.2} MiB ({:.1} KiB per cluster per hour, {:.1} bytes per sample)",
        growth as f64 / 1_048_576.0,
        per_cluster_hour / 1024.0,
        growth as f64 / samples.max(1) as f64
    );
    println!(
        "per cluster per day (raw tier):         {:.2} MiB; {n} clusters, 24 h kept: {:.0} MiB",
        per_cluster_hour * 24.0 / 1_048_576.0,
        growth as f64 * 24.0 / 1_048_576.0
    );
    println!(
        "live samples stored:                    {:.1}/s ({live} in {secs:.0} s)",
        live as f64 / secs
    );
    println!("server CPU over {secs:.0} s:                 {cpu:.1} % of one core");
    println!(
        "server RSS:                             {:.1} MiB before, {:.1} MiB after the backfill, {:.1} MiB after {secs:.0} s live",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss2 as f64 / 1024.0
    );
    if failed.load(Ordering::Relaxed) > 0 {
        return Err(format!("{} clusters failed", failed.load(Ordering::Relaxed)).into());
    }
    Ok(())
}
