//! Every route × every role: system admin; org admin of A; project admin
//! of A/p1; viewer of A/p1; a member of org B only. Ids the caller may not
//! see answer 404; viewers are read-only (403). The routes come from the
//! served OpenAPI document: one without a row (and not exempt, with its
//! reason, in `NOT_TENANCY_ROUTES`) fails the matrix. 2xx answers of reads
//! are checked to hold only what the role may see, and each role's event
//! stream to carry only changes of projects it sees.

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

/// Routes of the served OpenAPI document that the role matrix leaves out,
/// each with the reason. Every other (method, path template) of the
/// document must have at least one row in `every_route_for_every_role`.
const NOT_TENANCY_ROUTES: &[(&str, &str, &str)] = &[
    // Operations: public, answer the same to anyone, carry no tenant's data.
    ("get", "/healthz", "public liveness probe, no tenant data"),
    ("get", "/readyz", "public readiness probe, no tenant data"),
    ("get", "/api/version", "public build and protocol version"),
    (
        "get",
        "/dl/emqx/agents/binaries/emqxee-agent-linux-{arch}",
        "public download of the agent binary",
    ),
    // The agent endpoints: authenticated by a registration token or an
    // agent credential, never by a console user's role (authority.rs,
    // hostile.rs and lifecycle.rs test their refusals).
    (
        "post",
        "/api/clusters/agents/emqxee/register",
        "agent endpoint: registration token, not a user role",
    ),
    (
        "get",
        "/api/clusters/agents/emqxee/connect",
        "agent endpoint: agent credential, not a user role",
    ),
    (
        "post",
        "/api/clusters/agents/emqxee/unregister",
        "agent endpoint: agent credential, not a user role",
    ),
    // The caller's own account: no tenant's object, the same answer for
    // every role (authority.rs tests them).
    (
        "post",
        "/api/account/login",
        "anonymous: becomes the user whose password it has",
    ),
    (
        "post",
        "/api/account/logout-all",
        "ends every session of the caller, the ones this matrix uses too",
    ),
    (
        "post",
        "/api/account/password",
        "ends the caller's other sessions, the ones this matrix uses too",
    ),
];

/// A path template of the OpenAPI document matches a concrete path: `{x}`
/// stands for one segment; a last `{path}` for the rest (the dashboard
/// proxy's tail, which may hold slashes).
fn template_matches(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let tail = t.last() == Some(&"{path}");
    if (tail && p.len() < t.len()) || (!tail && p.len() != t.len()) {
        return false;
    }
    t.iter().zip(&p).all(|(t, p)| {
        if t.starts_with('{') {
            !p.is_empty() || tail
        } else {
            t == p
        }
    })
}

/// What a row's `{new}` stands for: an object the system admin makes
/// afresh for every role's request, so one role's change does not decide
/// another's answer.
enum Fresh {
    No,
    /// A cluster in this project path.
    Cluster(String),
    /// An empty project in this org.
    Project(String),
    /// An empty org.
    Org,
    /// A user without memberships.
    User,
    /// An alert rule in this project path.
    Rule(String),
    /// A notification channel (webhook) in this project path.
    Channel(String),
    /// No object: the request is sent with a fresh login of the role.
    Login,
}

/// Checks the body of a 2xx answer for role `i`.
type Check = Box<dyn Fn(usize, &Value) -> Result<(), String>>;

struct Row {
    method: &'static str,
    /// May hold `{new}` (see `Fresh`) and `{me}` (the caller's user id).
    path: String,
    body: Option<Value>,
    /// Status per role, in the order of `roles`.
    expect: [u16; 5],
    fresh: Fresh,
    check: Option<Check>,
}

fn row(method: &'static str, path: String, body: Option<Value>, expect: [u16; 5]) -> Row {
    Row {
        method,
        path,
        body,
        expect,
        fresh: Fresh::No,
        check: None,
    }
}

impl Row {
    fn fresh(mut self, f: Fresh) -> Row {
        self.fresh = f;
        self
    }
    fn check(mut self, c: impl Fn(usize, &Value) -> Result<(), String> + 'static) -> Row {
        self.check = Some(Box::new(c));
        self
    }
}

/// The ids of a list answer (`data[].id`).
fn ids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `got` holds every one of `must`, and, when `only`, nothing else.
fn set_check(got: &[String], must: &[&str], only: bool) -> Result<(), String> {
    let missing: Vec<&&str> = must
        .iter()
        .filter(|m| !got.iter().any(|g| g == *m))
        .collect();
    let extra: Vec<&String> = got.iter().filter(|g| !must.contains(&g.as_str())).collect();
    if !missing.is_empty() || (only && !extra.is_empty()) {
        return Err(format!(
            "listed {got:?}: missing {missing:?}{}",
            if only {
                format!(", not its to see {extra:?}")
            } else {
                String::new()
            }
        ));
    }
    Ok(())
}

