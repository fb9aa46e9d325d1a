//! One way to talk to a cluster, whichever node it lives on: every
//! mutating cluster route and agent route, asked on node A of three while
//! node B owns the cluster, answers exactly as a single node does, and its
//! change reaches node C's event stream. And a registration whose agent
//! never connects ends in `agent_offline` after the grace, on both stores.

use crate::harness::*;
use crate::redis_server::RedisServer;
use ecp_protocol::Health;
use ecp_testkit::{register, register_body, Session};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// What a step answered, as comparable between deployments: the status,
/// the error code, and the keys of the cluster it returned.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    step: &'static str,
    status: u16,
    code: Option<String>,
    cluster_status: Option<String>,
}

fn outcome(step: &'static str, status: u16, body: &Value) -> Outcome {
    Outcome {
        step,
        status,
        code: body["code"].as_str().map(String::from),
        cluster_status: body["status"].as_str().map(String::from),
    }
}

/// The scenario: the cluster is created on `owner` (which takes its lease),
/// every later step is asked on `on`, and each change is awaited on
/// `watch`'s stream.
async fn scenario(
    owner: &Api,
    on: &Api,
    watch: &mut Events,
    lease: impl Fn(&str) -> Option<String>,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    let (s, c) = owner
        .post(&format!("{P}/clusters"), json!({"name": "m one"}))
        .await;
    out.push(outcome("create", s, &c));
    let id = c["id"].as_str().expect("id").to_string();
    watch.wait(&id, WAIT, |c| c["status"] == "created").await;
    if let Some(node) = lease(&id) {
        assert_eq!(node, "node-b", "node B owns the cluster it created");
    }
    let (s, other) = owner
        .post(&format!("{P}/clusters"), json!({"name": "m two"}))
        .await;
    assert_eq!(s, 201, "{other}");

    let cluster = format!("{P}/clusters/{id}");
    let (s, v) = on
        .call(
            reqwest::Method::PUT,
            &cluster,
            Some(json!({"description": "edited on A"})),
        )
        .await;
    out.push(outcome("edit", s, &v));
    watch
        .wait(&id, WAIT, |c| c["description"] == "edited on A")
        .await;

    let t0 = Instant::now();
    let (s, v) = on
        .call(
            reqwest::Method::PUT,
            &cluster,
            Some(json!({"name": "m two"})),
        )
        .await;
    let clash = t0.elapsed();
    out.push(outcome("rename clash", s, &v));
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("already exists"),
        "the owner's own answer, not a timeout: {v}"
    );
    println!("rename clash answered in {clash:?}");

    let (s, v) = on
        .post(&format!("{cluster}/registration-tokens"), json!({}))
        .await;
    out.push(outcome("token issue", s, &v));
    let token = v["token"].as_str().expect("token").to_string();
    let (s, v) = on
        .call(
            reqwest::Method::DELETE,
            &format!("{cluster}/registration-tokens"),
            None,
        )
        .await;
    out.push(outcome("token revoke", s, &v));
    let (s, v) = on
        .post(&format!("{cluster}/registration-tokens"), json!({}))
        .await;
    out.push(outcome("token issue again", s, &v));
    let token2 = v["token"].as_str().expect("token").to_string();
    let revoked = register(
        &on.http,
        &on.base,
        &register_body(&token, "m-i0", "emqx@m0", "5.6.0"),
    )
    .await
    .expect_err("revoked token");
    out.push(outcome(
        "register with a revoked token",
        revoked.0,
        &revoked.1,
    ));

    let reg = register(
        &on.http,
        &on.base,
        &register_body(&token2, "m-i1", "emqx@m1", "5.6.0"),
    )
    .await
    .expect("register");
    out.push(Outcome {
        step: "register",
        status: 200,
        code: None,
        cluster_status: None,
    });
    watch
        .wait(&id, WAIT, |c| c["status"] == "registering")
        .await;
    // The agent's session on A too; its report reaches the owner.
    let mut session = Session::connect(&on.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("session");
    session
        .report(Health::Healthy, &[("emqx@m1", true)])
        .await
        .expect("report");
    watch.wait(&id, WAIT, |c| c["status"] == "running").await;
    let (s, v) = on.get(&format!("{cluster}/agents")).await;
    out.push(outcome("agents", s, &v));
    assert_eq!(v[0]["connected"], true, "live state from the owner: {v}");

    // Agent revoke: the session ends, the count drops.
    let (s, v) = on
        .call(
            reqwest::Method::DELETE,
            &format!("{cluster}/agents/{}", reg.agent_id),
            None,
        )
        .await;
    out.push(outcome("agent revoke", s, &v));
    watch.wait(&id, WAIT, |c| c["agents"]["total"] == 0).await;
    session
        .closed(WAIT)
        .await
        .expect("the revoked session ends");
    assert_eq!(
        session.close_code(),
        Some(ecp_protocol::CloseCode::Revoked),
        "the code crosses nodes"
    );

    // Unregister by the agent itself.
    let reg2 = register(
        &on.http,
        &on.base,
        &register_body(&token2, "m-i2", "emqx@m2", "5.6.0"),
    )
    .await
    .expect("register");
    watch.wait(&id, WAIT, |c| c["agents"]["total"] == 1).await;
    let r = on
        .http
        .post(format!("{}/api/clusters/agents/emqxee/unregister", on.base))
        .bearer_auth(&reg2.token)
        .send()
        .await
        .expect("unregister");
    out.push(Outcome {
        step: "unregister",
        status: r.status().as_u16(),
        code: None,
        cluster_status: None,
    });
    watch.wait(&id, WAIT, |c| c["agents"]["total"] == 0).await;

    // Transfer to another project, then back.
    let (s, p2) = owner
        .post(
            "/api/orgs/default/projects",
            json!({"name": "matrix other"}),
        )
        .await;
    assert_eq!(s, 201, "{p2}");
    let p2 = p2["id"].as_str().expect("id").to_string();
    let (s, v) = on
        .post(&format!("{cluster}/transfer"), json!({"projectId": p2}))
        .await;
    out.push(outcome("transfer", s, &v));
    watch
        .wait(&id, WAIT, |c| c["projectId"] == p2.as_str())
        .await;
    let moved = format!("/api/orgs/default/projects/{p2}/clusters/{id}");
    let (s, v) = on
        .post(
            &format!("{moved}/transfer"),
            json!({"projectId": "default"}),
        )
        .await;
    out.push(outcome("transfer back", s, &v));
    watch.wait(&id, WAIT, |c| c["projectId"] == "default").await;

    // Delete: 202 deleting, then gone everywhere.
    let (s, v) = on.call(reqwest::Method::DELETE, &cluster, None).await;
    out.push(outcome("delete", s, &v));
    watch.wait(&id, WAIT, |c| c["removed"] == true).await;
    let (s, v) = on.get(&cluster).await;
    out.push(outcome("get after delete", s, &v));
    let (s, v) = on
        .call(
            reqwest::Method::PUT,
            &cluster,
            Some(json!({"description": "too late"})),
        )
        .await;
    out.push(outcome("edit after delete", s, &v));
    out
}

