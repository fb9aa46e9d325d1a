//! The agent side is untrusted, and so is every path a user sends towards
//! it: attacks on the node-to-node forwarding and on the peer secret, tried
//! for real and checked from the target's side too.

use crate::harness::*;
use crate::plain_http::{PlainServer, Reply, Seen};
use crate::procs::*;
use crate::redis_server::RedisServer;
use serde_json::json;

async fn node(redis: &RedisServer, name: &str, extra: &[(&str, &str)]) -> Server {
    let url = redis.url();
    let mut env = vec![
        ("ECP_REDIS", url.as_str()),
        ("ECP_NODE_ID", name),
        ("ECP_AGENT_REPORT_INTERVAL_SECS", "1"),
    ];
    env.extend_from_slice(extra);
    Server::start_with(&env).await
}

/// A dashboard that records what reaches it.
async fn recorder() -> PlainServer {
    PlainServer::start(|_| Reply::html("recorded")).await
}

fn paths(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect()
}

/// Two nodes; a user of project 1 only; clusters X (project 1) and Y
/// (project 2) whose agents both hold their sessions on node B, so every
/// request on node A is forwarded. Every spelling of a way from X's
/// dashboard to Y's agent (or to the internal peer route) answers 400 or
/// 404 on node A, and neither dashboard sees any of it — while a plain
/// request to X's dashboard does arrive, so the recorders would have seen a
/// leak.
#[tokio::test]
async fn path_traversal_towards_another_projects_agent_reaches_no_agent() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "node-a", &[]).await;
    let b = node(&redis, "node-b", &[]).await;
    let admin = a.api().await;
    let (s, p2) = admin
        .post("/api/orgs/default/projects", json!({"name": "other"}))
        .await;
    assert_eq!(s, 201, "{p2}");
    let p2 = format!(
        "/api/orgs/default/projects/{}",
        p2["id"].as_str().expect("id")
    );
    let (dash_x, dash_y) = (recorder().await, recorder().await);
    let (sim_x, sim_y) = (
        Sim::start("4.4.6", 1, "trav-x").await,
        Sim::start("4.4.6", 1, "trav-y").await,
    );
    let (x, _, _ax) = adopted_in(&admin, P, &b.base, &sim_x, "x", &[], &dash_x.url).await;
    let (y, _, _ay) = adopted_in(&admin, &p2, &b.base, &sim_y, "y", &[], &dash_y.url).await;
    let agent_y = admin.get(&format!("{p2}/clusters/{y}/agents")).await.1[0]["agentId"]
        .as_str()
        .expect("agent")
        .to_string();
    // A project admin of the default project only.
    let (s, u) = admin
        .post(
            "/api/users",
            json!({"username": "p1admin", "password": "Passw0rd-x"}),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    let uid = u["id"].as_str().expect("id");
    for (path, role) in [
        (format!("/api/orgs/default/members/{uid}"), "viewer"),
        (format!("{P}/members/{uid}"), "admin"),
    ] {
        let (s, v) = admin
            .call(reqwest::Method::PUT, &path, Some(json!({ "role": role })))
            .await;
        assert_eq!(s, 204, "{v}");
    }
    let user = Api::login(&a.base, "p1admin", "Passw0rd-x").await;
    let bearer = format!("Bearer {}", user.token);
    let auth = [("authorization", bearer.as_str())];

    // The control: X's own dashboard is reached through node A.
    let (s, body) = raw_request(
        &a.base,
        "GET",
        &format!("/api/emqxee/dashboard/{x}/ok"),
        &auth,
    )
    .await;
    assert_eq!((s, body.as_str()), (200, "recorded"));
    assert_eq!(paths(&dash_x.seen()), ["GET /ok"]);

    let api_prefix = format!("/api/emqxee/dashboard/{x}");
    let tries = [
        format!("{api_prefix}/../{y}/x"),
        format!("{api_prefix}/../../{y}/"),
        format!("{api_prefix}/..%2f{y}%2fx"),
        format!("{api_prefix}/..%2F..%2F..%2Finternal%2Fpeer%2Ftunnel"),
        format!("{api_prefix}/%2e%2e/%2e%2e/%2e%2e/internal/peer/tunnel/{agent_y}/x"),
        format!("{api_prefix}/%2E%2e/%2e%2E/{y}/x"),
        format!("{api_prefix}/.%2e/.%2E/{y}/x"),
        format!("{api_prefix}/%252e%252e/%252e%252e/{y}/x"),
        format!("{api_prefix}/..%5c..%5c{y}%5cx"),
        format!("{api_prefix}/..;/..;/{y}/x"),
        format!("{api_prefix}/./x"),
        format!("{api_prefix}//internal/peer/tunnel"),
        format!("/api/emqxee/dashboard/..%2f{y}/x"),
        format!("/api/emqxee/dashboard/{x}%2f..%2f{y}/x"),
        format!("/api/emqxee/dashboard/{y}/x"),
    ];
    let mut answers = Vec::new();
    for t in &tries {
        let (s, body) = raw_request(&a.base, "GET", t, &auth).await;
        assert!(s == 400 || s == 404, "{t}: {s} {body}");
        answers.push(format!("{s} {t}"));
    }
    // The same through the dashboard site, with X's capability.
    let url = user.open_dashboard(&x).await;
    let cap = url
        .trim_start_matches(&a.dash)
        .trim_end_matches('/')
        .to_string();
    for t in [
        format!("{cap}/../../d/x"),
        format!("{cap}/%2e%2e/%2e%2e/api/emqxee/dashboard/{y}/x"),
        format!("{cap}/..%2f..%2finternal%2fpeer%2ftunnel"),
    ] {
        let (s, body) = raw_request(&a.dash, "GET", &t, &[]).await;
        assert!(s == 400 || s == 404, "{t}: {s} {body}");
        answers.push(format!("{s} {t}"));
    }
    // Nor can the internal route be used without the secret.
    let (s, _) = raw_request(
        &b.base,
        "GET",
        "/internal/peer/tunnel",
        &[
            ("x-ecp-peer", "ecpp_guess"),
            ("x-ecp-peer-agent", &agent_y),
            ("x-ecp-peer-path", "/x"),
        ],
    )
    .await;
    assert_eq!(s, 404);
    println!("refused on node A:\n{}", answers.join("\n"));
    // From the targets' side: nothing arrived.
    assert!(
        dash_y.seen().is_empty(),
        "Y's dashboard was reached: {:?}",
        paths(&dash_y.seen())
    );
    assert_eq!(
        paths(&dash_x.seen()),
        ["GET /ok"],
        "only the control reached X"
    );
    let metrics = reqwest::get(format!("{}/metrics", b.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let tunnels = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ecp_tunnel_requests_total "))
        .unwrap_or("?");
    assert_eq!(
        tunnels.trim(),
        "1",
        "node B opened only the control's stream:\n{metrics}"
    );
}

/// The peer secret goes to a node's advertised URL and nowhere else: a
/// redirect from there is not followed (the request answers 502, the
/// redirect's target sees nothing). `ecp peer-secret rotate` replaces the
/// secret while forwarding keeps working; the secret before the previous
/// one is refused.
#[tokio::test]
async fn the_peer_secret_follows_no_redirect_and_rotates() {
    let redis = RedisServer::start().await;
    let elsewhere = recorder().await;
    let to = format!("{}/stolen", elsewhere.url);
    let redirector = PlainServer::start(move |_| Reply {
        status: 307,
        headers: vec![("location".into(), to.clone())],
        body: Vec::new(),
    })
    .await;
    let a = node(&redis, "node-a", &[]).await;
    // Node C advertises the redirector as its URL.
    let c = node(
        &redis,
        "node-c",
        &[("ECP_NODE_ADVERTISE_URL", &redirector.url)],
    )
    .await;
    let b = node(&redis, "node-b", &[]).await;
    let admin = a.api().await;
    let sim_c = Sim::start("4.4.6", 1, "secret-c").await;
    let (via_c, _, _agent_c) = adopted(&admin, &c.base, &sim_c, "via c", &[]).await;
    let (s, body) = raw_request(
        &a.base,
        "GET",
        &format!("/api/emqxee/dashboard/{via_c}/"),
        &[("authorization", &format!("Bearer {}", admin.token))],
    )
    .await;
    assert_eq!(s, 502, "the redirect came back and was refused: {body}");
    let reached = redirector.seen();
    assert_eq!(reached.len(), 1, "the advertised URL got the request");
    assert!(reached[0].headers.iter().any(|(n, _)| n == "x-ecp-peer"));
    assert!(elsewhere.seen().is_empty(), "the redirect was followed");

    // Rotation: forwarding from A to B goes on; the old secret is kept as
    // "previous", the one before it is refused.
    let sim_b = Sim::start("4.4.6", 1, "secret-b").await;
    let (via_b, _, _agent_b) = adopted(&admin, &b.base, &sim_b, "via b", &[]).await;
    let get_via_a = || async {
        raw_request(
            &a.base,
            "GET",
            &format!("/api/emqxee/dashboard/{via_b}/api/v4/nodes"),
            &[("authorization", &format!("Bearer {}", admin.token))],
        )
        .await
        .0
    };
    assert_eq!(get_via_a().await, 200);
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let first: String = redis::cmd("GET")
        .arg("ecp:peer_secret")
        .query_async(&mut conn)
        .await
        .expect("secret");
    let rotate = || async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecp"))
            .args(["peer-secret", "rotate", "--redis", &redis.url()])
            .output()
            .await
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    rotate().await;
    assert_eq!(get_via_a().await, 200, "forwarding right after a rotation");
    rotate().await;
    assert_eq!(get_via_a().await, 200, "and after a second one");
    let agent_b = admin.get(&format!("{P}/clusters/{via_b}/agents")).await.1[0]["agentId"]
        .as_str()
        .expect("agent")
        .to_string();
    // Nodes re-read the secrets every 5 s: within that, the first one dies.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (s, _) = raw_request(
            &b.base,
            "GET",
            "/internal/peer/tunnel",
            &[
                ("x-ecp-peer", &first),
                ("x-ecp-peer-agent", &agent_b),
                ("x-ecp-peer-path", "/api/v4/nodes"),
            ],
        )
        .await;
        if s == 404 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a secret two rotations old is still accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        get_via_a().await,
        200,
        "forwarding goes on with the new secret"
    );
}

