//! The console in real headless Chromium, as an operator uses it: log in,
//! add a cluster, follow the registration guide, run the copied command,
//! watch the card change live, read the reason, switch to Chinese, delete.

use crate::harness::*;
use crate::procs::*;
use crate::webdriver::Browser;
use serde_json::json;

const XSS: &str = "<img src=x onerror=alert(1)>";

async fn login(b: &Browser, base: &str) {
    b.goto(base).await;
    // Record any alert() instead of letting it block: none may ever fire.
    b.js(
        "window.__alerts = []; window.alert = (m) => window.__alerts.push(String(m)); return true",
        json!([]),
    )
    .await;
    b.type_into("#username", "admin").await;
    b.type_into("#password", ADMIN_PASSWORD).await;
    b.click("#login-submit").await;
    b.find("#add-cluster").await;
    // The session secret is an HttpOnly cookie: nothing on the page can read it.
    let exposed = b
        .js(
            "return document.cookie.includes('ecp') || JSON.stringify(Object.assign({}, localStorage, sessionStorage)).includes('ecps_')",
            json!([]),
        )
        .await;
    assert_eq!(exposed, json!(false), "the page can see the session secret");
}

fn card(name: &str) -> String {
    format!("[data-cluster-name=\"{name}\"]")
}

/// Clicks Enter Dashboard on the card, and in the window it opens (on the
/// dashboard site `site`, never the console's origin) uses the v4 page as
/// an operator does: EMQX's own login (any credentials: the agent answers
/// it with its own), the nodes and a `%2F` route through its API, an asset,
/// a hash route, and a reload that keeps the login (localStorage).
async fn open_v4_dashboard(b: &Browser, card_css: &str, site: &str) {
    let before = b.windows().await;
    b.click(&format!("{card_css} [data-action=dashboard]"))
        .await;
    b.switch_to_new_window(&before).await;
    b.wait_for(
        "the dashboard window on the dashboard site",
        "return location.origin === arguments[0] && location.pathname.startsWith('/d/ecpd_') && document.querySelector('#login')",
        json!([site]),
    )
    .await;
    assert_eq!(
        b.js("return window.opener === null", json!([])).await,
        json!(true),
        "no handle on the console"
    );
    b.wait_for(
        "EMQX's login form",
        "return !document.querySelector('#login').hidden",
        json!([]),
    )
    .await;
    b.type_into("#username", "operator").await;
    b.type_into("#password", "not-the-emqx-password").await;
    b.click("#login-button").await;
    let check = "return document.querySelector('#app')?.textContent === 'nodes: 1' && document.querySelector('#route')?.textContent === 'route: t/1' && getComputedStyle(document.querySelector('#app')).color === 'rgb(1, 2, 3)'";
    b.wait_for(
        "EMQX's page with its asset and API answers",
        check,
        json!([]),
    )
    .await;
    b.js("location.hash = '#/topics'; return true", json!([]))
        .await;
    b.wait_for(
        "a hash route",
        "return document.querySelector('#view')?.textContent === 'view: #/topics'",
        json!([]),
    )
    .await;
    b.js("location.reload(); return true", json!([])).await;
    b.wait_for(
        "still logged in after a reload (localStorage)",
        check,
        json!([]),
    )
    .await;
    let stored = b.js("return localStorage.getItem('user')", json!([])).await;
    assert!(
        stored.as_str().is_some_and(|u| u.contains("operator")),
        "{stored}"
    );
}

async fn status_of(b: &Browser, name: &str, status: &str) {
    b.wait_for(
        &format!("{name} shows {status}"),
        "return document.querySelector(arguments[0] + ' [data-status=\"' + arguments[1] + '\"]') ? true : false",
        json!([card(name), status]),
    )
    .await;
}

#[tokio::test]
async fn an_operator_adopts_a_cluster_through_the_console() {
    let server = Server::start_with(&[("ECP_AGENT_REPORT_INTERVAL_SECS", "1")]).await;
    let sim = Sim::start("5.6.0", 3, "web").await;
    let b = Browser::start().await;
    login(&b, &server.base).await;
    b.screenshot("01-empty-list").await;

    // A bad name is explained before anything is sent.
    b.click("#add-cluster").await;
    b.type_into("#c-name", " leading space").await;
    b.click("[data-action=create]").await;
    let err = b.text_shown("#create-error").await;
    assert!(err.contains("space"), "{err}");
    b.clear("#c-name").await;
    let name = "web console 一号";
    b.type_into("#c-name", name).await;
    b.click("[data-action=create]").await;
    status_of(&b, name, "created").await;

    // The registration guide: arm64, Kubernetes, back to binary.
    b.click(&format!("{} [data-action=register]", card(name)))
        .await;
    b.find("#guide-steps li").await;
    b.click("#guide-dialog [data-choice=arm64]").await;
    b.wait_for("arm64 download", "return document.querySelector('#guide-steps code[data-step=\"0\"]')?.textContent.includes('emqxee-agent-linux-arm64')", json!([])).await;
    b.click("#guide-dialog [data-choice=kubernetes]").await;
    b.wait_for("manifest", "return document.querySelector('#guide-steps code')?.textContent.includes('kind: Deployment')", json!([])).await;
    b.click("#guide-dialog [data-choice=binary]").await;
    b.wait_for(
        "binary steps",
        "return document.querySelectorAll('#guide-steps li').length === 4",
        json!([]),
    )
    .await;
    // Node config: the simulator is this "VM"'s EMQX.
    b.clear("#g-user").await;
    b.type_into("#g-user", "admin").await;
    b.type_into("#g-pass", "public").await;
    b.clear("#g-dash").await;
    b.type_into("#g-dash", &sim.url).await;
    b.clear("#g-api").await;
    b.type_into("#g-api", &sim.url).await;
    let expected = format!(
        "--emqx-dashboard-password public --emqx-dashboard-url {} --emqx-api-url {}",
        sim.url, sim.url
    );
    b.wait_for("filled register command", "return document.querySelector('#guide-steps code[data-step=\"3\"]')?.textContent.includes(arguments[0])", json!([expected])).await;
    b.screenshot("02-registration-guide").await;
    b.click("#guide-steps [data-action=copy][data-step=\"3\"]")
        .await;
    let copied = b
        .wait_for("copied", "return window.__ecpLastCopied", json!([]))
        .await;
    let copied = copied.as_str().expect("copied text").to_string();
    assert!(
        copied.starts_with("sudo /usr/local/bin/emqxee-agent register --url "),
        "{copied}"
    );
    assert!(copied.contains("--registration-token ecpr_"), "{copied}");

    // On the "VM": start the agent, then run the command exactly as copied.
    let agent = Agent::new();
    assert!(agent.cmd(&["start"]).await.status.success());
    let exe = sibling("emqxee-agent");
    let local = copied.replacen(
        "sudo /usr/local/bin/emqxee-agent ",
        &format!(
            "'{}' --home '{}' ",
            exe.display(),
            agent.home.path().display()
        ),
        1,
    );
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&local)
        .output()
        .await
        .expect("sh");
    assert!(
        out.status.success(),
        "the copied command failed: {:?}",
        text(&out)
    );
    b.click("#guide-dialog [data-action=close]").await;

    // The card turns Running by itself.
    status_of(&b, name, "running").await;
    let card_text = b.text(&card(name)).await;
    assert!(
        card_text.contains("5.6.0 Enterprise") && card_text.contains("3/3"),
        "{card_text}"
    );
    b.screenshot("03-card-running").await;
    b.click("[data-view=list]").await;
    status_of(&b, name, "running").await;
    b.screenshot("04-list-running").await;
    b.click("[data-view=cards]").await;

    // A node stops: Abnormal, and the reason names it.
    sim.stop_node(2).await;
    status_of(&b, name, "abnormal").await;
    b.click(&format!("{} [data-status=abnormal]", card(name)))
        .await;
    let reason = b.text("#reason-message").await;
    assert!(reason.contains(&sim.node(2)), "{reason}");
    b.screenshot("05-abnormal-reason").await;
    b.click("#reason-dialog [data-action=close]").await;

    // 中文.
    b.click("#lang option[value=zh]").await;
    b.wait_for("Chinese badge", "return document.querySelector(arguments[0] + ' [data-status=abnormal]')?.textContent === '异常'", json!([card(name)])).await;
    assert_eq!(b.text("#add-cluster").await, "纳管集群");
    b.screenshot("06-chinese").await;

    // Delete by typing the name.
    b.click(&format!("{} [data-action=delete]", card(name)))
        .await;
    let disabled = b
        .js(
            "return document.querySelector('[data-action=confirm-delete]').disabled",
            json!([]),
        )
        .await;
    assert_eq!(
        disabled,
        json!(true),
        "cannot delete before typing the name"
    );
    b.type_into("#d-name", name).await;
    b.click("[data-action=confirm-delete]").await;
    b.wait_for(
        "card gone",
        "return !document.querySelector(arguments[0])",
        json!([card(name)]),
    )
    .await;
    assert_eq!(
        b.js("return window.__alerts.length", json!([])).await,
        json!(0)
    );
    // The language choice is remembered across a reload.
    b.goto(&server.base).await;
    b.wait_for(
        "still Chinese",
        "return document.querySelector('#add-cluster')?.textContent === '纳管集群'",
        json!([]),
    )
    .await;
}

