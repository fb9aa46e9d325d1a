//! The metrics collector against `emqx-sim` in-process: one collection
//! reads what the scripted load says, for v5 and v4, Enterprise and open
//! source; alarms raised and cleared in the simulator are read with their
//! times; and the collector task sends samples, keeps them while no session
//! is up, and sends them after the next one comes.

use ecp_protocol::{Frame, MetricSample};
use emqx_sim::{Edition, SimConfig};
use emqxee_agent::emqx::Emqx;
use emqxee_agent::metrics::{Collection, Link, Metrics, Source};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

async fn sim(version: &str, edition: Edition) -> emqx_sim::Sim {
    let config = SimConfig {
        version: version.into(),
        edition,
        v4_bad_login_penalty: Duration::from_millis(10),
        ..SimConfig::default()
    };
    let (sim, server) = emqx_sim::start(config).expect("start emqx-sim");
    actix_web::rt::spawn(server);
    sim
}

fn emqx(sim: &emqx_sim::Sim) -> Emqx {
    Emqx::new(
        reqwest::Client::new(),
        &sim.url(),
        "admin",
        "public",
        Vec::new(),
    )
}

async fn post(sim: &emqx_sim::Sim, path: &str, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", sim.url()))
        .json(&body)
        .send()
        .await
        .expect("control call");
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

/// The simulator's clock moves `ms` ahead (counters grow by rate × ms).
fn time_passes(sim: &emqx_sim::Sim, ms: u64) {
    let mut st = sim.state.lock().expect("state");
    let to = st.clock_ms + ms;
    st.advance_to(to);
}

fn hits(sim: &emqx_sim::Sim, path: &str) -> u64 {
    let st = sim.state.lock().expect("state");
    st.hits.get(path).copied().unwrap_or(0)
}

fn value(c: &Collection, name: &str) -> Option<f64> {
    c.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

fn assert_values(c: &Collection, expected: &[(&str, f64)]) {
    for (name, v) in expected {
        assert_eq!(value(c, name), Some(*v), "{name} in {:?}", c.values);
    }
}

fn close(c: &Collection, name: &str, expected: f64) {
    let got = value(c, name).unwrap_or(f64::NAN);
    assert!(
        (got - expected).abs() < 0.5,
        "{name}: {got}, expected {expected}"
    );
}

const LOAD: (&str, f64) = ("connections", 3000.0);

#[actix_web::test]
async fn v5_enterprise_one_collection_reads_the_load() {
    let s = sim("5.6.0", Edition::Enterprise).await;
    post(
        &s,
        "/__sim/load",
        json!({"connections": 1000, "msgRate": 100, "dropRate": 10}),
    )
    .await;
    let mut src = Source::new(emqx(&s));
    let c = src.collect(Instant::now()).await;
    assert_values(
        &c,
        &[
            ("connections", 1000.0),
            ("live_connections", 1000.0),
            ("received_msg_rate", 100.0),
            ("sent_msg_rate", 90.0),
            ("dropped_msg_rate", 10.0),
            ("subscriptions", 2000.0),
            ("topics", 1000.0),
            ("retained_msg_count", 3.0),
            ("shared_subscriptions", 100.0),
            ("license_quota", 10_000.0),
            ("license_expiry_at", 10_281_859_200.0), // 2295-10-27
            ("nodes_running", 3.0),
            ("nodes_total", 3.0),
        ],
    );
    assert_eq!(c.values.len(), 13, "every metric: {:?}", c.values);
    let (active, gone) = c.alarms.expect("alarms read");
    assert!(active.is_empty() && gone.is_empty());

    // 1,000 → 3,000, and a node stops: its share is gone.
    post(&s, "/__sim/load", json!({"connections": 3000})).await;
    assert_values(
        &src.collect(Instant::now()).await,
        &[LOAD, ("received_msg_rate", 100.0)],
    );
    post(&s, "/__sim/nodes/emqx@node3.emqxcl/stop", json!({})).await;
    let c = src.collect(Instant::now()).await;
    assert_values(
        &c,
        &[
            ("connections", 2000.0),
            ("nodes_running", 2.0),
            ("nodes_total", 3.0),
        ],
    );

    // An alarm, raised then cleared, with EMQX's times (RFC 3339, +08:00).
    post(
        &s,
        "/__sim/alarms",
        json!({"name": "high_cpu_usage", "node": "emqx@node2",
        "message": "95% cpu usage", "details": {"usage": 95}, "action": "activate"}),
    )
    .await;
    let raised_us = s.state.lock().expect("state").alarms[0].activate_at_us;
    let (active, _) = src.collect(Instant::now()).await.alarms.expect("alarms");
    assert_eq!(active.len(), 1);
    let a = &active[0];
    assert_eq!(
        (a.node.as_str(), a.name.as_str(), a.message.as_str()),
        ("emqx@node2.emqxcl", "high_cpu_usage", "95% cpu usage")
    );
    assert_eq!(a.details, r#"{"usage":95}"#);
    assert_eq!(
        (a.activate_at_ms, a.deactivate_at_ms),
        (raised_us / 1000, None)
    );
    post(
        &s,
        "/__sim/alarms",
        json!({"name": "high_cpu_usage", "node": "emqx@node2", "action": "deactivate"}),
    )
    .await;
    let cleared_us = s.state.lock().expect("state").deactivated[0].deactivate_at_us;
    let (active, gone) = src.collect(Instant::now()).await.alarms.expect("alarms");
    assert!(active.is_empty());
    assert_eq!(gone[0].activate_at_ms, raised_us / 1000);
    assert_eq!(gone[0].deactivate_at_ms, cleared_us.map(|us| us / 1000));
}

#[actix_web::test]
async fn v5_open_source_has_no_licence_and_is_not_asked_again() {
    let s = sim("5.6.0", Edition::Opensource).await;
    post(
        &s,
        "/__sim/load",
        json!({"connections": 3000, "msgRate": 300, "dropRate": 30}),
    )
    .await;
    let mut src = Source::new(emqx(&s));
    let c = src.collect(Instant::now()).await;
    assert_values(
        &c,
        &[LOAD, ("received_msg_rate", 300.0), ("nodes_running", 3.0)],
    );
    assert_eq!(value(&c, "license_quota"), None);
    assert_eq!(value(&c, "license_expiry_at"), None);
    src.collect(Instant::now()).await;
    assert_eq!(
        hits(&s, "/api/v5/license"),
        1,
        "a missing endpoint is asked again only after a while"
    );
    assert_eq!(hits(&s, "/api/v5/monitor_current"), 2);
}

#[actix_web::test]
async fn v4_enterprise_rates_from_counters_and_current_metrics() {
    let s = sim("4.4.6", Edition::Enterprise).await;
    post(
        &s,
        "/__sim/load",
        json!({"connections": 3000, "msgRate": 300, "dropRate": 30}),
    )
    .await;
    let mut src = Source::new(emqx(&s));
    let t0 = Instant::now();
    let c = src.collect(t0).await;
    assert_values(
        &c,
        &[
            LOAD,
            ("live_connections", 3000.0),
            ("subscriptions", 6000.0),
            ("topics", 3000.0),
            ("retained_msg_count", 3.0),
            ("shared_subscriptions", 300.0),
            ("nodes_running", 3.0),
            ("nodes_total", 3.0),
            ("license_quota", 10_000.0),
            ("license_expiry_at", 10_281_859_200.0),
            // No earlier counters yet: the Enterprise overview's rates.
            ("received_msg_rate", 300.0),
            ("sent_msg_rate", 270.0),
        ],
    );
    assert_eq!(value(&c, "dropped_msg_rate"), None, "only counters give it");
    // Ten seconds later (the simulator's clock and the collector's).
    time_passes(&s, 10_000);
    let c = src.collect(t0 + Duration::from_secs(10)).await;
    close(&c, "received_msg_rate", 300.0);
    close(&c, "sent_msg_rate", 270.0);
    close(&c, "dropped_msg_rate", 30.0);
    // A stopped node vanishes from v4's lists; it still counts as known.
    post(&s, "/__sim/nodes/emqx@node2.emqxcl/stop", json!({})).await;
    time_passes(&s, 10_000);
    let c = src.collect(t0 + Duration::from_secs(20)).await;
    assert_values(
        &c,
        &[
            ("connections", 2000.0),
            ("nodes_running", 2.0),
            ("nodes_total", 3.0),
        ],
    );
    close(&c, "received_msg_rate", 200.0);

    post(
        &s,
        "/__sim/alarms",
        json!({"name": "high_system_memory_usage", "node": "emqx@node3",
        "message": "System memory usage is higher than 70%", "details": {"high_watermark": 70},
        "action": "activate"}),
    )
    .await;
    let raised_us = s.state.lock().expect("state").alarms[0].activate_at_us;
    let (active, gone) = src
        .collect(t0 + Duration::from_secs(30))
        .await
        .alarms
        .expect("alarms");
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].node.as_str(), active[0].activate_at_ms),
        ("emqx@node3.emqxcl", raised_us / 1000)
    );
    assert!(gone.is_empty());
    post(
        &s,
        "/__sim/alarms",
        json!({"name": "high_system_memory_usage", "node": "emqx@node3",
        "action": "deactivate"}),
    )
    .await;
    let (active, gone) = src
        .collect(t0 + Duration::from_secs(40))
        .await
        .alarms
        .expect("alarms");
    assert!(active.is_empty());
    assert!(gone[0]
        .deactivate_at_ms
        .is_some_and(|d| d >= raised_us / 1000));
}

