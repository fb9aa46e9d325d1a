//! Enter Dashboard through the agent's tunnel (PRODUCT.md §7): real
//! `emqxee-agent`, `emqx-sim` as EMQX v4, the proxy route of ECP.

use crate::harness::*;
use crate::procs::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// ECP (embedded, or a node of a Redis group) with 1 s agent reports.
async fn ecp(extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("ECP_AGENT_REPORT_INTERVAL_SECS", "1"),
        ("ECP_AGENT_HEARTBEAT_INTERVAL_SECS", "2"),
    ];
    env.extend_from_slice(extra);
    Server::start_with(&env).await
}

/// A v4 cluster adopted through `agent_base`, its dashboard available.
async fn v4_cluster(api: &Api, agent_base: &str, sim: &Sim) -> (String, Agent) {
    let (id, c, agent) = adopted(api, agent_base, sim, "v4 fleet", &[]).await;
    assert_eq!(c["dashboard"]["available"], true, "{c}");
    assert_eq!(
        c["dashboard"]["url"],
        format!("/api/emqxee/dashboard/{id}/")
    );
    (id, agent)
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let r = http.get(url).bearer_auth(token).send().await.expect("send");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn the_v4_dashboard_answers_through_the_tunnel_with_the_agents_credentials() {
    let server = ecp(&[]).await;
    let api = server.api().await;
    let sim = Sim::start("4.4.6", 1, "dash4").await;
    let (id, _agent) = v4_cluster(&api, &server.base, &sim).await;
    let base = format!("{}/api/emqxee/dashboard/{id}", server.base);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // Without the trailing slash: redirected (relative assets need it).
    let r = http
        .get(&base)
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("/api/emqxee/dashboard/{id}/")
    );
    // Index, an asset, an API call. EMQX itself refuses the API call without
    // credentials: the agent's are injected, the caller's ECP token is not passed.
    let (s, html) = get(&http, &format!("{base}/"), &api.token).await;
    assert_eq!(s, 200);
    assert!(
        html.contains("EMQX Dashboard (sim)") && html.contains("./static/app.js"),
        "{html}"
    );
    let (s, js) = get(&http, &format!("{base}/static/app.js"), &api.token).await;
    assert!(s == 200 && js.contains("fetch("), "{s} {js}");
    assert_eq!(
        reqwest::get(format!("{}/api/v4/nodes", sim.url))
            .await
            .expect("direct")
            .status(),
        401,
        "the simulator wants credentials"
    );
    let (s, nodes) = get(&http, &format!("{base}/api/v4/nodes"), &api.token).await;
    assert_eq!(s, 200, "{nodes}");
    let nodes: Value = serde_json::from_str(&nodes).expect("json");
    assert_eq!(nodes["data"].as_array().map(Vec::len), Some(1));
    // A topic with '/' travels as %2F in one path segment, untouched.
    let (s, route) = get(
        &http,
        &format!("{base}/api/v4/routes/t%2F1?x=%2F"),
        &api.token,
    )
    .await;
    assert_eq!(s, 200, "{route}");
    assert!(route.contains("\"topic\":\"t/1\""), "{route}");
    // What EMQX would see with a decoding proxy: two segments, 404.
    let (s, _) = get(&http, &format!("{base}/api/v4/routes/t/1"), &api.token).await;
    assert_eq!(s, 404);
    // Without an ECP login: 401; opening the dashboard is audited.
    assert_eq!(
        http.get(format!("{base}/"))
            .send()
            .await
            .expect("send")
            .status(),
        401
    );
    let (_, audit) = api.get("/api/audit/operations?action=dashboard").await;
    assert_eq!(audit["data"][0]["action"], "dashboard.open", "{audit}");
    assert_eq!(audit["data"][0]["objectId"], id.as_str());
}

