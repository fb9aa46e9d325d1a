//! Bad input: each case says what was tried, and that it was refused
//! clearly and left nothing behind.

use crate::harness::*;
use ecp_testkit::{register, register_body, Session};
use serde_json::{json, Value};

async fn names_in_project(api: &Api) -> Vec<String> {
    let (s, v) = api.get(&format!("{P}/clusters")).await;
    assert_eq!(s, 200);
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn cluster_names_follow_the_rules() {
    let server = Server::start().await;
    let api = server.api().await;
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "required"),
        ("a".repeat(201), "at most 200"),
        (" leading".into(), "space"),
        ("trailing ".into(), "space"),
        ("slash/name".into(), "only letters"),
        ("dot.name".into(), "only letters"),
        ("<img src=x>".into(), "only letters"),
        ("tab\tname".into(), "only letters"),
    ];
    for (name, why) in &cases {
        let (s, v) = api
            .post(&format!("{P}/clusters"), json!({"name": name}))
            .await;
        assert_eq!(s, 400, "name {name:?} should be refused: {v}");
        assert_eq!(v["code"], "INVALID_NAME");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(why),
            "{name:?}: {v}"
        );
    }
    assert!(
        names_in_project(&api).await.is_empty(),
        "nothing was created"
    );

    // Accepted: CJK, 200 characters, spaces, - and _ inside.
    for name in [
        "生产集群 一号",
        "東京-edge_01",
        &"a".repeat(200),
        &"集".repeat(200),
    ] {
        let (s, v) = api
            .post(&format!("{P}/clusters"), json!({"name": name}))
            .await;
        assert_eq!(s, 201, "{name:?}: {v}");
        assert_eq!(v["name"], name);
    }
    // Duplicate in the same project: 409, and still one of them.
    let (s, v) = api
        .post(&format!("{P}/clusters"), json!({"name": "生产集群 一号"}))
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["code"], "NAME_TAKEN");
    assert_eq!(
        names_in_project(&api)
            .await
            .iter()
            .filter(|n| *n == "生产集群 一号")
            .count(),
        1
    );
    // Renaming onto a taken name: 409 as well, and the name is unchanged.
    let other = api.create_cluster("other").await;
    let id = other["id"].as_str().expect("id");
    let (s, _) = api
        .call(
            reqwest::Method::PUT,
            &format!("{P}/clusters/{id}"),
            Some(json!({"name": "生产集群 一号"})),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(api.cluster(id).await.1["name"], "other");
    // Bad service address.
    let (s, v) = api
        .post(
            &format!("{P}/clusters"),
            json!({"name": "x1", "serviceAddress": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["code"], "INVALID_SERVICE_ADDRESS");
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_clear_errors() {
    let server = Server::start().await;
    let api = server.api().await;
    let huge = json!({"name": "x", "description": "d".repeat(200_000)});
    let (s, v) = api.post(&format!("{P}/clusters"), huge).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["code"], "PAYLOAD_TOO_LARGE");
    let r = api
        .http
        .post(format!("{}{P}/clusters", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["code"], "BAD_JSON");
    let (s, v) = api
        .post(
            &format!("{P}/clusters"),
            json!({"name": "x", "colour": "red"}),
        )
        .await;
    assert_eq!(s, 400, "unknown fields are refused: {v}");
    assert!(names_in_project(&api).await.is_empty());
    let (s, v) = api.get("/api/orgs/nope/projects/default/clusters").await;
    assert_eq!((s, v["code"].as_str()), (404, Some("NOT_FOUND")));
    let (s, _) = api.get(&format!("{P}/clusters/does-not-exist")).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn every_cluster_route_requires_a_login() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    for (m, path) in [
        ("GET", format!("{P}/clusters")),
        ("POST", format!("{P}/clusters")),
        ("GET", format!("{P}/clusters/x")),
        ("DELETE", format!("{P}/clusters/x")),
        ("POST", format!("{P}/clusters/x/registration-tokens")),
        ("GET", format!("{P}/clusters/x/events")),
        ("GET", "/api/orgs".to_string()),
        ("GET", "/api/events".to_string()),
    ] {
        let r = http
            .request(m.parse().expect("method"), format!("{}{path}", server.base))
            .bearer_auth("ecps_not-a-real-token")
            .json(&json!({"name": "x"}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401, "{m} {path}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["code"], "UNAUTHORIZED");
    }
    let r = http
        .post(format!("{}/api/account/login", server.base))
        .json(&json!({"username": "admin", "password": "wrong"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let wrong_pw: Value = r.json().await.expect("json");
    let r = http
        .post(format!("{}/api/account/login", server.base))
        .json(&json!({"username": "nobody", "password": "wrong"}))
        .send()
        .await
        .expect("send");
    let unknown: Value = r.json().await.expect("json");
    assert_eq!(
        wrong_pw, unknown,
        "same answer for unknown user and bad password"
    );
}

#[tokio::test]
async fn registration_tokens_expired_revoked_unknown_and_of_a_deleted_cluster() {
    let server = Server::start().await;
    let api = server.api().await;
    let id = api.create_cluster("tokens").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let base = &server.base;

    // Unknown.
    let e = register(
        &api.http,
        base,
        &register_body("ecpr_0000", "n0", "emqx@u", "5.6.0"),
    )
    .await
    .expect_err("unknown");
    assert_eq!(e.0, 401, "{}", e.1);
    assert!(e.1["message"]
        .as_str()
        .unwrap_or_default()
        .contains("invalid, expired or revoked"));

    // Expired: a 1-second token, used after it expired.
    let (s, v) = api
        .post(
            &format!("{P}/clusters/{id}/registration-tokens"),
            json!({"ttlSeconds": 1}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let short = v["token"].as_str().expect("token").to_string();
    // Used once the server's own expiry time has passed (time passing is the
    // point here: wait for the instant it stated, not a guess).
    let expires = humantime::parse_rfc3339(v["expiresAt"].as_str().expect("expiresAt"))
        .expect("expiresAt is RFC 3339");
    while std::time::SystemTime::now() <= expires {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let e = register(
        &api.http,
        base,
        &register_body(&short, "n1", "emqx@e", "5.6.0"),
    )
    .await
    .expect_err("expired");
    assert_eq!(e.0, 401);

    // Out-of-range TTLs are refused.
    for ttl in [0u64, 7 * 24 * 3600 + 1] {
        let (s, v) = api
            .post(
                &format!("{P}/clusters/{id}/registration-tokens"),
                json!({"ttlSeconds": ttl}),
            )
            .await;
        assert_eq!(s, 400, "ttl {ttl}: {v}");
    }

    // Revoked.
    let token = api.issue_token(&id).await;
    let (s, v) = api
        .call(
            reqwest::Method::DELETE,
            &format!("{P}/clusters/{id}/registration-tokens"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["revoked"].as_u64().unwrap_or(0) >= 1);
    let e = register(
        &api.http,
        base,
        &register_body(&token, "n2", "emqx@r", "5.6.0"),
    )
    .await
    .expect_err("revoked");
    assert_eq!(e.0, 401);

    // Nothing was registered by any of these.
    let (_, agents) = api.get(&format!("{P}/clusters/{id}/agents")).await;
    assert_eq!(agents, json!([]));
    assert_eq!(api.cluster(&id).await.1["status"], "created");

    // Of a deleted cluster: 410 "cluster was deleted".
    let token = api.issue_token(&id).await;
    let (s, _) = api
        .call(reqwest::Method::DELETE, &format!("{P}/clusters/{id}"), None)
        .await;
    assert_eq!(s, 202);
    let e = register(
        &api.http,
        base,
        &register_body(&token, "n3", "emqx@g", "5.6.0"),
    )
    .await
    .expect_err("deleted");
    assert_eq!(e.0, 410);
    assert_eq!(e.1["message"], "cluster was deleted");
}

#[tokio::test]
async fn unsupported_versions_are_refused_with_422() {
    let server = Server::start().await;
    let api = server.api().await;
    let id = api.create_cluster("old emqx").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    for v in ["4.4.5", "5.5.1"] {
        let e = register(
            &api.http,
            &server.base,
            &register_body(&token, "n", "emqx@o", v),
        )
        .await
        .expect_err(v);
        assert_eq!(e.0, 422, "{v}: {}", e.1);
        assert_eq!(e.1["code"], "UNSUPPORTED_VERSION");
        let m = e.1["message"].as_str().unwrap_or_default();
        assert!(
            m.contains(v) && m.contains("4.4.6") && m.contains("5.6.0"),
            "{m}"
        );
    }
    assert_eq!(
        api.cluster(&id).await.1["status"],
        "created",
        "nothing registered"
    );
}

#[tokio::test]
async fn one_emqx_node_cannot_join_two_clusters_and_re_registering_is_idempotent() {
    let server = Server::start().await;
    let api = server.api().await;
    let a = api.create_cluster("first").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let b = api.create_cluster("second").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let ta = api.issue_token(&a).await;
    let tb = api.issue_token(&b).await;

    let first = register(
        &api.http,
        &server.base,
        &register_body(&ta, "inst-1", "emqx@node1", "5.6.0"),
    )
    .await
    .expect("register");
    // Same EMQX node (node name + machine id), other cluster: 409 naming the first.
    let e = register(
        &api.http,
        &server.base,
        &register_body(&tb, "inst-1", "emqx@node1", "5.6.0"),
    )
    .await
    .expect_err("409");
    assert_eq!(e.0, 409, "{}", e.1);
    assert_eq!(e.1["code"], "NODE_ALREADY_MANAGED");
    let m = e.1["message"].as_str().unwrap_or_default();
    assert!(m.contains("\"first\"") && m.contains(&a), "{m}");
    assert_eq!(api.cluster(&b).await.1["status"], "created");

    // The same agent instance retrying: same agentId, fresh credential, old one revoked.
    let again = register(
        &api.http,
        &server.base,
        &register_body(&ta, "inst-1", "emqx@node1", "5.6.0"),
    )
    .await
    .expect("retry");
    assert_eq!(again.agent_id, first.agent_id);
    assert_ne!(again.token, first.token);
    match Session::connect(&server.base, &first.token, &first.agent_id, None).await {
        Err(ecp_testkit::ConnectError::Status(401)) => {}
        other => panic!(
            "old credential must be revoked, got {:?}",
            other.map(|_| ())
        ),
    }
    Session::connect(&server.base, &again.token, &again.agent_id, None)
        .await
        .expect("new credential works");
    let (_, agents) = api.get(&format!("{P}/clusters/{a}/agents")).await;
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{agents}");
    assert_eq!(api.cluster(&a).await.1["agents"]["total"], 1);
}

#[tokio::test]
async fn bad_register_bodies_are_400_and_register_nothing() {
    let server = Server::start().await;
    let api = server.api().await;
    let id = api.create_cluster("bodies").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let mut missing_node = register_body(&token, "", "emqx@x", "5.6.0");
    missing_node.node_id = String::new();
    let e = register(&api.http, &server.base, &missing_node)
        .await
        .expect_err("400");
    assert_eq!(e.0, 400, "{}", e.1);
    assert!(e.1["message"]
        .as_str()
        .unwrap_or_default()
        .contains("nodeId"));
    let e = register(
        &api.http,
        &server.base,
        &json!({"registrationToken": token}),
    )
    .await
    .expect_err("400");
    assert_eq!(e.0, 400, "{}", e.1);
    assert_eq!(api.cluster(&id).await.1["status"], "created");
}