#[tokio::test]
async fn text_from_outside_is_shown_as_text_and_never_runs() {
    let server = Server::start_with(&[("ECP_AGENT_REPORT_INTERVAL_SECS", "1")]).await;
    let api = server.api().await;
    // EMQX node names and the version string come from the (simulated) cluster.
    let sim = Sim::start(&format!("5.6.0-{XSS}"), 2, XSS).await;
    let (s, c) = api
        .post(&format!("{P}/clusters"), json!({"name": "xss", "description": XSS, "serviceAddress": "http://x/\"><img/src=x/onerror=alert(1)>"}))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_string();
    let token = api.issue_token(&id).await;
    let agent = Agent::new();
    let out = agent
        .register(&server.base, &token, &sim.url, "public")
        .await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(agent.cmd(&["start"]).await.status.success());

    let b = Browser::start().await;
    login(&b, &server.base).await;
    status_of(&b, "xss", "running").await;
    let card_text = b.text(&card("xss")).await;
    assert!(
        card_text.contains(XSS),
        "description shown as text: {card_text}"
    );
    assert!(
        card_text.contains(&format!("5.6.0-{XSS}")),
        "version shown as text: {card_text}"
    );
    b.click(&format!("{} [data-action=nodes]", card("xss")))
        .await;
    let nodes = b.text("#nodes-dialog").await;
    assert!(
        nodes.contains(&format!("emqx@node1.{XSS}")),
        "node name shown as text: {nodes}"
    );
    b.screenshot("07-untrusted-text").await;
    b.click("#nodes-dialog [data-action=close]").await;
    b.click("[data-view=list]").await;
    b.find(&format!("tr{}", card("xss"))).await;
    let imgs = b
        .js("return document.querySelectorAll('img').length", json!([]))
        .await;
    assert_eq!(imgs, json!(0), "no markup from outside became an element");
    assert_eq!(
        b.js("return window.__alerts.length", json!([])).await,
        json!(0),
        "nothing ran"
    );
}

#[tokio::test]
async fn the_page_follows_changes_live_and_reconnects_after_a_server_restart() {
    let mut server = Server::start().await;
    let b = Browser::start().await;
    login(&b, &server.base).await;
    b.wait_for(
        "live stream up",
        "return document.body.dataset.live === 'up'",
        json!([]),
    )
    .await;
    // A change made elsewhere (another console, the API) appears without reload.
    let api = server.api().await;
    api.create_cluster("made elsewhere").await;
    b.find(&card("made elsewhere")).await;

    // The page reconnects to its own origin: restart the server on the same address.
    let addr = server.base.trim_start_matches("http://").to_string();
    server.stop().await;
    b.wait_for(
        "live stream down",
        "return document.body.dataset.live === 'down'",
        json!([]),
    )
    .await;
    server.restart_on(&addr).await;
    b.wait_for(
        "live stream up again",
        "return document.body.dataset.live === 'up'",
        json!([]),
    )
    .await;
    let api = server.api().await;
    api.create_cluster("after restart").await;
    b.find(&card("after restart")).await;
    b.find(&card("made elsewhere")).await;
}

/// Picks options by their visible text in the roles dialog and saves.
async fn set_role(b: &Browser, user: &str, org: &str, project: Option<&str>, role: &str) {
    b.click(&format!("tr[data-user={user}] button[data-action=roles]"))
        .await;
    let pick = "const s = document.querySelector(arguments[0]); if (!s) return false; const o = [...s.options].find(o => o.text === arguments[1]); if (!o) return false; s.value = o.value; s.dispatchEvent(new Event('change')); return true";
    b.wait_for("org option", pick, json!(["#r-org", org])).await;
    let project = project.unwrap_or("(whole organization)");
    b.wait_for("project option", pick, json!(["#r-project", project]))
        .await;
    b.js(
        "const s = document.querySelector('#r-role'); s.value = arguments[0]; return true",
        json!([role]),
    )
    .await;
    b.click("#roles-dialog button[data-action=save-role]").await;
    b.wait_for(
        "dialog closed",
        "return !document.querySelector('#roles-dialog')",
        json!([]),
    )
    .await;
}

