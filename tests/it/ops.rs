//! Operations endpoints and the default tenancy a fresh install has.

use crate::harness::*;

#[tokio::test]
async fn fresh_install_has_the_default_org_and_project_and_ops_endpoints_answer() {
    let server = Server::start().await;
    let api = server.api().await;
    let (s, orgs) = api.get("/api/orgs").await;
    assert_eq!(s, 200);
    assert_eq!(orgs["data"][0]["id"], "default");
    assert_eq!(orgs["data"][0]["name"], "default");
    let (s, projects) = api.get("/api/orgs/default/projects").await;
    assert_eq!(s, 200);
    assert_eq!(projects["data"][0]["id"], "default");
    assert_eq!(api.get("/api/orgs/nope/projects").await.0, 404);

    let (s, profile) = api.get("/api/account/profile").await;
    assert_eq!((s, profile["username"].as_str()), (200, Some("admin")));
    assert_eq!(profile["systemAdmin"], true);

    for path in ["/healthz", "/readyz", "/api/version", "/metrics"] {
        let r = api
            .http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{path}");
    }
    let (_, v) = api.get("/api/version").await;
    assert_eq!(v["protocol"], ecp_protocol::PROTOCOL_VERSION);

    // The OpenAPI document is generated from the handlers: every fixed path is in it.
    let (s, doc) = api.get("/api/openapi.json").await;
    assert_eq!(s, 200);
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/account/login",
        "/api/orgs/{orgId}/projects/{projectId}/clusters",
        "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}",
        "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/registration-tokens",
        "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/setup-instructions",
        "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/agents",
        "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/events",
        "/api/clusters/agents/emqxee/register",
        "/api/clusters/agents/emqxee/connect",
        "/api/clusters/agents/emqxee/unregister",
        "/api/events",
        "/api/account/password",
        "/api/account/logout-all",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    // Every status the new account routes answer is in the contract.
    let statuses = |path: &str| -> Vec<String> {
        doc["paths"][path]["post"]["responses"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(
        statuses("/api/account/password"),
        ["204", "400", "401", "403", "413", "429", "503"]
    );
    assert_eq!(
        statuses("/api/account/logout-all"),
        ["204", "401", "403", "503"]
    );

    // Logout revokes the token.
    let (s, _) = api.post("/api/account/logout", serde_json::json!({})).await;
    assert_eq!(s, 204);
    assert_eq!(api.get("/api/orgs").await.0, 401);
}

#[tokio::test]
async fn setup_instructions_render_the_seed_commands_with_the_values_filled_in() {
    let server = Server::start_with(&[("ECP_CLUSTER_AGENT_URL", "https://ecp.example.com")]).await;
    let api = server.api().await;
    let id = api.create_cluster("guide").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (s, v) = api
        .get(&format!("{P}/clusters/{id}/setup-instructions?platform=binary&arch=arm64&username=ops&enableLog=true&logDir=/var/log/emqx"))
        .await;
    assert_eq!(s, 200, "{v}");
    let steps: Vec<String> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["command"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(steps[0], "sudo curl -L -f -k --output /usr/local/bin/emqxee-agent https://ecp.example.com/dl/emqx/agents/binaries/emqxee-agent-linux-arm64");
    assert_eq!(steps[1], "sudo chmod +x /usr/local/bin/emqxee-agent");
    assert_eq!(steps[2], "sudo /usr/local/bin/emqxee-agent start");
    assert_eq!(
        steps[3],
        "sudo /usr/local/bin/emqxee-agent register --url https://ecp.example.com/api --registration-token <REGISTRATION_TOKEN> --emqx-dashboard-username ops --emqx-dashboard-password <EMQX_DASHBOARD_PASSWORD> --emqx-dashboard-url http://127.0.0.1:18083 --emqx-api-url http://127.0.0.1:18083 --enable-log --log-dir /var/log/emqx"
    );
    let (s, v) = api
        .get(&format!(
            "{P}/clusters/{id}/setup-instructions?platform=kubernetes"
        ))
        .await;
    assert_eq!(s, 200);
    let manifest = v["steps"][0]["command"].as_str().unwrap_or_default();
    assert!(
        manifest.contains("kind: Deployment") && manifest.contains("args: [\"run\"]"),
        "{manifest}"
    );
    assert!(manifest.contains("https://ecp.example.com/api"));
    let (s, v) = api
        .get(&format!("{P}/clusters/{id}/setup-instructions?arch=mips"))
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("INVALID_ARCH")));
    let (s, _) = api
        .get(&format!(
            "{P}/clusters/{id}/setup-instructions?platform=windows"
        ))
        .await;
    assert_eq!(s, 400);
}

/// `ecp_password_checks_total` of `/metrics`: Argon2 runs so far.
async fn password_checks(base: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("ecp_password_checks_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("ecp_password_checks_total")
}

/// A login client bound to one source address on loopback.
fn from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .expect("client")
}

async fn try_login(
    http: &reqwest::Client,
    base: &str,
    password: &str,
) -> (u16, Option<String>, std::time::Duration) {
    let t = std::time::Instant::now();
    let r = http
        .post(format!("{base}/api/account/login"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .expect("send");
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.status().as_u16(), retry, t.elapsed())
}

#[tokio::test]
async fn twenty_wrong_passwords_slow_down_then_refuse_without_locking_out_the_real_user() {
    let server = Server::start_with(&[("ECP_LIMITS_LOGIN_LOCKOUT_SECS", "3")]).await;
    let attacker = from([127, 0, 0, 2]);
    let real_user = from([127, 0, 0, 3]);
    let mut figures = Vec::new();
    let mut checks_before_refusals = 0;
    for i in 0..20 {
        if i == 10 {
            checks_before_refusals = password_checks(&server.base).await;
        }
        figures.push(try_login(&attacker, &server.base, "guess-1234!").await);
    }
    let checks_after_refusals = password_checks(&server.base).await;
    // The figures: 401 at once for the first 3, then slower (100 ms doubling,
    // capped at 2 s), and 429 with Retry-After from the 11th on.
    let statuses: Vec<u16> = figures.iter().map(|f| f.0).collect();
    assert_eq!(&statuses[..10], &[401; 10], "{figures:?}");
    assert_eq!(&statuses[10..], &[429; 10], "{figures:?}");
    // Slowed: the 10th answer waits (1.6 s and more) where the first did
    // not; a lower bound, which a loaded machine cannot break.
    assert!(
        figures[9].2 >= std::time::Duration::from_millis(1500)
            && figures[9].2 >= figures[0].2 + std::time::Duration::from_secs(1),
        "later answers are slowed, the first is not: {figures:?}"
    );
    assert!(figures[10].1.is_some(), "429 says when to retry");
    // Refusals are cheap: not one password check (Argon2) ran for them.
    assert_eq!(
        checks_after_refusals, checks_before_refusals,
        "refusals ran password checks: {figures:?}"
    );
    // The real user, from another address, still gets in (slowed, not locked out).
    let (s, _, _) = try_login(&real_user, &server.base, ADMIN_PASSWORD).await;
    assert_eq!(s, 200);
    // Even the locked address is let in again once the lockout ends (the
    // lockout is time itself; refused attempts do not extend it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s, _, _) = try_login(&attacker, &server.base, ADMIN_PASSWORD).await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 429);
        assert!(std::time::Instant::now() < deadline, "locked out for good");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn weak_passwords_are_refused_with_the_rule() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecp"))
        .args([
            "user",
            "create",
            "--username",
            "ops",
            "--password",
            "password",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("8 to 128 characters"), "{err}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecp"))
        .args([
            "user",
            "create",
            "--username",
            "ops",
            "--password",
            "Str0ng-enough",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A weak bootstrap password stops the server with the reason.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecp"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().expect("tmp").path())
        .env("ECP_ADMIN_PASSWORD", "123456")
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot create the first admin"));
}

/// Two nodes in Redis mode behind the shipped nginx config, which is
/// trusted (`server.trusted_proxies`): failures count on every node, and the
/// address that counts is the client's, not nginx's.
#[tokio::test]
async fn behind_nginx_login_throttling_is_shared_by_the_nodes_and_sees_the_client_address() {
    use crate::nginx::Nginx;
    let redis = crate::redis_server::RedisServer::start().await;
    let env = |node| {
        [
            ("ECP_REDIS", redis.url()),
            ("ECP_NODE_ID", String::from(node)),
            ("ECP_LIMITS_LOGIN_LOCKOUT_SECS", "30".to_string()),
            ("ECP_SERVER_TRUSTED_PROXIES", "127.0.0.1".to_string()),
        ]
    };
    let (ea, eb) = (env("node-a"), env("node-b"));
    let a = Server::start_with(&ea.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    let b = Server::start_with(&eb.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    let nginx =
        Nginx::start(&[&a, &b].map(|n| n.base.trim_start_matches("http://").to_string())).await;
    let attacker = from([127, 0, 0, 2]);
    let real_user = from([127, 0, 0, 3]);
    // 10 failures through nginx, which spreads them over both nodes.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(try_login(&attacker, &nginx.base, "guess-1234!").await.0);
    }
    assert_eq!(statuses, [401; 10]);
    // The 11th is refused through nginx, and on each node directly: the
    // count is shared, and a forged X-Forwarded-For from an untrusted peer
    // changes nothing.
    assert_eq!(
        try_login(&attacker, &nginx.base, "guess-1234!").await.0,
        429
    );
    for node in [&a, &b] {
        let r = attacker
            .post(format!("{}/api/account/login", node.base))
            .header("x-forwarded-for", "203.0.113.50")
            .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 429, "{}", node.base);
    }
    // The real user behind the same nginx, from another address, gets in:
    // nginx's own address is not what counts.
    let (s, _, _) = try_login(&real_user, &nginx.base, ADMIN_PASSWORD).await;
    assert_eq!(s, 200);
    // The audit log names the client addresses, not nginx's.
    let admin = Api::login(&a.base, "admin", ADMIN_PASSWORD).await;
    let (_, audit) = admin
        .get("/api/audit/operations?action=login&size=100")
        .await;
    let addresses: std::collections::BTreeSet<&str> = audit["data"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["address"].as_str())
        .collect();
    assert!(addresses.contains("127.0.0.2"), "{addresses:?}");
    assert!(addresses.contains("127.0.0.3"), "{addresses:?}");
}

#[tokio::test]
async fn metrics_serve_clusters_by_status_as_counted_in_the_background() {
    let server = Server::start_with(&[("ECP_METRICS_CLUSTERS_REFRESH_SECS", "1")]).await;
    let api = server.api().await;
    api.create_cluster("counted 1").await;
    api.create_cluster("counted 2").await;
    // A scrape reads the last count; the next count includes both.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = api
            .http
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.contains("ecp_clusters{status=\"created\"} 2") {
            assert!(text.contains("ecp_password_checks_total"), "{text}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
