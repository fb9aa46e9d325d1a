//! Holds many protocol-client sessions against one `ecp` node and prints the
//! server's memory per session and CPU use while they heartbeat.
//!
//! Run it in a process of its own (see `scripts/bench-sessions`); it binds
//! its sockets to several 127.0.0.x source addresses so 10,000 sessions do
//! not exhaust one address's ephemeral ports.

use clap::Parser;
use ecp_protocol::Health;
use ecp_testkit::bench::{cluster_with_token, login};
use ecp_testkit::procstat::{clk_tck, cpu_ticks, rss_kib};
use ecp_testkit::{register, register_body, Session};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    #[arg(long, default_value_t = 10)]
    agents_per_cluster: usize,
    /// How long to measure CPU while the sessions heartbeat, in seconds.
    #[arg(long, default_value_t = 60)]
    measure_secs: u64,
    /// Number of 127.0.0.x source addresses (from 127.0.0.2).
    #[arg(long, default_value_t = 8)]
    source_ips: u8,
}

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = match http.get(format!("{url}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return -1.0,
    };
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(-1.0)
}

#[tokio::main]
async fn main() -> Result<(), ecp_testkit::Error> {
    let a = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let token = login(&http, &a.url, &a.username, &a.password).await?;
    let clusters = a.sessions.div_ceil(a.agents_per_cluster.max(1));
    let t0 = Instant::now();
    let mut reg_tokens = Vec::new();
    for i in 0..clusters {
        let (_, t) = cluster_with_token(&http, &a.url, &token, &format!("bench {i}")).await?;
        reg_tokens.push(t);
    }
    println!("created {clusters} clusters in {:.1?}", t0.elapsed());

    let t0 = Instant::now();
    let sem = Arc::new(Semaphore::new(16));
    let mut handles = Vec::new();
    for i in 0..a.sessions {
        let body = register_body(
            &reg_tokens[i / a.agents_per_cluster],
            &format!("bench-{i}"),
            &format!("emqx@bench-{i}"),
            "5.6.0",
        );
        let (http, url, sem) = (http.clone(), a.url.clone(), sem.clone());
        handles.push(tokio::spawn(async move {
            let _p = sem.acquire().await;
            register(&http, &url, &body).await
        }));
    }
    let mut regs = Vec::new();
    for h in handles {
        regs.push(
            h.await?
                .map_err(|(s, v)| format!("register failed: {s} {v}"))?,
        );
    }
    let reg_secs = t0.elapsed().as_secs_f64();
    println!(
        "registered {} agents in {reg_secs:.1} s ({:.0}/s)",
        regs.len(),
        regs.len() as f64 / reg_secs
    );

    let rss_before = rss_kib(a.server_pid);
    let t0 = Instant::now();
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(Semaphore::new(256));
    let stop = Arc::new(tokio::sync::Notify::new());
    for (i, r) in regs.into_iter().enumerate() {
        let ip = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            2 + (i % usize::from(a.source_ips.max(1))) as u8,
        ));
        let (url, sem, connected, failed, stop) = (
            a.url.clone(),
            sem.clone(),
            connected.clone(),
            failed.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let permit = sem.acquire().await;
            let mut s = match Session::connect(&url, &r.token, &r.agent_id, Some(ip)).await {
                Ok(s) => s,
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("connect failed: {e}");
                    }
                    return;
                }
            };
            let node = format!("emqx@bench-{i}");
            if s.report(Health::Healthy, &[(node.as_str(), true)])
                .await
                .is_err()
            {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            let every = u64::from(
                s.settings
                    .as_ref()
                    .map(|x| x.heartbeat_interval_secs)
                    .unwrap_or(10),
            );
            // Spread heartbeats over the interval like real agents do.
            let first = Duration::from_millis((i as u64 * 997) % (every * 1000));
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + first,
                Duration::from_secs(every),
            );
            loop {
                tokio::select! {
                    _ = stop.notified() => return,
                    _ = tick.tick() => {
                        if s.heartbeat().await.is_err() { failed.fetch_add(1, Ordering::Relaxed); return; }
                    }
                    f = s.next_frame(Duration::from_secs(3600)) => {
                        if !matches!(f, Ok(Some(_))) { failed.fetch_add(1, Ordering::Relaxed); return; }
                    }
                }
            }
        });
    }
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < a.sessions {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let conn_secs = t0.elapsed().as_secs_f64();
    let n = connected.load(Ordering::Relaxed);
    println!(
        "connected {n} sessions ({} failed) in {conn_secs:.1} s",
        failed.load(Ordering::Relaxed)
    );
    let server_sessions = metric(&http, &a.url, "ecp_agent_sessions").await;
    // Let the connect burst settle (reports persisted, timers idle) before measuring.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_after = rss_kib(a.server_pid);
    let tck = clk_tck();
    let frames0 = metric(&http, &a.url, "ecp_frames_received_total").await;
    let c0 = cpu_ticks(a.server_pid);
    let m0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.measure_secs)).await;
    let c1 = cpu_ticks(a.server_pid);
    let secs = m0.elapsed().as_secs_f64();
    let frames1 = metric(&http, &a.url, "ecp_frames_received_total").await;
    let cpu = (c1 - c0) as f64 / tck as f64 / secs * 100.0;
    let still = metric(&http, &a.url, "ecp_agent_sessions").await;
    println!("--- results ---");
    println!(
        "sessions held:            {n} (server counted {server_sessions}, {still} at the end)"
    );
    println!(
        "server RSS before:        {:.1} MiB",
        rss_before as f64 / 1024.0
    );
    println!(
        "server RSS with sessions: {:.1} MiB",
        rss_after as f64 / 1024.0
    );
    println!(
        "RSS per session:          {:.1} KiB",
        (rss_after.saturating_sub(rss_before)) as f64 / n.max(1) as f64
    );
    println!("server CPU over {secs:.0} s:     {cpu:.1} % of one core");
    println!(
        "frames received:          {:.0}/s",
        (frames1 - frames0) / secs
    );
    println!(
        "registrations:            {:.0}/s",
        a.sessions as f64 / reg_secs
    );
    stop.notify_waiters();
    if failed.load(Ordering::Relaxed) > 0 || still < n as f64 {
        return Err(format!(
            "{} sessions failed or were dropped",
            failed.load(Ordering::Relaxed)
        )
        .into());
    }
    Ok(())
}