/// A hostile agent (the testkit client, speaking the protocol badly on
/// purpose) tries oversized and amplified log batches, a tunnel answer that
/// redirects out of the dashboard or carries a hundred-odd headers, and
/// floods of frames and reports. Each attack ends its own session with the
/// bound it broke (audited), nothing of it is stored, ECP's memory stays
/// within a stated bound, and a second agent's reports keep arriving.
#[tokio::test]
async fn a_hostile_agent_is_cut_off_and_nothing_it_sent_is_kept() {
    use ecp_protocol::limits::*;
    use ecp_protocol::{
        CloseCode, Connections, Frame, Health, LogBatch, LogLine, NodeStatus, Report,
    };
    use ecp_testkit::{register, register_body, Session};
    use std::time::Duration;
    const WAIT: Duration = Duration::from_secs(20);

    let server = Server::start().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let reg = |name: &'static str| {
        let api = &api;
        let base = server.base.clone();
        async move {
            let id = api.create_cluster(name).await["id"]
                .as_str()
                .expect("id")
                .to_string();
            let token = api.issue_token(&id).await;
            let r = register(
                &api.http,
                &base,
                &register_body(&token, name, &format!("emqx@{name}"), "4.4.6"),
            )
            .await
            .expect("register");
            (id, r)
        }
    };
    let (bad_id, bad) = reg("hostile").await;
    let (good_id, good) = reg("honest").await;

    // The honest agent reports a changed connection count every 250 ms.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let honest = {
        let (base, good) = (server.base.clone(), good.clone());
        tokio::spawn(async move {
            let mut s = Session::connect(&base, &good.token, &good.agent_id, None)
                .await
                .expect("honest session");
            let mut n = 0u64;
            loop {
                n += 1;
                let f = Frame::Report(Report {
                    seq: n,
                    observed_at_ms: 0,
                    health: Health::Healthy,
                    emqx: None,
                    nodes: vec![NodeStatus {
                        name: "emqx@honest".into(),
                        running: true,
                        version: Some("4.4.6".into()),
                        role: None,
                        connections: Some(n),
                        uptime_secs: None,
                    }],
                    connections: Some(Connections {
                        current: n,
                        max: None,
                    }),
                });
                s.send(&f).await.expect("honest report");
                tokio::select! {
                    _ = stop_rx.changed() => return n,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        })
    };
    events.wait_status(&good_id, "running", WAIT).await;
    let rss_before = server.rss_kib();
    let mut rss_max = rss_before;

    let connect = || Session::connect(&server.base, &bad.token, &bad.agent_id, None);
    let line = |file: u64, offset: u64, message: String| LogLine {
        file,
        offset,
        time_us: 1,
        level: 4,
        raw: message.clone(),
        message,
        fields: String::new(),
    };
    let batch = |lines: Vec<LogLine>| {
        Frame::LogBatch(LogBatch {
            batch: 1,
            node: "emqx@hostile".into(),
            lines,
        })
    };
    let alarm = |message: String| ecp_protocol::EmqxAlarm {
        node: "emqx@hostile".into(),
        name: "high_cpu_usage".into(),
        message,
        details: String::new(),
        activate_at_ms: 1,
        deactivate_at_ms: None,
    };
    // Each attack: one session, its frames, the close reason the server gives.
    let mut reasons = Vec::new();
    let attacks: Vec<(&str, Vec<Frame>)> = vec![
        (
            "LogBatch.lines",
            vec![batch(
                (0..MAX_LOG_LINES as u64 + 1)
                    .map(|i| line(1, i, String::new()))
                    .collect(),
            )],
        ),
        (
            "log message bytes",
            vec![batch(vec![line(
                1,
                0,
                "x".repeat(MAX_LOG_MESSAGE_BYTES + 1),
            )])],
        ),
        (
            "LogBatch distinct files",
            vec![batch(
                (0..MAX_LOG_FILES_PER_BATCH as u64 + 1)
                    .map(|f| line(f, 0, "m".into()))
                    .collect(),
            )],
        ),
        (
            "LogBatch.node bytes",
            vec![Frame::LogBatch(LogBatch {
                batch: 1,
                node: "n".repeat(MAX_NAME_BYTES + 1),
                lines: vec![line(1, 0, "m".into())],
            })],
        ),
        (
            "Report.nodes",
            vec![Frame::Report(Report {
                seq: 1,
                observed_at_ms: 0,
                health: Health::Healthy,
                emqx: None,
                nodes: (0..MAX_REPORT_NODES + 1)
                    .map(|i| NodeStatus {
                        name: format!("emqx@n{i}"),
                        running: true,
                        version: None,
                        role: None,
                        connections: None,
                        uptime_secs: None,
                    })
                    .collect(),
                connections: None,
            })],
        ),
        (
            "frames a second",
            (0..5_000u64)
                .map(|seq| Frame::Heartbeat { seq, at_ms: 0 })
                .collect(),
        ),
        (
            "frames a second",
            (0..5_000u32)
                .map(|stream| Frame::TunnelData {
                    stream: stream + 1_000_000,
                    data: vec![0; 1024],
                })
                .collect(),
        ),
        (
            "Metrics.samples",
            vec![Frame::Metrics(ecp_protocol::MetricsBatch {
                batch: 1,
                samples: (0..ecp_protocol::metrics::MAX_SAMPLES_PER_BATCH as u64 + 1)
                    .map(|i| ecp_protocol::MetricSample {
                        at_ms: i,
                        values: vec![("connections".into(), 1.0)],
                    })
                    .collect(),
            })],
        ),
        (
            "alarm message bytes",
            vec![Frame::Alarms(ecp_protocol::AlarmSnapshot {
                observed_at_ms: 1,
                active: vec![alarm(
                    "x".repeat(ecp_protocol::metrics::MAX_ALARM_TEXT_BYTES + 1),
                )],
                deactivated: vec![],
            })],
        ),
        (
            "Alarms.active",
            vec![Frame::Alarms(ecp_protocol::AlarmSnapshot {
                observed_at_ms: 1,
                active: (0..ecp_protocol::metrics::MAX_ACTIVE_ALARMS + 1)
                    .map(|i| alarm(format!("alarm {i}")))
                    .collect(),
                deactivated: vec![],
            })],
        ),
        (
            // Alarm snapshots reach the cluster's actor: they spend the
            // report budget.
            "reports a second",
            (0..50u64)
                .map(|i| {
                    Frame::Alarms(ecp_protocol::AlarmSnapshot {
                        observed_at_ms: i,
                        active: vec![alarm(format!("flood {i}"))],
                        deactivated: vec![],
                    })
                })
                .collect(),
        ),
        (
            "reports a second",
            (0..50u64)
                .map(|seq| {
                    ecp_testkit::report(seq, Health::Healthy, &[("emqx@hostile", seq % 2 == 0)])
                })
                .collect(),
        ),
    ];
    for (bound, frames) in attacks {
        let mut s = connect().await.expect("hostile session");
        for f in &frames {
            if s.send(f).await.is_err() {
                break; // closed under our feet: fine
            }
        }
        let why = s.closed(WAIT).await.ok().flatten().unwrap_or_default();
        assert!(
            why.contains(bound),
            "expected a close for {bound:?}, got {why:?}"
        );
        assert_eq!(s.close_code(), Some(CloseCode::OverBound), "{why}");
        reasons.push(why);
        rss_max = rss_max.max(server.rss_kib());
    }
    // A frame beyond 1 MiB.
    let mut s = connect().await.expect("hostile session");
    let _ = s.send_raw(vec![0u8; (1 << 20) + 1]).await;
    let why = s.closed(WAIT).await.ok().flatten().unwrap_or_default();
    assert_eq!(s.close_code(), Some(CloseCode::OverBound), "{why}");
    assert!(why.contains("frame exceeds 1 MiB"), "{why}");

    // Tunnel answers: ECP opens a stream for an API client; the agent
    // answers with a redirect out of the dashboard (refused: 502, nothing
    // passed on), then with too many headers (the session ends).
    for (answer, bound) in [
        (
            vec![
                (
                    "location".to_string(),
                    b"http://evil.example/steal".to_vec(),
                ),
                (
                    "set-cookie".to_string(),
                    b"ecp_session=planted; Path=/".to_vec(),
                ),
            ],
            None,
        ),
        (
            (0..MAX_TUNNEL_HEADERS + 1)
                .map(|i| (format!("x-h{i}"), b"v".to_vec()))
                .collect(),
            Some("TunnelHead.headers"),
        ),
    ] {
        let mut s = connect().await.expect("hostile session");
        let http = reqwest::Client::new();
        let request = tokio::spawn(
            http.get(format!("{}/api/emqxee/dashboard/{bad_id}/", server.base))
                .bearer_auth(api.token.clone())
                .send(),
        );
        let stream = loop {
            match s.next_frame(WAIT).await.expect("frame") {
                Some(Frame::TunnelOpen(r)) => break r.stream,
                Some(_) => continue,
                None => panic!("closed before the tunnel opened"),
            }
        };
        let status = if bound.is_none() { 302 } else { 200 };
        let _ = s
            .send(&Frame::TunnelHead {
                stream,
                status,
                headers: answer,
            })
            .await;
        let _ = s
            .send(&Frame::TunnelEnd {
                stream,
                error: None,
            })
            .await;
        let r = request.await.expect("join").expect("answer");
        match bound {
            None => {
                assert_eq!(
                    r.status(),
                    502,
                    "a redirect out of the dashboard is refused"
                );
                assert!(
                    r.headers().get("location").is_none()
                        && r.headers().get("set-cookie").is_none()
                );
                s.heartbeat().await.expect("the session itself goes on");
            }
            Some(bound) => {
                assert_eq!(r.status(), 502);
                let why = s.closed(WAIT).await.ok().flatten().unwrap_or_default();
                assert!(why.contains(bound), "{why}");
                assert_eq!(s.close_code(), Some(CloseCode::OverBound), "{why}");
                reasons.push(why);
            }
        }
    }
    rss_max = rss_max.max(server.rss_kib());

    // The honest agent's reports went on through all of it, and go on.
    let (c, _) = events
        .wait(&good_id, WAIT, |c| {
            c["connections"]["current"].as_u64().is_some_and(|n| n > 2)
        })
        .await;
    let seen = c["connections"]["current"].as_u64().unwrap_or(0);
    events
        .wait(&good_id, WAIT, |c| {
            c["connections"]["current"].as_u64() > Some(seen)
        })
        .await;
    let _ = stop_tx.send(true);
    let sent = honest.await.expect("honest");
    println!(
        "hostile sessions closed with: {reasons:#?}\nhonest reports sent meanwhile: {sent}; ECP RSS {rss_before} KiB before, {rss_max} KiB at most"
    );
    // Nothing the hostile agent sent was kept: no log line, no node list.
    let (_, logs) = api.get(&format!("{P}/clusters/{bad_id}/logs")).await;
    assert_eq!(logs["data"].as_array().map(Vec::len), Some(0), "{logs}");
    let (_, c) = api.get(&format!("{P}/clusters/{bad_id}")).await;
    assert!(
        c["nodes"]["total"].as_u64().unwrap_or(0) <= 1,
        "no oversized node list stored: {c}"
    );
    // Alarms within the bounds may be kept (they are this cluster's own
    // view, like its reports); none that broke a bound was.
    let (s, alarms) = api.get(&format!("{P}/clusters/{bad_id}/alarms")).await;
    assert_eq!(s, 200, "{alarms}");
    assert!(
        alarms["data"]
            .as_array()
            .expect("alarms")
            .iter()
            .all(|a| a["message"].as_str().is_some_and(|m| m.len() < 100)),
        "{alarms}"
    );
    // Each refusal is in the audit log, with the bound it broke.
    let (_, audit) = api
        .get("/api/audit/operations?action=agent.frame_refused&size=100")
        .await;
    let details: Vec<String> = audit["data"]
        .as_array()
        .expect("audit")
        .iter()
        .map(|r| r["details"].as_str().unwrap_or("").to_string())
        .collect();
    for bound in [
        "LogBatch.lines",
        "Metrics.samples",
        "Alarms.active",
        "Report.nodes",
        "frames a second",
        "reports a second",
        "TunnelHead.headers",
    ] {
        assert!(
            details.iter().any(|d| d.contains(bound)),
            "{bound} not audited: {details:?}"
        );
    }
    assert!(audit["data"][0]["objectId"] == bad_id.as_str(), "{audit}");
    // The stated bound: a hostile session costs ECP at most its 1 MiB frame
    // buffer, its log window and its tunnel windows; 64 MiB covers all of
    // them with room.
    assert!(
        rss_max < rss_before + 64 * 1024,
        "ECP grew from {rss_before} KiB to {rss_max} KiB"
    );
}

