//! The cluster lifecycle as an operator sees it (PRODUCT.md §3).

use crate::harness::*;
use ecp_protocol::{CloseCode, Frame, Health};
use ecp_testkit::{register, register_body, Session};
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn created_registering_running_abnormal_offline_running_and_it_survives_a_restart() {
    let mut server = Server::start().await;
    let api = server.api().await;
    let mut events = api.events().await;

    let cluster = api.create_cluster("production east").await;
    let id = cluster["id"].as_str().expect("id").to_string();
    assert_eq!(cluster["status"], "created");
    let token = api.issue_token(&id).await;
    assert!(token.starts_with("ecpr_") && token.len() > 60);

    // Register: created → registering.
    let reg = register(
        &api.http,
        &server.base,
        &register_body(&token, "node-1", "emqx@10.0.0.1", "5.6.0"),
    )
    .await
    .expect("register");
    assert_eq!(reg.cluster_id, id);
    events.wait_status(&id, "registering", WAIT).await;

    // Connect and report healthy: → running, with what the card shows.
    let mut s = Session::connect(&server.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("connect");
    let settings = s.settings.clone().expect("welcome");
    assert_eq!(settings.cluster_id, id);
    assert_eq!(settings.heartbeat_interval_secs, 10);
    s.report(
        Health::Healthy,
        &[
            ("emqx@10.0.0.1", true),
            ("emqx@10.0.0.2", true),
            ("emqx@10.0.0.3", true),
        ],
    )
    .await
    .expect("report");
    let (c, _) = events.wait_status(&id, "running", WAIT).await;
    assert_eq!(c["nodes"], json!({"running": 3, "total": 3}));
    assert_eq!(c["emqx"]["version"], "5.6.0");
    assert_eq!(c["emqx"]["edition"], "Enterprise");
    assert_eq!(c["connections"]["current"], 30);
    assert_eq!(c["agents"], json!({"online": 1, "total": 1}));
    assert!(c["startedAt"].is_string());

    // A bad report: abnormal / nodes_stopped naming the node.
    s.report(
        Health::NodesStopped {
            nodes: vec!["emqx@10.0.0.2".into()],
        },
        &[
            ("emqx@10.0.0.1", true),
            ("emqx@10.0.0.2", false),
            ("emqx@10.0.0.3", true),
        ],
    )
    .await
    .expect("report");
    let (c, _) = events.wait_status(&id, "abnormal", WAIT).await;
    assert_eq!(c["reason"]["code"], "nodes_stopped");
    assert!(
        c["reason"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("emqx@10.0.0.2"),
        "{c}"
    );
    assert_eq!(c["nodes"], json!({"running": 2, "total": 3}));

    s.report(
        Health::Healthy,
        &[
            ("emqx@10.0.0.1", true),
            ("emqx@10.0.0.2", true),
            ("emqx@10.0.0.3", true),
        ],
    )
    .await
    .expect("report");
    events.wait_status(&id, "running", WAIT).await;

    // The agent vanishes (TCP gone, no close): agent_offline after the grace
    // (and not much later: 5 s of slack for a loaded machine).
    let vanished = Instant::now();
    s.vanish();
    let (c, at) = events.wait_status(&id, "abnormal", WAIT).await;
    let took = at - vanished;
    assert_eq!(c["reason"]["code"], "agent_offline");
    assert!(
        took >= Duration::from_secs(GRACE_SECS) - Duration::from_millis(50),
        "too early: {took:?}"
    );
    assert!(
        took <= Duration::from_secs(GRACE_SECS + 5),
        "too late: {took:?}"
    );

    // It comes back: running again after its first report.
    let mut s = Session::connect(&server.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("reconnect");
    s.report(
        Health::Healthy,
        &[
            ("emqx@10.0.0.1", true),
            ("emqx@10.0.0.2", true),
            ("emqx@10.0.0.3", true),
        ],
    )
    .await
    .expect("report");
    events.wait_status(&id, "running", WAIT).await;

    let expected = vec![
        ("created".to_string(), "created".to_string(), None),
        ("created".into(), "registering".into(), None),
        ("registering".into(), "running".into(), None),
        (
            "running".into(),
            "abnormal".into(),
            Some("nodes_stopped".to_string()),
        ),
        ("abnormal".into(), "running".into(), None),
        (
            "running".into(),
            "abnormal".into(),
            Some("agent_offline".into()),
        ),
        ("abnormal".into(), "running".into(), None),
    ];
    assert_eq!(api.history(&id).await, expected);
    let (_, before) = api.cluster(&id).await;
    drop(s);

    // Records and history survive a restart.
    server.restart().await;
    let api = server.api().await;
    let (status, after) = api.cluster(&id).await;
    assert_eq!(status, 200);
    assert_eq!(after["name"], "production east");
    assert_eq!(after["emqx"], before["emqx"]);
    assert_eq!(after["nodes"], before["nodes"]);
    let history = api.history(&id).await;
    assert_eq!(history[..expected.len()], expected[..], "history survives");
    // The agent's credential survives too.
    let mut s = Session::connect(&server.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("connect after restart");
    s.heartbeat().await.expect("heartbeat");

    // Secrets never reach the log.
    let log = server.log_text();
    assert!(log.contains("agent registered"), "the log was captured");
    for secret in [
        token.as_str(),
        reg.token.as_str(),
        api.token.as_str(),
        ADMIN_PASSWORD,
    ] {
        assert!(!log.contains(secret), "a secret leaked into the server log");
    }
}

#[tokio::test]
async fn a_reconnect_within_the_grace_does_not_flap() {
    let server = Server::start().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let (id, reg, s) = running_cluster(&server, &api, &mut events, "steady", "emqx@a").await;

    // Vanish and come back well within the grace (a node restart, an LB failover).
    s.vanish();
    let mut s = Session::connect(&server.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("reconnect");
    s.report(Health::Healthy, &[("emqx@a", true)])
        .await
        .expect("report");
    // Once a grace has surely passed since the vanish (a witness's own
    // grace ran out later), no abnormal has come.
    let (_, meanwhile) = grace_passed(&server.base, &api, P, &mut events).await;
    let flaps: Vec<&serde_json::Value> = meanwhile
        .iter()
        .filter(|v| v["cluster"]["id"] == id.as_str() && v["cluster"]["status"] != "running")
        .collect();
    assert!(flaps.is_empty(), "the cluster flapped: {flaps:?}");
    let history = api.history(&id).await;
    assert!(
        history.iter().all(|(_, to, _)| to != "abnormal"),
        "{history:?}"
    );
    assert_eq!(api.cluster(&id).await.1["status"], "running");
}

#[tokio::test]
async fn delete_tells_the_agent_then_the_cluster_is_gone_and_its_tokens_answer_410() {
    let server = Server::start().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let (id, reg, mut s) =
        running_cluster(&server, &api, &mut events, "to be deleted", "emqx@d").await;
    let token = api.issue_token(&id).await;

    let (status, body) = api
        .call(reqwest::Method::DELETE, &format!("{P}/clusters/{id}"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "deleting");
    // The agent is told to unregister, and acknowledges.
    let frame = s.next_frame(WAIT).await.expect("frame");
    assert!(matches!(frame, Some(Frame::Unregister { .. })), "{frame:?}");
    s.send(&Frame::UnregisterAck).await.expect("ack");
    let why = s.closed(WAIT).await.expect("closed").unwrap_or_default();
    assert_eq!(s.close_code(), Some(CloseCode::Unregistered), "{why}");
    events.wait(&id, WAIT, |v| v["removed"] == true).await;

    assert_eq!(api.cluster(&id).await.0, 404);
    let (status, list) = api.get(&format!("{P}/clusters")).await;
    assert_eq!(status, 200);
    assert!(list["data"]
        .as_array()
        .expect("list")
        .iter()
        .all(|c| c["id"] != id.as_str()));
    // Its registration token and the agent's credential: 410, not 401.
    let err = register(
        &api.http,
        &server.base,
        &register_body(&token, "n2", "emqx@d2", "5.6.0"),
    )
    .await
    .expect_err("410");
    assert_eq!(err.0, 410, "{:?}", err.1);
    assert_eq!(err.1["message"], "cluster was deleted");
    match Session::connect(&server.base, &reg.token, &reg.agent_id, None).await {
        Err(ecp_testkit::ConnectError::Status(410)) => {}
        other => panic!("expected 410, got {:?}", other.map(|_| ())),
    }
    // Its history is no longer served either.
    assert_eq!(api.get(&format!("{P}/clusters/{id}/events")).await.0, 404);
}

#[tokio::test]
async fn deleting_a_cluster_whose_agent_never_answers_finishes_after_the_timeout() {
    let server = Server::start().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let id = api.create_cluster("silent agent").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let reg = register(
        &api.http,
        &server.base,
        &register_body(&token, "n1", "emqx@s", "5.6.0"),
    )
    .await
    .expect("register");
    let mut s = Session::connect(&server.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("connect");
    let started = Instant::now();
    let (status, _) = api
        .call(reqwest::Method::DELETE, &format!("{P}/clusters/{id}"), None)
        .await;
    assert_eq!(status, 202);
    events.wait(&id, WAIT, |v| v["removed"] == true).await;
    assert!(
        started.elapsed() >= Duration::from_secs(3) - Duration::from_millis(100),
        "waited for the timeout"
    );
    assert_eq!(api.cluster(&id).await.0, 404);
    // The silent agent's session ends as deleted (protocol 1 agents read "deleted").
    let why = s.closed(WAIT).await.expect("closed").unwrap_or_default();
    assert_eq!(s.close_code(), Some(CloseCode::ClusterDeleted), "{why}");
    assert!(why.contains("deleted"), "{why}");
}
