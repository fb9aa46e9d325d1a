//! Log collection end to end (PRODUCT.md §8): `emqx-sim` writes EMQX wrap
//! logs for two nodes (one in text, one in JSON), one `emqxee-agent` per node
//! tails them, and ECP stores them — while agents are SIGKILLed and ECP
//! restarts. Afterwards the stored log equals what was written, exactly.

use crate::harness::*;
use crate::procs::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const LINES_PER_NODE: u64 = 100_000;
const RATE_PER_NODE: u64 = 12_000;

#[derive(Debug, Clone, PartialEq)]
struct Line {
    node: String,
    time_us: u64,
    level: String,
    message: String,
    seq: String,
}

fn written(record: &Path, node: &str) -> Vec<Line> {
    std::fs::read_to_string(record)
        .expect("record")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("record line");
            Line {
                node: node.to_string(),
                time_us: v["timeUs"].as_u64().expect("timeUs"),
                level: v["level"].as_str().expect("level").to_string(),
                message: v["message"].as_str().expect("message").to_string(),
                seq: v["seq"].to_string(),
            }
        })
        .collect()
}

fn stored(v: &Value) -> Line {
    let time = v["time"].as_str().expect("time");
    let t = humantime::parse_rfc3339(time).expect("rfc3339");
    let seq = match &v["fields"]["seq"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Line {
        node: v["node"].as_str().expect("node").to_string(),
        time_us: t
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_micros() as u64,
        level: v["level"].as_str().expect("level").to_string(),
        message: v["message"].as_str().expect("message").to_string(),
        seq,
    }
}

/// Every line matching `query`, oldest first (following `next`).
async fn all(api: &Api, id: &str, query: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, v) = api
            .get(&format!(
                "{P}/clusters/{id}/logs?limit=1000&{query}{cursor}"
            ))
            .await;
        assert_eq!(s, 200, "{query}: {v}");
        out.extend(v["data"].as_array().expect("data").iter().map(stored));
        match v["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    out.reverse();
    out
}

async fn sim_node(cluster: &str, self_node: usize) -> Sim {
    Sim::start_with(
        "5.6.0",
        2,
        cluster,
        &["--self-node", &self_node.to_string()],
    )
    .await
}

async fn register(server: &Server, token: &str, sim: &Sim, dir: &Path) -> Agent {
    let agent = Agent::new();
    assert!(agent.cmd(&["start"]).await.status.success());
    let mut args = seed_args(&server.base, token, &sim.url, "public");
    args.extend([
        "--enable-log".to_string(),
        "--log-dir".to_string(),
        dir.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = agent.cmd(&args).await;
    assert!(out.status.success(), "{:?}", text(&out));
    agent
}

async fn job_progress(sim: &Sim) -> Value {
    reqwest::get(format!("{}/__sim/logs", sim.url))
        .await
        .expect("status")
        .json::<Value>()
        .await
        .expect("json")["jobs"][0]
        .clone()
}

async fn wait_written(sim: &Sim, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while job_progress(sim).await["written"].as_u64().unwrap_or(0) < at_least {
        assert!(Instant::now() < deadline, "the simulator stopped writing");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling another process
    }
}

#[tokio::test]
async fn every_written_line_is_stored_once_in_order_through_agent_kills_and_an_ecp_restart() {
    let mut server = Server::start_with(&[
        ("ECP_AGENT_REPORT_INTERVAL_SECS", "1"),
        ("ECP_AGENT_HEARTBEAT_INTERVAL_SECS", "2"),
    ])
    .await;
    let api = server.api().await;
    let mut events = api.events().await;
    let id = api.create_cluster("logs").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dirs = [tmp.path().join("n1"), tmp.path().join("n2")];
    for d in &dirs {
        std::fs::create_dir_all(d).expect("dir");
    }
    let sims = [sim_node("logsc", 1).await, sim_node("logsc", 2).await];
    let agents = [
        register(&server, &token, &sims[0], &dirs[0]).await,
        register(&server, &token, &sims[1], &dirs[1]).await,
    ];
    events
        .wait(&id, Duration::from_secs(20), |c| c["agents"]["online"] == 2)
        .await;
    let nodes = [sims[0].node(1), sims[1].node(2)];

    // Both nodes write at once: node 1 text, node 2 JSON, 512 KiB files in a
    // ring of 16, so files are reused while the agents read.
    let started = Instant::now();
    for (i, sim) in sims.iter().enumerate() {
        let r = reqwest::Client::new()
            .post(format!("{}/__sim/logs", sim.url))
            .json(&json!({"dir": dirs[i], "node": nodes[i], "json": i == 1,
                "lines": LINES_PER_NODE, "rate": RATE_PER_NODE,
                "rotationSize": 512 * 1024, "rotationCount": 16,
                "record": tmp.path().join(format!("record-{i}.jsonl"))}))
            .send()
            .await
            .expect("start job");
        assert_eq!(r.status(), 202);
    }
    // Trouble while they write: agent 1 SIGKILLed, ECP restarted, agent 1
    // SIGKILLed again, agent 2 SIGKILLed.
    wait_written(&sims[0], LINES_PER_NODE / 5).await;
    agents[0].kill9();
    assert!(agents[0].cmd(&["start"]).await.status.success());
    wait_written(&sims[0], LINES_PER_NODE * 2 / 5).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    server.restart_on(&addr).await;
    wait_written(&sims[0], LINES_PER_NODE * 3 / 5).await;
    agents[0].kill9();
    assert!(agents[0].cmd(&["start"]).await.status.success());
    wait_written(&sims[1], LINES_PER_NODE * 4 / 5).await;
    agents[1].kill9();
    assert!(agents[1].cmd(&["start"]).await.status.success());
    // The writers' own figures.
    let mut rates = Vec::new();
    for sim in &sims {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let p = job_progress(sim).await;
            if p["done"] == true {
                assert!(p["error"].is_null(), "{p}");
                rates.push(p["linesPerSec"].as_f64().expect("rate"));
                break;
            }
            assert!(Instant::now() < deadline, "writer did not finish: {p}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let write_done = started.elapsed();
    let total_rate: f64 = rates.iter().sum();
    assert!(total_rate >= 20_000.0, "written at {rates:?} lines/s");

    // Everything arrives: follow the live tail until all lines are stored.
    let api = Api::login(&server.base, "admin", ADMIN_PASSWORD).await;
    let total = (2 * LINES_PER_NODE) as usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut after = 0u64;
    let mut count = 0usize;
    while count < total {
        let (s, v) = api
            .get(&format!("{P}/clusters/{id}/logs?limit=1000&after={after}"))
            .await;
        assert_eq!(s, 200, "{v}");
        let page = v["data"].as_array().expect("data");
        if let Some(last) = page.last() {
            after = last["seq"].as_u64().expect("seq");
            count += page.len();
        } else {
            assert!(
                Instant::now() < deadline,
                "only {count} of {total} lines arrived"
            );
            tokio::time::sleep(Duration::from_millis(100)).await; // lines still on their way
        }
    }
    let end_to_end = started.elapsed();
    println!(
        "log path: {total} lines written in {write_done:?} at {rates:?} lines/s; all stored after {end_to_end:?} ({:.0} lines/s end to end)",
        total as f64 / end_to_end.as_secs_f64()
    );
    assert_eq!(count, total, "no line doubled");

    // Exactly the written lines, per node in the written order.
    let everything = all(&api, &id, "").await;
    let mut per_node: BTreeMap<String, Vec<Line>> = BTreeMap::new();
    for l in &everything {
        per_node.entry(l.node.clone()).or_default().push(l.clone());
    }
    let expected: Vec<Vec<Line>> = (0..2)
        .map(|i| written(&tmp.path().join(format!("record-{i}.jsonl")), &nodes[i]))
        .collect();
    for i in 0..2 {
        let got = per_node.remove(&nodes[i]).unwrap_or_default();
        assert_eq!(
            got.len(),
            expected[i].len(),
            "{} lines of {}",
            got.len(),
            nodes[i]
        );
        if let Some(k) = (0..got.len()).find(|k| got[*k] != expected[i][*k]) {
            panic!(
                "{}: line {k} differs: stored {:?}, written {:?}",
                nodes[i], got[k], expected[i][k]
            );
        }
    }
    assert!(
        per_node.is_empty(),
        "lines of unknown nodes: {:?}",
        per_node.keys()
    );

    // Filters return exactly the matching lines.
    let flat: Vec<Line> = expected.concat();
    let sorted = |mut v: Vec<Line>| {
        v.sort_by(|a, b| (&a.node, a.time_us, &a.seq).cmp(&(&b.node, b.time_us, &b.seq)));
        v
    };
    let pick = |f: &dyn Fn(&Line) -> bool, flat: &Vec<Line>| {
        sorted(flat.iter().filter(|l| f(l)).cloned().collect())
    };
    let alarms = sorted(all(&api, &id, "q=ALARM%20raised").await);
    assert_eq!(alarms.len(), 200);
    assert_eq!(
        alarms,
        pick(&|l| l.message.starts_with("alarm raised"), &flat)
    );
    let severe = sorted(all(&api, &id, "level=alert").await);
    assert_eq!(
        severe,
        pick(&|l| l.level == "alert" || l.level == "emergency", &flat)
    );
    let node2_alarms = sorted(all(&api, &id, &format!("node={}&q=alarm", nodes[1])).await);
    assert_eq!(
        node2_alarms,
        pick(
            &|l| l.node == nodes[1] && l.message.contains("alarm"),
            &flat
        )
    );
    // A 50 ms window in the middle of node 1's writing.
    let mid = expected[0][LINES_PER_NODE as usize / 2].time_us;
    let (since, until) = (mid, mid + 50_000);
    let fmt = |us: u64| {
        humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + Duration::from_micros(us))
            .to_string()
    };
    let window = sorted(
        all(
            &api,
            &id,
            &format!("since={}&until={}", fmt(since), fmt(until)),
        )
        .await,
    );
    assert!(!window.is_empty());
    assert_eq!(
        window,
        pick(&|l| (since..=until).contains(&l.time_us), &flat)
    );
    // Bad filters are explained.
    for (q, code) in [
        ("level=loud", "INVALID_LEVEL"),
        ("since=yesterday", "INVALID_TIME"),
        ("cursor=x", "INVALID_CURSOR"),
        ("limit=0", "INVALID_LIMIT"),
    ] {
        let (s, v) = api.get(&format!("{P}/clusters/{id}/logs?{q}")).await;
        assert_eq!((s, v["code"].as_str()), (400, Some(code)), "{q}: {v}");
    }
    drop(agents);
}

fn as_ref(v: &[(u64, u64, String)]) -> Vec<(u64, u64, &str)> {
    v.iter().map(|(o, t, m)| (*o, *t, m.as_str())).collect()
}

fn batch(batch: u64, node: &str, lines: &[(u64, u64, &str)]) -> ecp_protocol::Frame {
    ecp_protocol::Frame::LogBatch(ecp_protocol::LogBatch {
        batch,
        node: node.into(),
        lines: lines
            .iter()
            .map(|(offset, time_us, msg)| ecp_protocol::LogLine {
                file: 1,
                offset: *offset,
                time_us: *time_us,
                level: 3,
                message: msg.to_string(),
                fields: String::new(),
                raw: msg.to_string(),
            })
            .collect(),
    })
}

async fn acked(s: &mut ecp_testkit::Session, want: u64) {
    loop {
        match s.next_frame(Duration::from_secs(10)).await.expect("frame") {
            Some(ecp_protocol::Frame::LogAck { batch }) if batch == want => return,
            Some(_) => continue,
            None => panic!("no LogAck {want}"),
        }
    }
}

/// The project's log page merges its clusters by time; pages resume
/// without gaps; `after` gives only what came later. A resent batch is
/// acknowledged again and stored once.
#[tokio::test]
async fn project_logs_merge_the_clusters_and_a_resent_batch_is_stored_once() {
    let server = Server::start().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let (c1, _, mut s1) = running_cluster(&server, &api, &mut events, "one", "emqx@a1").await;
    let (c2, _, mut s2) = running_cluster(&server, &api, &mut events, "two", "emqx@b1").await;
    let t = 1_700_000_000_000_000u64;
    // Interleaved times: one 1, two 2, one 3, two 4, ...
    let one: Vec<(u64, u64, String)> = (0..5)
        .map(|i| (i * 100, t + (2 * i) * 1000, format!("one-{i}")))
        .collect();
    let two: Vec<(u64, u64, String)> = (0..5)
        .map(|i| (i * 100, t + (2 * i + 1) * 1000, format!("two-{i}")))
        .collect();

    s1.send(&batch(1, "emqx@a1", &as_ref(&one)))
        .await
        .expect("send");
    acked(&mut s1, 1).await;
    // The same batch again (its ack was "lost"): acked, stored once.
    s1.send(&batch(1, "emqx@a1", &as_ref(&one)))
        .await
        .expect("send");
    acked(&mut s1, 1).await;
    s2.send(&batch(1, "emqx@b1", &as_ref(&two)))
        .await
        .expect("send");
    acked(&mut s2, 1).await;

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut newest = String::new();
    loop {
        let (s, v) = api.get(&format!("{P}/logs?limit=3{cursor}")).await;
        assert_eq!(s, 200, "{v}");
        if newest.is_empty() {
            newest = v["newest"].as_str().expect("newest").to_string();
        }
        for l in v["data"].as_array().expect("data") {
            seen.push(format!(
                "{}:{}",
                if l["clusterId"] == c1.as_str() {
                    "c1"
                } else {
                    "c2"
                },
                l["message"].as_str().expect("message")
            ));
        }
        match v["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "c2:two-4", "c1:one-4", "c2:two-3", "c1:one-3", "c2:two-2", "c1:one-2", "c2:two-1",
            "c1:one-1", "c2:two-0", "c1:one-0"
        ]
    );
    // Later lines only, oldest first.
    s2.send(&batch(2, "emqx@b1", &[(900, t + 99_000, "two-late")]))
        .await
        .expect("send");
    acked(&mut s2, 2).await;
    let (s, v) = api.get(&format!("{P}/logs?after={newest}")).await;
    assert_eq!(s, 200, "{v}");
    let late: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(late, ["two-late"]);
    // Filters apply across clusters; a bad cursor is explained.
    let (_, v) = api.get(&format!("{P}/logs?q=one-2")).await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
    let (s, v) = api.get(&format!("{P}/logs?cursor=garbage")).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("INVALID_CURSOR")));
    let _ = c2;
}

/// A search reads at most `logs.scan_lines_per_request` stored lines per
/// request: matches beyond that are reached by following `next`, which an
/// answer gives even when it found nothing (`partial`), for one cluster and
/// for the project — every match once, in order.
#[tokio::test]
async fn a_search_beyond_the_scan_budget_is_partial_and_its_cursor_finds_every_match() {
    let server = Server::start_with(&[("ECP_LOGS_SCAN_LINES_PER_REQUEST", "4")]).await;
    let api = server.api().await;
    let mut events = api.events().await;
    let (c1, _, mut s1) = running_cluster(&server, &api, &mut events, "one", "emqx@a1").await;
    let (_c2, _, mut s2) = running_cluster(&server, &api, &mut events, "two", "emqx@b1").await;
    let t = 1_700_000_000_000_000u64;
    // 12 lines each; the needles are the oldest two of each cluster.
    let lines = |name: &str, odd: u64| -> Vec<(u64, u64, String)> {
        (0..12)
            .map(|i| {
                let what = if i < 2 { "needle" } else { "hay" };
                (
                    i * 100,
                    t + (2 * i + odd) * 1000,
                    format!("{name}-{what}-{i}"),
                )
            })
            .collect()
    };
    s1.send(&batch(1, "emqx@a1", &as_ref(&lines("one", 0))))
        .await
        .expect("send");
    acked(&mut s1, 1).await;
    s2.send(&batch(1, "emqx@b1", &as_ref(&lines("two", 1))))
        .await
        .expect("send");
    acked(&mut s2, 1).await;

    // Follows `next` from `path`; the messages found and each answer's (lines, partial).
    let search = |path: String| {
        let api = &api;
        async move {
            let mut found = Vec::new();
            let mut answers = Vec::new();
            let mut cursor = String::new();
            loop {
                let (s, v) = api.get(&format!("{path}?q=needle{cursor}")).await;
                assert_eq!(s, 200, "{v}");
                let data = v["data"].as_array().expect("data");
                found.extend(
                    data.iter()
                        .filter_map(|l| l["message"].as_str().map(str::to_string)),
                );
                answers.push((
                    data.len(),
                    v["partial"] == true,
                    v["scanned"].as_u64().expect("scanned"),
                ));
                match v["next"].as_str() {
                    Some(n) => cursor = format!("&cursor={n}"),
                    None => break,
                }
                assert!(answers.len() < 30, "no progress: {answers:?}");
            }
            (found, answers)
        }
    };
    let (found, answers) = search(format!("{P}/clusters/{c1}/logs")).await;
    assert_eq!(found, ["one-needle-1", "one-needle-0"], "{answers:?}");
    assert_eq!(
        answers[0],
        (0, true, 4),
        "nothing in the newest 4 lines, but a cursor"
    );
    assert!(answers.iter().all(|a| a.2 <= 4), "{answers:?}");

    let (found, answers) = search(format!("{P}/logs")).await;
    assert_eq!(
        found,
        [
            "two-needle-1",
            "one-needle-1",
            "two-needle-0",
            "one-needle-0"
        ],
        "{answers:?}"
    );
    assert_eq!((answers[0].0, answers[0].1), (0, true), "{answers:?}");
    assert!(
        answers.iter().all(|a| a.2 <= 8),
        "4 per cluster: {answers:?}"
    );
}
