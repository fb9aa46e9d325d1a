//! The simulator answers with EMQX's real shapes and quirks (emqx-api.md).

use emqx_sim::{Edition, SimConfig};
use serde_json::{json, Value};
use std::time::Duration;

async fn sim(version: &str, edition: Edition) -> emqx_sim::Sim {
    let config = SimConfig {
        version: version.into(),
        edition,
        v4_bad_login_penalty: Duration::from_millis(50),
        token_ttl: Duration::from_secs(1),
        ..SimConfig::default()
    };
    let (sim, server) = emqx_sim::start(config).expect("start");
    actix_web::rt::spawn(server);
    sim
}

/// (status, WWW-Authenticate, body)
async fn call(
    method: reqwest::Method,
    url: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, String, String) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("send");
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, www, r.text().await.unwrap_or_default())
}

fn j(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

#[actix_web::test]
async fn v5_login_nodes_stats_and_401_bodies() {
    let s = sim("5.6.0", Edition::Enterprise).await;
    let u = s.url();
    let (st, _, body) = call(
        reqwest::Method::POST,
        &format!("{u}/api/v5/login"),
        None,
        Some(json!({"username": "admin", "password": "bad"})),
    )
    .await;
    assert_eq!(
        (st, j(&body)),
        (
            401,
            json!({"code": "BAD_USERNAME_OR_PWD", "message": "Auth failed"})
        )
    );
    let (st, _, body) = call(
        reqwest::Method::POST,
        &format!("{u}/api/v5/login"),
        None,
        Some(json!({"username": "admin", "password": "public"})),
    )
    .await;
    assert_eq!(st, 200);
    let login = j(&body);
    assert_eq!(login["version"], "5.6.0", "no e prefix");
    assert_eq!(login["license"]["edition"], "ee");
    assert_eq!(login["role"], "administrator");
    let bearer = format!("Bearer {}", login["token"].as_str().expect("token"));

    let (st, www, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v5/nodes"),
        None,
        None,
    )
    .await;
    assert_eq!((st, www.as_str()), (401, "Basic Realm=\"emqx-dashboard\""));
    assert_eq!(j(&body)["code"], "AUTHORIZATION_HEADER_ERROR");
    let (st, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v5/nodes"),
        Some("Bearer nope"),
        None,
    )
    .await;
    assert_eq!((st, j(&body)["code"].as_str()), (401, Some("BAD_TOKEN")));
    let (st, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v5/nodes"),
        Some("Basic YWRtaW46cHVibGlj"),
        None,
    )
    .await;
    assert_eq!(st, 401, "dashboard users are not accepted as Basic: {body}");

    // Stop node 2: running first, then the stopped core node with three fields only.
    let (st, _, _) = call(
        reqwest::Method::POST,
        &format!("{u}/__sim/nodes/emqx@node2.emqxcl/stop"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (_, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v5/nodes"),
        Some(&bearer),
        None,
    )
    .await;
    let nodes = j(&body);
    let arr = nodes.as_array().expect("bare array");
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["node_status"], "running");
    assert_eq!(arr[0]["edition"], "Enterprise");
    assert!(arr[0]["uptime"].is_u64(), "uptime in ms");
    assert!(arr[0]["memory_total"].is_string() && arr[0]["load1"].is_f64());
    assert_eq!(
        arr[2],
        json!({"node": "emqx@node2.emqxcl", "node_status": "stopped", "role": "core"})
    );

    let (_, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v5/stats?aggregate=true"),
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(
        j(&body)["connections.count"],
        200,
        "summed over running nodes"
    );
    let (_, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v5/stats"),
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(
        j(&body).as_array().map(Vec::len),
        Some(2),
        "one object per running node"
    );
    let (_, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v5/cluster"),
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(j(&body)["nodes"].as_array().map(Vec::len), Some(2));
    let (_, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v5/license"),
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(j(&body)["max_connections"], 10_000);

    // /status needs no auth; JSON with the e prefix.
    let (st, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/status?format=json"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(j(&body)["rel_vsn"], "e5.6.0");

    // Tokens expire: TOKEN_TIME_OUT (asked until it does, within a deadline).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (st, body) = loop {
        let (st, _, body) = call(
            reqwest::Method::GET,
            &format!("{u}/api/v5/nodes"),
            Some(&bearer),
            None,
        )
        .await;
        if st != 200 || tokio::time::Instant::now() >= deadline {
            break (st, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (st, j(&body)["code"].as_str()),
        (401, Some("TOKEN_TIME_OUT"))
    );
}

#[actix_web::test]
async fn v4_envelope_running_text_uptime_and_vanishing_nodes() {
    let s = sim("4.4.6", Edition::Enterprise).await;
    let u = s.url();
    let basic = "Basic YWRtaW46cHVibGlj"; // admin:public
    let (st, www, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v4/nodes"),
        Some("Basic YWRtaW46eA=="),
        None,
    )
    .await;
    assert_eq!(
        (st, www.as_str(), body.as_str()),
        (401, "Basic Realm=\"minirest-server\"", "UNAUTHORIZED")
    );
    let (st, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v4/nodes"),
        Some(basic),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let v = j(&body);
    assert_eq!(v["code"], 0);
    assert_eq!(v["data"][0]["node_status"], "Running");
    assert!(
        v["data"][0]["uptime"]
            .as_str()
            .unwrap_or_default()
            .contains("hours"),
        "{v}"
    );
    assert!(v["data"][0]["load1"].is_string());

    call(
        reqwest::Method::POST,
        &format!("{u}/__sim/nodes/emqx@node3.emqxcl/stop"),
        None,
        None,
    )
    .await;
    let (_, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v4/nodes"),
        Some(basic),
        None,
    )
    .await;
    let names: Vec<String> = j(&body)["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|n| n["node"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        names,
        vec!["emqx@node1.emqxcl", "emqx@node2.emqxcl"],
        "stopped node silently missing"
    );

    // Errors on HTTP 200.
    let (st, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v4/nodes/emqx@nope"),
        Some(basic),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_ne!(j(&body)["code"], 0);
    let (st, _, body) = call(
        reqwest::Method::POST,
        &format!("{u}/api/v4/auth"),
        None,
        Some(json!({"username": "admin", "password": "x"})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(j(&body)["code"], 103);
    let (_, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v4/brokers"),
        Some(basic),
        None,
    )
    .await;
    assert_eq!(j(&body)["data"][0]["sysdescr"], "EMQ X Enterprise");
    let (_, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}/api/v4/stats"),
        Some(basic),
        None,
    )
    .await;
    assert_eq!(j(&body)["data"][0]["stats"]["connections.count"], 100);
    // No /status on the v4 dashboard port.
    assert_eq!(
        call(reqwest::Method::GET, &format!("{u}/status"), None, None)
            .await
            .0,
        404
    );
    // The dashboard page uses relative asset and API paths.
    let (st, _, body) = call(reqwest::Method::GET, &format!("{u}/"), None, None).await;
    assert_eq!(st, 200);
    assert!(
        body.contains("./static/app.js") && body.contains("api/v4"),
        "{body}"
    );
}

#[actix_web::test]
async fn faults_latency_5xx_and_password_change() {
    let s = sim("5.6.0", Edition::Opensource).await;
    let u = s.url();
    call(
        reqwest::Method::PUT,
        &format!("{u}/__sim/fail"),
        None,
        Some(json!({"status": 503})),
    )
    .await;
    assert_eq!(
        call(
            reqwest::Method::POST,
            &format!("{u}/api/v5/login"),
            None,
            Some(json!({}))
        )
        .await
        .0,
        503
    );
    call(
        reqwest::Method::PUT,
        &format!("{u}/__sim/fail"),
        None,
        Some(json!({})),
    )
    .await;
    call(
        reqwest::Method::PUT,
        &format!("{u}/__sim/password"),
        None,
        Some(json!({"password": "changed"})),
    )
    .await;
    let (st, _, body) = call(
        reqwest::Method::POST,
        &format!("{u}/api/v5/login"),
        None,
        Some(json!({"username": "admin", "password": "public"})),
    )
    .await;
    assert_eq!(st, 401, "{body}");
    let (st, _, body) = call(
        reqwest::Method::POST,
        &format!("{u}/api/v5/login"),
        None,
        Some(json!({"username": "admin", "password": "changed"})),
    )
    .await;
    assert_eq!(st, 200);
    assert!(j(&body).get("role").is_none(), "CE strips role");
    assert_eq!(j(&body)["license"]["edition"], "ce");
    call(
        reqwest::Method::PUT,
        &format!("{u}/__sim/latency"),
        None,
        Some(json!({"ms": 300})),
    )
    .await;
    let t = std::time::Instant::now();
    call(reqwest::Method::GET, &format!("{u}/status"), None, None).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
}

// ------------------------------------------------------------ monitoring

async fn post(u: &str, path: &str, body: Value) -> u16 {
    call(
        reqwest::Method::POST,
        &format!("{u}{path}"),
        None,
        Some(body),
    )
    .await
    .0
}

async fn get(u: &str, path: &str, auth: &str) -> (u16, Value) {
    let (st, _, body) = call(
        reqwest::Method::GET,
        &format!("{u}{path}"),
        Some(auth),
        None,
    )
    .await;
    (st, j(&body))
}

async fn v5_bearer(u: &str) -> String {
    let (_, _, body) = call(
        reqwest::Method::POST,
        &format!("{u}/api/v5/login"),
        None,
        Some(json!({"username": "admin", "password": "public"})),
    )
    .await;
    format!("Bearer {}", j(&body)["token"].as_str().expect("token"))
}

/// Moves the simulator's clock `ms` ahead: counters grow and samples are
/// recorded as if that much time had passed (the wall clock, behind it,
/// changes nothing until it catches up).
fn time_passes(s: &emqx_sim::Sim, ms: u64) {
    let mut st = s.state.lock().expect("state");
    let to = st.clock_ms + ms;
    st.advance_to(to);
}

fn is_uint(v: &Value) -> bool {
    v.is_u64()
}

#[actix_web::test]
async fn v5_monitor_current_follows_the_scripted_load() {
    let s = sim("5.6.0", Edition::Enterprise).await;
    let u = s.url();
    let bearer = v5_bearer(&u).await;
    assert_eq!(
        post(
            &u,
            "/__sim/load",
            json!({"connections": 3000, "msgRate": 300, "dropRate": 30})
        )
        .await,
        204
    );
    let (st, cur) = get(&u, "/api/v5/monitor_current", &bearer).await;
    assert_eq!(st, 200);
    for key in [
        "received_msg_rate",
        "sent_msg_rate",
        "dropped_msg_rate",
        "connections",
        "live_connections",
        "subscriptions",
        "topics",
        "retained_msg_count",
        "shared_subscriptions",
        "license_quota",
    ] {
        assert!(is_uint(&cur[key]), "{key} is a whole number: {cur}");
    }
    assert!(
        cur.get("node_uptime").is_none(),
        "only the node endpoint has it"
    );
    assert_eq!(
        (
            &cur["connections"],
            &cur["live_connections"],
            &cur["received_msg_rate"]
        ),
        (&json!(3000), &json!(3000), &json!(300))
    );
    assert_eq!(
        (&cur["sent_msg_rate"], &cur["dropped_msg_rate"]),
        (&json!(270), &json!(30))
    );
    assert_eq!(cur["license_quota"], 10_000);
    // A missing part stays as it was.
    assert_eq!(
        post(&u, "/__sim/load", json!({"connections": 1000})).await,
        204
    );
    let (_, cur) = get(&u, "/api/v5/monitor_current", &bearer).await;
    assert_eq!(
        (&cur["connections"], &cur["received_msg_rate"]),
        (&json!(1000), &json!(300))
    );
    // Not numbers, or negative: refused, nothing changes.
    for bad in [json!({"connections": -1}), json!({"msgRate": "fast"})] {
        assert_eq!(post(&u, "/__sim/load", bad).await, 400);
    }
    // A stopped node contributes nothing (1000 = 334 + 333 + 333).
    post(&u, "/__sim/nodes/emqx@node3.emqxcl/stop", json!({})).await;
    let (_, cur) = get(&u, "/api/v5/monitor_current", &bearer).await;
    assert_eq!(
        (&cur["connections"], &cur["received_msg_rate"]),
        (&json!(667), &json!(200))
    );
    let (_, node) = get(
        &u,
        "/api/v5/monitor_current/nodes/emqx@node1.emqxcl",
        &bearer,
    )
    .await;
    assert!(
        is_uint(&node["node_uptime"]) && node["node_uptime"].as_u64() > Some(1000),
        "ms: {node}"
    );
    assert_eq!(node["connections"], 334);
    // Counters: rate × elapsed time, over running nodes.
    let (_, before) = get(&u, "/api/v5/metrics?aggregate=true", &bearer).await;
    time_passes(&s, 10_000);
    let (_, after) = get(&u, "/api/v5/metrics?aggregate=true", &bearer).await;
    let grown = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
    assert!(
        (1999..=2001).contains(&grown("messages.received")),
        "{before} {after}"
    );
    assert!((199..=201).contains(&grown("messages.dropped")));
    let (_, stats) = get(&u, "/api/v5/stats?aggregate=true", &bearer).await;
    assert_eq!(
        (
            &stats["connections.count"],
            &stats["live_connections.count"],
            &stats["subscriptions.count"]
        ),
        (&json!(667), &json!(667), &json!(1334))
    );
    assert_eq!(
        (&stats["topics.count"], &stats["subscriptions.shared.count"]),
        (&json!(667), &json!(66))
    );
}

#[actix_web::test]
async fn v5_monitor_samples_are_deltas_per_10_s() {
    let s = sim("5.6.0", Edition::Opensource).await;
    let u = s.url();
    let bearer = v5_bearer(&u).await;
    post(
        &u,
        "/__sim/load",
        json!({"connections": 1000, "msgRate": 100, "dropRate": 10}),
    )
    .await;
    time_passes(&s, 35_000);
    let (st, samples) = get(&u, "/api/v5/monitor?latest=300", &bearer).await;
    assert_eq!(st, 200);
    let list = samples.as_array().expect("a bare array");
    assert!(list.len() >= 3, "{samples}");
    let keys: std::collections::BTreeSet<&str> = list[1]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "connections",
            "dropped",
            "live_connections",
            "received",
            "sent",
            "subscriptions",
            "time_stamp",
            "topics"
        ]
        .into_iter()
        .collect()
    );
    let last = &list[list.len() - 1];
    let prev = &list[list.len() - 2];
    let (t1, t0) = (
        last["time_stamp"].as_u64().expect("ms"),
        prev["time_stamp"].as_u64().expect("ms"),
    );
    assert_eq!(
        (t1 - t0, t1 % 10_000),
        (10_000, 0),
        "every 10 s, on the 10 s"
    );
    assert!(t1 > 1_600_000_000_000, "milliseconds");
    assert_eq!(
        (&last["received"], &last["sent"], &last["dropped"]),
        (&json!(1000), &json!(900), &json!(100))
    );
    assert_eq!(last["connections"], 1000);
    // `latest` bounds the window; a bad one is refused.
    let (_, few) = get(&u, "/api/v5/monitor?latest=10", &bearer).await;
    assert!(few.as_array().map(Vec::len) <= Some(1), "{few}");
    assert_eq!(get(&u, "/api/v5/monitor?latest=0", &bearer).await.0, 400);
    // Open source: no licence quota, no licence.
    let (_, cur) = get(&u, "/api/v5/monitor_current", &bearer).await;
    assert!(cur.get("license_quota").is_none(), "{cur}");
    assert!(cur["received_msg_rate"].is_u64());
    assert_eq!(get(&u, "/api/v5/license", &bearer).await.0, 404);
}

#[actix_web::test]
async fn v5_alarms_raised_and_cleared() {
    let s = sim("5.6.0", Edition::Enterprise).await;
    let u = s.url();
    let bearer = v5_bearer(&u).await;
    let raise = json!({"name": "high_cpu_usage", "message": "95% cpu usage",
        "details": {"usage": 95, "high_watermark": 80}, "action": "activate"});
    assert_eq!(post(&u, "/__sim/alarms", raise.clone()).await, 204);
    assert_eq!(
        post(
            &u,
            "/__sim/alarms",
            json!({"name": "partition", "node": "emqx@node2", "action": "activate"})
        )
        .await,
        204
    );
    let (st, page) = get(&u, "/api/v5/alarms?activated=true", &bearer).await;
    assert_eq!(st, 200);
    assert_eq!(
        page["meta"],
        json!({"page": 1, "limit": 100, "hasnext": false, "count": 2})
    );
    let a = &page["data"][0];
    assert_eq!(
        (&a["node"], &a["name"]),
        (&json!("emqx@node1.emqxcl"), &json!("high_cpu_usage"))
    );
    assert_eq!(
        (&a["message"], &a["details"]["usage"]),
        (&json!("95% cpu usage"), &json!(95))
    );
    assert!(
        a["duration"].is_u64() && a.get("deactivate_at").is_none(),
        "{a}"
    );
    let at = a["activate_at"].as_str().expect("RFC 3339 text");
    assert!(
        at.len() == 29 && at.ends_with("+08:00") && at.as_bytes()[19] == b'.',
        "{at}"
    );
    assert_eq!(page["data"][1]["node"], "emqx@node2.emqxcl");
    // The default is activated=true; pages.
    let (_, second) = get(&u, "/api/v5/alarms?limit=1&page=2", &bearer).await;
    assert_eq!(
        second["meta"],
        json!({"page": 2, "limit": 1, "hasnext": false, "count": 2})
    );
    assert_eq!(second["data"][0]["name"], "partition");
    assert_eq!(get(&u, "/api/v5/alarms?limit=10001", &bearer).await.0, 400);
    // Cleared: kept as deactivated, with its end.
    let clear = json!({"name": "high_cpu_usage", "action": "deactivate"});
    assert_eq!(post(&u, "/__sim/alarms", clear.clone()).await, 204);
    assert_eq!(
        post(&u, "/__sim/alarms", clear).await,
        404,
        "not active any more"
    );
    let (_, gone) = get(&u, "/api/v5/alarms?activated=false", &bearer).await;
    let d = &gone["data"][0];
    assert_eq!(
        (&d["name"], gone["meta"]["count"].as_u64()),
        (&json!("high_cpu_usage"), Some(1))
    );
    assert!(
        d["deactivate_at"]
            .as_str()
            .is_some_and(|t| t.ends_with("+08:00")),
        "{d}"
    );
    // A stopped node's alarms are not listed (EMQX asks running nodes).
    post(&u, "/__sim/nodes/emqx@node2.emqxcl/stop", json!({})).await;
    let (_, page) = get(&u, "/api/v5/alarms", &bearer).await;
    assert_eq!(page["meta"]["count"], 0);
    for bad in [
        json!({"action": "activate"}),
        json!({"name": "x", "action": "raise"}),
        json!({"name": "x", "node": "emqx@nope", "action": "activate"}),
    ] {
        assert_ne!(post(&u, "/__sim/alarms", bad).await, 204);
    }
}

#[actix_web::test]
async fn v4_stats_metrics_monitor_license_and_alarms() {
    let s = sim("4.4.6", Edition::Enterprise).await;
    let u = s.url();
    let basic = "Basic YWRtaW46cHVibGlj";
    post(
        &u,
        "/__sim/load",
        json!({"connections": 3000, "msgRate": 300, "dropRate": 30}),
    )
    .await;
    let (_, stats) = get(&u, "/api/v4/stats", basic).await;
    assert_eq!(stats["code"], 0);
    let node = &stats["data"][0];
    assert_eq!(node["node"], "emqx@node1.emqxcl");
    for (k, v) in [
        ("connections.count", 1000),
        ("live_connections.count", 1000),
        ("subscriptions.count", 2000),
        ("topics.count", 3000),
        ("subscriptions.shared.count", 300),
        ("retained.count", 3),
    ] {
        assert_eq!(node["stats"][k], v, "{k}: {node}");
    }
    let (_, m0) = get(&u, "/api/v4/metrics", basic).await;
    time_passes(&s, 10_000);
    let (_, m1) = get(&u, "/api/v4/metrics", basic).await;
    let counter = |m: &Value, k: &str| {
        m["data"]
            .as_array()
            .expect("per node")
            .iter()
            .map(|n| n["metrics"][k].as_u64().expect("a counter"))
            .sum::<u64>()
    };
    assert_eq!(m1["data"][0]["node"], "emqx@node1.emqxcl");
    let grown = counter(&m1, "messages.received") - counter(&m0, "messages.received");
    assert!((2999..=3001).contains(&grown), "rate × elapsed: {grown}");
    let dropped = counter(&m1, "messages.dropped") - counter(&m0, "messages.dropped");
    assert!((299..=301).contains(&dropped), "{dropped}");
    let (st, cur) = get(&u, "/api/v4/monitor/current_metrics", basic).await;
    assert_eq!((st, &cur["code"]), (200, &json!(0)));
    assert_eq!(
        cur["data"],
        json!({"connection": 3000, "live_connection": 3000, "received": 300, "sent": 270, "subscription": 6000})
    );
    let (_, lic) = get(&u, "/api/v4/license", basic).await;
    assert_eq!(lic["data"]["max_connections"], 10_000);
    assert_eq!(lic["data"]["expiry_at"], "2295-10-27 00:00:00");
    // Alarms: µs times, "infinity" while active, per running node.
    post(
        &u,
        "/__sim/alarms",
        json!({"name": "high_system_memory_usage", "node": "emqx@node2",
        "message": "System memory usage is higher than 70%", "details": {"high_watermark": 70},
        "action": "activate"}),
    )
    .await;
    let (_, act) = get(&u, "/api/v4/alarms/activated", basic).await;
    assert_eq!(act["code"], 0);
    let per_node = act["data"].as_array().expect("per node");
    assert_eq!(per_node.len(), 3);
    assert_eq!(
        per_node[0],
        json!({"node": "emqx@node1.emqxcl", "alarms": []})
    );
    let a = &per_node[1]["alarms"][0];
    assert_eq!(
        (&a["name"], &a["deactivate_at"], &a["activated"]),
        (
            &json!("high_system_memory_usage"),
            &json!("infinity"),
            &json!(true)
        )
    );
    assert!(
        a["activate_at"].as_u64() > Some(1_600_000_000_000_000),
        "µs: {a}"
    );
    assert!(a["duration"].is_u64() && a["details"]["high_watermark"] == 70);
    post(
        &u,
        "/__sim/alarms",
        json!({"name": "high_system_memory_usage", "node": "emqx@node2.emqxcl",
        "action": "deactivate"}),
    )
    .await;
    let (_, act) = get(&u, "/api/v4/alarms/activated", basic).await;
    assert_eq!(act["data"][1]["alarms"], json!([]));
    let (_, gone) = get(&u, "/api/v4/alarms/deactivated", basic).await;
    let d = &gone["data"][1]["alarms"][0];
    assert_eq!(d["activated"], false);
    assert!(
        d["deactivate_at"].as_u64() >= d["activate_at"].as_u64(),
        "{d}"
    );
    let (_, all) = get(&u, "/api/v4/alarms", basic).await;
    assert_eq!(all["data"][1]["alarms"].as_array().map(Vec::len), Some(1));
    // A stopped node: absent from the stats and from the alarms.
    post(&u, "/__sim/nodes/emqx@node2.emqxcl/stop", json!({})).await;
    let (_, stats) = get(&u, "/api/v4/stats", basic).await;
    assert_eq!(stats["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        stats["data"][0]["stats"]["topics.count"], 2000,
        "cluster-wide: the running nodes' clients"
    );
    let (_, gone) = get(&u, "/api/v4/alarms/deactivated", basic).await;
    assert_eq!(gone["data"].as_array().map(Vec::len), Some(2));
}

#[actix_web::test]
async fn v4_open_source_lacks_the_enterprise_endpoints() {
    let s = sim("4.4.6", Edition::Opensource).await;
    let u = s.url();
    let basic = "Basic YWRtaW46cHVibGlj";
    for path in ["/api/v4/monitor/current_metrics", "/api/v4/license"] {
        let (st, body) = get(&u, path, basic).await;
        assert_eq!(st, 404, "{path}: {body}");
    }
    let (st, m) = get(&u, "/api/v4/metrics", basic).await;
    assert_eq!((st, &m["code"]), (200, &json!(0)));
    assert!(m["data"][0]["metrics"]["messages.received"].is_u64());
}