#[tokio::test]
async fn a_system_admin_manages_orgs_and_users_and_reads_the_audit_log_in_the_console() {
    let server = Server::start().await;
    let b = Browser::start().await;
    login(&b, &server.base).await;
    b.click("#nav-system").await;
    b.find("#orgs-body").await;
    b.type_into("#org-name", "org <b>bold</b>").await;
    b.click("#org-create").await;
    let err = b.text_shown("#org-error").await;
    assert!(
        err.contains("only letters"),
        "a bad org name is explained: {err}"
    );
    b.clear("#org-name").await;
    b.type_into("#org-name", "edge fleet").await;
    b.click("#org-create").await;
    b.wait_for(
        "org listed",
        "return document.querySelector('#orgs-body')?.textContent.includes('edge fleet')",
        json!([]),
    )
    .await;
    b.type_into("#user-name", "operator1").await;
    b.type_into("#user-pass", "weak").await;
    b.click("#user-create").await;
    let err = b.text_shown("#user-error").await;
    assert!(
        err.contains("8 to 128"),
        "the password rule is shown: {err}"
    );
    b.clear("#user-pass").await;
    b.type_into("#user-pass", "Str0ng-pass").await;
    b.click("#user-create").await;
    b.wait_for(
        "user listed",
        "return document.querySelector('#users-body')?.textContent.includes('operator1')",
        json!([]),
    )
    .await;
    b.wait_for("audit rows", "return !!document.querySelector('#audit-body tr[data-action=\"user.create\"]') && !!document.querySelector('#audit-body tr[data-action=\"org.create\"]')", json!([])).await;
    // A project in the new org, and roles for the new user there.
    b.click("tr[data-org='edge fleet'] button[data-action=projects]")
        .await;
    b.type_into("#project-name", "p1").await;
    b.click("#project-create").await;
    b.find("#projects-body tr[data-project=p1]").await;
    set_role(&b, "operator1", "edge fleet", None, "viewer").await;
    set_role(&b, "operator1", "edge fleet", Some("p1"), "admin").await;
    b.wait_for(
        "roles shown",
        "return document.querySelector(\"tr[data-user=operator1] td.memberships\")?.textContent === 'edge fleet: Viewer; edge fleet/p1: Admin'",
        json!([]),
    )
    .await;
    // An org with a project is not deleted; the reason is shown.
    b.click("tr[data-org='edge fleet'] button[data-action=delete-org]")
        .await;
    b.click("#confirm-dialog button[data-action=confirm-delete]")
        .await;
    b.wait_for(
        "refusal shown",
        "return document.querySelector('#confirm-error')?.textContent.includes('project')",
        json!([]),
    )
    .await;
    b.click("#confirm-dialog button[data-action=close]").await;
    // Removing the org role and the project, then the org and the user.
    set_role(&b, "operator1", "edge fleet", Some("p1"), "none").await;
    b.wait_for(
        "role removed",
        "return document.querySelector(\"tr[data-user=operator1] td.memberships\")?.textContent === 'edge fleet: Viewer'",
        json!([]),
    )
    .await;
    b.click("#projects-body tr[data-project=p1] button[data-action=delete-project]")
        .await;
    b.click("#confirm-dialog button[data-action=confirm-delete]")
        .await;
    b.wait_for("project gone", "return !document.querySelector('#projects-body tr[data-project=p1]') && !document.querySelector('#confirm-dialog')", json!([])).await;
    b.click("tr[data-org='edge fleet'] button[data-action=delete-org]")
        .await;
    b.click("#confirm-dialog button[data-action=confirm-delete]")
        .await;
    b.wait_for("org gone", "return !document.querySelector(\"tr[data-org='edge fleet']\") && !document.querySelector('#confirm-dialog')", json!([])).await;
    b.click("tr[data-user=operator1] button[data-action=delete-user]")
        .await;
    b.click("#confirm-dialog button[data-action=confirm-delete]")
        .await;
    b.wait_for(
        "user gone",
        "return !document.querySelector('tr[data-user=operator1]')",
        json!([]),
    )
    .await;
    // The admin cannot delete themself: no button on their own row.
    assert_eq!(
        b.js("return document.querySelectorAll('tr[data-user=admin] button[data-action=delete-user]').length", json!([])).await,
        json!(0)
    );
    let api = server.api().await;
    let (_, users) = api.get("/api/users").await;
    assert!(!users.to_string().contains("operator1"), "{users}");
    for action in [
        "project.delete",
        "org.delete",
        "user.delete",
        "membership.set",
        "membership.remove",
    ] {
        b.wait_for(
            action,
            "return !!document.querySelector(`#audit-body tr[data-action=\"${arguments[0]}\"]`)",
            json!([action]),
        )
        .await;
    }
    b.type_into("#audit-filter", "login\n").await;
    b.wait_for("filtered", "const rows = [...document.querySelectorAll('#audit-body tr')]; return rows.length > 0 && rows.every(r => r.dataset.action === 'login')", json!([])).await;
    b.screenshot("08-system-management").await;
    b.click("#lang option[value=zh]").await;
    b.wait_for(
        "Chinese",
        "return document.querySelector('#audit-h')?.textContent === '操作审计'",
        json!([]),
    )
    .await;
    b.click("#nav-access").await;
    b.find("#add-cluster").await;
}

