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
