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

/// A v4 cluster adopted through `agent_base`, its dashboard available
/// through ECP.
async fn v4_cluster(api: &Api, agent_base: &str, sim: &Sim) -> (String, Agent) {
    let (id, c, agent) = adopted(api, agent_base, sim, "v4 fleet", &[]).await;
    assert_eq!(c["dashboard"]["available"], true, "{c}");
    assert_eq!(c["dashboard"]["via"], "tunnel", "{c}");
    (id, agent)
}

/// A user "watcher", viewer of the default org and project, logged in.
pub(crate) async fn viewer_of_default(api: &Api, base: &str) -> (String, Api) {
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
    (uid, Api::login(base, "watcher", "Passw0rd-x").await)
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let r = http.get(url).bearer_auth(token).send().await.expect("send");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Enter Dashboard (PRODUCT §7): a capability URL on the dashboard site —
/// the dashboard listener, another origin than the console's — where
/// EMQX's page, assets and API (with `%2F`) work with no ECP cookie at all,
/// with EMQX's headers filtered, and nothing else is served.
#[tokio::test]
async fn the_v4_dashboard_opens_on_its_own_site_under_a_capability() {
    let server = ecp(&[]).await;
    let api = server.api().await;
    let sim = Sim::start("4.4.6", 1, "dash4").await;
    let (id, _agent) = v4_cluster(&api, &server.base, &sim).await;
    let url = api.open_dashboard(&id).await;
    assert!(
        url.starts_with(&format!("{}/d/ecpd_", server.dash)) && url.ends_with('/'),
        "{url} on the dashboard listener {}",
        server.dash
    );
    assert_ne!(
        server.dash, server.base,
        "another origin than the console's"
    );
    let cap_path = url.trim_start_matches(&server.dash).to_string();
    let http = no_redirects();

    // Without the trailing slash: redirected (relative assets need it).
    let r = http
        .get(url.trim_end_matches('/'))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], cap_path.as_str());
    // Index, an asset, API calls: no ECP credential travels (the capability
    // is the path), and EMQX gets the agent's credentials.
    let r = http.get(&url).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cross-origin-opener-policy"], "same-origin");
    assert!(h
        .get_all("content-security-policy")
        .iter()
        .any(|v| v == "frame-ancestors 'self'"));
    let html = r.text().await.expect("html");
    assert!(
        html.contains("EMQX Dashboard (sim)") && html.contains("./static/app.js"),
        "{html}"
    );
    let js = http
        .get(format!("{url}static/app.js"))
        .send()
        .await
        .expect("js");
    assert_eq!(js.status(), 200);
    assert!(js.text().await.expect("js").contains("localStorage"));
    assert_eq!(
        reqwest::get(format!("{}/api/v4/nodes", sim.url))
            .await
            .expect("direct")
            .status(),
        401,
        "the simulator wants credentials"
    );
    let nodes: Value = http
        .get(format!("{url}api/v4/nodes"))
        .send()
        .await
        .expect("nodes")
        .json()
        .await
        .expect("json");
    assert_eq!(nodes["data"].as_array().map(Vec::len), Some(1), "{nodes}");
    // A topic with '/' travels as %2F in one path segment, untouched.
    let r = http
        .get(format!("{url}api/v4/routes/t%2F1?x=%2F"))
        .send()
        .await
        .expect("route");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("route").contains("\"topic\":\"t/1\""));
    // What EMQX would see with a decoding proxy: two segments, 404.
    let r = http
        .get(format!("{url}api/v4/routes/t/1"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    // EMQX's own login is answered with the agent's credentials: the
    // browser never needs (or learns) the EMQX password.
    let login: Value = http
        .post(format!("{url}api/v4/auth"))
        .json(&json!({"username": "anyone", "password": "not-the-emqx-password"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    assert_eq!(login["code"], 0, "{login}");

    // The two sites stay apart: no dashboard on the console's port, nothing
    // but dashboards on the dashboard's port (not even with the cookie).
    let (s, _) = raw_request(&server.base, "GET", &cap_path, &[]).await;
    assert_eq!(s, 404, "a capability is no use on the console's origin");
    let cookie = format!("ecp_session={}", api.token);
    let (s, _) = raw_request(
        &server.dash,
        "GET",
        "/api/account/profile",
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(s, 404, "the dashboard site has no ECP API");
    let (s, _) = raw_request(&server.dash, "GET", "/", &[("cookie", &cookie)]).await;
    assert_eq!(s, 404, "nor a console");
    // A guessed or altered capability opens nothing.
    let forged = format!("/d/ecpd_{}/", "0".repeat(64));
    let (s, _) = raw_request(&server.dash, "GET", &forged, &[]).await;
    assert_eq!(s, 401);
    let (s, _) = raw_request(&server.dash, "GET", "/d/ecpd_x/", &[]).await;
    assert_eq!(s, 404);
    // Dot segments, in any spelling, are refused before anything routes.
    for bad in [
        "%2e%2e/%2e%2e/api/account/profile",
        "..%2f..%2fapi",
        "a/../../x",
        ".%2E/x",
    ] {
        let (s, body) = raw_request(&server.dash, "GET", &format!("{cap_path}{bad}"), &[]).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(body.contains("BAD_PATH"), "{body}");
    }
    // No service worker may watch the dashboard origin.
    let (s, _) = raw_request(
        &server.dash,
        "GET",
        &format!("{cap_path}static/app.js"),
        &[("service-worker", "script")],
    )
    .await;
    assert_eq!(s, 403);

    // EMQX's headers that would act beyond its dashboard are dropped.
    let hostile = [
        "Set-Cookie:ecp_session=planted; Path=/",
        "Strict-Transport-Security:max-age=31536000",
        "Clear-Site-Data:\"cookies\"",
        "Service-Worker-Allowed:/",
        "Refresh:0; url=http://evil.example/",
        "Access-Control-Allow-Origin:*",
        "Access-Control-Allow-Credentials:true",
        "Alt-Svc:h2=\"evil.example:443\"",
        "Referrer-Policy:unsafe-url",
        "X-Custom:kept",
    ];
    let q: String = hostile
        .iter()
        .map(|h| format!("h={}&", urlencode(h)))
        .collect();
    let r = http
        .get(format!("{url}__sim/respond?{q}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let h = r.headers();
    for dropped in [
        "set-cookie",
        "strict-transport-security",
        "clear-site-data",
        "service-worker-allowed",
        "refresh",
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "alt-svc",
    ] {
        assert!(h.get(dropped).is_none(), "{dropped} passed: {h:?}");
    }
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-custom"], "kept");
    // Redirects stay inside this dashboard; anything else is refused.
    let redirect = |to: &str| {
        format!(
            "{url}__sim/respond?status=302&h={}",
            urlencode(&format!("Location:{to}"))
        )
    };
    let r = http
        .get(redirect("/api/v4/nodes"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], format!("{cap_path}api/v4/nodes"));
    let r = http
        .get(redirect(&format!("{}/x", sim.url)))
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.headers()["location"],
        format!("{cap_path}x"),
        "EMQX's own address becomes a path"
    );
    for outside in [
        "http://evil.example/",
        "//evil.example/",
        "/../../api/account/logout",
        "javascript:alert(1)",
    ] {
        let r = http.get(redirect(outside)).send().await.expect("send");
        assert_eq!(r.status(), 502, "{outside}");
        assert!(r.headers().get("location").is_none());
    }

    // Opening the dashboard is audited.
    let (_, audit) = api.get("/api/audit/operations?action=dashboard").await;
    assert_eq!(audit["data"][0]["action"], "dashboard.open", "{audit}");
    assert_eq!(audit["data"][0]["objectId"], id.as_str());

    // API clients keep the ECP-compatible path with their Bearer token; its
    // answers are sandboxed, and the console's cookie opens nothing there.
    let base = format!("{}/api/emqxee/dashboard/{id}", server.base);
    let r = http
        .get(format!("{base}/api/v4/nodes"))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get_all("content-security-policy")
        .iter()
        .any(|v| v.to_str().unwrap_or("").starts_with("sandbox")));
    let r = http
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["code"], "DASHBOARD_SITE");
    assert_eq!(
        http.get(format!("{base}/"))
            .send()
            .await
            .expect("send")
            .status(),
        401
    );
    let (s, body) = raw_request(
        &server.base,
        "GET",
        &format!("/api/emqxee/dashboard/{id}/%2e%2e/x"),
        &[("authorization", &format!("Bearer {}", api.token))],
    )
    .await;
    assert_eq!(s, 400, "{body}");

    // Logging out ends the dashboard too.
    assert_eq!(api.post("/api/account/logout", json!({})).await.0, 204);
    let r = http
        .get(format!("{url}api/v4/nodes"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
    // Reports kept coming *during* the download (above), none held back
    // for long behind it: a gap stays below 5 intervals (the slack a loaded
    // machine needs; a report queued behind the bulk stream would wait for
    // the whole download).
    assert!(
        max_gap < Duration::from_secs(5),
        "a report was delayed: {gaps:?}"
    );

    // A viewer may look but not change; another project's cluster is 404.
    let (_, viewer) = viewer_of_default(&api, &server.base).await;
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
    // Behind the shipped nginx, the dashboard site has a port of its own.
    let dash_port = crate::nginx::dashboard_port();
    let origin = format!("http://127.0.0.1:{dash_port}");
    let env = |n| {
        [
            ("ECP_REDIS", url.clone()),
            ("ECP_NODE_ID", String::from(n)),
            ("ECP_SERVER_DASHBOARD_ORIGIN", origin.clone()),
        ]
    };
    let (ea, eb) = (env("node-a"), env("node-b"));
    let a = ecp(&ea.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    let b = ecp(&eb.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    let strip = |s: &str| s.trim_start_matches("http://").to_string();
    let nginx = crate::nginx::Nginx::start_with(
        &[strip(&a.base), strip(&b.base)],
        &[strip(&a.dash), strip(&b.dash)],
        dash_port,
    )
    .await;
    let on_a = a.api().await;
    let sim = Sim::start("4.4.6", 1, "dashfwd").await;
    let (id, _agent) = v4_cluster(&on_a, &b.base, &sim).await;
    // Through nginx, as a browser: Enter Dashboard on the console's side,
    // the page on the dashboard site's port.
    let via = Api::login(&nginx.base, "admin", ADMIN_PASSWORD).await;
    let url = via.open_dashboard(&id).await;
    assert!(url.starts_with(&format!("{}/d/ecpd_", nginx.dash)), "{url}");
    let http = reqwest::Client::new();
    for _ in 0..4 {
        let r = http
            .get(format!("{url}api/v4/nodes"))
            .send()
            .await
            .expect("via nginx");
        assert_eq!(r.status(), 200, "either node answers");
    }
    let r = http
        .get(format!("{}/api/account/profile", nginx.dash))
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        404,
        "nginx's dashboard site serves dashboards only"
    );
    // Node A's own dashboard listener, while the agent's session lives on
    // node B: node A forwards.
    let url = url.replace(&nginx.dash, &a.dash);
    let r = http.get(&url).send().await.expect("index");
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .expect("html")
        .contains("EMQX Dashboard (sim)"));
    let r = http
        .get(format!("{url}api/v4/routes/a%2Fb%2Fc"))
        .send()
        .await
        .expect("route");
    assert_eq!(r.status(), 200);
    let route = r.text().await.expect("route");
    assert!(route.contains("\"topic\":\"a/b/c\""), "{route}");
    let r = http
        .get(format!("{url}__sim/blob?bytes=3000000"))
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
    // The same through the API path on node A (Bearer).
    let (s, html) = get(
        &http,
        &format!("{}/api/emqxee/dashboard/{id}/", a.base),
        &on_a.token,
    )
    .await;
    assert_eq!(s, 200, "{html}");
    // The internal route is closed to anyone without the peer secret.
    let agents = on_a.get(&format!("{P}/clusters/{id}/agents")).await.1;
    let agent_id = agents[0]["agentId"].as_str().expect("agent").to_string();
    let r = http
        .get(format!("{}/internal/peer/tunnel", b.base))
        .header("x-ecp-peer", "guess")
        .header("x-ecp-peer-agent", &agent_id)
        .header("x-ecp-peer-path", "/api/v4/nodes")
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
    assert_eq!(c["dashboard"]["via"], "tunnel", "{c}");
    let url = api.open_dashboard(&id).await;
    // The v5 dashboard sends its own `Authorization: Bearer <EMQX token>`;
    // ECP drops it and the agent's own v5 login token reaches EMQX.
    let r = reqwest::Client::new()
        .get(format!("{url}api/v5/nodes"))
        .header("authorization", "Bearer emqx-dashboard-jwt-of-the-browser")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let nodes: Value = r.json().await.expect("json");
    assert_eq!(nodes.as_array().map(Vec::len), Some(2), "{nodes}");
    // v5's login answers with a token for the agent's credentials.
    let login: Value = reqwest::Client::new()
        .post(format!("{url}api/v5/login"))
        .json(&json!({"username": "someone", "password": "whatever"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    assert!(login["token"].is_string(), "{login}");
    // With a service address set, the button opens that address instead.
    let (s, v) = api
        .call(
            reqwest::Method::PUT,
            &format!("{P}/clusters/{id}"),
            Some(json!({"serviceAddress": "https://emqx.example.com:18083"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dashboard"]["via"], "address");
    assert_eq!(v["dashboard"]["url"], "https://emqx.example.com:18083");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// With `server.dashboard_origin` naming a second host for the same node
/// (here `localhost` beside the console's `127.0.0.1`, and no dashboard
/// listener), the main listener serves dashboards for that host only, and
/// nothing else there.
#[tokio::test]
async fn a_second_host_name_serves_dashboards_and_nothing_else() {
    let port = free_port();
    let dash = format!("http://localhost:{port}");
    let server = Server::start_on(
        &format!("127.0.0.1:{port}"),
        &[
            ("ECP_AGENT_REPORT_INTERVAL_SECS", "1"),
            ("ECP_SERVER_DASHBOARD_ORIGIN", &dash),
            ("ECP_SERVER_DASHBOARD_LISTEN", ""),
        ],
    )
    .await;
    assert!(server.dash.is_empty(), "no dashboard listener");
    let api = server.api().await;
    let sim = Sim::start("4.4.6", 1, "dashorigin").await;
    let (id, _agent) = v4_cluster(&api, &server.base, &sim).await;
    let url = api.open_dashboard(&id).await;
    assert!(url.starts_with(&format!("{dash}/d/ecpd_")), "{url}");
    let cap_path = url.trim_start_matches(&dash).to_string();
    let http = no_redirects();
    let nodes = http
        .get(format!("{url}api/v4/nodes"))
        .send()
        .await
        .expect("send");
    assert_eq!(nodes.status(), 200);
    // The same capability under the console's host name: nothing.
    let (s, _) = raw_request(&server.base, "GET", &format!("{cap_path}api/v4/nodes"), &[]).await;
    assert_eq!(s, 404);
    // Under the dashboard host name: no API, no console, even with the
    // console's cookie (whose host it is not, but a browser could be told).
    let cookie = format!("ecp_session={}", api.token);
    for path in ["/api/account/profile", "/", "/api/users"] {
        let r = http
            .get(format!("{dash}{path}"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404, "{path}");
    }
    // Logging out of the console ends the dashboard too.
    assert_eq!(api.post("/api/account/logout", json!({})).await.0, 204);
    let r = http
        .get(format!("{url}api/v4/nodes"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
}

/// Rights are checked on every request, and an answer already streaming
/// ends when they lapse: a viewer's download through the dashboard site is
/// cut when the viewer's org membership is removed, an API client's when
/// it logs out.
#[tokio::test]
async fn an_open_dashboard_download_ends_when_the_users_access_does() {
    let server = ecp(&[]).await;
    let api = server.api().await;
    let sim = Sim::start("4.4.6", 1, "dashcut").await;
    let (id, _agent) = v4_cluster(&api, &server.base, &sim).await;
    let (uid, viewer) = viewer_of_default(&api, &server.base).await;
    const SIZE: u64 = 200 * 1024 * 1024;

    /// Reads the first chunk, runs `cut`, then reads on: how much arrived,
    /// and whether the body ended in an error.
    async fn cut_after_first_chunk(
        r: reqwest::Response,
        cut: impl std::future::Future<Output = ()>,
    ) -> (u64, bool) {
        assert_eq!(r.status(), 200);
        let mut body = r.bytes_stream();
        let first = body.next().await.expect("a first chunk").expect("chunk");
        let mut got = first.len() as u64;
        cut.await;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => got += c.len() as u64,
                Err(_) => return (got, true),
            }
        }
        (got, false)
    }

    let url = viewer.open_dashboard(&id).await;
    let r = reqwest::get(format!("{url}__sim/blob?bytes={SIZE}"))
        .await
        .expect("send");
    let (got, failed) = cut_after_first_chunk(r, async {
        let (s, _) = api
            .call(
                reqwest::Method::PUT,
                &format!("/api/orgs/default/members/{uid}"),
                Some(json!({"role": null})),
            )
            .await;
        assert_eq!(s, 204);
    })
    .await;
    assert!(failed && got < SIZE, "the download went on: {got} bytes");
    assert_eq!(
        reqwest::get(format!("{url}api/v4/nodes"))
            .await
            .expect("send")
            .status(),
        404,
        "and the next request is refused"
    );

    // An API client's download ends with its logout.
    let client = Api::login(&server.base, "admin", ADMIN_PASSWORD).await;
    let r = client
        .http
        .get(format!(
            "{}/api/emqxee/dashboard/{id}/__sim/blob?bytes={SIZE}",
            server.base
        ))
        .bearer_auth(&client.token)
        .send()
        .await
        .expect("send");
    let (got, failed) = cut_after_first_chunk(r, async {
        assert_eq!(client.post("/api/account/logout", json!({})).await.0, 204);
    })
    .await;
    assert!(failed && got < SIZE, "the download went on: {got} bytes");
}