#[actix_web::test]
async fn v4_open_source_lacks_the_enterprise_metrics() {
    let s = sim("4.4.6", Edition::Opensource).await;
    post(
        &s,
        "/__sim/load",
        json!({"connections": 3000, "msgRate": 300, "dropRate": 30}),
    )
    .await;
    let mut src = Source::new(emqx(&s));
    let t0 = Instant::now();
    let c = src.collect(t0).await;
    assert_values(&c, &[LOAD, ("nodes_running", 3.0)]);
    for name in ["license_quota", "license_expiry_at", "received_msg_rate"] {
        assert_eq!(value(&c, name), None, "{name}");
    }
    time_passes(&s, 15_000);
    let c = src.collect(t0 + Duration::from_secs(15)).await;
    close(&c, "received_msg_rate", 300.0);
    close(&c, "dropped_msg_rate", 30.0);
    assert_eq!(hits(&s, "/api/v4/license"), 1);
    assert_eq!(hits(&s, "/api/v4/monitor/current_metrics"), 1);
}

/// Waits for the next frame on `rx` that `pick` takes.
async fn next<T>(rx: &mut mpsc::Receiver<Frame>, pick: impl Fn(Frame) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let f = rx.recv().await.expect("the queue stays open");
            if let Some(t) = pick(f) {
                return t;
            }
        }
    })
    .await
    .expect("a frame in time")
}

