//! Node operations: drain on SIGTERM, admission limits, readiness.

use crate::harness::*;
use crate::redis_server::RedisServer;
use ecp_protocol::{CloseCode, Frame};
use ecp_testkit::{register, register_body};
use std::time::{Duration, Instant};

#[tokio::test]
async fn sigterm_fails_readiness_tells_agents_to_reconnect_and_exits_when_they_left() {
    let mut server = Server::start().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let (_, _, mut s) = running_cluster(&server, &api, &mut events, "draining", "emqx@d").await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{}/readyz", server.base))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );

    server.sigterm();
    // The agent is told to move, at once.
    let frame = s.next_frame(Duration::from_secs(20)).await.expect("frame");
    assert!(matches!(frame, Some(Frame::Reconnect { .. })), "{frame:?}");
    // While draining the node is not ready (a load balancer stops sending to it).
    let r = http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["message"], "draining");
    // The agent leaves as told; the node exits cleanly without waiting for the timeout.
    drop(s);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exited");
    assert!(status.success(), "{status:?}");
    // It stopped because the agent had left, not because the drain timed
    // out with the session still there: its last words say so.
    let log = strip_ansi(&server.log_text());
    let last = log
        .lines()
        .find(|l| l.contains("drained; stopping"))
        .unwrap_or_else(|| panic!("no drain in the log:\n{log}"));
    assert!(
        last.contains("left=0"),
        "waited for the agent, not the timeout: {last}"
    );
}

#[tokio::test]
async fn an_agent_that_does_not_move_is_closed_as_draining_when_the_node_stops() {
    let mut server = Server::start().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let (_, _, mut s) = running_cluster(&server, &api, &mut events, "stays", "emqx@stay").await;
    server.sigterm();
    let frame = s.next_frame(Duration::from_secs(5)).await.expect("frame");
    assert!(matches!(frame, Some(Frame::Reconnect { .. })), "{frame:?}");
    // It stays; at the drain timeout the node closes it as draining (the
    // agent reconnects at once, elsewhere) and exits.
    let why = s
        .closed(Duration::from_secs(15))
        .await
        .expect("closed")
        .unwrap_or_default();
    assert_eq!(s.close_code(), Some(CloseCode::Draining), "{why}");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("exited");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn registrations_beyond_the_admission_limit_get_429_with_retry_after() {
    let server = Server::start_with(&[
        ("ECP_LIMITS_REGISTRATIONS_PER_SEC", "1"),
        ("ECP_LIMITS_REGISTRATION_BURST", "2"),
    ])
    .await;
    let api = server.api().await;
    let id = api.create_cluster("busy").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    // Five agents at once, as after a data-centre restart.
    let calls = (0..5).map(|i| {
        api.http
            .post(format!(
                "{}/api/clusters/agents/emqxee/register",
                server.base
            ))
            .json(&register_body(
                &token,
                &format!("n{i}"),
                &format!("emqx@b{i}"),
                "5.6.0",
            ))
            .send()
    });
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for r in futures_util::future::join_all(calls).await {
        let r = r.expect("send");
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let v: serde_json::Value = r.json().await.expect("json");
            assert_eq!(v["code"], "TOO_MANY_REQUESTS");
        }
    }
    statuses.sort();
    assert_eq!(
        &statuses[..2],
        &[200, 200],
        "the burst is admitted: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "exactly the burst: {statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let (_, agents) = api.get(&format!("{P}/clusters/{id}/agents")).await;
    assert_eq!(
        agents.as_array().map(Vec::len),
        Some(statuses.iter().filter(|s| **s == 200).count()),
        "refused ones registered nothing"
    );
    // After the Retry-After it said, it goes through.
    let after: u64 = retry_after
        .as_deref()
        .unwrap_or("1")
        .parse()
        .expect("seconds");
    tokio::time::sleep(Duration::from_secs(after)).await;
    register(
        &api.http,
        &server.base,
        &register_body(&token, "late", "emqx@late", "5.6.0"),
    )
    .await
    .expect("admitted again");
}

#[tokio::test]
async fn readiness_follows_redis() {
    let mut redis = RedisServer::start().await;
    let server = Server::start_with(&[("ECP_REDIS", &redis.url())]).await;
    let http = reqwest::Client::new();
    let ready = |http: reqwest::Client, base: String| async move {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(ready(http.clone(), server.base.clone()).await, 200);
    redis.stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(http.clone(), server.base.clone()).await != 503 {
        assert!(
            Instant::now() < deadline,
            "readyz did not fail with Redis down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Liveness is unaffected.
    assert_eq!(
        http.get(format!("{}/healthz", server.base))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while ready(http.clone(), server.base.clone()).await != 200 {
        assert!(
            Instant::now() < deadline,
            "readyz did not recover with Redis back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn behind_nginx_agents_hold_websocket_sessions_and_consoles_get_live_events() {
    let server = Server::start().await;
    let nginx =
        crate::nginx::Nginx::start(&[server.base.trim_start_matches("http://").to_string()]).await;
    // Everything below goes through nginx only.
    let api = Api::login(&nginx.base, "admin", ADMIN_PASSWORD).await;
    let mut events = api.events().await;
    let id = api.create_cluster("via nginx").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let reg = register(
        &api.http,
        &nginx.base,
        &register_body(&token, "n1", "emqx@x", "5.6.0"),
    )
    .await
    .expect("register via nginx");
    let mut s = ecp_testkit::Session::connect(&nginx.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("WebSocket via nginx");
    s.report(ecp_protocol::Health::Healthy, &[("emqx@x", true)])
        .await
        .expect("report");
    events
        .wait_status(&id, "running", Duration::from_secs(10))
        .await;
    s.report(
        ecp_protocol::Health::NodesStopped {
            nodes: vec!["emqx@y".into()],
        },
        &[("emqx@x", true), ("emqx@y", false)],
    )
    .await
    .expect("report");
    let (c, _) = events
        .wait_status(&id, "abnormal", Duration::from_secs(10))
        .await;
    assert_eq!(c["reason"]["code"], "nodes_stopped");
    s.heartbeat()
        .await
        .expect("session still open through nginx");
}

/// The log without its colours (`tracing`'s ANSI escapes).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
