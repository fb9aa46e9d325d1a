//! Agent sessions: bad frames close only the offending session; the
//! protocol version rule; replacement; the registry restarting a failed
//! cluster actor from the stored state.

use crate::harness::*;
use ecp_protocol::{AgentHello, CloseCode, Frame, Health};
use ecp_testkit::{register, register_body, Registration, Session};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

async fn registered(api: &Api, base: &str, n: usize) -> (String, Vec<Registration>) {
    let id = api.create_cluster(&format!("sessions {n}")).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let mut regs = Vec::new();
    for i in 0..n {
        let r = register(
            &api.http,
            base,
            &register_body(&token, &format!("inst-{i}"), &format!("emqx@n{i}"), "5.6.0"),
        )
        .await
        .expect("register");
        regs.push(r);
    }
    (id, regs)
}

#[tokio::test]
async fn an_oversized_frame_and_a_garbage_frame_close_only_their_own_sessions() {
    let server = Server::start().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let (id, regs) = registered(&api, &server.base, 3).await;
    let mut big = Session::connect(&server.base, &regs[0].token, &regs[0].agent_id, None)
        .await
        .expect("a");
    let mut garbage = Session::connect(&server.base, &regs[1].token, &regs[1].agent_id, None)
        .await
        .expect("b");
    let mut good = Session::connect(&server.base, &regs[2].token, &regs[2].agent_id, None)
        .await
        .expect("c");
    good.report(Health::Healthy, &[("emqx@n2", true)])
        .await
        .expect("report");
    events.wait_status(&id, "running", WAIT).await;

    // 1.5 MiB in one binary message: over the 1 MiB limit.
    big.send_raw(vec![7u8; 3 << 19]).await.expect("send big");
    let why = big.closed(WAIT).await.expect("closed");
    assert_eq!(
        big.close_code(),
        Some(CloseCode::OverBound),
        "closed as too big: {why:?}"
    );
    assert!(
        why.as_deref().unwrap_or_default().contains("1 MiB"),
        "{why:?}"
    );

    // Bytes that are no frame at all.
    garbage
        .send_raw(vec![0xff; 64])
        .await
        .expect("send garbage");
    let why = garbage.closed(WAIT).await.expect("closed");
    assert_eq!(garbage.close_code(), Some(CloseCode::BadFrame), "{why:?}");
    assert!(
        why.as_deref().unwrap_or_default().contains("malformed"),
        "closed as malformed: {why:?}"
    );

    // The third session carries on: its reports still move the cluster.
    good.report(
        Health::NodesStopped {
            nodes: vec!["emqx@n9".into()],
        },
        &[("emqx@n2", true), ("emqx@n9", false)],
    )
    .await
    .expect("report");
    let (c, _) = events.wait_status(&id, "abnormal", WAIT).await;
    assert_eq!(c["reason"]["code"], "nodes_stopped");
    good.heartbeat().await.expect("still open");
    // And the two offenders may simply reconnect.
    let _again = Session::connect(&server.base, &regs[0].token, &regs[0].agent_id, None)
        .await
        .expect("reconnect a");
    let metrics = api
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let log = server.log_text();
    assert!(
        metrics.contains("ecp_bad_frames_total 2"),
        "{metrics}\n{log}"
    );
    // The closed sessions left the registry: two are open (the good one and the reconnected one).
    assert!(metrics.contains("ecp_agent_sessions 2"), "{metrics}\n{log}");
    let (_, agents) = api.get(&format!("{P}/clusters/{id}/agents")).await;
    let connected: Vec<bool> = agents
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["connected"] == true)
        .collect();
    assert_eq!(
        connected.iter().filter(|c| **c).count(),
        2,
        "{agents}\n{}",
        server.log_text()
    );
}

