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
