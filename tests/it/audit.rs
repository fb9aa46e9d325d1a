//! Every audited action leaves a record; no secret ever reaches the audit
//! log or the server log.

use crate::harness::*;
use ecp_testkit::{register, register_body};
use serde_json::json;

#[tokio::test]
async fn every_listed_action_leaves_an_audit_record_and_no_secret_leaks() {
    let server = Server::start().await;
    // A failed login first.
    let r = reqwest::Client::new()
        .post(format!("{}/api/account/login", server.base))
        .json(&json!({"username": "admin", "password": "not-it-1!"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let api = server.api().await;
    let id = api.create_cluster("audited").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (s, _) = api
        .call(
            reqwest::Method::PUT,
            &format!("{P}/clusters/{id}"),
            Some(json!({"serviceAddress": "http://10.0.0.1:18083"})),
        )
        .await;
    assert_eq!(s, 200);
    let token = api.issue_token(&id).await;
    let reg = register(
        &api.http,
        &server.base,
        &register_body(&token, "n1", "emqx@audit", "5.6.0"),
    )
    .await
    .expect("register");
    let refused = register(
        &api.http,
        &server.base,
        &register_body("ecpr_wrong", "n2", "emqx@x", "5.6.0"),
    )
    .await
    .expect_err("refused");
    assert_eq!(refused.0, 401);
    let (s, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("{P}/clusters/{id}/agents/{}", reg.agent_id),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("{P}/clusters/{id}/registration-tokens"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .call(reqwest::Method::DELETE, &format!("{P}/clusters/{id}"), None)
        .await;
    assert_eq!(s, 202);

    let (s, v) = api.get("/api/audit/operations?size=100").await;
    assert_eq!(s, 200, "{v}");
    let records = v["data"].as_array().expect("data").clone();
    let has = |action: &str, result: &str| {
        records
            .iter()
            .any(|r| r["action"] == action && r["result"] == result)
    };
    for (action, result) in [
        ("login", "denied"),
        ("login", "ok"),
        ("cluster.create", "ok"),
        ("cluster.edit", "ok"),
        ("token.issue", "ok"),
        ("agent.register", "ok"),
        ("agent.register", "denied"),
        ("agent.revoke", "ok"),
        ("token.revoke", "ok"),
        ("cluster.delete", "ok"),
    ] {
        assert!(
            has(action, result),
            "no {action}/{result} record in {records:#?}"
        );
    }
    let create = records
        .iter()
        .find(|r| r["action"] == "cluster.create")
        .expect("create");
    assert_eq!(create["actorName"], "admin");
    assert_eq!(create["objectId"], id.as_str());
    assert_eq!(create["objectName"], "audited");
    assert_eq!(create["address"], "127.0.0.1");
    let edit = records
        .iter()
        .find(|r| r["action"] == "cluster.edit")
        .expect("edit");
    assert_eq!(edit["details"], "serviceAddress");
    // Filters.
    let (_, v) = api.get("/api/audit/operations?action=cluster").await;
    assert_eq!(v["total"], 3, "{v}");
    let (_, v) = api
        .get(&format!(
            "/api/audit/operations?objectId={id}&action=cluster.delete"
        ))
        .await;
    assert_eq!(v["total"], 1);

    // No secret in the audit log or the server log.
    let text = serde_json::to_string(&records).expect("json");
    let log = server.log_text();
    for secret in [
        token.as_str(),
        reg.token.as_str(),
        api.token.as_str(),
        ADMIN_PASSWORD,
        "not-it-1!",
    ] {
        assert!(!text.contains(secret), "a secret is in the audit log");
        assert!(!log.contains(secret), "a secret is in the server log");
    }
}

#[tokio::test]
async fn console_cookie_sessions_are_httponly_samesite_and_csrf_safe() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/account/login", server.base))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    assert!(cookie.starts_with("ecp_session=ecps_"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("pair").to_string();
    let with_cookie = |m: reqwest::Method, path: &str| {
        http.request(m, format!("{}{path}", server.base))
            .header("cookie", &pair)
    };
    // Reads work with the cookie alone.
    assert_eq!(
        with_cookie(reqwest::Method::GET, "/api/account/profile")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    // A change without the console's header (what a foreign page could send) is refused.
    let r = with_cookie(reqwest::Method::POST, &format!("{P}/clusters"))
        .json(&json!({"name": "csrf"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["code"], "CSRF");
    // With it, it goes through.
    let r = with_cookie(reqwest::Method::POST, &format!("{P}/clusters"))
        .header("x-ecp-csrf", "1")
        .json(&json!({"name": "csrf"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    // Logout revokes the session and clears the cookie.
    let r = with_cookie(reqwest::Method::POST, "/api/account/logout")
        .header("x-ecp-csrf", "1")
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    assert!(r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .contains("ecp_session=;"));
    assert_eq!(
        with_cookie(reqwest::Method::GET, "/api/account/profile")
            .send()
            .await
            .expect("get")
            .status(),
        401
    );
}