/// The messages of a log page.
fn log_messages(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["message"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A cluster in `project` (a project path) with one log line, shipped by
/// a test agent that then goes away.
async fn cluster_with_a_log_line(server: &Server, sys: &Api, project: &str, name: &str) -> String {
    let (s, c) = sys
        .post(&format!("{project}/clusters"), json!({ "name": name }))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_string();
    let (s, t) = sys
        .post(
            &format!("{project}/clusters/{id}/registration-tokens"),
            json!({}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let node = format!("emqx@{name}");
    let reg = ecp_testkit::register(
        &sys.http,
        &server.base,
        &ecp_testkit::register_body(
            t["token"].as_str().expect("token"),
            &format!("inst-{name}"),
            &node,
            "5.6.0",
        ),
    )
    .await
    .expect("register");
    let mut session = ecp_testkit::Session::connect(&server.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("connect");
    let line = ecp_protocol::LogLine {
        file: 1,
        offset: 0,
        time_us: 1_700_000_000_000_000,
        level: 3,
        message: format!("log line of {name}"),
        fields: String::new(),
        raw: format!("log line of {name}"),
    };
    session
        .send(&ecp_protocol::Frame::LogBatch(ecp_protocol::LogBatch {
            batch: 1,
            node,
            lines: vec![line],
        }))
        .await
        .expect("send logs");
    loop {
        match session
            .next_frame(Duration::from_secs(20))
            .await
            .expect("frame")
        {
            Some(ecp_protocol::Frame::LogAck { batch: 1 }) => break,
            Some(_) => continue,
            None => panic!("session closed before the log batch was stored"),
        }
    }
    id
}

/// A notification channel's body: a webhook nobody listens to (port 9).
fn channel_body(name: &str) -> Value {
    json!({
        "name": name,
        "kind": "webhook",
        "webhook": {"url": "http://127.0.0.1:9/hook", "secret": format!("secret of {name}")},
    })
}

/// An alert rule's body naming a channel (none when `channel` is empty).
fn rule_body(name: &str, channel: &str) -> Value {
    let channels: Vec<&str> = [channel].into_iter().filter(|c| !c.is_empty()).collect();
    json!({"name": name, "kind": "agent_offline", "channelIds": channels})
}

/// A rule naming a channel, both made by `sys` in `project`: their ids.
async fn rule_and_channel(sys: &Api, project: &str, name: &str) -> (String, String) {
    let (s, c) = sys
        .post(
            &format!("{project}/notification-channels"),
            channel_body(name),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let ch = c["id"].as_str().expect("channel id").to_string();
    let (s, r) = sys
        .post(&format!("{project}/alert-rules"), rule_body(name, &ch))
        .await;
    assert_eq!(s, 201, "{r}");
    (r["id"].as_str().expect("rule id").to_string(), ch)
}

/// A list answer holds `must` and none of `not`, and no secret of any
/// channel (they are write-only).
fn has_not(must: String, not: Vec<String>) -> impl Fn(usize, &Value) -> Result<(), String> {
    move |_, v| {
        let got = ids(v);
        if !got.contains(&must) {
            return Err(format!("does not list {must}: {got:?}"));
        }
        if let Some(n) = not.iter().find(|n| got.contains(n)) {
            return Err(format!("lists {n} of another project: {got:?}"));
        }
        if v.to_string().contains("secret of ") {
            return Err(format!("a channel secret is shown: {v}"));
        }
        Ok(())
    }
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
    let q1 = q1["id"].as_str().expect("q1").to_string();

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
    let pb1 = format!("/api/orgs/{b}/projects/{q1}");
    let (_, c1) = sys
        .post(&format!("{pa1}/clusters"), json!({"name": "c1"}))
        .await;
    let c1 = c1["id"].as_str().expect("c1").to_string();
    let (_, c2) = sys
        .post(&format!("{pa2}/clusters"), json!({"name": "c2"}))
        .await;
    let c2 = c2["id"].as_str().expect("c2").to_string();
    let (_, cb) = sys
        .post(&format!("{pb1}/clusters"), json!({"name": "cb"}))
        .await;
    let cb = cb["id"].as_str().expect("cb").to_string();
    // Clusters with stored log lines, one in each project of A.
    let l1 = cluster_with_a_log_line(&server, &sys, &pa1, "l1").await;
    let l2 = cluster_with_a_log_line(&server, &sys, &pa2, "l2").await;
    // Alerting: a rule and a channel in each project of A and in B's.
    let (r1, ch1) = rule_and_channel(&sys, &pa1, "a1").await;
    let (r2, ch2) = rule_and_channel(&sys, &pa2, "a2").await;
    let (rb, chb) = rule_and_channel(&sys, &pb1, "b1").await;

    // (name, username, password, token, user id)
    let mut roles: Vec<(&str, &str, &str, String, String)> = Vec::new();
    for (role, user, password) in [
        ("system admin", "admin", ADMIN_PASSWORD),
        ("org admin of A", "orgadmin", "Passw0rd-x"),
        ("project admin of A/p1", "projadmin", "Passw0rd-x"),
        ("viewer of A/p1", "viewer", "Passw0rd-x"),
        ("member of org B only", "outsider", "Passw0rd-x"),
    ] {
        let api = Api::login(&server.base, user, password).await;
        let (s, me) = api.get("/api/account/profile").await;
        assert_eq!(s, 200, "{me}");
        let id = me["id"].as_str().expect("id").to_string();
        roles.push((role, user, password, api.token, id));
    }
    let usernames: Vec<&str> = roles.iter().map(|r| r.1).collect();
    let user_ids: Vec<String> = roles.iter().map(|r| r.4.clone()).collect();

    // Check helpers over the test's ids (each check owns its copies).
    let list_in = |org: &str, project: &str, must: Vec<String>, not: Vec<String>| {
        let (org, project) = (org.to_string(), project.to_string());
        move |_: usize, v: &Value| -> Result<(), String> {
            for c in v["data"].as_array().ok_or("no data")? {
                if c["orgId"] != org.as_str() || c["projectId"] != project.as_str() {
                    return Err(format!("lists a cluster of another project: {c}"));
                }
            }
            let got = ids(v);
            for m in &must {
                if !got.contains(m) {
                    return Err(format!("does not list {m}: {got:?}"));
                }
            }
            for n in &not {
                if got.contains(n) {
                    return Err(format!("lists {n}: {got:?}"));
                }
            }
            Ok(())
        }
    };
    let is_cluster = |id: &str, project: &str| {
        let (id, project) = (id.to_string(), project.to_string());
        move |_: usize, v: &Value| -> Result<(), String> {
            if v["id"] == id.as_str() && v["projectId"] == project.as_str() {
                Ok(())
            } else {
                Err(format!("not cluster {id} of project {project}: {v}"))
            }
        }
    };
    let in_project = |project: &str| {
        let project = project.to_string();
        move |_: usize, v: &Value| -> Result<(), String> {
            if v["projectId"] == project.as_str() {
                Ok(())
            } else {
                Err(format!("not in project {project}: {v}"))
            }
        }
    };
    let project_logs = |must: &str, clusters: Vec<String>| {
        let must = must.to_string();
        move |_: usize, v: &Value| -> Result<(), String> {
            for l in v["data"].as_array().ok_or("no data")? {
                let c = l["clusterId"].as_str().unwrap_or_default().to_string();
                if !clusters.contains(&c) {
                    return Err(format!("a line of another project's cluster: {l}"));
                }
            }
            let got = log_messages(v);
            if got.contains(&must) {
                Ok(())
            } else {
                Err(format!("no {must:?} in {got:?}"))
            }
        }
    };
    let cluster_logs = |must: &str| {
        let must = must.to_string();
        move |_: usize, v: &Value| -> Result<(), String> {
            let got = log_messages(v);
            if got == [must.clone()] {
                Ok(())
            } else {
                Err(format!("expected only {must:?}, got {got:?}"))
            }
        }
    };
    let history = |_: usize, v: &Value| -> Result<(), String> {
        match v["data"].as_array() {
            Some(events) if events.first().is_some_and(|e| e["cause"] == "created") => Ok(()),
            _ => Err(format!("no history from its creation: {v}")),
        }
    };

    let table: Vec<Row> = vec![
        // The live stream first, so it sees every change the rows make;
        // what it carried is checked after the table.
        row("GET", "/api/events".into(), None, [200, 200, 200, 200, 200]),
        row("GET", "/api/account/profile".into(), None, [200; 5]).check({
            let usernames: Vec<String> = usernames.iter().map(|u| u.to_string()).collect();
            move |i, v| {
                if v["username"] == usernames[i].as_str() {
                    Ok(())
                } else {
                    Err(format!("someone else's profile: {v}"))
                }
            }
        }),
        row(
            "POST",
            "/api/account/logout".into(),
            Some(json!({})),
            [204; 5],
        )
        .fresh(Fresh::Login),
        // Orgs.
        row("GET", "/api/orgs".into(), None, [200; 5]).check({
            let (a, b) = (a.clone(), b.clone());
            move |i, v| {
                let got = ids(v);
                match i {
                    0 => set_check(&got, &["default", &a, &b], false),
                    1..=3 => set_check(&got, &[&a], true),
                    _ => set_check(&got, &[&b], true),
                }
            }
        }),
        row(
            "POST",
            "/api/orgs".into(),
            Some(json!({"name": "new org"})),
            [201, 403, 403, 403, 403],
        ),
        row(
            "PUT",
            format!("/api/orgs/{a}"),
            Some(json!({"name": "org A"})),
            [200, 200, 403, 403, 404],
        ),
        row(
            "PUT",
            format!("/api/orgs/{b}"),
            Some(json!({"name": "org B"})),
            [200, 404, 404, 404, 200],
        ),
        row(
            "DELETE",
            format!("/api/orgs/{a}"),
            None,
            [409, 403, 403, 403, 404],
        ),
        row(
            "DELETE",
            format!("/api/orgs/{b}"),
            None,
            [409, 404, 404, 404, 403],
        ),
        row(
            "DELETE",
            "/api/orgs/{new}".into(),
            None,
            [204, 404, 404, 404, 404],
        )
        .fresh(Fresh::Org),
        row(
            "PUT",
            format!("/api/orgs/{a}/members/{outsider}"),
            Some(json!({"role": null})),
            [204, 204, 403, 403, 404],
        ),
        // Projects.
        row(
            "GET",
            format!("/api/orgs/{a}/projects"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check({
            let (p1, p2) = (p1.clone(), p2.clone());
            move |i, v| match i {
                0 | 1 => set_check(&ids(v), &[&p1, &p2], false),
                _ => set_check(&ids(v), &[&p1], true),
            }
        }),
        row(
            "GET",
            format!("/api/orgs/{b}/projects"),
            None,
            [200, 404, 404, 404, 200],
        )
        .check({
            let q1 = q1.clone();
            move |_, v| set_check(&ids(v), &[&q1], false)
        }),
        row(
            "POST",
            format!("/api/orgs/{a}/projects"),
            Some(json!({"name": "new"})),
            [201, 201, 403, 403, 404],
        ),
        row(
            "POST",
            format!("/api/orgs/{b}/projects"),
            Some(json!({"name": "new"})),
            [201, 404, 404, 404, 201],
        ),
        row(
            "PUT",
            pa1.clone(),
            Some(json!({"name": "p1"})),
            [200, 200, 200, 403, 404],
        ),
        row(
            "PUT",
            pa2.clone(),
            Some(json!({"name": "p2"})),
            [200, 200, 404, 404, 404],
        ),
        // Not empty: who may delete it learns that (409).
        row("DELETE", pa1.clone(), None, [409, 409, 403, 403, 404]),
        row("DELETE", pa2.clone(), None, [409, 409, 404, 404, 404]),
        row(
            "DELETE",
            format!("/api/orgs/{a}/projects/{{new}}"),
            None,
            [204, 204, 404, 404, 404],
        )
        .fresh(Fresh::Project(a.clone())),
        row(
            "PUT",
            format!("{pa1}/members/{viewer}"),
            Some(json!({"role": "viewer"})),
            [204, 204, 204, 403, 404],
        ),
        row(
            "PUT",
            format!("{pa2}/members/{viewer}"),
            Some(json!({"role": null})),
            [204, 204, 404, 404, 404],
        ),
        // Clusters of A/p1.
        row(
            "GET",
            format!("{pa1}/clusters"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(list_in(
            &a,
            &p1,
            vec![c1.clone(), l1.clone()],
            vec![c2.clone()],
        )),
        row(
            "POST",
            format!("{pa1}/clusters"),
            Some(json!({"name": "new"})),
            [201, 201, 201, 403, 404],
        )
        .check(in_project(&p1)),
        row(
            "GET",
            format!("{pa1}/clusters/{c1}"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(is_cluster(&c1, &p1)),
        row(
            "PUT",
            format!("{pa1}/clusters/{c1}"),
            Some(json!({"description": "x"})),
            [200, 200, 200, 403, 404],
        )
        .check(is_cluster(&c1, &p1)),
        row(
            "DELETE",
            format!("{pa1}/clusters/{{new}}"),
            None,
            [202, 202, 202, 403, 404],
        )
        .fresh(Fresh::Cluster(pa1.clone())),
        row(
            "POST",
            format!("{pa1}/clusters/{c1}/registration-tokens"),
            Some(json!({})),
            [201, 201, 201, 403, 404],
        ),
        row(
            "DELETE",
            format!("{pa1}/clusters/{c1}/registration-tokens"),
            None,
            [200, 200, 200, 403, 404],
        ),
        row(
            "GET",
            format!("{pa1}/clusters/{c1}/setup-instructions"),
            None,
            [200, 200, 200, 200, 404],
        ),
        row(
            "GET",
            format!("{pa1}/clusters/{l1}/agents"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(|_, v| match v.as_array().map(Vec::as_slice) {
            Some([agent]) if agent["nodeName"] == "emqx@l1" => Ok(()),
            _ => Err(format!("expected l1's one agent: {v}")),
        }),
        row(
            "DELETE",
            format!("{pa1}/clusters/{c1}/agents/nope"),
            None,
            [404, 404, 404, 403, 404],
        ),
        row(
            "GET",
            format!("{pa1}/clusters/{c1}/events"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(history),
        row(
            "GET",
            format!("{pa1}/clusters/{l1}/logs"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(cluster_logs("log line of l1")),
        row(
            "GET",
            format!("{pa1}/logs"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(project_logs("log line of l1", vec![c1.clone(), l1.clone()])),
        row(
            "GET",
            format!("{pa1}/clusters/{c1}/metrics?names=connections"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(|_, v| match v["series"][0]["name"].as_str() {
            Some("connections") => Ok(()),
            _ => Err(format!("expected the connections series: {v}")),
        }),
        row(
            "GET",
            format!("{pa1}/clusters/{c1}/alarms"),
            None,
            [200, 200, 200, 200, 404],
        ),
        row(
            "GET",
            format!("{pa1}/overview"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(|_, v| match v["clusters"]["total"].as_u64() {
            Some(n) if n >= 2 => Ok(()),
            _ => Err(format!("expected project A/p1's clusters counted: {v}")),
        }),
        // Enter Dashboard: a capability for whoever may read the cluster
        // (viewers too: the dashboard site keeps them read-only).
        row(
            "POST",
            format!("{pa1}/clusters/{c1}/dashboard-sessions"),
            Some(json!({})),
            [201, 201, 201, 201, 404],
        )
        .check(|_, v| match v["url"].as_str() {
            Some(u) if u.contains("/d/ecpd_") => Ok(()),
            _ => Err(format!("no capability URL: {v}")),
        }),
        // Transfer: into a project the caller may write to.
        row(
            "POST",
            format!("{pa1}/clusters/{{new}}/transfer"),
            Some(json!({ "projectId": p2 })),
            [200, 200, 404, 403, 404],
        )
        .fresh(Fresh::Cluster(pa1.clone()))
        .check(in_project(&p2)),
        row(
            "POST",
            format!("{pa1}/clusters/{{new}}/transfer"),
            Some(json!({ "projectId": q1 })),
            [200, 404, 404, 403, 404],
        )
        .fresh(Fresh::Cluster(pa1.clone()))
        .check(in_project(&q1)),
        // Alerting in A/p1: viewers read, project admins write.
        row(
            "GET",
            format!("{pa1}/alert-rules"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(has_not(r1.clone(), vec![r2.clone(), rb.clone()])),
        row(
            "POST",
            format!("{pa1}/alert-rules"),
            Some(json!({"name": "new", "kind": "agent_offline"})),
            [201, 201, 201, 403, 404],
        ),
        row(
            "PUT",
            format!("{pa1}/alert-rules/{r1}"),
            Some(rule_body("a1", &ch1)),
            [200, 200, 200, 403, 404],
        ),
        row(
            "DELETE",
            format!("{pa1}/alert-rules/{{new}}"),
            None,
            [204, 204, 204, 403, 404],
        )
        .fresh(Fresh::Rule(pa1.clone())),
        row(
            "GET",
            format!("{pa1}/notification-channels"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(has_not(ch1.clone(), vec![ch2.clone(), chb.clone()])),
        row(
            "POST",
            format!("{pa1}/notification-channels"),
            Some(channel_body("new")),
            [201, 201, 201, 403, 404],
        ),
        row(
            "PUT",
            format!("{pa1}/notification-channels/{ch1}"),
            Some(channel_body("a1")),
            [200, 200, 200, 403, 404],
        ),
        row(
            "DELETE",
            format!("{pa1}/notification-channels/{{new}}"),
            None,
            [204, 204, 204, 403, 404],
        )
        .fresh(Fresh::Channel(pa1.clone())),
        row(
            "POST",
            format!("{pa1}/notification-channels/{ch1}/test"),
            Some(json!({})),
            [202, 202, 202, 403, 404],
        ),
        row(
            "GET",
            format!("{pa1}/notification-channels/{ch1}/deliveries"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(|_, v| match v["data"].as_array() {
            Some(d) if d.iter().all(|x| x["kind"] == "test") => Ok(()),
            _ => Err(format!("not ch1's test deliveries: {v}")),
        }),
        row(
            "GET",
            format!("{pa1}/alerts?state=firing"),
            None,
            [200, 200, 200, 200, 404],
        )
        .check(|_, v| match v["data"].as_array() {
            Some(d) if d.is_empty() => Ok(()),
            _ => Err(format!("no alert fired in this test: {v}")),
        }),
        // Another project's rule or channel under this project: 404 (a
        // viewer's write is refused first: 403).
        row(
            "PUT",
            format!("{pa1}/alert-rules/{r2}"),
            Some(rule_body("a2", "")),
            [404, 404, 404, 403, 404],
        ),
        row(
            "DELETE",
            format!("{pa1}/notification-channels/{ch2}"),
            None,
            [404, 404, 404, 403, 404],
        ),
        row(
            "GET",
            format!("{pa1}/notification-channels/{ch2}/deliveries"),
            None,
            [404; 5],
        ),
        row(
            "POST",
            format!("{pa1}/notification-channels/{ch2}/test"),
            Some(json!({})),
            [404, 404, 404, 403, 404],
        ),
        // Clusters of A/p2: only those who see p2.
        row(
            "GET",
            format!("{pa2}/clusters"),
            None,
            [200, 200, 404, 404, 404],
        )
        .check(list_in(
            &a,
            &p2,
            vec![c2.clone(), l2.clone()],
            vec![c1.clone()],
        )),
        row(
            "POST",
            format!("{pa2}/clusters"),
            Some(json!({"name": "new"})),
            [201, 201, 404, 404, 404],
        )
        .check(in_project(&p2)),
        row(
            "GET",
            format!("{pa2}/clusters/{c2}"),
            None,
            [200, 200, 404, 404, 404],
        )
        .check(is_cluster(&c2, &p2)),
        row(
            "PUT",
            format!("{pa2}/clusters/{c2}"),
            Some(json!({"description": "y"})),
            [200, 200, 404, 404, 404],
        ),
        row(
            "DELETE",
            format!("{pa2}/clusters/{{new}}"),
            None,
            [202, 202, 404, 404, 404],
        )
        .fresh(Fresh::Cluster(pa2.clone())),
        row(
            "POST",
            format!("{pa2}/clusters/{c2}/registration-tokens"),
            Some(json!({})),
            [201, 201, 404, 404, 404],
        ),
        row(
            "DELETE",
            format!("{pa2}/clusters/{c2}/registration-tokens"),
            None,
            [200, 200, 404, 404, 404],
        ),
        row(
            "GET",
            format!("{pa2}/clusters/{c2}/setup-instructions"),
            None,
            [200, 200, 404, 404, 404],
        ),
        row(
            "GET",
            format!("{pa2}/clusters/{c2}/agents"),
            None,
            [200, 200, 404, 404, 404],
        ),
        row(
            "DELETE",
            format!("{pa2}/clusters/{c2}/agents/nope"),
            None,
            [404, 404, 404, 404, 404],
        ),
        row(
            "GET",
            format!("{pa2}/clusters/{c2}/events"),
            None,
            [200, 200, 404, 404, 404],
        )
        .check(history),
        row(
            "GET",
            format!("{pa2}/clusters/{l2}/logs"),
            None,
            [200, 200, 404, 404, 404],
        )
        .check(cluster_logs("log line of l2")),
        row(
            "GET",
            format!("{pa2}/logs"),
            None,
            [200, 200, 404, 404, 404],
        )
        .check(project_logs("log line of l2", vec![c2.clone(), l2.clone()])),
        row(
            "GET",
            format!("{pa2}/clusters/{c2}/metrics"),
            None,
            [200, 200, 404, 404, 404],
        ),
        row(
            "GET",
            format!("{pa2}/clusters/{c2}/alarms?activated=false"),
            None,
            [200, 200, 404, 404, 404],
        ),
        row(
            "GET",
            format!("{pa2}/overview"),
            None,
            [200, 200, 404, 404, 404],
        ),
        row(
            "POST",
            format!("{pa2}/clusters/{c2}/dashboard-sessions"),
            Some(json!({})),
            [201, 201, 404, 404, 404],
        ),
        row(
            "POST",
            format!("{pa2}/clusters/{{new}}/transfer"),
            Some(json!({ "projectId": p1 })),
            [200, 200, 404, 404, 404],
        )
        .fresh(Fresh::Cluster(pa2.clone()))
        .check(in_project(&p1)),
        // Alerting in A/p2 and B/q1: only those who see the project.
        row(
            "GET",
            format!("{pa2}/alert-rules"),
            None,
            [200, 200, 404, 404, 404],
        )
        .check(has_not(r2.clone(), vec![r1.clone(), rb.clone()])),
        row(
            "PUT",
            format!("{pa2}/alert-rules/{r2}"),
            Some(rule_body("a2", &ch2)),
            [200, 200, 404, 404, 404],
        ),
        row(
            "GET",
            format!("{pa2}/notification-channels"),
            None,
            [200, 200, 404, 404, 404],
        )
        .check(has_not(ch2.clone(), vec![ch1.clone(), chb.clone()])),
        row(
            "PUT",
            format!("{pa2}/notification-channels/{ch2}"),
            Some(channel_body("a2")),
            [200, 200, 404, 404, 404],
        ),
        row(
            "GET",
            format!("{pa2}/alerts"),
            None,
            [200, 200, 404, 404, 404],
        ),
        row(
            "GET",
            format!("{pb1}/alert-rules"),
            None,
            [200, 404, 404, 404, 200],
        )
        .check(has_not(rb.clone(), vec![r1.clone(), r2.clone()])),
        row(
            "POST",
            format!("{pb1}/alert-rules"),
            Some(json!({"name": "new", "kind": "no_metrics"})),
            [201, 404, 404, 404, 201],
        ),
        row(
            "DELETE",
            format!("{pb1}/notification-channels/{{new}}"),
            None,
            [204, 404, 404, 404, 204],
        )
        .fresh(Fresh::Channel(pb1.clone())),
        row(
            "GET",
            format!("{pb1}/notification-channels/{chb}/deliveries"),
            None,
            [200, 404, 404, 404, 200],
        ),
        row(
            "GET",
            format!("{pb1}/alerts"),
            None,
            [200, 404, 404, 404, 200],
        ),
        // A cluster asked for under a project it is not in: 404 for all.
        row("GET", format!("{pa1}/clusters/{c2}"), None, [404; 5]),
        row("GET", format!("{pa1}/clusters/{l2}/logs"), None, [404; 5]),
        row(
            "GET",
            format!("{pa1}/clusters/{c2}/metrics"),
            None,
            [404; 5],
        ),
        row("GET", format!("{pa1}/clusters/{c2}/alarms"), None, [404; 5]),
        row(
            "POST",
            format!("{pa1}/clusters/{c2}/dashboard-sessions"),
            Some(json!({})),
            [404; 5],
        ),
        // Org B's project: its admin and the system admin only.
        row(
            "GET",
            format!("{pb1}/clusters"),
            None,
            [200, 404, 404, 404, 200],
        )
        .check(list_in(
            &b,
            &q1,
            vec![cb.clone()],
            vec![c1.clone(), c2.clone()],
        )),
        row(
            "GET",
            format!("{pb1}/clusters/{cb}"),
            None,
            [200, 404, 404, 404, 200],
        )
        .check(is_cluster(&cb, &q1)),
        row(
            "GET",
            format!("{pb1}/logs"),
            None,
            [200, 404, 404, 404, 200],
        )
        .check(|_, v| match v["data"].as_array() {
            Some(d) if d.is_empty() => Ok(()),
            _ => Err(format!("org B has no log lines: {v}")),
        }),
        // The dashboard proxy: allowed callers reach the tunnel, which has no
        // agent here (503); a viewer may not POST; others see nothing.
        row(
            "GET",
            format!("/api/emqxee/dashboard/{c1}/"),
            None,
            [503, 503, 503, 503, 404],
        ),
        row(
            "POST",
            format!("/api/emqxee/dashboard/{c1}/api/v4/mqtt/publish"),
            Some(json!({})),
            [503, 503, 503, 403, 404],
        ),
        row(
            "GET",
            format!("/api/emqxee/dashboard/{c2}/"),
            None,
            [503, 503, 404, 404, 404],
        ),
        row(
            "GET",
            format!("/api/emqxee/dashboard/{cb}/"),
            None,
            [503, 404, 404, 404, 503],
        ),
        // Users and the audit log.
        row(
            "GET",
            "/api/audit/operations".into(),
            None,
            [200, 403, 403, 403, 403],
        ),
        row("GET", "/api/users".into(), None, [200, 403, 403, 403, 403]).check({
            let user_ids = user_ids.clone();
            move |_, v| {
                let must: Vec<&str> = user_ids.iter().map(String::as_str).collect();
                set_check(&ids(v), &must, false)
            }
        }),
        row(
            "POST",
            "/api/users".into(),
            Some(json!({"username": "u-new", "password": "Passw0rd-y"})),
            [201, 403, 403, 403, 403],
        ),
        row("GET", "/api/users/{me}".into(), None, [200; 5]).check({
            let user_ids = user_ids.clone();
            move |i, v| {
                if v["id"] == user_ids[i].as_str() {
                    Ok(())
                } else {
                    Err(format!("not the caller: {v}"))
                }
            }
        }),
        row(
            "GET",
            format!("/api/users/{viewer}"),
            None,
            [200, 404, 404, 200, 404],
        ),
        row(
            "DELETE",
            "/api/users/nope".into(),
            None,
            [404, 403, 403, 403, 403],
        ),
        row(
            "DELETE",
            "/api/users/{new}".into(),
            None,
            [204, 403, 403, 403, 403],
        )
        .fresh(Fresh::User),
    ];

    // Every route the server documents has a row, or is exempt with a reason.
    let mut failures = Vec::new();
    let (s, doc) = sys.get("/api/openapi.json").await;
    assert_eq!(s, 200, "{doc}");
    let mut routes = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                routes.push((method.clone(), template.clone()));
            }
        }
    }
    for (method, template) in &routes {
        let exempt = NOT_TENANCY_ROUTES
            .iter()
            .any(|(m, t, _)| m == method && t == template);
        let rows = table
            .iter()
            .filter(|r| {
                r.method.eq_ignore_ascii_case(method) && template_matches(template, &r.path)
            })
            .count();
        match (exempt, rows) {
            (false, 0) => failures.push(format!(
                "{} {template}: no row in the role matrix (add one, or exempt it with a reason)",
                method.to_uppercase()
            )),
            (true, n) if n > 0 => failures.push(format!(
                "{} {template}: exempt, yet has {n} row(s)",
                method.to_uppercase()
            )),
            _ => {}
        }
    }
    for (m, t, _) in NOT_TENANCY_ROUTES {
        if !routes.iter().any(|(rm, rt)| rm == m && rt == t) {
            failures.push(format!(
                "exempt {m} {t} is no route of the OpenAPI document"
            ));
        }
    }
    for r in &table {
        if !routes.iter().any(|(_, t)| template_matches(t, &r.path)) {
            failures.push(format!(
                "row {} {} matches no documented route",
                r.method, r.path
            ));
        }
    }

    let http = reqwest::Client::new();
    let mut streams: Vec<Option<Events>> = (0..roles.len()).map(|_| None).collect();
    let mut n = 0;
    for r in &table {
        for (i, (role, user, password, token, me)) in roles.iter().enumerate() {
            n += 1;
            let mut token = token.clone();
            let new = match &r.fresh {
                Fresh::No => String::new(),
                Fresh::Cluster(project) => {
                    let (s, v) = sys
                        .post(
                            &format!("{project}/clusters"),
                            json!({ "name": format!("fresh {n}") }),
                        )
                        .await;
                    assert_eq!(s, 201, "{v}");
                    v["id"].as_str().expect("id").to_string()
                }
                Fresh::Project(org) => {
                    let (s, v) = sys
                        .post(
                            &format!("/api/orgs/{org}/projects"),
                            json!({ "name": format!("fresh {n}") }),
                        )
                        .await;
                    assert_eq!(s, 201, "{v}");
                    v["id"].as_str().expect("id").to_string()
                }
                Fresh::Org => {
                    let (s, v) = sys
                        .post("/api/orgs", json!({ "name": format!("fresh {n}") }))
                        .await;
                    assert_eq!(s, 201, "{v}");
                    v["id"].as_str().expect("id").to_string()
                }
                Fresh::User => make_user(&sys, &format!("fresh{n}")).await,
                Fresh::Rule(project) => {
                    let (s, v) = sys
                        .post(
                            &format!("{project}/alert-rules"),
                            json!({ "name": format!("fresh {n}"), "kind": "agent_offline" }),
                        )
                        .await;
                    assert_eq!(s, 201, "{v}");
                    v["id"].as_str().expect("id").to_string()
                }
                Fresh::Channel(project) => {
                    let (s, v) = sys
                        .post(
                            &format!("{project}/notification-channels"),
                            channel_body(&format!("fresh {n}")),
                        )
                        .await;
                    assert_eq!(s, 201, "{v}");
                    v["id"].as_str().expect("id").to_string()
                }
                Fresh::Login => {
                    token = Api::login(&server.base, user, password).await.token;
                    String::new()
                }
            };
            let path = r.path.replace("{new}", &new).replace("{me}", me);
            let mut req = http
                .request(
                    r.method.parse().expect("method"),
                    format!("{}{path}", server.base),
                )
                .bearer_auth(&token);
            if let Some(body) = &r.body {
                // Names must stay unique per call; renames keep the name.
                let mut body = body.clone();
                if r.method == "POST" {
                    if let Some(name) = body.get("name").and_then(Value::as_str) {
                        body["name"] = json!(format!("{name} {n}"));
                    }
                    if let Some(name) = body.get("username").and_then(Value::as_str) {
                        body["username"] = json!(format!("{name}{n}"));
                    }
                }
                req = req.json(&body);
            }
            let res = req.send().await.expect("send");
            let got = res.status().as_u16();
            let want = r.expect[i];
            if got != want {
                failures.push(format!(
                    "{role}: {} {path} → {got}, expected {want}",
                    r.method
                ));
                continue;
            }
            if r.method == "GET" && path == "/api/events" {
                // Kept open: what it carries is checked below.
                streams[i] = Some(Events::from_response(res));
                continue;
            }
            let text = res.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if let Some(check) = r.check.as_ref().filter(|_| (200..300).contains(&got)) {
                if let Err(e) = check(i, &body) {
                    failures.push(format!("{role}: {} {path}: {e}", r.method));
                }
            }
        }
    }

    // Each role's stream carried only changes of projects it sees, over
    // every change the table made and these four, one after another:
    // 1 (A/p2), 2 (B/q1), 3 (A/p1), 4 (B/q1). A role's stream is read up
    // to the last of them it may see; the others came before that one, so
    // a leak would have shown by then.
    let marks = [(&pa2, &c2), (&pb1, &cb), (&pa1, &c1), (&pb1, &cb)];
    for (k, (project, id)) in marks.iter().enumerate() {
        let (s, v) = sys
            .call(
                reqwest::Method::PUT,
                &format!("{project}/clusters/{id}"),
                Some(json!({ "description": format!("mark {}", k + 1) })),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let sees = |i: usize, org: &str, project: &str| match i {
        0 => true,
        1 => org == a,
        2 | 3 => org == a && project == p1,
        _ => org == b,
    };
    let expected_marks: [&[u64]; 5] = [&[1, 2, 3, 4], &[1, 3], &[3], &[3], &[2, 4]];
    for (i, stream) in streams.iter_mut().enumerate() {
        let role = roles[i].0;
        let Some(stream) = stream else { continue };
        let last = *expected_marks[i].last().expect("marks");
        let mut seen = Vec::new();
        let mut carried = 0;
        while !seen.contains(&last) {
            let (v, _) = stream.wait_any(Duration::from_secs(30)).await;
            carried += 1;
            let (org, project) = (
                v["orgId"].as_str().unwrap_or_default(),
                v["projectId"].as_str().unwrap_or_default(),
            );
            if !sees(i, org, project) {
                let id = v["id"]
                    .as_str()
                    .or(v["clusterId"].as_str())
                    .unwrap_or_default();
                failures.push(format!(
                    "{role}: the event stream carried a change of cluster {id} of {org}/{project}"
                ));
            }
            if let Some(k) = v["description"]
                .as_str()
                .and_then(|d| d.strip_prefix("mark "))
                .and_then(|k| k.parse::<u64>().ok())
            {
                seen.push(k);
            }
        }
        if seen != expected_marks[i] {
            failures.push(format!(
                "{role}: the event stream carried marks {seen:?}, expected {:?}",
                expected_marks[i]
            ));
        }
        if carried <= seen.len() {
            failures.push(format!(
                "{role}: the event stream carried none of the table's changes"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A removed membership takes effect on the very next request.
    let viewer_api = Api {
        http: http.clone(),
        base: server.base.clone(),
        token: roles[3].3.clone(),
    };
    assert_eq!(viewer_api.get(&format!("{pa1}/clusters/{c1}")).await.0, 200);
    member(&sys, &format!("{pa1}/members/{viewer}"), Value::Null).await;
    assert_eq!(viewer_api.get(&format!("{pa1}/clusters/{c1}")).await.0, 404);
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