#[tokio::test]
async fn a_50_mb_download_streams_while_reports_keep_flowing_and_roles_are_enforced() {
    let server = ecp(&[]).await;
    let api = server.api().await;
    let sim = Sim::start("4.4.6", 1, "dash50").await;
    let (id, _agent) = v4_cluster(&api, &server.base, &sim).await;
    let base = format!("{}/api/emqxee/dashboard/{id}", server.base);

    // The connection count changes every 300 ms, so every 1 s poll of the
    // agent yields a report; the download must not delay them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let changer = {
        let (stop, url) = (stop.clone(), sim.url.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 1000u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let _ = http
                    .put(format!("{url}/__sim/connections"))
                    .json(&json!({ "perNode": n }))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let mut events = api.events().await;
    // Reports flow before the download starts.
    events
        .wait(&id, WAIT, |c| {
            c["connections"]["current"].as_u64() > Some(1000)
        })
        .await;

    const SIZE: u64 = 50 * 1024 * 1024;
    let started = Instant::now();
    let download = {
        let (url, token) = (format!("{base}/__sim/blob?bytes={SIZE}"), api.token.clone());
        tokio::spawn(async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
            assert_eq!(r.content_length(), Some(SIZE), "length known up front");
            let mut body = r.bytes_stream();
            let mut at = 0u64;
            let mut first_byte = None;
            let t0 = Instant::now();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.expect("chunk");
                first_byte.get_or_insert_with(Instant::now);
                // A browser on a modest link: about 10 MiB/s. Backpressure
                // must reach the agent instead of filling ECP's memory.
                let due = Duration::from_secs_f64(at as f64 / (10.0 * 1024.0 * 1024.0));
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                for (i, b) in chunk.iter().enumerate() {
                    let pos = at + i as u64;
                    assert_eq!(*b, ((pos * 7 + 3) % 251) as u8, "byte {pos}");
                }
                at += chunk.len() as u64;
            }
            (at, first_byte)
        })
    };
    // Report arrivals while the download runs, and ECP's memory.
    let rss_before = server.rss_kib();
    let mut rss_max = rss_before;
    let mut arrivals = vec![Instant::now()];
    while !download.is_finished() {
        rss_max = rss_max.max(server.rss_kib());
        if let Ok((_, at)) =
            tokio::time::timeout(Duration::from_millis(200), events.wait(&id, WAIT, |_| true)).await
        {
            arrivals.push(at);
        }
    }
    let (bytes, first_byte) = download.await.expect("download");
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = changer.await;
    assert_eq!(bytes, SIZE, "every byte arrived");
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    let max_gap = gaps.iter().max().copied().unwrap_or_default();
    println!(
        "50 MiB through the tunnel in {took:?} ({:.1} MiB/s; first byte after {:?}); {} reports meanwhile, largest gap {max_gap:?} (interval 1 s); ECP RSS {rss_before} KiB before, {rss_max} KiB at most",
        50.0 / took.as_secs_f64(),
        first_byte.map(|f| f - started),
        gaps.len()
    );
    assert!(
        gaps.len() >= 3,
        "reports kept coming during the download: {gaps:?}"
    );
    // Streamed, not buffered: ECP holds a window per stream, not the file.
    assert!(
        rss_max < rss_before + 20 * 1024,
        "ECP grew from {rss_before} to {rss_max} KiB"
    );
    // No report later than one interval: a gap stays below 2 intervals.
    assert!(
        max_gap < Duration::from_secs(2),
        "a report was delayed: {gaps:?}"
    );

    // A viewer may look but not change; another project's cluster is 404.
    let (s, v) = api
        .post(
            "/api/users",
            json!({"username": "watcher", "password": "Passw0rd-x"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let uid = v["id"].as_str().expect("id").to_string();
    for path in [
        format!("/api/orgs/default/members/{uid}"),
        format!("{P}/members/{uid}"),
    ] {
        let (s, _) = api
            .call(reqwest::Method::PUT, &path, Some(json!({"role": "viewer"})))
            .await;
        assert_eq!(s, 204);
    }
    let viewer = Api::login(&server.base, "watcher", "Passw0rd-x").await;
    let (s, _) = get(&viewer.http, &format!("{base}/api/v4/nodes"), &viewer.token).await;
    assert_eq!(s, 200, "a viewer reads");
    let r = viewer
        .http
        .post(format!("{base}/api/v4/mqtt/publish"))
        .bearer_auth(&viewer.token)
        .json(&json!({"topic": "t", "payload": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403, "a viewer's POST is refused");
    let (s, p2) = api
        .post("/api/orgs/default/projects", json!({"name": "other"}))
        .await;
    assert_eq!(s, 201, "{p2}");
    let (s, c2) = api
        .post(
            &format!(
                "/api/orgs/default/projects/{}/clusters",
                p2["id"].as_str().expect("id")
            ),
            json!({"name": "elsewhere"}),
        )
        .await;
    assert_eq!(s, 201, "{c2}");
    let other = format!(
        "{}/api/emqxee/dashboard/{}/",
        server.base,
        c2["id"].as_str().expect("id")
    );
    let (s, body) = get(&viewer.http, &other, &viewer.token).await;
    assert_eq!(s, 404, "{body}");
    let (s, body) = get(
        &viewer.http,
        &format!("{}/api/emqxee/dashboard/nope/", server.base),
        &viewer.token,
    )
    .await;
    assert_eq!(s, 404, "{body}");
}

#[tokio::test]
async fn in_redis_mode_a_node_without_the_session_forwards_to_the_node_with_it() {
    let redis = crate::redis_server::RedisServer::start().await;
    let url = redis.url();
    let a = ecp(&[("ECP_REDIS", &url), ("ECP_NODE_ID", "node-a")]).await;
    let b = ecp(&[("ECP_REDIS", &url), ("ECP_NODE_ID", "node-b")]).await;
    let on_a = a.api().await;
    let sim = Sim::start("4.4.6", 1, "dashfwd").await;
    // The agent's session lives on node B; the caller talks to node A.
    let (id, _agent) = v4_cluster(&on_a, &b.base, &sim).await;
    let base = format!("{}/api/emqxee/dashboard/{id}", a.base);
    let http = reqwest::Client::new();
    let (s, html) = get(&http, &format!("{base}/"), &on_a.token).await;
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("EMQX Dashboard (sim)"));
    let (s, route) = get(
        &http,
        &format!("{base}/api/v4/routes/a%2Fb%2Fc"),
        &on_a.token,
    )
    .await;
    assert_eq!(s, 200, "{route}");
    assert!(route.contains("\"topic\":\"a/b/c\""), "{route}");
    let r = http
        .get(format!("{base}/__sim/blob?bytes=3000000"))
        .bearer_auth(&on_a.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.content_length(), Some(3_000_000));
    let body = r.bytes().await.expect("body");
    assert_eq!(body.len(), 3_000_000);
    assert!(body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == ((i as u64 * 7 + 3) % 251) as u8));
    // The internal route is closed to anyone without the peer secret.
    let r = http
        .get(format!("{}/internal/peer/tunnel/x/", b.base))
        .header("x-ecp-peer", "guess")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
}

/// Beyond ECP: a v5 cluster without a service address opens through the
/// tunnel too. The v5 dashboard sends its own `Authorization: Bearer <EMQX
/// token>` beside the console's cookie: ECP goes by the cookie, drops the
/// header, and the agent's own v5 login token reaches EMQX.
#[tokio::test]
async fn a_v5_cluster_without_a_service_address_opens_through_the_tunnel() {
    let server = ecp(&[]).await;
    let api = server.api().await;
    let sim = Sim::start("5.6.0", 2, "dash5").await;
    let (id, c, _agent) = adopted(&api, &server.base, &sim, "v5 no address", &[]).await;
    assert_eq!(
        c["dashboard"]["url"],
        format!("/api/emqxee/dashboard/{id}/"),
        "{c}"
    );
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/emqxee/dashboard/{id}/api/v5/nodes",
            server.base
        ))
        .header("authorization", "Bearer emqx-dashboard-jwt-of-the-browser")
        .header("cookie", format!("ecp_session={}", api.token))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let nodes: Value = r.json().await.expect("json");
    assert_eq!(nodes.as_array().map(Vec::len), Some(2), "{nodes}");
    // With a service address set, the button opens that address instead.
    let (s, v) = api
        .call(
            reqwest::Method::PUT,
            &format!("{P}/clusters/{id}"),
            Some(json!({"serviceAddress": "https://emqx.example.com:18083"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dashboard"]["url"], "https://emqx.example.com:18083");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// With `server.dashboard_origin`, EMQX's pages never run on the console's
/// origin: Enter Dashboard hands over a one-time ticket, the dashboard
/// origin trades it for its own per-cluster cookie, and that cookie lives
/// only as long as the console session.
#[tokio::test]
async fn a_separate_dashboard_origin_gets_its_own_session_that_ends_with_the_console_one() {
    let port = free_port();
    let dash = format!("http://localhost:{port}");
    let server = Server::start_on(
        &format!("127.0.0.1:{port}"),
        &[
            ("ECP_AGENT_REPORT_INTERVAL_SECS", "1"),
            ("ECP_SERVER_DASHBOARD_ORIGIN", &dash),
        ],
    )
    .await;
    let api = server.api().await;
    let sim = Sim::start("4.4.6", 1, "dashorigin").await;
    let (id, _agent) = v4_cluster(&api, &server.base, &sim).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let console_cookie = format!("ecp_session={}", api.token);

    // On the console's origin the cookie opens nothing but a hand-over.
    let r = http
        .get(format!("{}/api/emqxee/dashboard/{id}/", server.base))
        .header("cookie", &console_cookie)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(
        to.starts_with(&format!(
            "{dash}/api/emqxee/dashboard-login/{id}?ticket=ecpt_"
        )),
        "{to}"
    );
    let r = http
        .post(format!(
            "{}/api/emqxee/dashboard/{id}/api/v4/x",
            server.base
        ))
        .header("cookie", &console_cookie)
        .header("x-ecp-csrf", "1")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403, "no EMQX page runs on the console's origin");
    // The ticket is spent once.
    let r = http.get(&to).send().await.expect("send");
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/api/emqxee/dashboard/{id}/")
    );
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains(&format!("Path=/api/emqxee/dashboard/{id}/")),
        "{set}"
    );
    let dash_cookie = set.split(';').next().expect("pair").to_string();
    assert_eq!(
        http.get(&to).send().await.expect("send").status(),
        401,
        "ticket reused"
    );
    // The dashboard origin works with its own cookie, and only with it.
    let nodes = format!("{dash}/api/emqxee/dashboard/{id}/api/v4/nodes");
    let r = http
        .get(&nodes)
        .header("cookie", &dash_cookie)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let r = http
        .get(&nodes)
        .header("cookie", &console_cookie)
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        401,
        "the console's cookie is not a dashboard session"
    );
    // Logging out of the console ends the dashboard session too.
    assert_eq!(api.post("/api/account/logout", json!({})).await.0, 204);
    let r = http
        .get(&nodes)
        .header("cookie", &dash_cookie)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
}