/// Enter Dashboard for a v4 cluster whose agent's session is on node B,
/// while the browser talks to node A (Redis mode): EMQX's page, its asset
/// and its API calls (one with %2F) load through ECP. Then the cluster's
/// log page: newest first, a level filter, a text filter, live tail.
#[tokio::test]
async fn the_v4_dashboard_opens_through_ecp_from_another_node_and_logs_show_in_the_console() {
    let redis = crate::redis_server::RedisServer::start().await;
    let url = redis.url();
    let env = |node: &'static str| {
        vec![
            ("ECP_REDIS", url.clone()),
            ("ECP_NODE_ID", node.to_string()),
            ("ECP_AGENT_REPORT_INTERVAL_SECS", "1".to_string()),
        ]
    };
    let (ea, eb) = (env("node-a"), env("node-b"));
    let a = Server::start_with(&ea.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    let b_node =
        Server::start_with(&eb.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    let api = a.api().await;
    let sim = Sim::start("4.4.6", 1, "webdash").await;
    let logs = tempfile::tempdir().expect("tmp");
    let log_dir = logs.path().display().to_string();
    let (_id, _, _agent) = adopted(
        &api,
        &b_node.base,
        &sim,
        "v4 in the browser",
        &["--enable-log", "--log-dir", &log_dir],
    )
    .await;

    let b = Browser::start().await;
    login(&b, &a.base).await;
    let console = b.current_window().await;
    let v4 = card("v4 in the browser");
    open_v4_dashboard(&b, &v4, &a.dash).await;
    b.screenshot("09-v4-dashboard-through-ecp").await;
    b.close_window().await;
    b.switch_to(&console).await;
    // And from node B, which holds the agent's session itself (the console
    // session is valid on every node).
    b.goto(&b_node.base).await;
    open_v4_dashboard(&b, &v4, &b_node.dash).await;
    b.close_window().await;
    b.switch_to(&console).await;

    // Logs: 3,000 lines at 600/s; the page is open while they arrive.
    let r = reqwest::Client::new()
        .post(format!("{}/__sim/logs", sim.url))
        .json(&json!({"dir": logs.path(), "node": sim.node(1), "lines": 3000, "rate": 600,
            "rotationSize": 65536, "rotationCount": 8, "record": logs.path().join("../record.jsonl")}))
        .send()
        .await
        .expect("start job");
    assert_eq!(r.status(), 202);
    b.goto(&a.base).await;
    b.click(&format!("{} [data-action=logs]", card("v4 in the browser")))
        .await;
    b.find("#logs-body").await;
    b.click("#log-live").await;
    b.wait_for(
        "the last line arrives by live tail",
        "return [...document.querySelectorAll('#logs-body tr')].some(r => r.textContent.includes('alarm raised: disk usage high 3000'))",
        json!([]),
    )
    .await;
    b.screenshot("10-logs-live").await;
    // Newest first.
    let first = b
        .js(
            "return document.querySelector('#logs-body tr').textContent",
            json!([]),
        )
        .await;
    assert!(
        first.as_str().unwrap_or_default().contains("3000"),
        "{first}"
    );
    // Level ≥ alert, then a text filter.
    b.click("#log-live").await;
    b.click("#log-level option[value=alert]").await;
    b.click("#log-apply").await;
    b.wait_for(
        "only alert and emergency",
        "const rows = [...document.querySelectorAll('#logs-body tr')]; return rows.length === 100 && rows.every(r => ['alert', 'emergency'].includes(r.dataset.level))",
        json!([]),
    )
    .await;
    b.click("#log-more").await;
    b.wait_for(
        "an older page appended",
        "return document.querySelectorAll('#logs-body tr').length > 100",
        json!([]),
    )
    .await;
    b.click("#log-level option[value='']").await;
    b.type_into("#log-q", "ALARM").await;
    b.click("#log-apply").await;
    b.wait_for(
        "three alarms, newest first",
        "const rows = [...document.querySelectorAll('#logs-body tr')].map(r => r.textContent); return rows.length === 3 && rows[0].includes('3000') && rows[2].includes('1000')",
        json!([]),
    )
    .await;
    // The project's log page: the same lines, with the cluster named.
    b.click("#logs-back").await;
    b.click("#project-logs").await;
    b.find("#logs-body").await;
    b.type_into("#log-q", "alarm").await;
    b.click("#log-apply").await;
    b.wait_for(
        "three alarms of the project, with their cluster",
        "const rows = [...document.querySelectorAll('#logs-body tr')].map(r => r.textContent); return rows.length === 3 && rows.every(r => r.includes('v4 in the browser')) && rows[0].includes('3000')",
        json!([]),
    )
    .await;
}

/// A page a managed cluster serves through Enter Dashboard (here a plain
/// HTTP server behind a registered agent) tries every way into ECP. It
/// writes down what it got; the test reads that back, then checks from the
/// outside that nothing happened: no new user, no dashboard of the other
/// cluster reached, the console still the admin's own.
async fn a_hostile_dashboard_page_can_do_nothing(second_name: bool) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let name_origin = format!("http://localhost:{port}");
    let mut env = vec![("ECP_AGENT_REPORT_INTERVAL_SECS", "1")];
    if second_name {
        env.push(("ECP_SERVER_DASHBOARD_ORIGIN", &name_origin));
        env.push(("ECP_SERVER_DASHBOARD_LISTEN", ""));
    }
    let server = Server::start_on(&format!("127.0.0.1:{port}"), &env).await;
    let site = if second_name {
        name_origin.clone()
    } else {
        server.dash.clone()
    };
    let api = server.api().await;
    // The other cluster, whose dashboard the page must not reach.
    let victim_sim = Sim::start("4.4.6", 1, "victim").await;
    let (victim, _, _victim_agent) =
        adopted(&api, &server.base, &victim_sim, "victim v4", &[]).await;
    // The hostile cluster: EMQX's API is a simulator, its dashboard a page
    // of the attacker's.
    let page = hostile_page(&server.base, P, &victim);
    let hostile = crate::plain_http::PlainServer::start(move |req| {
        if req.path.ends_with("/sw.js") {
            crate::plain_http::Reply {
                status: 200,
                headers: vec![("content-type".into(), "text/javascript".into())],
                body: b"self.addEventListener('fetch', () => {});".to_vec(),
            }
        } else {
            crate::plain_http::Reply::html(page.clone())
        }
    })
    .await;
    let hostile_sim = Sim::start("4.4.6", 1, "hostile").await;
    let (_hid, _, _hostile_agent) = adopted_showing(
        &api,
        &server.base,
        &hostile_sim,
        "hostile",
        &[],
        &hostile.url,
    )
    .await;

    let b = Browser::start().await;
    login(&b, &server.base).await;
    let console = b.current_window().await;
    let before = b.windows().await;
    b.click(&format!("{} [data-action=dashboard]", card("hostile")))
        .await;
    b.switch_to_new_window(&before).await;
    b.wait_for(
        "the hostile page on the dashboard site",
        "return location.origin === arguments[0] && document.title === 'hostile'",
        json!([site]),
    )
    .await;
    let findings = b
        .wait_for(
            "the page's findings",
            "return window.__done === true && window.__findings",
            json!([]),
        )
        .await;
    b.screenshot(if second_name {
        "12-hostile-page-second-name"
    } else {
        "12-hostile-page"
    })
    .await;
    println!("the hostile page found: {findings:#}");
    let f = |k: &str| {
        findings[k]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| findings[k].to_string())
    };
    let failed = |k: &str| {
        let v = f(k);
        assert!(
            v.starts_with("error") || v.starts_with("unreadable"),
            "{k} succeeded: {v}"
        );
    };
    // Acting as the user: the dashboard site has no ECP API; the console's
    // API refuses the page (no CORS, no CSRF header without CORS).
    assert_eq!(findings["sameOriginApi"], 404, "{findings}");
    assert_eq!(findings["sameOriginProfile"], 404, "{findings}");
    failed("consoleApiWithCsrf");
    assert_eq!(
        findings["consoleApiNoCors"], "opaque",
        "sent blind, refused (checked below)"
    );
    failed("consoleProfileRead");
    failed("formPost");
    // The console's cookie and storage.
    for secret in ["ecp_session", "ecps_"] {
        assert!(!f("cookie").contains(secret), "cookie: {}", f("cookie"));
    }
    assert!(!f("storage").contains("ecp."), "storage: {}", f("storage"));
    failed("consoleFrame");
    // No handle on the console window; no navigating it.
    assert_eq!(findings["opener"], "null");
    failed("navigateConsole");
    // Another cluster's dashboard.
    failed("victimViaConsole");
    assert_eq!(findings["victimViaSite"], 404);
    failed("victimFrame");
    failed("mintForVictim");
    assert_eq!(findings["mintForVictimNoCors"], "opaque");
    // No service worker over the dashboard origin.
    failed("serviceWorker");
    for (k, v) in findings.as_object().expect("object") {
        assert_ne!(v, "timeout", "{k} did not finish");
    }
    // From the outside: nothing happened.
    let (_, users) = api.get("/api/users").await;
    let names: Vec<&str> = users["data"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("pwn")),
        "a user was created: {names:?}"
    );
    let (_, audit) = api.get("/api/audit/operations?action=dashboard").await;
    assert_eq!(
        audit["total"], 1,
        "one dashboard opened (the hostile one, by the admin): {audit}"
    );
    let hits: serde_json::Value = reqwest::get(format!("{}/__sim/state", victim_sim.url))
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert!(
        hits["hits"].get("/").is_none(),
        "the victim's dashboard was reached: {hits}"
    );
    assert!(
        !hostile.seen().iter().any(|r| r.path.ends_with("sw.js")),
        "the service worker script was fetched"
    );

    // The page planted a second session cookie for ECP's host (cookies
    // ignore ports): the console trusts neither and asks for a new login;
    // under another host name the planted cookie does not even reach it.
    b.close_window().await;
    b.switch_to(&console).await;
    b.js("location.reload(); return true", json!([])).await;
    if second_name {
        b.find("#add-cluster").await;
    } else {
        b.find("#username").await;
        b.type_into("#username", "admin").await;
        b.type_into("#password", ADMIN_PASSWORD).await;
        b.click("#login-submit").await;
        b.find("#add-cluster").await;
    }
    let me = b
        .wait_for(
            "the console is the admin's own",
            "window.__me = window.__me || fetch('/api/account/profile').then(r => r.json()).then(v => { window.__me = v; }); return window.__me && window.__me.username",
            json!([]),
        )
        .await;
    assert_eq!(me, "admin");

    // The real (simulated) v4 dashboard still works, in the same run.
    open_v4_dashboard(&b, &card("victim v4"), &site).await;
    let hits: serde_json::Value = reqwest::get(format!("{}/__sim/state", victim_sim.url))
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert!(hits["hits"]["/"].as_u64() >= Some(1), "{hits}");
}

