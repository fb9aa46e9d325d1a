//! Every route × every role (incl. logs and the dashboard proxy): system admin; org admin of A; project admin of
//! A/p1; viewer of A/p1; a member of org B only. Ids the caller may not see
//! answer 404; viewers are read-only (403).

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn make_user(admin: &Api, name: &str) -> String {
    let (s, v) = admin
        .post(
            "/api/users",
            json!({"username": name, "password": "Passw0rd-x"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().expect("id").to_string()
}

async fn member(admin: &Api, path: &str, role: Value) {
    let (s, v) = admin
        .call(reqwest::Method::PUT, path, Some(json!({ "role": role })))
        .await;
    assert_eq!(s, 204, "{path}: {v}");
}

#[tokio::test]
async fn every_route_for_every_role() {
    let server = Server::start().await;
    let sys = server.api().await;
    let (_, a) = sys.post("/api/orgs", json!({"name": "org A"})).await;
    let a = a["id"].as_str().expect("org").to_string();
    let (_, b) = sys.post("/api/orgs", json!({"name": "org B"})).await;
    let b = b["id"].as_str().expect("org").to_string();
    let (_, p1) = sys
        .post(&format!("/api/orgs/{a}/projects"), json!({"name": "p1"}))
        .await;
    let p1 = p1["id"].as_str().expect("p1").to_string();
    let (_, p2) = sys
        .post(&format!("/api/orgs/{a}/projects"), json!({"name": "p2"}))
        .await;
    let p2 = p2["id"].as_str().expect("p2").to_string();
    let (_, q1) = sys
        .post(&format!("/api/orgs/{b}/projects"), json!({"name": "q1"}))
        .await;
    let _q1 = q1["id"].as_str().expect("q1").to_string();

    let org_admin = make_user(&sys, "orgadmin").await;
    let proj_admin = make_user(&sys, "projadmin").await;
    let viewer = make_user(&sys, "viewer").await;
    let outsider = make_user(&sys, "outsider").await;
    member(
        &sys,
        &format!("/api/orgs/{a}/members/{org_admin}"),
        json!("admin"),
    )
    .await;
    member(
        &sys,
        &format!("/api/orgs/{a}/members/{proj_admin}"),
        json!("viewer"),
    )
    .await;
    member(
        &sys,
        &format!("/api/orgs/{a}/projects/{p1}/members/{proj_admin}"),
        json!("admin"),
    )
    .await;
    member(
        &sys,
        &format!("/api/orgs/{a}/members/{viewer}"),
        json!("viewer"),
    )
    .await;
    member(
        &sys,
        &format!("/api/orgs/{a}/projects/{p1}/members/{viewer}"),
        json!("viewer"),
    )
    .await;
    member(
        &sys,
        &format!("/api/orgs/{b}/members/{outsider}"),
        json!("admin"),
    )
    .await;

    let pa1 = format!("/api/orgs/{a}/projects/{p1}");
    let pa2 = format!("/api/orgs/{a}/projects/{p2}");
    let (_, c1) = sys
        .post(&format!("{pa1}/clusters"), json!({"name": "c1"}))
        .await;
    let c1 = c1["id"].as_str().expect("c1").to_string();
    let (_, c2) = sys
        .post(&format!("{pa2}/clusters"), json!({"name": "c2"}))
        .await;
    let c2 = c2["id"].as_str().expect("c2").to_string();

    let roles = [
        ("system admin", sys.token.clone()),
        (
            "org admin of A",
            Api::login(&server.base, "orgadmin", "Passw0rd-x")
                .await
                .token,
        ),
        (
            "project admin of A/p1",
            Api::login(&server.base, "projadmin", "Passw0rd-x")
                .await
                .token,
        ),
        (
            "viewer of A/p1",
            Api::login(&server.base, "viewer", "Passw0rd-x").await.token,
        ),
        (
            "member of org B only",
            Api::login(&server.base, "outsider", "Passw0rd-x")
                .await
                .token,
        ),
    ];
    // (method, path, body, expected status per role in the order above)
    let table: Vec<(&str, String, Option<Value>, [u16; 5])> = vec![
        (
            "GET",
            format!("{pa1}/clusters"),
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "GET",
            format!("{pa1}/clusters/{c1}"),
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "PUT",
            format!("{pa1}/clusters/{c1}"),
            Some(json!({"description": "x"})),
            [200, 200, 200, 403, 404],
        ),
        (
            "POST",
            format!("{pa1}/clusters/{c1}/registration-tokens"),
            Some(json!({})),
            [201, 201, 201, 403, 404],
        ),
        (
            "DELETE",
            format!("{pa1}/clusters/{c1}/registration-tokens"),
            None,
            [200, 200, 200, 403, 404],
        ),
        (
            "GET",
            format!("{pa1}/clusters/{c1}/setup-instructions"),
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "GET",
            format!("{pa1}/clusters/{c1}/agents"),
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "DELETE",
            format!("{pa1}/clusters/{c1}/agents/nope"),
            None,
            [404, 404, 404, 403, 404],
        ),
        (
            "GET",
            format!("{pa1}/clusters/{c1}/events"),
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "GET",
            format!("{pa2}/clusters"),
            None,
            [200, 200, 404, 404, 404],
        ),
        (
            "GET",
            format!("{pa2}/clusters/{c2}"),
            None,
            [200, 200, 404, 404, 404],
        ),
        (
            "PUT",
            format!("{pa2}/clusters/{c2}"),
            Some(json!({"description": "y"})),
            [200, 200, 404, 404, 404],
        ),
        (
            "DELETE",
            format!("{pa2}/clusters/{c2}"),
            None,
            [404, 404, 404, 404, 404],
        ), // probed below per role instead
        (
            "GET",
            format!("/api/orgs/{a}/projects"),
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "POST",
            format!("/api/orgs/{a}/projects"),
            Some(json!({"name": "new"})),
            [201, 201, 403, 403, 404],
        ),
        (
            "POST",
            "/api/orgs".to_string(),
            Some(json!({"name": "new org"})),
            [201, 403, 403, 403, 403],
        ),
        (
            "POST",
            "/api/users".to_string(),
            Some(json!({"username": "u-new", "password": "Passw0rd-y"})),
            [201, 403, 403, 403, 403],
        ),
        (
            "PUT",
            format!("/api/orgs/{a}/members/{outsider}"),
            Some(json!({"role": null})),
            [204, 204, 403, 403, 404],
        ),
        (
            "PUT",
            format!("{pa1}/members/{viewer}"),
            Some(json!({"role": "viewer"})),
            [204, 204, 204, 403, 404],
        ),
        (
            "GET",
            "/api/audit/operations".to_string(),
            None,
            [200, 403, 403, 403, 403],
        ),
        (
            "GET",
            format!("{pa1}/clusters/{c1}/logs"),
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "GET",
            format!("{pa1}/logs"),
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "GET",
            format!("{pa2}/clusters/{c2}/logs"),
            None,
            [200, 200, 404, 404, 404],
        ),
        (
            "GET",
            format!("{pa2}/logs"),
            None,
            [200, 200, 404, 404, 404],
        ),
        // The dashboard proxy: allowed callers reach the tunnel, which has no
        // agent here (503); a viewer may not POST; others see nothing.
        (
            "GET",
            format!("/api/emqxee/dashboard/{c1}/"),
            None,
            [503, 503, 503, 503, 404],
        ),
        (
            "POST",
            format!("/api/emqxee/dashboard/{c1}/api/v4/mqtt/publish"),
            Some(json!({})),
            [503, 503, 503, 403, 404],
        ),
        (
            "GET",
            format!("/api/emqxee/dashboard/{c2}/"),
            None,
            [503, 503, 404, 404, 404],
        ),
        // Enter Dashboard: a capability for whoever may read the cluster
        // (viewers too: the dashboard site keeps them read-only).
        (
            "POST",
            format!("{pa1}/clusters/{c1}/dashboard-sessions"),
            Some(json!({})),
            [201, 201, 201, 201, 404],
        ),
        (
            "POST",
            format!("{pa2}/clusters/{c2}/dashboard-sessions"),
            Some(json!({})),
            [201, 201, 404, 404, 404],
        ),
        (
            "GET",
            "/api/users".to_string(),
            None,
            [200, 403, 403, 403, 403],
        ),
        (
            "GET",
            format!("/api/users/{viewer}"),
            None,
            [200, 404, 404, 200, 404],
        ),
        (
            "DELETE",
            "/api/users/nope".to_string(),
            None,
            [404, 403, 403, 403, 403],
        ),
    ];
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    for (method, path, body, expected) in &table {
        if path.ends_with(&c2) && *method == "DELETE" {
            continue;
        }
        for (i, (role, token)) in roles.iter().enumerate() {
            let mut req = http
                .request(
                    method.parse().expect("method"),
                    format!("{}{path}", server.base),
                )
                .bearer_auth(token);
            if let Some(b) = body {
                // Names must stay unique per call.
                let mut b = b.clone();
                if let Some(n) = b.get("name").and_then(Value::as_str) {
                    b["name"] = json!(format!("{n} {i}"));
                }
                if let Some(n) = b.get("username").and_then(Value::as_str) {
                    b["username"] = json!(format!("{n}{i}"));
                }
                req = req.json(&b);
            }
            let got = req.send().await.expect("send").status().as_u16();
            if got != expected[i] {
                failures.push(format!(
                    "{role}: {method} {path} → {got}, expected {}",
                    expected[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Lists show only what the caller may see.
    let viewer_api = Api {
        http: http.clone(),
        base: server.base.clone(),
        token: roles[3].1.clone(),
    };
    let (_, projects) = viewer_api.get(&format!("/api/orgs/{a}/projects")).await;
    let names: Vec<&str> = projects["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, vec!["p1"]);
    let (_, orgs) = viewer_api.get("/api/orgs").await;
    assert_eq!(orgs["total"], 1, "{orgs}");

    // The viewer's event stream never carries A/p2.
    let mut events = viewer_api.events().await;
    let (s, _) = sys
        .call(
            reqwest::Method::PUT,
            &format!("{pa2}/clusters/{c2}"),
            Some(json!({"description": "secret p2 change"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = sys
        .call(
            reqwest::Method::PUT,
            &format!("{pa1}/clusters/{c1}"),
            Some(json!({"description": "p1 change"})),
        )
        .await;
    assert_eq!(s, 200);
    let (first, _) = events.wait_any(Duration::from_secs(5)).await;
    assert_eq!(
        first["id"],
        c1.as_str(),
        "the p2 change must not reach a viewer of p1: {first}"
    );

    // A removed membership takes effect on the very next request.
    member(&sys, &format!("{pa1}/members/{viewer}"), Value::Null).await;
    assert_eq!(viewer_api.get(&format!("{pa1}/clusters/{c1}")).await.0, 404);

    // Deleting: a viewer may not, an outsider does not even see it, an admin may.
    let (_, c3) = sys
        .post(&format!("{pa1}/clusters"), json!({"name": "c3"}))
        .await;
    let c3 = c3["id"].as_str().expect("c3").to_string();
    member(&sys, &format!("{pa1}/members/{viewer}"), json!("viewer")).await;
    let del = |token: String| {
        let http = http.clone();
        let url = format!("{}{pa1}/clusters/{c3}", server.base);
        async move {
            http.delete(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    assert_eq!(del(roles[3].1.clone()).await, 403);
    assert_eq!(del(roles[4].1.clone()).await, 404);
    assert_eq!(del(roles[2].1.clone()).await, 202);
}

#[tokio::test]
async fn in_redis_mode_a_removed_membership_and_a_logout_take_effect_on_another_node() {
    let redis = crate::redis_server::RedisServer::start().await;
    let a = Server::start_with(&[("ECP_REDIS", &redis.url()), ("ECP_NODE_ID", "node-a")]).await;
    let b = Server::start_with(&[("ECP_REDIS", &redis.url()), ("ECP_NODE_ID", "node-b")]).await;
    let sys = a.api().await;
    let uid = make_user(&sys, "viewer").await;
    let p = "/api/orgs/default/projects/default";
    member(
        &sys,
        &format!("/api/orgs/default/members/{uid}"),
        json!("viewer"),
    )
    .await;
    member(&sys, &format!("{p}/members/{uid}"), json!("viewer")).await;
    let (_, c) = sys
        .post(&format!("{p}/clusters"), json!({"name": "shared"}))
        .await;
    let id = c["id"].as_str().expect("id").to_string();

    // The viewer works on node B.
    let on_b = Api::login(&b.base, "viewer", "Passw0rd-x").await;
    assert_eq!(on_b.get(&format!("{p}/clusters/{id}")).await.0, 200);
    // Node A removes the membership: B refuses the very next request.
    member(&sys, &format!("{p}/members/{uid}"), Value::Null).await;
    assert_eq!(on_b.get(&format!("{p}/clusters/{id}")).await.0, 404);

    // A logout on node A ends the session on node B too.
    let on_a = Api::login(&a.base, "viewer", "Passw0rd-x").await;
    let same_token_on_b = Api {
        http: reqwest::Client::new(),
        base: b.base.clone(),
        token: on_a.token.clone(),
    };
    assert_eq!(same_token_on_b.get("/api/account/profile").await.0, 200);
    assert_eq!(on_a.post("/api/account/logout", json!({})).await.0, 204);
    assert_eq!(same_token_on_b.get("/api/account/profile").await.0, 401);
}

#[tokio::test]
async fn transfer_rename_and_delete_follow_the_rules() {
    let server = Server::start().await;
    let sys = server.api().await;
    let (_, a) = sys.post("/api/orgs", json!({"name": "org A"})).await;
    let a = a["id"].as_str().expect("org").to_string();
    let (_, p1) = sys
        .post(&format!("/api/orgs/{a}/projects"), json!({"name": "p1"}))
        .await;
    let p1 = p1["id"].as_str().expect("p1").to_string();
    let (_, p2) = sys
        .post(&format!("/api/orgs/{a}/projects"), json!({"name": "p2"}))
        .await;
    let p2 = p2["id"].as_str().expect("p2").to_string();
    let pa1 = format!("/api/orgs/{a}/projects/{p1}");
    let pa2 = format!("/api/orgs/{a}/projects/{p2}");
    let (_, c) = sys
        .post(&format!("{pa1}/clusters"), json!({"name": "mover"}))
        .await;
    let c = c["id"].as_str().expect("c").to_string();
    sys.post(&format!("{pa2}/clusters"), json!({"name": "taken"}))
        .await;

    // A project admin of p1 only cannot move into p2 (it does not see p2).
    let pa = make_user(&sys, "projadmin").await;
    member(
        &sys,
        &format!("/api/orgs/{a}/members/{pa}"),
        json!("viewer"),
    )
    .await;
    member(&sys, &format!("{pa1}/members/{pa}"), json!("admin")).await;
    let pa_api = Api::login(&server.base, "projadmin", "Passw0rd-x").await;
    let (s, v) = pa_api
        .post(
            &format!("{pa1}/clusters/{c}/transfer"),
            json!({"projectId": p2}),
        )
        .await;
    assert_eq!(s, 404, "{v}");

    // The system admin moves it; it leaves p1 and shows up in p2.
    let (s, v) = sys
        .post(
            &format!("{pa1}/clusters/{c}/transfer"),
            json!({"projectId": p2}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["projectId"], p2.as_str());
    assert_eq!(sys.get(&format!("{pa1}/clusters/{c}")).await.0, 404);
    assert_eq!(sys.get(&format!("{pa2}/clusters/{c}")).await.0, 200);
    // A name clash in the target project is refused.
    let (_, t) = sys
        .post(&format!("{pa1}/clusters"), json!({"name": "taken"}))
        .await;
    let t = t["id"].as_str().expect("t").to_string();
    let (s, v) = sys
        .post(
            &format!("{pa1}/clusters/{t}/transfer"),
            json!({"projectId": p2}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        sys.get(&format!("{pa1}/clusters/{t}")).await.0,
        200,
        "left where it was"
    );

    // Renames.
    let (s, v) = sys
        .call(
            reqwest::Method::PUT,
            &format!("/api/orgs/{a}"),
            Some(json!({"name": "org A2"})),
        )
        .await;
    assert_eq!((s, v["name"].as_str()), (200, Some("org A2")));
    let (s, _) = pa_api
        .call(
            reqwest::Method::PUT,
            &pa1,
            Some(json!({"name": "p1 renamed"})),
        )
        .await;
    assert_eq!(s, 200, "a project admin renames its project");

    // Deletes only when empty.
    let (s, v) = sys.call(reqwest::Method::DELETE, &pa1, None).await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = sys
        .call(reqwest::Method::DELETE, &format!("/api/orgs/{a}"), None)
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap_or_default()
        .contains("project"));
    for (pp, id) in [(&pa1, &t), (&pa2, &c)] {
        sys.call(
            reqwest::Method::DELETE,
            &format!("{pp}/clusters/{id}"),
            None,
        )
        .await;
    }
    let (_, list) = sys.get(&format!("{pa2}/clusters")).await;
    for cl in list["data"].as_array().expect("data") {
        sys.call(
            reqwest::Method::DELETE,
            &format!("{pa2}/clusters/{}", cl["id"].as_str().unwrap_or_default()),
            None,
        )
        .await;
    }
    assert_eq!(sys.call(reqwest::Method::DELETE, &pa1, None).await.0, 204);
    assert_eq!(sys.call(reqwest::Method::DELETE, &pa2, None).await.0, 204);
    assert_eq!(
        sys.call(reqwest::Method::DELETE, &format!("/api/orgs/{a}"), None)
            .await
            .0,
        204
    );

    // Users: listed; deleting one ends its sessions; nobody deletes themselves.
    let (_, users) = sys.get("/api/users").await;
    assert_eq!(users["total"], 2);
    assert_eq!(
        sys.call(reqwest::Method::DELETE, &format!("/api/users/{pa}"), None)
            .await
            .0,
        204
    );
    assert_eq!(pa_api.get("/api/account/profile").await.0, 401);
    let (_, me) = sys.get("/api/account/profile").await;
    let (s, _) = sys
        .call(
            reqwest::Method::DELETE,
            &format!("/api/users/{}", me["id"].as_str().unwrap_or_default()),
            None,
        )
        .await;
    assert_eq!(s, 422);
    // Every one of these left an audit record.
    let (_, audit) = sys.get("/api/audit/operations?size=200").await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for a in [
        "cluster.transfer",
        "org.edit",
        "project.edit",
        "project.delete",
        "org.delete",
        "user.delete",
        "membership.set",
    ] {
        assert!(actions.contains(&a), "no {a} in {actions:?}");
    }
}
