//! Monitoring end to end with the real binaries (`ecp`, `emqxee-agent`,
//! `emqx-sim`), v5 and v4: a scripted load shows in the metrics API at the
//! right times, an EMQX alarm fires an `emqx_alarm` rule whose signed
//! webhook gets one firing and one resolved delivery, a stopped agent fires
//! `agent_offline` once (also by email) and resolves it once; and in Redis
//! mode an owner killed while an alert fires sends no duplicate and still
//! resolves it.

use crate::alerting::{create_channel, sign, Hook, Req, Sink};
use crate::harness::*;
use crate::procs::*;
use crate::redis_server::RedisServer;
use ecp_protocol::Health;
use ecp_testkit::{register, register_body, Session};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(30);
/// The agents collect metrics every second in these tests (default 15 s).
const INTERVAL_MS: u64 = 1_000;
const SECRET: &str = "hook-secret-1";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn server() -> Server {
    Server::start_with(&[
        ("ECP_AGENT_REPORT_INTERVAL_SECS", "1"),
        ("ECP_AGENT_HEARTBEAT_INTERVAL_SECS", "2"),
        ("ECP_METRICS_COLLECT_INTERVAL_SECS", "1"),
        ("ECP_ALERTS_EVAL_INTERVAL_SECS", "1"),
        ("ECP_METRICS_CLUSTERS_REFRESH_SECS", "1"),
        ("ECP_METRICS_SCRAPE_TOKEN", SCRAPE_TOKEN),
    ])
    .await
}

const SCRAPE_TOKEN: &str = "scrape-token-0123456789";