#[actix_web::test]
async fn the_collector_keeps_samples_while_no_session_is_up() {
    let s = sim("5.6.0", Edition::Enterprise).await;
    post(
        &s,
        "/__sim/load",
        json!({"connections": 1000, "msgRate": 10}),
    )
    .await;
    let metrics = Metrics::spawn(emqx(&s));
    let (bulk, mut bulk_rx) = mpsc::channel(16);
    let (control, mut control_rx) = mpsc::channel(16);
    let link = |bulk: &mpsc::Sender<Frame>, control: &mpsc::Sender<Frame>| Link {
        bulk: bulk.clone(),
        alarms: control.clone(),
        interval_secs: 1,
    };
    metrics.up(link(&bulk, &control)).await;
    let first = next(&mut bulk_rx, |f| match f {
        Frame::Metrics(b) => Some(b),
        _ => None,
    })
    .await;
    let sample: &MetricSample = &first.samples[0];
    assert_eq!(sample.at_ms % 1000, 0, "on the interval");
    assert_eq!(sample.get("connections"), Some(1000.0));
    // The alarms once per session, and again when they change.
    let snap = next(&mut control_rx, |f| match f {
        Frame::Alarms(a) => Some(a),
        _ => None,
    })
    .await;
    assert!(snap.active.is_empty());
    post(
        &s,
        "/__sim/alarms",
        json!({"name": "partition", "action": "activate"}),
    )
    .await;
    let snap = next(&mut control_rx, |f| match f {
        Frame::Alarms(a) if !a.active.is_empty() => Some(a),
        _ => None,
    })
    .await;
    assert_eq!(snap.active[0].name, "partition");
    metrics.acked(first.batch);

    // No session: collecting goes on (two more readings of EMQX).
    metrics.down();
    let read = hits(&s, "/api/v5/monitor_current");
    tokio::time::timeout(Duration::from_secs(30), async {
        while hits(&s, "/api/v5/monitor_current") < read + 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the collector reads EMQX without a session");
    post(&s, "/__sim/load", json!({"connections": 3000})).await;
    // The next session gets what was collected meanwhile, oldest first,
    // spaced by the interval, and the alarms once more.
    while bulk_rx.try_recv().is_ok() {}
    metrics.up(link(&bulk, &control)).await;
    let batch = next(&mut bulk_rx, |f| match f {
        Frame::Metrics(b) => Some(b),
        _ => None,
    })
    .await;
    assert!(batch.batch > first.batch);
    assert!(batch.samples.len() >= 2, "{:?}", batch.samples);
    let times: Vec<u64> = batch.samples.iter().map(|s| s.at_ms).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] == 1000), "{times:?}");
    assert!(
        times[0] > first.samples[first.samples.len() - 1].at_ms,
        "acked samples are gone"
    );
    let snap = next(&mut control_rx, |f| match f {
        Frame::Alarms(a) => Some(a),
        _ => None,
    })
    .await;
    assert_eq!(snap.active.len(), 1);
    // Acknowledged, the samples go; the next batch has only new ones.
    metrics.acked(batch.batch);
    let later = next(&mut bulk_rx, |f| match f {
        Frame::Metrics(b) if b.batch > batch.batch => Some(b),
        _ => None,
    })
    .await;
    assert!(later.samples[0].at_ms > times[times.len() - 1]);
    assert_eq!(
        later.samples[later.samples.len() - 1].get("connections"),
        Some(3000.0)
    );
}