#[tokio::test]
async fn a_hostile_dashboard_page_can_do_nothing_on_the_dashboard_listener() {
    a_hostile_dashboard_page_can_do_nothing(false).await;
}

#[tokio::test]
async fn a_hostile_dashboard_page_can_do_nothing_under_a_second_host_name() {
    a_hostile_dashboard_page_can_do_nothing(true).await;
}

/// The attacker's page: tries everything, writes down what it got.
fn hostile_page(console: &str, p: &str, victim: &str) -> String {
    let script = r#"
const F = {}; window.__findings = F; window.__done = false;
const pwn = JSON.stringify({username: "pwn", password: "Pwn-pass-12345", systemAdmin: true});
const within = (p, ms) => Promise.race([p, new Promise((r) => setTimeout(() => r("timeout"), ms || 4000))]);
async function attempt(name, fn) {
  try { F[name] = await within(Promise.resolve().then(fn)); } catch (e) { F[name] = "error: " + ((e && e.name) || e); }
}
function frame(src) {
  return new Promise((resolve) => { const f = document.createElement("iframe"); f.onload = () => resolve(f); f.src = src; document.body.append(f); });
}
function read(f) { try { return "read: " + f.contentDocument.body.textContent; } catch (e) { return "unreadable: " + e.name; } }
(async () => {
  await attempt("sameOriginApi", async () => (await fetch("/api/users", {method: "POST", headers: {"X-ECP-CSRF": "1", "Content-Type": "application/json"}, body: pwn})).status);
  await attempt("sameOriginProfile", async () => (await fetch("/api/account/profile")).status);
  await attempt("consoleApiWithCsrf", async () => (await fetch(CONSOLE + "/api/users", {method: "POST", credentials: "include", headers: {"X-ECP-CSRF": "1", "Content-Type": "application/json"}, body: pwn})).status);
  await attempt("consoleApiNoCors", async () => (await fetch(CONSOLE + "/api/users", {method: "POST", mode: "no-cors", credentials: "include", headers: {"Content-Type": "text/plain"}, body: pwn})).type);
  await attempt("consoleProfileRead", async () => (await fetch(CONSOLE + "/api/account/profile", {credentials: "include"})).status);
  await attempt("formPost", async () => {
    const form = document.createElement("form");
    form.method = "POST"; form.action = CONSOLE + "/api/users"; form.enctype = "text/plain"; form.target = "sink";
    const i = document.createElement("input"); i.name = pwn.slice(0, -1) + ',"x":"'; i.value = '"}';
    form.append(i); document.body.append(form);
    const loaded = new Promise((r) => { document.getElementById("sink").onload = r; });
    form.submit(); await loaded;
    return read(document.getElementById("sink"));
  });
  await attempt("cookie", () => document.cookie);
  await attempt("storage", () => JSON.stringify({local: Object.keys(localStorage), session: Object.keys(sessionStorage)}));
  await attempt("consoleFrame", async () => read(await frame(CONSOLE + "/")));
  await attempt("opener", () => String(window.opener));
  await attempt("navigateConsole", () => { window.opener.location = CONSOLE + "/api/account/logout"; return "navigated"; });
  await attempt("victimViaConsole", async () => (await fetch(CONSOLE + "/api/emqxee/dashboard/" + VICTIM + "/", {credentials: "include"})).status);
  await attempt("victimViaSite", async () => (await fetch("/api/emqxee/dashboard/" + VICTIM + "/")).status);
  await attempt("victimFrame", async () => read(await frame(CONSOLE + "/api/emqxee/dashboard/" + VICTIM + "/")));
  await attempt("mintForVictim", async () => (await fetch(CONSOLE + P + "/clusters/" + VICTIM + "/dashboard-sessions", {method: "POST", credentials: "include", headers: {"X-ECP-CSRF": "1"}})).status);
  await attempt("mintForVictimNoCors", async () => (await fetch(CONSOLE + P + "/clusters/" + VICTIM + "/dashboard-sessions", {method: "POST", mode: "no-cors", credentials: "include"})).type);
  await attempt("serviceWorker", async () => { await navigator.serviceWorker.register("sw.js"); return "registered"; });
  await attempt("cookieToss", () => { document.cookie = "ecp_session=planted-by-the-page; path=/api"; return document.cookie; });
  window.__done = true;
})();
"#;
    format!(
        "<!doctype html><html><head><title>hostile</title></head><body><h1>EMQX Dashboard</h1>\
         <iframe id=\"sink\" name=\"sink\"></iframe><script>const CONSOLE = {console:?}; const P = {p:?}; const VICTIM = {victim:?};{script}</script></body></html>"
    )
}

/// A stolen agent credential is revoked from the console: View nodes,
/// Revoke (twice, to confirm). The row goes, the agent is told and drops
/// its credential, the credential no longer opens a session.
#[tokio::test]
async fn an_operator_revokes_an_agent_from_the_console() {
    let server = Server::start_with(&[("ECP_AGENT_REPORT_INTERVAL_SECS", "1")]).await;
    let api = server.api().await;
    let sim = Sim::start("4.4.6", 1, "revoke").await;
    let (id, _, agent) = adopted(&api, &server.base, &sim, "revocable", &[]).await;
    let cred = agent.credential().expect("credential");
    let agent_id = cred["agentId"].as_str().expect("agent").to_string();

    let b = Browser::start().await;
    login(&b, &server.base).await;
    b.click(&format!("{} [data-action=nodes]", card("revocable")))
        .await;
    let button = format!("#nodes-dialog [data-action=revoke][data-agent-id=\"{agent_id}\"]");
    b.click(&button).await;
    b.wait_for(
        "the button asks to confirm",
        "return document.querySelector(arguments[0])?.textContent.includes('?')",
        json!([button]),
    )
    .await;
    b.screenshot("13-revoke-agent").await;
    b.click(&button).await;
    b.wait_for(
        "the row is gone",
        "return !document.querySelector(arguments[0])",
        json!([format!("#nodes-dialog tr[data-agent-id=\"{agent_id}\"]")]),
    )
    .await;
    let (_, agents) = api.get(&format!("{P}/clusters/{id}/agents")).await;
    assert_eq!(agents.as_array().map(Vec::len), Some(0), "{agents}");
    // The agent heard it and dropped its credential.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while agent.credential().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent kept its credential"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let token = cred["token"].as_str().expect("token");
    assert!(matches!(
        ecp_testkit::Session::open(&server.base, token, &agent_id, None).await,
        Err(ecp_testkit::ConnectError::Status(401 | 410))
    ));
    let (_, audit) = api.get("/api/audit/operations?action=agent.revoke").await;
    assert_eq!(audit["data"][0]["objectId"], agent_id.as_str(), "{audit}");
}

