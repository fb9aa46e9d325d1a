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
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }

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
