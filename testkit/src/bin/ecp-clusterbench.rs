//! Multi-node figures (see `scripts/bench-cluster`): the latency from an
//! agent's report on node C to node A's console stream (p50/p99), and
//! registrations per second on one node.

use clap::Parser;
use ecp_protocol::Health;
use ecp_testkit::bench::{cluster_with_token, login};
use ecp_testkit::{register, register_body, Session};
use futures_util::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Parser)]
struct Args {
    /// Node A: the console stream is read here.
    #[arg(long)]
    a: String,
    /// Node C: agents connect here.
    #[arg(long)]
    c: String,
    #[arg(long, env = "ECP_ADMIN_PASSWORD")]
    password: String,
    #[arg(long, default_value_t = 50)]
    agents: usize,
    #[arg(long, default_value_t = 400)]
    samples: usize,
    #[arg(long, default_value_t = 2000)]
    registrations: usize,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), ecp_testkit::Error> {
    let a = Args::parse();
    let http = reqwest::Client::new();
    let token_a = login(&http, &a.a, "admin", &a.password).await?;
    let token_c = login(&http, &a.c, "admin", &a.password).await?;

    // Node A's console stream: (cluster id, status) as they arrive.
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, String, Instant)>();
    let resp = http
        .get(format!("{}/api/events", a.a))
        .bearer_auth(&token_a)
        .send()
        .await?;
    tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    if let Ok(v) = serde_json::from_str::<Value>(data) {
                        if v["type"] == "upserted" {
                            let c = &v["cluster"];
                            let _ = tx.send((
                                c["id"].as_str().unwrap_or_default().into(),
                                c["status"].as_str().unwrap_or_default().into(),
                                Instant::now(),
                            ));
                        }
                    }
                }
            }
        }
    });

    // Agents on node C.
    let mut sessions = Vec::new();
    for i in 0..a.agents {
        let (id, reg_token) =
            cluster_with_token(&http, &a.c, &token_c, &format!("bench {i}")).await?;
        let reg = register(
            &http,
            &a.c,
            &register_body(&reg_token, &format!("b{i}"), &format!("emqx@b{i}"), "5.6.0"),
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
        let mut s = Session::connect(&a.c, &reg.token, &reg.agent_id, None).await?;
        s.report(Health::Healthy, &[("emqx@n", true)]).await?;
        sessions.push((id, s));
    }
    // Let every cluster reach running first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while rx.try_recv().is_ok() {}

    let mut lat = Vec::with_capacity(a.samples);
    for k in 0..a.samples {
        let (id, s) = &mut sessions[k % a.agents];
        let bad = (k / a.agents) % 2 == 0;
        let (health, want) = if bad {
            (
                Health::NodesStopped {
                    nodes: vec!["emqx@x".into()],
                },
                "abnormal",
            )
        } else {
            (Health::Healthy, "running")
        };
        let t = Instant::now();
        s.report(health, &[("emqx@n", true)]).await?;
        loop {
            let (cid, status, at) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await?
                .ok_or("stream ended")?;
            if &cid == id && status == want {
                lat.push(at - t);
                break;
            }
        }
    }
    lat.sort();

    // Registrations per second on one node (A), 32 at a time.
    let (_, reg_token) = cluster_with_token(&http, &a.a, &token_a, "registrations").await?;
    let t = Instant::now();
    let mut ok = 0usize;
    let bodies: Vec<_> = (0..a.registrations)
        .map(|i| register_body(&reg_token, &format!("r{i}"), &format!("emqx@r{i}"), "5.6.0"))
        .collect();
    for chunk in bodies.chunks(32) {
        let calls = chunk.iter().map(|b| register(&http, &a.a, b));
        ok += futures_util::future::join_all(calls)
            .await
            .into_iter()
            .filter(|r| r.is_ok())
            .count();
    }
    let rate = ok as f64 / t.elapsed().as_secs_f64();
    println!(
        "status change, agent report on node C -> console stream on node A ({} samples):",
        lat.len()
    );
    println!(
        "  p50 {:.2} ms, p99 {:.2} ms",
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "registrations on one node: {rate:.0}/s ({ok} of {} accepted)",
        a.registrations
    );
    println!(
        "RESULT p50_ms={:.3} p99_ms={:.3} reg_per_s={rate:.1}",
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