async fn login_as(b: &Browser, base: &str, user: &str, password: &str) {
    b.goto(base).await;
    b.js(
        "window.__alerts = []; window.alert = (m) => window.__alerts.push(String(m)); return true",
        json!([]),
    )
    .await;
    b.type_into("#username", user).await;
    b.type_into("#password", password).await;
    b.click("#login-submit").await;
    b.find("#add-cluster").await;
}

/// Asks `path` until `ok` holds for its answer (20 s at most); returns it.
async fn api_until(
    api: &Api,
    what: &str,
    path: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (s, v) = api.get(path).await;
        if s == 200 && ok(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {s} {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The newest value of `metric` in chart `chart` as plotted (uPlot's own
/// data, kept on window.__ecpCharts), or null.
const PLOTTED: &str = "const c = window.__ecpCharts && window.__ecpCharts[arguments[0]]; if (!c) return null; \
    const ys = c.data[1 + c.names.indexOf(arguments[1])] || []; const v = ys.filter((y) => y !== null); \
    return v.length ? v[v.length - 1] : null";

/// Monitoring and alerting in the console, with a real agent and emqx-sim:
/// the load is scripted to 1,000 then 3,000 connections and the Monitoring
/// chart plots 3,000; an EMQX alarm (its message hostile markup) shows as
/// text in the alarms tab; a webhook channel is made and tested (a real
/// receiver), an emqx_alarm rule created, the alarm fires it: Alerts,
/// Overview; the same pages in Chinese; a viewer gets no buttons.
#[tokio::test]
async fn an_operator_monitors_a_cluster_and_sets_up_alerting_in_the_console() {
    let server = Server::start_with(&[
        ("ECP_AGENT_REPORT_INTERVAL_SECS", "1"),
        ("ECP_METRICS_COLLECT_INTERVAL_SECS", "1"),
        ("ECP_ALERTS_EVAL_INTERVAL_SECS", "1"),
    ])
    .await;
    let api = server.api().await;
    let sim = Sim::start("5.6.0", 2, "watched").await;
    sim.control(
        reqwest::Method::POST,
        "load",
        json!({"connections": 1000, "msgRate": 200, "dropRate": 5}),
    )
    .await;
    let (id, _, _agent) = adopted(&api, &server.base, &sim, "watched", &[]).await;
    let hook = crate::plain_http::PlainServer::start(|_| crate::plain_http::Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: b"{}".to_vec(),
    })
    .await;
    // Samples at 1,000 are stored, a few of them (the page then sees how
    // often they come).
    let metrics = format!("{P}/clusters/{id}/metrics?names=connections");
    api_until(&api, "three samples at 1000", &metrics, |v| {
        v["series"][0]["points"]
            .as_array()
            .is_some_and(|p| p.iter().filter(|p| p[1] == 1000.0).count() >= 3)
    })
    .await;

    let b = Browser::start().await;
    login(&b, &server.base).await;
    // The charts draw under the console's Content-Security-Policy: nothing
    // they (or the pages) do is refused.
    b.js(
        "window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI)); return true",
        json!([]),
    )
    .await;
    b.click(&format!("{} [data-action=monitoring]", card("watched")))
        .await;
    b.find("#chart-connections canvas").await;
    let v = b
        .wait_for(
            "the chart plots 1000 connections",
            PLOTTED,
            json!(["connections", "connections"]),
        )
        .await;
    assert_eq!(v, json!(1000), "{v}");
    sim.control(reqwest::Method::POST, "load", json!({"connections": 3000}))
        .await;
    b.wait_for(
        "the chart plots 3000 connections (live refresh)",
        &format!("return (() => {{ {PLOTTED} }})() === 3000"),
        json!(["connections", "connections"]),
    )
    .await;
    // Both values are in the plotted series, in time order, and the other
    // charts are drawn from the same answer.
    let series = b
        .js(
            "const c = window.__ecpCharts.connections; return {xs: c.data[0], ys: c.data[1 + c.names.indexOf('connections')]}",
            json!([]),
        )
        .await;
    let ys: Vec<f64> = series["ys"]
        .as_array()
        .expect("ys")
        .iter()
        .filter_map(|y| y.as_f64())
        .collect();
    let first_3000 = ys.iter().position(|y| *y == 3000.0).expect("3000");
    assert!(
        ys[..first_3000].contains(&1000.0) && ys[first_3000..].iter().all(|y| *y == 3000.0),
        "1000 then 3000: {ys:?}"
    );
    let xs = series["xs"].as_array().expect("xs");
    assert!(
        xs.windows(2).all(|w| w[0].as_f64() < w[1].as_f64()),
        "time order: {xs:?}"
    );
    b.wait_for(
        "the rates and nodes charts",
        &format!("return (() => {{ {PLOTTED} }})() === 200"),
        json!(["rates", "received_msg_rate"]),
    )
    .await;
    let nodes = b
        .js(
            &format!("return (() => {{ {PLOTTED} }})()"),
            json!(["nodes", "nodes_total"]),
        )
        .await;
    assert_eq!(nodes, json!(2));
    b.screenshot("14-monitoring-3000-connections").await;
    // A longer range asks for it, and still shows the load.
    b.click("#range [data-range='6h']").await;
    b.wait_for(
        "six hours shown",
        "const c = window.__ecpCharts.connections; return c && c.until - c.since === 6 * 3600 * 1000",
        json!([]),
    )
    .await;
    let v = b
        .js(
            &format!("return (() => {{ {PLOTTED} }})()"),
            json!(["connections", "connections"]),
        )
        .await;
    assert_eq!(v, json!(3000));

    // A notification channel: a webhook to a real receiver, tested.
    b.click("#nav-channels").await;
    b.click("#channel-create").await;
    b.type_into("#ch-name", "ops webhook").await;
    b.type_into("#ch-url", &format!("{}/hook", hook.url)).await;
    b.type_into("#ch-headers", "X-Team: ops").await;
    b.screenshot("15a-channel-form").await;
    b.click("#channel-dialog [data-action=save-channel]").await;
    // The secret ECP made is shown once.
    let secret = b.text("#channel-secret").await;
    assert!(secret.len() >= 16, "{secret}");
    b.click("#secret-dialog [data-action=close]").await;
    let row = "#channels-body tr[data-channel-name='ops webhook']";
    b.find(&format!("{row} td[data-secret=set]")).await;
    let page = b.text("#main").await;
    assert!(!page.contains(&secret), "the secret is not on the page");
    b.click(&format!("{row} [data-action=test-channel]")).await;
    let result = b
        .wait_for(
            "the test delivered",
            "const r = document.querySelector('#test-result'); return r && r.dataset.state !== 'pending' && r.dataset.state + ': ' + r.textContent",
            json!([]),
        )
        .await;
    assert!(
        result
            .as_str()
            .is_some_and(|r| r.starts_with("delivered") && r.contains("HTTP 200")),
        "{result}"
    );
    b.find("#deliveries-body tr[data-kind=test][data-state=delivered]")
        .await;
    let got = hook.seen();
    assert!(
        got.iter().any(|r| r.path == "/hook"
            && r.headers.contains(&("x-ecp-event".into(), "test".into()))
            && r.headers.contains(&("x-team".into(), "ops".into()))),
        "{got:?}"
    );
    b.screenshot("15-channel-tested").await;
    b.click("#deliveries-dialog [data-action=close]").await;
    // Edited without typing a secret: the stored one is kept (write-only).
    b.click(&format!("{row} [data-action=edit-channel]")).await;
    let placeholder = b
        .js(
            "return document.querySelector('#ch-secret').placeholder + '|' + document.querySelector('#ch-secret').value + '|' + document.querySelector('#ch-headers').value",
            json!([]),
        )
        .await;
    assert_eq!(placeholder, "Set — leave empty to keep||X-Team: ops");
    b.clear("#ch-max").await;
    b.type_into("#ch-max", "20").await;
    b.click("#channel-dialog [data-action=save-channel]").await;
    b.wait_for(
        "the limit changed, the secret kept",
        "const r = document.querySelector(arguments[0]); return r && r.textContent.includes('20') && !!r.querySelector('td[data-secret=set]') && !document.querySelector('#channel-dialog')",
        json!([row]),
    )
    .await;

    // An alert rule: an EMQX alarm, critical, to that channel. Only the
    // fields the kind uses are shown.
    b.click("#nav-rules").await;
    b.click("#rule-create").await;
    b.type_into("#rule-name", "cpu alarm").await;
    b.click("#rule-kind option[value=connections_over]").await;
    assert_eq!(
        b.js("return [document.querySelector('#rule-threshold').closest('.field').hidden, document.querySelector('#rule-unit').closest('.field').hidden, document.querySelector('#rule-pattern').closest('.field').hidden]", json!([])).await,
        json!([false, false, true])
    );
    b.click("#rule-kind option[value=emqx_alarm]").await;
    assert_eq!(
        b.js("return [document.querySelector('#rule-threshold').closest('.field').hidden, document.querySelector('#rule-pattern').closest('.field').hidden]", json!([])).await,
        json!([true, false])
    );
    b.clear("#rule-pattern").await;
    b.type_into("#rule-pattern", "high_cpu*").await;
    b.click("#rule-severity option[value=critical]").await;
    b.click("#rule-channels input[type=checkbox]").await;
    b.screenshot("16a-rule-form").await;
    b.click("#rule-dialog [data-action=save-rule]").await;
    let rule_row = "#rules-body tr[data-rule-name='cpu alarm']";
    let text_of_rule = b.text(rule_row).await;
    assert!(
        text_of_rule.contains("EMQX alarm")
            && text_of_rule.contains("high_cpu*")
            && text_of_rule.contains("Critical")
            && text_of_rule.contains("ops webhook")
            && text_of_rule.contains("All clusters"),
        "{text_of_rule}"
    );
    b.screenshot("16-alert-rules").await;
    // Edited: the form comes back filled in; a lower severity, then back.
    for (severity, shown) in [("warning", "Warning"), ("critical", "Critical")] {
        b.click(&format!("{rule_row} [data-action=edit-rule]"))
            .await;
        assert_eq!(
            b.js("return [document.querySelector('#rule-kind').value, document.querySelector('#rule-pattern').value, document.querySelectorAll('#rule-channels input:checked').length]", json!([])).await,
            json!(["emqx_alarm", "high_cpu*", 1])
        );
        b.click(&format!("#rule-severity option[value={severity}]"))
            .await;
        b.click("#rule-dialog [data-action=save-rule]").await;
        b.wait_for(
            "the severity changed",
            "return document.querySelector(arguments[0] + ' [data-severity]')?.textContent === arguments[1] && !document.querySelector('#rule-dialog')",
            json!([rule_row, shown]),
        )
        .await;
    }

    // EMQX raises the alarm (its message is markup): the rule fires.
    sim.control(
        reqwest::Method::POST,
        "alarms",
        json!({"name": "high_cpu_usage", "message": XSS, "action": "activate"}),
    )
    .await;
    api_until(
        &api,
        "the alert firing",
        &format!("{P}/alerts?state=firing"),
        |v| v["data"].as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    b.click("#nav-alerts").await;
    let firing = "#alerts-body tr[data-state=firing][data-kind=emqx_alarm]";
    let alert_text = b.text(firing).await;
    assert!(
        alert_text.contains("cpu alarm") && alert_text.contains("watched"),
        "{alert_text}"
    );
    b.screenshot("17-alerts-firing").await;
    // Its cluster's alarms tab, from the alert.
    b.click(&format!("{firing} [data-action=open-cluster]"))
        .await;
    let alarm = "#alarms-body tr[data-alarm-name=high_cpu_usage]";
    let alarm_text = b.text(alarm).await;
    assert!(
        alarm_text.contains(XSS) && alarm_text.contains(&sim.node(1)),
        "the alarm's message as text: {alarm_text}"
    );
    b.screenshot("18-emqx-alarms").await;
    // The overview counts it.
    b.click("#nav-overview").await;
    b.find(&format!("#firing-body tr[data-cluster-id='{id}']"))
        .await;
    assert_eq!(
        b.js("return [document.querySelector('#stat-firing').dataset.value, document.querySelector('#stat-connections').dataset.value, document.querySelector('#stat-clusters [data-status=running]')?.dataset.count]", json!([])).await,
        json!(["1", "3000", "1"])
    );
    b.screenshot("19-overview").await;

    // 中文: the same pages, translated.
    b.click("#lang option[value=zh]").await;
    b.wait_for(
        "Chinese overview",
        "return document.querySelector('#overview-h')?.textContent === '概览' && document.querySelector('#firing-h')?.textContent === '有告警的集群'",
        json!([]),
    )
    .await;
    b.click("#nav-rules").await;
    b.wait_for("Chinese rules", "return document.querySelector('#rules-h')?.textContent === '告警规则' && document.querySelector(arguments[0])?.textContent.includes('EMQX 告警')", json!([rule_row])).await;
    b.screenshot("20-alert-rules-zh").await;
    b.click("#nav-channels").await;
    b.wait_for("Chinese channels", "return document.querySelector('#channels-h')?.textContent === '通知渠道' && document.querySelector(arguments[0] + ' [data-action=test-channel]')?.textContent === '测试'", json!([row])).await;
    b.screenshot("21-channels-zh").await;
    // EMQX clears the alarm: resolved, in the history.
    sim.control(
        reqwest::Method::POST,
        "alarms",
        json!({"name": "high_cpu_usage", "action": "deactivate"}),
    )
    .await;
    api_until(
        &api,
        "the alert resolved",
        &format!("{P}/alerts?state=resolved"),
        |v| v["data"].as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    b.click("#nav-alerts").await;
    b.wait_for("Chinese alerts", "return document.querySelector('#alerts-h')?.textContent === '告警' && document.querySelector('#alerts-firing')?.textContent === '告警中'", json!([])).await;
    b.click("#alerts-resolved").await;
    let resolved = b
        .text("#alerts-body tr[data-state=resolved][data-kind=emqx_alarm]")
        .await;
    assert!(resolved.contains("严重"), "{resolved}");
    b.screenshot("22-alerts-history-zh").await;
    b.click("#alerts-body tr[data-state=resolved] [data-action=open-cluster]")
        .await;
    b.click("#tab-monitoring").await;
    b.wait_for(
        "Chinese monitoring",
        "return document.querySelector('#chart-connections figcaption')?.textContent === '连接' && document.querySelector('#tab-alarms')?.textContent === 'EMQX 告警'",
        json!([]),
    )
    .await;
    b.wait_for(
        "the chart again",
        &format!("return (() => {{ {PLOTTED} }})() === 3000"),
        json!(["connections", "connections"]),
    )
    .await;
    b.screenshot("23-monitoring-zh").await;
    assert_eq!(
        b.js(
            "return [window.__alerts.length, document.querySelectorAll('img').length]",
            json!([])
        )
        .await,
        json!([0, 0]),
        "no markup from EMQX became an element"
    );
    assert_eq!(
        b.js("return window.__csp", json!([])).await,
        json!([]),
        "no CSP violation"
    );

    // A viewer reads the same pages without the buttons that change things.
    crate::dashboard::viewer_of_default(&api, &server.base).await;
    b.click("#logout").await;
    login_as(&b, &server.base, "watcher", "Passw0rd-x").await;
    b.click("#nav-rules").await;
    b.find(rule_row).await;
    b.click("#nav-channels").await;
    b.find(&format!("{row} [data-action=deliveries]")).await;
    assert_eq!(
        b.js("return document.querySelectorAll('#rule-create, #channel-create, [data-action=edit-channel], [data-action=test-channel], [data-action=delete-channel]').length", json!([])).await,
        json!(0)
    );
    b.click("#nav-rules").await;
    b.find(rule_row).await;
    assert_eq!(
        b.js("return document.querySelectorAll('[data-action=edit-rule], [data-action=delete-rule]').length", json!([])).await,
        json!(0)
    );
    b.screenshot("24-rules-viewer").await;
}

/// The console's pure helpers, run in the browser (the modules as served):
/// series aligned for the charts, the collection interval seen from the
/// points, numbers and durations, rule bodies holding only the kind's
/// fields, webhook header lines, the role from memberships.
#[tokio::test]
async fn the_console_helpers_decide_as_documented() {
    let server = Server::start().await;
    let b = Browser::start().await;
    b.goto(&server.base).await;
    b.find("#username").await;
    b.js(
        r#"window.__checks = null;
Promise.all([import('/console/monitoring.js'), import('/console/alerting.js'), import('/console/app.js')]).then(([m, a, app]) => {
  const out = {};
  out.align = m.align([{name: 'a', points: [[1000, 1], [3000, 3]]}, {name: 'b', points: [[2000, 20], [3000, 30]]}], ['a', 'b', 'c']);
  out.interval = m.collectInterval([{name: 'a', points: [[0, 1], [15000, 1], [30000, 1], [46000, 1]]}]);
  out.intervalFew = m.collectInterval([{name: 'a', points: [[0, 1], [15000, 1]]}]);
  out.intervalBounds = [m.collectInterval([{name: 'a', points: [[0, 1], [100, 1], [200, 1]]}]), m.collectInterval([{name: 'a', points: [[0, 1], [3600000, 1], [7200000, 1]]}])];
  out.nums = [m.fmtNum(3000), m.fmtNum(12345), m.fmtNum(2500000), m.fmtNum(0.125), m.fmtNum(null)];
  out.durations = [m.fmtDuration(65000), m.fmtDuration(3 * 3600000 + 120000), m.fmtDuration(26 * 3600000)];
  const form = {name: ' r ', kind: 'emqx_alarm', clusterIds: [], threshold: '5', unit: 'percent', reasonCode: 'agent_offline', alarmPattern: '', forSecs: '30', recoverSecs: '', severity: 'critical', channelIds: ['c1'], enabled: true};
  out.ruleAlarm = a.ruleInput(form);
  out.ruleConn = a.ruleInput({...form, kind: 'connections_over', unit: 'absolute'});
  out.ruleAbnormal = a.ruleInput({...form, kind: 'cluster_abnormal'});
  out.headers = a.parseHeaders('X-Team: ops\n\nAuthorization: Bearer a:b\n');
  try { a.parseHeaders('no colon here'); out.badHeader = 'accepted'; } catch (e) { out.badHeader = e.message; }
  out.roles = [
    app.roleOf({systemAdmin: true}, []),
    app.roleOf({systemAdmin: false}, [{orgId: 'default', projectId: null, role: 'admin'}]),
    app.roleOf({systemAdmin: false}, [{orgId: 'default', projectId: null, role: 'viewer'}, {orgId: 'default', projectId: 'default', role: 'admin'}]),
    app.roleOf({systemAdmin: false}, [{orgId: 'default', projectId: null, role: 'viewer'}, {orgId: 'default', projectId: 'default', role: 'viewer'}]),
    app.roleOf({systemAdmin: false}, [{orgId: 'default', projectId: 'default', role: 'admin'}]),
    app.roleOf({systemAdmin: false}, [{orgId: 'other', projectId: null, role: 'admin'}]),
  ];
  window.__checks = out;
}).catch((e) => { window.__checks = {error: String(e)}; });
return true"#,
        json!([]),
    )
    .await;
    let c = b
        .wait_for("the checks", "return window.__checks", json!([]))
        .await;
    assert!(c.get("error").is_none(), "{c}");
    assert_eq!(
        c["align"],
        json!([[1, 2, 3], [1, null, 3], [null, 20, 30], [null, null, null]])
    );
    assert_eq!(c["interval"], json!(15), "the median gap");
    assert_eq!(c["intervalFew"], json!(null), "too few points to tell");
    assert_eq!(c["intervalBounds"], json!([1, 60]));
    assert_eq!(c["nums"], json!(["3000", "12.3k", "2.5M", "0.13", "—"]));
    assert_eq!(c["durations"], json!(["1m 5s", "3h 2m", "1d 2h"]));
    assert_eq!(
        c["ruleAlarm"],
        json!({"name": "r", "kind": "emqx_alarm", "clusterIds": [], "forSecs": 30, "recoverSecs": 0,
            "severity": "critical", "channelIds": ["c1"], "enabled": true, "alarmPattern": "*"}),
        "no threshold, unit or reason for an alarm rule"
    );
    assert_eq!(c["ruleConn"]["threshold"], json!(5));
    assert_eq!(c["ruleConn"]["unit"], "absolute");
    assert!(c["ruleConn"].get("alarmPattern").is_none(), "{c}");
    assert_eq!(c["ruleAbnormal"]["reasonCode"], "agent_offline");
    assert!(c["ruleAbnormal"].get("threshold").is_none(), "{c}");
    assert_eq!(
        c["headers"],
        json!({"X-Team": "ops", "Authorization": "Bearer a:b"})
    );
    assert_eq!(c["badHeader"], "Header line 1 is not \"Name: value\"");
    assert_eq!(
        c["roles"],
        json!(["admin", "admin", "admin", "viewer", null, null])
    );
}