#[tokio::test]
async fn protocol_version_rule_and_hello_checks() {
    let server = Server::start().await;
    let api = server.api().await;
    let (_, regs) = registered(&api, &server.base, 1).await;
    let r = &regs[0];

    let mut s = Session::open(&server.base, &r.token, &r.agent_id, None)
        .await
        .expect("open");
    s.send(&Frame::Hello {
        protocol: ecp_protocol::PROTOCOL_VERSION + 1,
        agent: AgentHello {
            agent_id: r.agent_id.clone(),
            agent_version: "9".into(),
            node_name: "x".into(),
        },
    })
    .await
    .expect("hello");
    let why = s.closed(WAIT).await.expect("closed").unwrap_or_default();
    assert!(why.contains("unsupported protocol"), "{why}");
    assert_eq!(s.close_code(), Some(CloseCode::UnsupportedProtocol));

    let mut s = Session::open(&server.base, &r.token, &r.agent_id, None)
        .await
        .expect("open");
    s.heartbeat().await.expect("send");
    let why = s.closed(WAIT).await.expect("closed").unwrap_or_default();
    assert!(why.contains("expected Hello"), "{why}");
    assert_eq!(s.close_code(), Some(CloseCode::BadFrame));

    let mut s = Session::open(&server.base, &r.token, &r.agent_id, None)
        .await
        .expect("open");
    s.send(&Frame::Hello {
        protocol: ecp_protocol::PROTOCOL_VERSION,
        agent: AgentHello {
            agent_id: "someone-else".into(),
            agent_version: "1".into(),
            node_name: "x".into(),
        },
    })
    .await
    .expect("hello");
    let why = s.closed(WAIT).await.expect("closed").unwrap_or_default();
    assert!(why.contains("another agent"), "{why}");
    assert_eq!(s.close_code(), Some(CloseCode::BadFrame));

    // A bad credential never gets a WebSocket.
    match Session::open(&server.base, "ecpa_wrong", &r.agent_id, None).await {
        Err(ecp_testkit::ConnectError::Status(401)) => {}
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_newer_session_of_the_same_agent_replaces_the_older_one() {
    let server = Server::start().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let (id, regs) = registered(&api, &server.base, 1).await;
    let r = &regs[0];
    let mut old = Session::connect(&server.base, &r.token, &r.agent_id, None)
        .await
        .expect("old");
    old.report(Health::Healthy, &[("emqx@n0", true)])
        .await
        .expect("report");
    events.wait_status(&id, "running", WAIT).await;
    let mut new = Session::connect(&server.base, &r.token, &r.agent_id, None)
        .await
        .expect("new");
    let why = old.closed(WAIT).await.expect("closed").unwrap_or_default();
    assert!(why.contains("replaced"), "{why}");
    assert_eq!(old.close_code(), Some(CloseCode::Superseded));
    new.report(Health::Healthy, &[("emqx@n0", true)])
        .await
        .expect("report");
    // Past the grace (a witness's, started later, ran out), the cluster is
    // still running: the old session's end did not count.
    let (_, meanwhile) = grace_passed(&server.base, &api, P, &mut events).await;
    assert!(
        !meanwhile
            .iter()
            .any(|v| v["cluster"]["id"] == id.as_str() && v["cluster"]["status"] == "abnormal"),
        "went abnormal: {meanwhile:?}"
    );
    assert_eq!(api.cluster(&id).await.1["status"], "running");
    let (_, agents) = api.get(&format!("{P}/clusters/{id}/agents")).await;
    assert_eq!(agents[0]["connected"], true, "{agents}");
}

#[actix_web::test]
async fn the_registry_restarts_a_failed_cluster_actor_from_the_stored_state() {
    use ecp_actors::msg::{ClusterInput, Control};
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = ecp::config::Config::default();
    config.store.data_dir = dir.path().display().to_string();
    let state = ecp::build_state(config).await.expect("state");
    let now = ecp_actors::model::now_ms();
    let record = ecp_actors::model::ClusterRecord {
        id: "c-restart".into(),
        org_id: "default".into(),
        project_id: "default".into(),
        name: "before".into(),
        description: String::new(),
        service_address: String::new(),
        status: ecp_actors::model::Status::Created,
        reason: None,
        emqx: None,
        nodes: Default::default(),
        node_list: vec![],
        connections: Default::default(),
        agents: Default::default(),
        started_at: None,
        created_at: now,
        updated_at: now,
        revision: 1,
    };
    let event = ecp_actors::model::ClusterEvent {
        cluster_id: record.id.clone(),
        revision: 1,
        at: now,
        from: record.status,
        to: record.status,
        reason: None,
        cause: "created".into(),
    };
    state
        .deps
        .store
        .create_cluster(&record, &event)
        .await
        .expect("create");
    assert!(state
        .registry
        .send(ecp_actors::registry::Spawn(record))
        .await
        .expect("spawn"));
    let first = state.deps.dir.cluster("c-restart").expect("running here");
    let cluster = state.deps.cluster("c-restart");
    let edited = cluster
        .ask(ClusterInput::Edit {
            name: Some("after".into()),
            description: None,
            service_address: None,
            move_to: None,
        })
        .await
        .expect("edit")
        .record()
        .expect("record");
    assert_eq!(edited.revision, 2);

    first.control.send(Control::Fail).await.expect("fail");
    // Await the replacement actor (the registry backs off briefly first).
    let deadline = tokio::time::Instant::now() + WAIT;
    let second = loop {
        if let Some(h) = state.deps.dir.cluster("c-restart") {
            if h.connected() && h.ask != first.ask {
                break h;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cluster actor was not restarted"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let snap = second
        .ask
        .send(ecp_actors::msg::Ask(ClusterInput::Snapshot))
        .await
        .expect("snapshot")
        .expect("answer")
        .record()
        .expect("record");
    assert_eq!(snap.name, "after", "state reloaded from the store");
    assert_eq!(snap.revision, 2);
}
