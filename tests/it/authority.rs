//! Authority follows the user's current rights: a removed org membership
//! takes the project roles along at once (also on another node), open event
//! streams follow logouts, password changes and membership changes, and a
//! burst of guesses gets no more password checks than the limit.

use crate::harness::*;
use crate::redis_server::RedisServer;
use serde_json::{json, Value};
use std::time::Duration;

const PASSWORD: &str = "Passw0rd-x";
const NEW_PASSWORD: &str = "N3w-passw0rd";
/// Far longer than a notice takes, far shorter than the 15 s periodic
/// re-check: a stream that ends within it was ended by the notice.
const NOTICE: Duration = Duration::from_secs(10);

async fn user(admin: &Api, name: &str) -> String {
    let (s, v) = admin
        .post(
            "/api/users",
            json!({"username": name, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().expect("id").to_string()
}

async fn role(admin: &Api, path: &str, role: Value) {
    let (s, v) = admin
        .call(reqwest::Method::PUT, path, Some(json!({ "role": role })))
        .await;
    assert_eq!(s, 204, "{path}: {v}");
}

async fn cluster(admin: &Api, project: &str, name: &str) -> String {
    let (s, v) = admin
        .post(&format!("{project}/clusters"), json!({"name": name}))
        .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().expect("id").to_string()
}

async fn edit(admin: &Api, project: &str, id: &str, description: &str) {
    let (s, v) = admin
        .call(
            reqwest::Method::PUT,
            &format!("{project}/clusters/{id}"),
            Some(json!({ "description": description })),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

/// The same session used on another node.
fn on(base: &str, api: &Api) -> Api {
    Api {
        http: reqwest::Client::new(),
        base: base.to_string(),
        token: api.token.clone(),
    }
}

/// Org "org A" with project "p1" holding cluster c1, and c0 in the default
/// project; user `name` is an org viewer and project admin in org A, and a
/// viewer of the default org and project. Returns (org A, A/p1 path, c1, c0, user id).
async fn world(sys: &Api, name: &str) -> (String, String, String, String, String) {
    let (s, org) = sys.post("/api/orgs", json!({"name": "org A"})).await;
    assert_eq!(s, 201, "{org}");
    let org = org["id"].as_str().expect("org").to_string();
    let (s, p1) = sys
        .post(&format!("/api/orgs/{org}/projects"), json!({"name": "p1"}))
        .await;
    assert_eq!(s, 201, "{p1}");
    let pa = format!(
        "/api/orgs/{org}/projects/{}",
        p1["id"].as_str().expect("p1")
    );
    let c1 = cluster(sys, &pa, "c1").await;
    let c0 = cluster(sys, P, "c0").await;
    let uid = user(sys, name).await;
    role(
        sys,
        &format!("/api/orgs/{org}/members/{uid}"),
        json!("viewer"),
    )
    .await;
    role(sys, &format!("{pa}/members/{uid}"), json!("admin")).await;
    role(
        sys,
        &format!("/api/orgs/default/members/{uid}"),
        json!("viewer"),
    )
    .await;
    role(sys, &format!("{P}/members/{uid}"), json!("viewer")).await;
    (org, pa, c1, c0, uid)
}

/// Edits c1 (which the stream must no longer carry) and then c0 (which it
/// must): the first of the two to arrive must be c0.
async fn stream_skips_c1(sys: &Api, events: &mut Events, pa: &str, c1: &str, c0: &str) {
    edit(sys, pa, c1, "after the removal").await;
    edit(sys, P, c0, "still visible").await;
    loop {
        let (c, _) = events.wait_any(NOTICE).await;
        assert_ne!(
            c["id"], c1,
            "a change of p1 reached a user removed from its org: {c}"
        );
        if c["id"] == c0 {
            break;
        }
    }
}

#[tokio::test]
async fn removing_an_org_membership_ends_project_access_at_once_and_in_open_streams() {
    let server = Server::start().await;
    let sys = server.api().await;
    let (org, pa, c1, c0, uid) = world(&sys, "mia").await;
    let mia = Api::login(&server.base, "mia", PASSWORD).await;
    assert_eq!(mia.get(&format!("{pa}/clusters/{c1}")).await.0, 200);
    let (s, v) = mia
        .post(&format!("{pa}/clusters"), json!({"name": "mine"}))
        .await;
    assert_eq!(s, 201, "a project admin creates clusters: {v}");
    let mut events = mia.events().await;

    role(&sys, &format!("/api/orgs/{org}/members/{uid}"), Value::Null).await;

    // At once, in the same session: the project is not there for her.
    assert_eq!(mia.get(&format!("{pa}/clusters")).await.0, 404);
    assert_eq!(mia.get(&format!("{pa}/clusters/{c1}")).await.0, 404);
    let (s, v) = mia
        .post(&format!("{pa}/clusters"), json!({"name": "more"}))
        .await;
    assert_eq!(s, 404, "{v}");
    // Nor after logging in again: the project role went with the org role.
    let again = Api::login(&server.base, "mia", PASSWORD).await;
    assert_eq!(again.get(&format!("{pa}/clusters")).await.0, 404);
    let (_, u) = sys.get(&format!("/api/users/{uid}")).await;
    let orgs: Vec<&str> = u["memberships"]
        .as_array()
        .expect("memberships")
        .iter()
        .filter_map(|m| m["orgId"].as_str())
        .collect();
    assert_eq!(orgs, ["default", "default"], "{u}");
    // What she still may see keeps working.
    assert_eq!(mia.get(&format!("{P}/clusters/{c0}")).await.0, 200);

    // Her open stream no longer carries p1's changes, and still the rest.
    stream_skips_c1(&sys, &mut events, &pa, &c1, &c0).await;
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_and_logout_all_ends_every_one() {
    let server = Server::start().await;
    let sys = server.api().await;
    let uid = user(&sys, "max").await;
    role(
        &sys,
        &format!("/api/orgs/default/members/{uid}"),
        json!("viewer"),
    )
    .await;
    role(&sys, &format!("{P}/members/{uid}"), json!("viewer")).await;
    let here = Api::login(&server.base, "max", PASSWORD).await;
    let other = Api::login(&server.base, "max", PASSWORD).await;
    let mut here_events = here.events().await;
    let mut other_events = other.events().await;
    let change = |current: &str, new: &str| json!({"currentPassword": current, "newPassword": new});

    // The console's cookie needs its CSRF header, as for every change.
    let r = reqwest::Client::new()
        .post(format!("{}/api/account/password", server.base))
        .header("cookie", format!("ecp_session={}", here.token))
        .json(&change(PASSWORD, NEW_PASSWORD))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["code"], "CSRF", "{v}");
    // A wrong current password or a weak new one changes nothing.
    let (s, v) = here
        .post("/api/account/password", change("not-it-1!", NEW_PASSWORD))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("WRONG_PASSWORD")),
        "{v}"
    );
    let (s, v) = here
        .post("/api/account/password", change(PASSWORD, "weak"))
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("WEAK_PASSWORD")), "{v}");
    assert_eq!(other.get("/api/account/profile").await.0, 200);

    let (s, v) = here
        .post("/api/account/password", change(PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(s, 204, "{v}");
    // The other session ends: its requests answer 401, its stream ends.
    assert_eq!(other.get("/api/account/profile").await.0, 401);
    assert!(other_events.ended(NOTICE).await, "the other stream ended");
    // This one keeps working, stream included.
    assert_eq!(here.get("/api/account/profile").await.0, 200);
    let c = cluster(&sys, P, "seen").await;
    here_events.wait(&c, NOTICE, |_| true).await;
    // Only the new password logs in.
    let r = reqwest::Client::new()
        .post(format!("{}/api/account/login", server.base))
        .json(&json!({"username": "max", "password": PASSWORD}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let third = Api::login(&server.base, "max", NEW_PASSWORD).await;
    let mut third_events = third.events().await;

    // Logout everywhere: this session too.
    assert_eq!(here.post("/api/account/logout-all", json!({})).await.0, 204);
    assert_eq!(here.get("/api/account/profile").await.0, 401);
    assert_eq!(third.get("/api/account/profile").await.0, 401);
    assert!(here_events.ended(NOTICE).await, "the caller's stream ended");
    assert!(third_events.ended(NOTICE).await, "every stream ended");

    // Audited, without the passwords.
    let (_, audit) = sys.get("/api/audit/operations?size=200").await;
    let seen: Vec<(String, String)> = audit["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default().to_string(),
                r["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for want in [
        ("password.change", "ok"),
        ("password.change", "denied"),
        ("logout.all", "ok"),
    ] {
        assert!(
            seen.iter().any(|(a, r)| (a.as_str(), r.as_str()) == want),
            "no {want:?} in {seen:?}"
        );
    }
    let text = format!("{audit}{}", server.log_text());
    assert!(!text.contains(NEW_PASSWORD) && !text.contains(PASSWORD));
}

#[tokio::test]
async fn in_redis_mode_access_changes_reach_requests_and_streams_on_another_node() {
    let redis = RedisServer::start().await;
    let a = Server::start_with(&[("ECP_REDIS", &redis.url()), ("ECP_NODE_ID", "node-a")]).await;
    let b = Server::start_with(&[("ECP_REDIS", &redis.url()), ("ECP_NODE_ID", "node-b")]).await;
    let sys = a.api().await;
    let (org, pa, c1, c0, uid) = world(&sys, "mia").await;

    // She works on node B; node A removes her from org A.
    let first = Api::login(&b.base, "mia", PASSWORD).await;
    assert_eq!(first.get(&format!("{pa}/clusters/{c1}")).await.0, 200);
    let mut first_stream = first.events().await;
    role(&sys, &format!("/api/orgs/{org}/members/{uid}"), Value::Null).await;
    assert_eq!(first.get(&format!("{pa}/clusters/{c1}")).await.0, 404);
    assert_eq!(first.get(&format!("{pa}/clusters")).await.0, 404);
    stream_skips_c1(&sys, &mut first_stream, &pa, &c1, &c0).await;

    // A logout on node A ends the same session's stream on node B.
    let second = Api::login(&a.base, "mia", PASSWORD).await;
    let mut second_stream_on_b = on(&b.base, &second).events().await;
    assert_eq!(second.post("/api/account/logout", json!({})).await.0, 204);
    assert!(
        second_stream_on_b.ended(NOTICE).await,
        "a logout on A ends the stream on B"
    );

    // A password change on node A: the session on B answers 401 and its
    // stream ends; the calling session works on both nodes.
    let third = Api::login(&a.base, "mia", PASSWORD).await;
    let (s, v) = third
        .post(
            "/api/account/password",
            json!({"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    assert_eq!(first.get("/api/account/profile").await.0, 401);
    assert!(first_stream.ended(NOTICE).await, "the stream on B ended");
    assert_eq!(third.get("/api/account/profile").await.0, 200);
    assert_eq!(on(&b.base, &third).get("/api/account/profile").await.0, 200);

    // Logout everywhere, called on B, ends the sessions and streams on A.
    let fourth = Api::login(&a.base, "mia", NEW_PASSWORD).await;
    let mut fourth_stream = fourth.events().await;
    let (s, _) = on(&b.base, &third)
        .post("/api/account/logout-all", json!({}))
        .await;
    assert_eq!(s, 204);
    assert_eq!(third.get("/api/account/profile").await.0, 401);
    assert_eq!(fourth.get("/api/account/profile").await.0, 401);
    assert!(fourth_stream.ended(NOTICE).await, "the stream on A ended");
}

#[tokio::test]
async fn a_burst_of_parallel_wrong_passwords_gets_no_more_checks_than_the_limit() {
    let server = Server::start().await;
    // From an address of its own, so the admin can still log in below.
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let tries = (0..40).map(|i| {
        let http = http.clone();
        let url = format!("{}/api/account/login", server.base);
        async move {
            http.post(url)
                .json(&json!({"username": "admin", "password": format!("guess-{i}!")}))
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(tries).await;
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    assert_eq!(
        (count(401), count(429)),
        (10, 30),
        "ten checked, the rest refused: {statuses:?}"
    );
    // The audit log says the same: ten passwords checked, thirty refused unchecked.
    let api = server.api().await;
    let (_, audit) = api.get("/api/audit/operations?action=login&size=200").await;
    let details: Vec<&str> = audit["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|r| r["result"] == "denied")
        .filter_map(|r| r["details"].as_str())
        .collect();
    let n = |d: &str| details.iter().filter(|x| **x == d).count();
    assert_eq!(n("wrong username or password"), 10, "{details:?}");
    assert_eq!(n("too many failures"), 30, "{details:?}");
}

#[tokio::test]
async fn a_user_holds_at_most_the_configured_event_streams_on_a_node() {
    let server = Server::start_with(&[("ECP_LIMITS_EVENT_STREAMS_PER_USER", "2")]).await;
    let sys = server.api().await;
    let _one = sys.events().await;
    let _two = sys.events().await;
    let r = sys
        .http
        .get(format!("{}/api/events", server.base))
        .bearer_auth(&sys.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.expect("json");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("too many open event streams"),
        "{v}"
    );
    // Another user is not affected.
    user(&sys, "eve").await;
    let eve = Api::login(&server.base, "eve", PASSWORD).await;
    let _hers = eve.events().await;
}
