//! Three ecp nodes share one Redis behind nginx (docker/nginx.conf): agents
//! spread over the nodes, consoles on any node see every change, a killed
//! node's agents move without flapping, and a cluster whose agent does not
//! come back is declared offline exactly once.

use crate::harness::*;
use crate::nginx::Nginx;
use crate::redis_server::RedisServer;
use ecp_protocol::{Frame, Health};
use ecp_testkit::{register, register_body, Registration, Session};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

const AGENTS: usize = 300;

/// An agent that keeps a session through nginx like emqxee-agent does:
/// reconnects after any loss or Reconnect, reports on connect and on command.
fn spawn_agent(
    base: String,
    reg: Registration,
    node: String,
    stop: watch::Receiver<bool>,
) -> mpsc::UnboundedSender<Health> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Health>();
    tokio::spawn(async move {
        let mut health = Health::Healthy;
        let ip = std::net::IpAddr::from([127, 0, 0, 2 + (node.len() % 6) as u8]);
        loop {
            if *stop.borrow() {
                return;
            }
            let Ok(mut s) = Session::connect(&base, &reg.token, &reg.agent_id, Some(ip)).await
            else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if s.report(health.clone(), &[(node.as_str(), true)])
                .await
                .is_err()
            {
                continue;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut stop = stop.clone();
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    Some(h) = rx.recv() => {
                        health = h;
                        if s.report(health.clone(), &[(node.as_str(), true)]).await.is_err() { break; }
                    }
                    _ = tick.tick() => { if s.heartbeat().await.is_err() { break; } }
                    f = s.next_frame(Duration::from_secs(3600)) => match f {
                        Ok(Some(Frame::Reconnect { .. })) | Ok(None) | Err(_) => break,
                        Ok(Some(_)) => {}
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tx
}

async fn sessions_on(server: &Server) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("ecp_agent_sessions "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until every cluster of `ids` is leased to a node other than
/// `node`: each has its new owner (claim rounds run every few seconds).
async fn leases_moved_off(redis: &RedisServer, ids: &[String], node: &str) {
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = ids.iter().map(|id| format!("ecp:lease:{id}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owners: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .expect("leases");
        let left = owners
            .iter()
            .filter(|o| o.as_deref().is_none_or(|o| o == node))
            .count();
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} clusters have no owner but {node}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A project of its own for witness clusters (`grace_passed`), so the
/// checks of `P` see only the clusters under test.
async fn witness_project(api: &Api) -> String {
    let (s, v) = api
        .post(
            "/api/orgs/default/projects",
            serde_json::json!({"name": "witnesses"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    format!(
        "/api/orgs/default/projects/{}",
        v["id"].as_str().expect("id")
    )
}

async fn node(redis: &RedisServer, name: &str) -> Server {
    Server::start_with(&[
        ("ECP_REDIS", &redis.url()),
        ("ECP_NODE_ID", name),
        ("ECP_AGENT_OFFLINE_GRACE_SECS", "5"),
        ("ECP_LIMITS_REGISTRATIONS_PER_SEC", "10000"),
        ("ECP_LIMITS_REGISTRATION_BURST", "10000"),
    ])
    .await
}

#[tokio::test]
async fn three_nodes_behind_nginx_share_redis_and_survive_a_killed_node() {
    let redis = RedisServer::start().await;
    // One after the other: the first creates the admin, the others find it.
    let a = node(&redis, "node-a").await;
    let mut b = node(&redis, "node-b").await;
    let c = node(&redis, "node-c").await;
    let nginx =
        Nginx::start(&[&a, &b, &c].map(|n| n.base.trim_start_matches("http://").to_string())).await;
    let via = Api::login(&nginx.base, "admin", ADMIN_PASSWORD).await;
    let on_a = Api::login(&a.base, "admin", ADMIN_PASSWORD).await;
    let mut events_a = on_a.events().await;

    // 300 clusters, one agent each, all through nginx.
    let mut ids = Vec::new();
    let mut regs = Vec::new();
    for i in 0..AGENTS {
        let id = via.create_cluster(&format!("fleet {i}")).await["id"]
            .as_str()
            .expect("id")
            .to_string();
        let token = via.issue_token(&id).await;
        let reg = register(
            &via.http,
            &nginx.base,
            &register_body(&token, &format!("i{i}"), &format!("emqx@f{i}"), "5.6.0"),
        )
        .await
        .expect("register");
        ids.push(id);
        regs.push(reg);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stop_some_tx, stop_some_rx) = watch::channel(false);
    let mut controls = Vec::new();
    for (i, reg) in regs.iter().enumerate() {
        // The last 5 agents will stop for good later.
        let stop = if i >= AGENTS - 5 {
            stop_some_rx.clone()
        } else {
            stop_rx.clone()
        };
        controls.push(spawn_agent(
            nginx.base.clone(),
            reg.clone(),
            format!("emqx@f{i}"),
            stop,
        ));
    }
    // Node A's console sees every cluster turn running, wherever its agent and owner are.
    let mut running: HashMap<String, bool> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.len() < AGENTS {
        assert!(
            Instant::now() < deadline,
            "only {} of {AGENTS} running on node A's stream",
            running.len()
        );
        let (c, _) = events_a.wait_any(Duration::from_secs(30)).await;
        if c["status"] == "running" {
            running.insert(c["id"].as_str().unwrap_or_default().to_string(), true);
        }
    }
    let spread = [
        sessions_on(&a).await,
        sessions_on(&b).await,
        sessions_on(&c).await,
    ];
    assert_eq!(spread.iter().sum::<u64>(), AGENTS as u64, "{spread:?}");
    assert!(
        spread.iter().all(|n| *n > 0),
        "agents spread over the nodes: {spread:?}"
    );

    // Latency: an agent whose session is on node C goes bad; A's stream
    // shows it at once (printed; bounded by 5 s, the machine being shared).
    let mut on_c = None;
    for (i, reg) in regs.iter().enumerate() {
        let p: Option<String> = redis::cmd("GET")
            .arg(format!("ecp:presence:{}", reg.agent_id))
            .query_async(
                &mut redis::Client::open(redis.url())
                    .expect("client")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("conn"),
            )
            .await
            .expect("get");
        if p.is_some_and(|p| p.starts_with("node-c|")) {
            on_c = Some(i);
            break;
        }
    }
    let i = on_c.expect("some agent on node C");
    let t = Instant::now();
    controls[i]
        .send(Health::NodesStopped {
            nodes: vec!["emqx@gone".into()],
        })
        .expect("command");
    let (_, at) = events_a
        .wait(&ids[i], Duration::from_secs(20), |c| {
            c["status"] == "abnormal"
        })
        .await;
    let latency = at - t;
    println!("a status change reached another node after {latency:?}");
    assert!(
        latency < Duration::from_secs(5),
        "status change took {latency:?} to reach another node"
    );
    controls[i].send(Health::Healthy).expect("command");
    events_a
        .wait(&ids[i], Duration::from_secs(20), |c| {
            c["status"] == "running"
        })
        .await;

    // Node B dies hard. Its agents come back through nginx; nothing flaps.
    let killed_at = Instant::now();
    b.kill9();
    // Five agents stop for good at the same time.
    stop_some_tx.send_replace(true);
    let gone: Vec<String> = ids[AGENTS - 5..].to_vec();
    // Wait until those five are offline (presence lapses, then the grace).
    let mut offline: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while offline.len() < gone.len() {
        assert!(Instant::now() < deadline, "offline so far: {offline:?}");
        let (c, _) = events_a.wait_any(Duration::from_secs(60)).await;
        let id = c["id"].as_str().unwrap_or_default().to_string();
        if gone.contains(&id) && c["status"] == "abnormal" {
            offline.insert(
                id,
                c["reason"]["code"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    assert!(
        offline.values().all(|code| code == "agent_offline"),
        "{offline:?}"
    );
    // Leases of B's clusters moved, and a grace has passed since (a witness
    // says so): every other cluster is running, and none ever recorded an
    // abnormal transition.
    leases_moved_off(&redis, &ids, "node-b").await;
    // Straight to a live node: nginx does not retry a POST that it sent to
    // the dead one (non-idempotent), and only notices B is down then.
    let witnesses = witness_project(&on_a).await;
    grace_passed(&a.base, &on_a, &witnesses, &mut events_a).await;
    let (s, list) = via.get(&format!("{P}/clusters")).await;
    assert_eq!(s, 200);
    for cl in list["data"].as_array().expect("data") {
        let id = cl["id"].as_str().unwrap_or_default();
        if gone.iter().any(|g| g == id) {
            continue;
        }
        assert_eq!(cl["status"], "running", "{} after node B died", cl["name"]);
    }
    for id in ids.iter().filter(|id| !gone.contains(id)) {
        let history = via.history(id).await;
        assert!(
            history
                .iter()
                .all(|(_, to, r)| to != "abnormal" || r.as_deref() == Some("nodes_stopped")),
            "{id} flapped: {history:?}"
        );
    }
    // Each offline cluster was decided once.
    for id in &gone {
        let history = via.history(id).await;
        let offline = history
            .iter()
            .filter(|(_, _, r)| r.as_deref() == Some("agent_offline"))
            .count();
        assert_eq!(offline, 1, "{id}: {history:?}");
    }
    println!("failover checked {:?} after the kill", killed_at.elapsed());
    stop_tx.send_replace(true);
}

async fn history_has_no_flap(api: &Api, ids: &[String]) {
    for id in ids {
        let history = api.history(id).await;
        assert!(
            history
                .iter()
                .all(|(_, to, r)| to != "abnormal" || r.as_deref() == Some("nodes_stopped")),
            "{id} flapped: {history:?}"
        );
    }
}

#[tokio::test]
async fn redis_restart_and_a_drained_node_lose_nothing_and_flap_nothing() {
    const N: usize = 30;
    let mut redis = RedisServer::start().await;
    let a = node(&redis, "node-a").await;
    let b = node(&redis, "node-b").await;
    let mut c = node(&redis, "node-c").await;
    let nginx =
        Nginx::start(&[&a, &b, &c].map(|n| n.base.trim_start_matches("http://").to_string())).await;
    let via = Api::login(&nginx.base, "admin", ADMIN_PASSWORD).await;
    let mut streams = Vec::new();
    for n in [&a, &b, &c] {
        streams.push(
            Api::login(&n.base, "admin", ADMIN_PASSWORD)
                .await
                .events()
                .await,
        );
    }
    let mut ids = Vec::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut controls = Vec::new();
    for i in 0..N {
        let id = via.create_cluster(&format!("r{i}")).await["id"]
            .as_str()
            .expect("id")
            .to_string();
        let token = via.issue_token(&id).await;
        let reg = register(
            &via.http,
            &nginx.base,
            &register_body(&token, &format!("r{i}"), &format!("emqx@r{i}"), "5.6.0"),
        )
        .await
        .expect("register");
        controls.push(spawn_agent(
            nginx.base.clone(),
            reg,
            format!("emqx@r{i}"),
            stop_rx.clone(),
        ));
        ids.push(id);
    }
    let all_running = |api: &Api| {
        let api_base = api.base.clone();
        let token = api.token.clone();
        async move {
            let v: serde_json::Value = reqwest::Client::new()
                .get(format!("{api_base}{P}/clusters"))
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let data = v["data"].as_array()?.clone();
            Some((
                data.len(),
                data.iter().filter(|c| c["status"] == "running").count(),
            ))
        }
    };
    let converge = |what: &'static str| {
        let via_base = via.base.clone();
        let token = via.token.clone();
        async move {
            let api = Api {
                http: reqwest::Client::new(),
                base: via_base,
                token,
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some((n, running)) = all_running(&api).await {
                    if n == N && running == N {
                        return;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: not all {N} clusters running"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    converge("start").await;

    // Redis restarts (AOF on): nothing lost, every node resubscribes.
    redis.restart().await;
    converge("after the Redis restart").await;
    controls[0]
        .send(Health::NodesStopped {
            nodes: vec!["emqx@x".into()],
        })
        .expect("command");
    for (i, events) in streams.iter_mut().enumerate() {
        let (cl, _) = events
            .wait(&ids[0], Duration::from_secs(20), |c| {
                c["status"] == "abnormal"
            })
            .await;
        assert_eq!(cl["reason"]["code"], "nodes_stopped", "node {i}");
    }
    controls[0].send(Health::Healthy).expect("command");
    converge("healthy again").await;

    // Node C drains on SIGTERM: its agents move before it exits; nothing flaps.
    let before = sessions_on(&c).await;
    c.sigterm();
    let status = c
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("node C exited");
    assert!(status.success());
    // Its agents left before it exited; they arrive at A and B moments later.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let moved = sessions_on(&a).await + sessions_on(&b).await;
        if moved == N as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "C's {before} agents did not all reach A and B: {moved} of {N}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    converge("after node C drained").await;
    // C's clusters have their new owners, and a grace has passed since (a
    // witness says so): a flap would show now.
    leases_moved_off(&redis, &ids, "node-c").await;
    // Straight to a live node (nginx does not retry a POST sent to C).
    let on_a = Api::login(&a.base, "admin", ADMIN_PASSWORD).await;
    let witnesses = witness_project(&on_a).await;
    grace_passed(&a.base, &on_a, &witnesses, &mut streams[0]).await;
    converge("past the grace").await;
    history_has_no_flap(&via, &ids).await;
    stop_tx.send_replace(true);
}