/// `/metrics` as a scraper with `token` (or none) reads it.
async fn scrape(server: &Server, token: Option<&str>) -> String {
    let mut r = reqwest::Client::new().get(format!("{}/metrics", server.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.expect("metrics").text().await.expect("text")
}

/// The points of one series since `since` (unix ms), as collected.
async fn points(api: &Api, id: &str, name: &str, since: u64) -> Vec<(u64, f64)> {
    let (s, v) = api
        .get(&format!(
            "{P}/clusters/{id}/metrics?names={name}&since={since}"
        ))
        .await;
    assert_eq!(s, 200, "metrics: {v}");
    assert_eq!(v["series"][0]["name"], name, "{v}");
    v["series"][0]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| (p[0].as_u64().expect("time"), p[1].as_f64().expect("value")))
        .collect()
}

/// Polls the series until a point satisfies `want`; returns every point.
async fn until_point(
    api: &Api,
    id: &str,
    name: &str,
    since: u64,
    want: impl Fn(f64) -> bool,
) -> Vec<(u64, f64)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let p = points(api, id, name, since).await;
        if p.iter().any(|(_, v)| want(*v)) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: no such point within {WAIT:?}: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `path` until `want` holds for its answer.
async fn until(api: &Api, path: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, v) = api.get(path).await;
        if s == 200 && want(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: not there within {WAIT:?}: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A webhook delivery's event, checked for a valid signature.
fn signed_event(r: &Req) -> (String, Value) {
    assert_eq!(
        r.header("x-ecp-signature-256"),
        Some(sign(SECRET, &r.body).as_str()),
        "the signature matches the raw body"
    );
    let event = r.header("x-ecp-event").unwrap_or_default().to_string();
    let body = r.json();
    assert_eq!(body["status"], event.as_str(), "{body}");
    (event, body)
}

async fn rule(api: &Api, body: Value) -> String {
    let (s, v) = api.post(&format!("{P}/alert-rules"), body).await;
    assert_eq!(s, 201, "rule: {v}");
    v["id"].as_str().expect("id").to_string()
}

/// Waits until every delivery of the channel is finished (none pending).
async fn settled(api: &Api, channel: &str) -> Vec<Value> {
    let path = format!("{P}/notification-channels/{channel}/deliveries?limit=200");
    until(api, &path, |v| {
        v["data"]
            .as_array()
            .is_some_and(|d| d.iter().all(|d| d["state"] != "pending"))
    })
    .await["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn flow(version: &str) {
    let server = server().await;
    let api = server.api().await;
    let mut hook = Hook::start().await;
    let sink = Sink::start().await;
    let name = format!("mon{}", version.replace('.', ""));
    let sim = Sim::start(version, 3, &name).await;
    let load = |connections: u64| {
        sim.control(
            reqwest::Method::POST,
            "load",
            json!({"connections": connections, "msgRate": 200, "dropRate": 0}),
        )
    };
    load(1_000).await;
    let (id, _, agent) = adopted(&api, &server.base, &sim, &name, &[]).await;

    // 1–2. The load, 1,000 then 3,000 connections, in the metrics API at
    // the right times.
    let t0 = now_ms();
    until_point(&api, &id, "connections", t0, |v| v == 1_000.0).await;
    let changed = now_ms();
    load(3_000).await;
    let p = until_point(&api, &id, "connections", t0, |v| v == 3_000.0).await;
    let first_3000 = p.iter().find(|(_, v)| *v == 3_000.0).map(|(t, _)| *t);
    let last_1000 = p
        .iter()
        .filter(|(_, v)| *v == 1_000.0)
        .map(|(t, _)| *t)
        .max();
    let (Some(first_3000), Some(last_1000)) = (first_3000, last_1000) else {
        panic!("both loads in the series: {p:?}");
    };
    // Collected after the change, and at most one interval (plus a read's
    // time) after it; nothing before the change shows the new load.
    assert!(
        first_3000 + 100 >= changed && first_3000 <= changed + 2 * INTERVAL_MS,
        "3,000 first at {first_3000}, the load changed at {changed}: {p:?}"
    );
    assert!(last_1000 <= first_3000, "{p:?}");
    assert!(
        p.iter().all(|(_, v)| *v == 1_000.0 || *v == 3_000.0),
        "{p:?}"
    );
    assert!(p.windows(2).all(|w| w[0].0 < w[1].0), "time order: {p:?}");
    let live = until_point(&api, &id, "live_connections", changed, |v| v == 3_000.0).await;
    assert!(!live.is_empty());
    let nodes = points(&api, &id, "nodes_running", t0).await;
    assert!(nodes.iter().all(|(_, v)| *v == 3.0), "{nodes:?}");
    until_point(&api, &id, "received_msg_rate", changed, |v| {
        (150.0..=250.0).contains(&v)
    })
    .await;
    // The fleet in Prometheus: for the scraper with the token only.
    let want = format!("cluster=\"{name}\",cluster_id=\"{id}\"}} 3000\n");
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(&server, Some(SCRAPE_TOKEN)).await;
        if text.lines().any(|l| {
            l.starts_with("ecp_emqx_connections{") && (l.to_string() + "\n").ends_with(&want)
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no fleet series with 3000 connections:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for token in [None, Some("scrape-token-wrong-0000")] {
        let text = scrape(&server, token).await;
        assert!(
            text.contains("ecp_agent_sessions")
                && !text.contains("ecp_emqx_")
                && !text.contains(&name),
            "without the scrape token /metrics names no tenant:\n{text}"
        );
    }

    // 3–4. An alarm in EMQX: in the alarms API, fires the emqx_alarm rule,
    // whose webhook gets one signed firing and, once cleared, one resolved.
    let hook_ch = create_channel(
        &api,
        json!({"name": "hook", "kind": "webhook", "webhook": {"url": hook.url, "secret": SECRET}}),
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mail_ch = create_channel(
        &api,
        json!({"name": "mail", "kind": "email", "email": {
            "host": "127.0.0.1", "port": sink.port, "security": "none",
            "from": "ecp@example.com", "to": ["ops@example.com"]}}),
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    rule(
        &api,
        json!({"name": "hot CPU", "kind": "emqx_alarm", "alarmPattern": "high_cpu*",
               "severity": "critical", "channelIds": [hook_ch]}),
    )
    .await;
    let alarm = |action: &str| {
        sim.control(
            reqwest::Method::POST,
            "alarms",
            json!({"name": "high_cpu_usage", "node": sim.node(1),
                   "message": "CPU usage is 95%", "action": action}),
        )
    };
    alarm("activate").await;
    let active = until(&api, &format!("{P}/clusters/{id}/alarms"), |v| {
        v["data"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    assert_eq!(active["data"][0]["name"], "high_cpu_usage", "{active}");
    assert_eq!(active["data"][0]["node"], sim.node(1).as_str(), "{active}");
    assert!(active["data"][0]["deactivateAt"].is_null(), "{active}");
    let (event, body) = signed_event(&hook.next().await);
    assert_eq!(event, "firing");
    assert_eq!(body["rule"], "hot CPU");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["cluster"], name.as_str());
    let firing = until(&api, &format!("{P}/alerts?state=firing"), |v| {
        v["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    assert_eq!(firing["data"][0]["clusterId"], id.as_str(), "{firing}");
    alarm("deactivate").await;
    let (event, body) = signed_event(&hook.next().await);
    assert_eq!(event, "resolved", "{body}");
    assert_eq!(body["rule"], "hot CPU");
    let history = until(
        &api,
        &format!("{P}/clusters/{id}/alarms?activated=false"),
        |v| v["data"].as_array().is_some_and(|d| !d.is_empty()),
    )
    .await;
    assert!(history["data"][0]["deactivateAt"].is_string(), "{history}");

    // 5–6. The agent stops: agent_offline fires once (webhook and email),
    // and resolves once when it is back.
    rule(
        &api,
        json!({"name": "agent gone", "kind": "agent_offline",
               "channelIds": [hook_ch, mail_ch]}),
    )
    .await;
    let out = agent.cmd(&["stop"]).await;
    assert!(out.status.success(), "stop: {:?}", text(&out));
    let (event, body) = signed_event(&hook.next().await);
    assert_eq!(
        (event.as_str(), &body["rule"]),
        ("firing", &json!("agent gone"))
    );
    let out = agent.cmd(&["start"]).await;
    assert!(out.status.success(), "start: {:?}", text(&out));
    let (event, body) = signed_event(&hook.next().await);
    assert_eq!(
        (event.as_str(), &body["rule"]),
        ("resolved", &json!("agent gone"))
    );
    // Everything sent: exactly those four webhook deliveries, two emails.
    let sent = settled(&api, &hook_ch).await;
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(sent.iter().all(|d| d["state"] == "delivered"), "{sent:?}");
    assert!(hook.arrived().is_none(), "no other webhook request");
    settled(&api, &mail_ch).await;
    let mails = sink.messages();
    assert_eq!(mails.len(), 2, "{mails:?}");
    let subjects: Vec<String> = mails
        .iter()
        .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("Subject: ")))
        .map(str::to_string)
        .collect();
    for want in [
        format!("[ECP] FIRING warning agent gone on {name}"),
        format!("[ECP] RESOLVED warning agent gone on {name}"),
    ] {
        assert!(subjects.contains(&want), "{want:?} not in {subjects:?}");
    }
    let resolved = until(&api, &format!("{P}/alerts?state=resolved"), |v| {
        v["data"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    assert!(
        resolved["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|a| a["resolvedAt"].is_string()),
        "{resolved}"
    );
}

#[tokio::test]
async fn v5_load_alarms_and_an_offline_agent_end_to_end() {
    flow("5.6.0").await;
}

#[tokio::test]
async fn v4_load_alarms_and_an_offline_agent_end_to_end() {
    flow("4.4.6").await;
}

/// Two nodes on one Redis; a cluster whose agent holds its session on the
/// node that does not own it. The owner is killed while an alert fires: the
/// other node takes the cluster over, sends no second firing notification,
/// and the resolved one still arrives.
#[tokio::test]
async fn an_owner_killed_while_an_alert_fires_sends_no_duplicate() {
    let redis = RedisServer::start().await;
    let env = |node: &'static str| {
        vec![
            ("ECP_REDIS", redis.url()),
            ("ECP_NODE_ID", node.to_string()),
            ("ECP_ALERTS_EVAL_INTERVAL_SECS", "1".to_string()),
            ("ECP_ALERTS_DELIVERY_LEASE_SECS", "2".to_string()),
            ("ECP_ALERTS_DELIVERY_TIMEOUT_SECS", "1".to_string()),
        ]
    };
    let start = |node: &'static str| {
        let env = env(node);
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Server::start_with(&env).await
        }
    };
    let mut a = start("node-a").await;
    let b = start("node-b").await;
    let api_a = a.api().await;
    let api_b = b.api().await;
    let mut hook = Hook::start().await;
    let ch = create_channel(
        &api_b,
        json!({"name": "hook", "kind": "webhook", "webhook": {"url": hook.url, "secret": SECRET}}),
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    rule(
        &api_b,
        json!({"name": "unhealthy", "kind": "cluster_abnormal", "reasonCode": "emqx_unreachable",
               "channelIds": [ch]}),
    )
    .await;

    // Clusters until one is owned by node A (leases spread over the nodes).
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let mut owned_by_a = None;
    for i in 0..20 {
        // Created through node A, which usually takes its lease at once.
        let c = api_a.create_cluster(&format!("owned {i}")).await;
        let id = c["id"].as_str().expect("id").to_string();
        let deadline = Instant::now() + WAIT;
        let owner = loop {
            let o: Option<String> = redis::cmd("GET")
                .arg(format!("ecp:lease:{id}"))
                .query_async(&mut conn)
                .await
                .expect("lease");
            if let Some(o) = o {
                break o;
            }
            assert!(Instant::now() < deadline, "{id} has no owner");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if owner == "node-a" {
            owned_by_a = Some(id);
            break;
        }
    }
    let id = owned_by_a.expect("one of 20 clusters is owned by node A");
    let token = api_b.issue_token(&id).await;
    let reg = register(
        &api_b.http,
        &b.base,
        &register_body(&token, "owned", "emqx@owned", "5.6.0"),
    )
    .await
    .expect("register");
    // The agent's session is on node B; EMQX becomes unreachable.
    let mut s = Session::connect(&b.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("session on node B");
    s.report(Health::Healthy, &[("emqx@owned", true)])
        .await
        .expect("report");
    let mut events = api_b.events().await;
    events.wait_status(&id, "running", WAIT).await;
    s.report(
        Health::EmqxUnreachable {
            message: "connection refused".into(),
        },
        &[],
    )
    .await
    .expect("report");
    let (event, _) = signed_event(&hook.next().await);
    assert_eq!(event, "firing");
    // The firing delivery is finished before the owner dies.
    let sent = settled(&api_b, &ch).await;
    assert_eq!(sent.len(), 1, "{sent:?}");

    a.kill9();
    // Node B takes the cluster over (its lease lapses), then EMQX is back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o: Option<String> = redis::cmd("GET")
            .arg(format!("ecp:lease:{id}"))
            .query_async(&mut conn)
            .await
            .expect("lease");
        if o.as_deref() == Some("node-b") {
            break;
        }
        assert!(Instant::now() < deadline, "node B never took {id} over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.report(Health::Healthy, &[("emqx@owned", true)])
        .await
        .expect("report");
    let (event, body) = signed_event(&hook.next().await);
    assert_eq!(event, "resolved", "no second firing: {body}");
    let sent = settled(&api_b, &ch).await;
    assert_eq!(sent.len(), 2, "one firing, one resolved: {sent:?}");
    assert!(hook.arrived().is_none(), "nothing else was sent");
    let (_, alerts) = api_b.get(&format!("{P}/alerts")).await;
    assert_eq!(alerts["data"].as_array().map(Vec::len), Some(1), "{alerts}");
    assert_eq!(alerts["data"][0]["state"], "resolved", "{alerts}");
    drop(s);
}