#[tokio::test]
async fn every_cluster_route_answers_the_same_on_a_non_owner_node_and_reaches_every_stream() {
    // One node, embedded: the reference answers.
    let single = Server::start().await;
    let api = single.api().await;
    let mut events = api.events().await;
    let reference = scenario(&api, &api, &mut events, |_| None).await;

    // Three nodes on one Redis: created on B (B owns it), asked on A,
    // watched on C.
    let redis = RedisServer::start().await;
    let url = redis.url();
    let node = |name: &'static str| {
        let url = url.clone();
        async move {
            Server::start_with(&[
                ("ECP_REDIS", url.as_str()),
                ("ECP_NODE_ID", name),
                ("ECP_LIMITS_REGISTRATIONS_PER_SEC", "1000"),
            ])
            .await
        }
    };
    let (a, b, c) = (
        node("node-a").await,
        node("node-b").await,
        node("node-c").await,
    );
    let (on_a, on_b, on_c) = (a.api().await, b.api().await, c.api().await);
    let mut watch = on_c.events().await;
    let lease = {
        let client = redis::Client::open(url.clone()).expect("client");
        move |id: &str| -> Option<String> {
            let mut conn = client.get_connection().ok()?;
            redis::cmd("GET")
                .arg(format!("ecp:lease:{id}"))
                .query(&mut conn)
                .ok()
        }
    };
    let distributed = scenario(&on_b, &on_a, &mut watch, lease).await;
    for (r, d) in reference.iter().zip(&distributed) {
        println!(
            "{:<32} single node: {} {:?} {:?}   node A (owner B): {} {:?} {:?}",
            r.step, r.status, r.code, r.cluster_status, d.status, d.code, d.cluster_status
        );
    }
    assert_eq!(reference, distributed);
    drop((on_c, a, b, c));
}