/// Agent credentials (item 6): the real agent gets a fresh credential on
/// every session and acknowledges it once stored; the one before stops
/// working at once, so a copy taken from its disk dies with the next
/// reconnect. The cluster runs on throughout.
#[tokio::test]
async fn agent_credentials_rotate_on_every_session_and_old_copies_die() {
    use ecp_testkit::{ConnectError, Session};
    use std::time::Duration;
    let server = Server::start_with(&[("ECP_AGENT_REPORT_INTERVAL_SECS", "1")]).await;
    let api = server.api().await;
    let sim = Sim::start("4.4.6", 1, "rotate").await;
    let mut events = api.events().await;
    let id = api.create_cluster("rotating").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let agent = Agent::new();
    // Registered but not started: the credential as `register` wrote it.
    let args = seed_args(&server.base, &token, &sim.url, "public");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = agent.cmd(&args).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let cred = || agent.credential().expect("credential");
    let first = cred();
    let agent_id = first["agentId"].as_str().expect("agent").to_string();
    let token_of = |c: &serde_json::Value| c["token"].as_str().expect("token").to_string();
    let refused = |t: String| {
        let (base, agent_id) = (server.base.clone(), agent_id.clone());
        async move {
            matches!(
                Session::open(&base, &t, &agent_id, None).await,
                Err(ConnectError::Status(401))
            )
        }
    };
    // Waits until the credential on disk is another than `before`.
    let rotated = |before: String| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let now = token_of(&cred());
            if now != before {
                return now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the credential was not rotated"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(agent.cmd(&["start"]).await.status.success());
    events
        .wait_status(&id, "running", Duration::from_secs(20))
        .await;
    let second = rotated(token_of(&first)).await;
    // The ack reaches the server right after the file is written.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !refused(token_of(&first)).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the registered credential still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A restart is a new session: another rotation, the copy taken before
    // it dies too.
    assert!(agent.cmd(&["restart"]).await.status.success());
    let third = rotated(second.clone()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !refused(second.clone()).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the stolen copy still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(third, second);
    events
        .wait_status(&id, "running", Duration::from_secs(20))
        .await;
    let (_, c) = api.get(&format!("{P}/clusters/{id}")).await;
    assert_eq!(c["status"], "running", "{c}");
    assert!(
        !server.log_text().contains(&third),
        "a credential reached the log"
    );
}

/// A registration that would take over another cluster's agent (its
/// `nodeId`) is refused, and a refusal names the other cluster only to a
/// caller of the same project.
#[tokio::test]
async fn registrations_cannot_take_over_another_clusters_agent_nor_learn_its_name() {
    use ecp_testkit::{register, register_body};
    let server = Server::start().await;
    let api = server.api().await;
    let (s, p2) = api
        .post("/api/orgs/default/projects", json!({"name": "tenant two"}))
        .await;
    assert_eq!(s, 201, "{p2}");
    let p2 = format!(
        "/api/orgs/default/projects/{}",
        p2["id"].as_str().expect("id")
    );
    let token_in = |project: String, name: &'static str| {
        let api = &api;
        async move {
            let (_, c) = api
                .post(&format!("{project}/clusters"), json!({"name": name}))
                .await;
            let id = c["id"].as_str().expect("id").to_string();
            let (_, t) = api
                .post(
                    &format!("{project}/clusters/{id}/registration-tokens"),
                    json!({}),
                )
                .await;
            (id, t["token"].as_str().expect("token").to_string())
        }
    };
    let (a, ta) = token_in(P.to_string(), "secret name a").await;
    let (_b, tb) = token_in(P.to_string(), "same project b").await;
    let (_c, tc) = token_in(p2.clone(), "other tenant c").await;
    let first = register(
        &api.http,
        &server.base,
        &register_body(&ta, "inst-1", "emqx@n1", "5.6.0"),
    )
    .await
    .expect("register");
    // The same EMQX node (node name + machine) registered by another agent
    // instance.
    let same_node = |token: &str, inst: &str| {
        let mut b = register_body(token, inst, "emqx@n1", "5.6.0");
        b.machine_id = "machine-inst-1".into();
        b
    };
    // From another project: managed, but by whom is not said.
    let e = register(&api.http, &server.base, &same_node(&tc, "inst-9"))
        .await
        .expect_err("409");
    assert_eq!(
        (e.0, e.1["code"].as_str()),
        (409, Some("NODE_ALREADY_MANAGED"))
    );
    let m = e.1["message"].as_str().unwrap_or_default();
    assert!(!m.contains("secret name a") && !m.contains(&a), "{m}");
    // Within the project it is named.
    let e = register(&api.http, &server.base, &same_node(&tb, "inst-8"))
        .await
        .expect_err("409");
    assert!(
        e.1["message"]
            .as_str()
            .unwrap_or_default()
            .contains("secret name a"),
        "{}",
        e.1
    );
    // The same agent instance (nodeId) on another node, with another
    // cluster's token: refused, and cluster A keeps its agent.
    for t in [&tb, &tc] {
        let e = register(
            &api.http,
            &server.base,
            &register_body(t, "inst-1", "emqx@other", "5.6.0"),
        )
        .await
        .expect_err("409");
        assert_eq!(
            (e.0, e.1["code"].as_str()),
            (409, Some("AGENT_REGISTERED_ELSEWHERE")),
            "{}",
            e.1
        );
    }
    let (_, agents) = api.get(&format!("{P}/clusters/{a}/agents")).await;
    assert_eq!(agents[0]["agentId"], first.agent_id.as_str(), "{agents}");
    ecp_testkit::Session::connect(&server.base, &first.token, &first.agent_id, None)
        .await
        .expect("cluster A's agent still connects");
}