/// A token is redeemed and the agent never connects: after the grace the
/// cluster is `agent_offline`, as PRODUCT §3 says — on both stores.
#[tokio::test]
async fn a_registration_whose_agent_never_connects_goes_agent_offline() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    for env in [
        vec![],
        vec![("ECP_REDIS", url.as_str()), ("ECP_NODE_ID", "solo")],
    ] {
        let server = Server::start_with(&env).await;
        let api = server.api().await;
        let mut events = api.events().await;
        let id = api.create_cluster("never connects").await["id"]
            .as_str()
            .expect("id")
            .to_string();
        let token = api.issue_token(&id).await;
        let before = Instant::now();
        register(
            &api.http,
            &server.base,
            &register_body(&token, "n-i", "emqx@never", "5.6.0"),
        )
        .await
        .expect("register");
        events.wait_status(&id, "registering", WAIT).await;
        // The grace (harness: GRACE_SECS) and one sweep; the stream says when.
        let (c, at) = events.wait_status(&id, "abnormal", WAIT).await;
        assert_eq!(c["reason"]["code"], "agent_offline", "{c}");
        let after = at - before;
        println!("registering → agent_offline after {after:?} (grace {GRACE_SECS} s)");
        assert!(
            after >= Duration::from_secs(GRACE_SECS),
            "not before the grace: {after:?}"
        );
    }
}

/// A transfer is a removal for the old project's consoles and an arrival
/// for the new one's: a viewer of the old project hears the cluster leave
/// (and a viewer of the new one hears it come), on another node too.
#[tokio::test]
async fn a_transferred_cluster_leaves_the_old_projects_streams() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let a = Server::start_with(&[("ECP_REDIS", url.as_str()), ("ECP_NODE_ID", "node-a")]).await;
    let b = Server::start_with(&[("ECP_REDIS", url.as_str()), ("ECP_NODE_ID", "node-b")]).await;
    let admin = a.api().await;
    let (s, p2) = admin
        .post("/api/orgs/default/projects", json!({"name": "moved to"}))
        .await;
    assert_eq!(s, 201, "{p2}");
    let p2 = p2["id"].as_str().expect("id").to_string();
    let viewer = |name: &'static str, project: String| {
        let admin = &admin;
        let base = b.base.clone();
        async move {
            let (s, u) = admin
                .post(
                    "/api/users",
                    json!({"username": name, "password": "Passw0rd-x"}),
                )
                .await;
            assert_eq!(s, 201, "{u}");
            let uid = u["id"].as_str().expect("id").to_string();
            for path in [
                format!("/api/orgs/default/members/{uid}"),
                format!("/api/orgs/default/projects/{project}/members/{uid}"),
            ] {
                let (s, v) = admin
                    .call(reqwest::Method::PUT, &path, Some(json!({"role": "viewer"})))
                    .await;
                assert_eq!(s, 204, "{v}");
            }
            Api::login(&base, name, "Passw0rd-x").await
        }
    };
    let (old_viewer, new_viewer) = (
        viewer("oldview", "default".into()).await,
        viewer("newview", p2.clone()).await,
    );
    let id = admin.create_cluster("on the move").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (mut old_stream, mut new_stream) = (old_viewer.events().await, new_viewer.events().await);
    let (s, v) = admin
        .post(
            &format!("{P}/clusters/{id}/transfer"),
            json!({"projectId": p2}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (gone, _) = old_stream.wait(&id, WAIT, |c| c["removed"] == true).await;
    assert_eq!(gone["projectId"], "default", "{gone}");
    new_stream
        .wait(&id, WAIT, |c| c["projectId"] == p2.as_str())
        .await;
}
