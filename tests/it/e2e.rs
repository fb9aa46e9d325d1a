//! The seed's registration flow end to end with the real binaries:
//! `ecp serve`, `emqx-sim` (3 nodes), `emqxee-agent start` + `register`.

use crate::harness::*;
use crate::procs::*;
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);
/// Agents poll EMQX this often in these tests (default 10 s).
const REPORT_SECS: u64 = 1;

async fn server() -> Server {
    Server::start_with(&[
        ("ECP_AGENT_REPORT_INTERVAL_SECS", "1"),
        ("ECP_AGENT_HEARTBEAT_INTERVAL_SECS", "2"),
    ])
    .await
}

async fn full_flow(version: &str) {
    let server = server().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let sim = Sim::start(version, 3, &format!("c{}", version.replace('.', ""))).await;
    let id = api
        .create_cluster(&format!("EMQX {}", version.replace('.', "_")))
        .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;

    // As the guide says: start first, then register.
    let agent = Agent::new();
    let out = agent.cmd(&["start"]).await;
    assert!(out.status.success(), "start: {:?}", text(&out));
    let out = agent
        .register(&server.base, &token, &sim.url, "public")
        .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "register failed: {stdout} {stderr}");
    assert!(
        stdout.contains(&format!("EMQX {version} Enterprise, 3 nodes")),
        "{stdout}"
    );

    let (c, _) = events.wait_status(&id, "running", WAIT).await;
    assert_eq!(c["emqx"]["version"], version);
    assert_eq!(c["emqx"]["edition"], "Enterprise");
    assert_eq!(c["nodes"], json!({"running": 3, "total": 3}));
    assert_eq!(c["connections"], json!({"current": 300, "max": 10000}));
    let agent_id = agent.credential().expect("credential")["agentId"]
        .as_str()
        .expect("agentId")
        .to_string();

    // One EMQX node stops: abnormal / nodes_stopped naming it, at the next
    // polls (1 s apart here; 5 s of slack for a loaded machine, still half
    // the default interval).
    let stopped_at = Instant::now();
    sim.stop_node(2).await;
    let (c, at) = events.wait_status(&id, "abnormal", WAIT).await;
    assert_eq!(c["reason"]["code"], "nodes_stopped", "{c}");
    assert!(
        c["reason"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&sim.node(2)),
        "{c}"
    );
    assert_eq!(c["nodes"], json!({"running": 2, "total": 3}));
    assert!(
        at - stopped_at <= Duration::from_secs(5 * REPORT_SECS),
        "took {:?}",
        at - stopped_at
    );

    sim.start_node(2).await;
    events.wait_status(&id, "running", WAIT).await;

    // The agent dies hard: agent_offline after the grace (5 s of slack for a
    // loaded machine).
    agent.kill9();
    let killed = Instant::now();
    let (c, at) = events.wait_status(&id, "abnormal", WAIT).await;
    assert_eq!(c["reason"]["code"], "agent_offline");
    assert!(
        at - killed <= Duration::from_secs(GRACE_SECS + 5),
        "took {:?}",
        at - killed
    );

    // Started again: running, same agentId.
    let out = agent.cmd(&["start"]).await;
    assert!(out.status.success(), "restart: {:?}", text(&out));
    events.wait_status(&id, "running", WAIT).await;
    let (_, agents) = api.get(&format!("{P}/clusters/{id}/agents")).await;
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{agents}");
    assert_eq!(agents[0]["agentId"], agent_id.as_str());
    assert_eq!(agents[0]["connected"], true);
    let out = agent.cmd(&["status"]).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("running") && stdout.contains(&agent_id) && stdout.contains("connected"),
        "{stdout}"
    );

    // The cluster is deleted: the agent is told, drops its credential, idles.
    let (s, _) = api
        .call(reqwest::Method::DELETE, &format!("{P}/clusters/{id}"), None)
        .await;
    assert_eq!(s, 202);
    events.wait(&id, WAIT, |v| v["removed"] == true).await;
    assert!(agent.credential().is_none(), "credential dropped");
    assert_eq!(api.cluster(&id).await.0, 404);
    let out = agent.cmd(&["status"]).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("agent: running") && stdout.contains("registered: no"),
        "{stdout}"
    );
    let out = agent.cmd(&["stop"]).await;
    assert!(out.status.success());
    assert!(
        !agent.log().contains(&token),
        "the agent never logs its token"
    );
}

#[tokio::test]
async fn v5_cluster_registered_with_the_seed_commands_end_to_end() {
    full_flow("5.6.0").await;
}

#[tokio::test]
async fn v4_cluster_registered_with_the_seed_commands_end_to_end() {
    full_flow("4.4.6").await;
}

/// Each refusal: a non-zero exit, one clear line, nothing registered.
#[tokio::test]
async fn register_refuses_with_one_clear_line_and_registers_nothing() {
    let server = server().await;
    let api = server.api().await;
    let id = api.create_cluster("refusals").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let v5 = Sim::start("5.6.0", 3, "ok5").await;
    let v4 = Sim::start("4.4.6", 3, "ok4").await;
    let old4 = Sim::start("4.4.5", 1, "old4").await;
    let old5 = Sim::start("5.5.1", 1, "old5").await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let ecp = server.base.clone();

    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "wrong v5 dashboard password",
            seed(&ecp, &token, &v5.url, "nope"),
            "EMQX rejected the dashboard username or password",
        ),
        (
            "wrong v4 dashboard password",
            seed(&ecp, &token, &v4.url, "nope"),
            "EMQX rejected the dashboard username or password",
        ),
        (
            "unreachable EMQX",
            seed(&ecp, &token, &closed, "public"),
            "cannot reach the EMQX API",
        ),
        (
            "EMQX 4.4.5",
            seed(&ecp, &token, &old4.url, "public"),
            "EMQX 4.4.5 is not supported: 4.4.6 or later is required",
        ),
        (
            "EMQX 5.5.1",
            seed(&ecp, &token, &old5.url, "public"),
            "EMQX 5.5.1 is not supported: 5.6.0 or later is required",
        ),
        (
            "unreadable logDir",
            with_logs(
                seed(&ecp, &token, &v5.url, "public"),
                "/nonexistent/emqx/log",
            ),
            "cannot read the log directory /nonexistent/emqx/log",
        ),
        (
            "bad token",
            seed(&ecp, "ecpr_not-a-token", &v5.url, "public"),
            "ECP refused the registration token",
        ),
        (
            "unreachable ECP",
            seed(&closed, &token, &v5.url, "public"),
            "cannot reach ECP",
        ),
        (
            "not a URL",
            seed("ecp.example.com", &token, &v5.url, "public"),
            "must be an http:// or https:// address",
        ),
    ];
    for (what, args, expected) in cases {
        let agent = Agent::new();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = agent.cmd(&args).await;
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{what}: must fail, said {stdout}");
        assert!(
            stderr.contains(expected),
            "{what}: expected {expected:?} in {stderr:?}"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{what}: one line, got {stderr:?}"
        );
        assert!(agent.credential().is_none(), "{what}: no credential saved");
    }
    let (_, agents) = api.get(&format!("{P}/clusters/{id}/agents")).await;
    assert_eq!(agents, json!([]), "nothing registered");
    assert_eq!(api.cluster(&id).await.1["status"], "created");
}

fn seed(ecp: &str, token: &str, emqx: &str, password: &str) -> Vec<String> {
    seed_args(ecp, token, emqx, password)
}

fn with_logs(mut args: Vec<String>, dir: &str) -> Vec<String> {
    args.extend([
        "--enable-log".to_string(),
        "--log-dir".to_string(),
        dir.to_string(),
    ]);
    args
}

#[tokio::test]
async fn unregister_drops_the_credential_and_the_server_forgets_the_agent() {
    let server = server().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let sim = Sim::start("5.6.0", 1, "unreg").await;
    let id = api.create_cluster("unregister me").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let agent = Agent::new();
    let out = agent
        .register(&server.base, &token, &sim.url, "public")
        .await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(agent.cmd(&["start"]).await.status.code(), Some(0));
    events.wait_status(&id, "running", WAIT).await;
    let out = agent.cmd(&["unregister"]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(agent.credential().is_none());
    let (_, agents) = api.get(&format!("{P}/clusters/{id}/agents")).await;
    assert_eq!(agents, json!([]));
    let (c, _) = events.wait(&id, WAIT, |c| c["agents"]["total"] == 0).await;
    assert_eq!(c["agents"]["online"], 0);
    // Status tells it plainly; stop works.
    let (stdout, _) = text(&agent.cmd(&["status"]).await);
    assert!(stdout.contains("registered: no"), "{stdout}");
    assert!(agent.cmd(&["stop"]).await.status.success());
    let out = agent.cmd(&["status"]).await;
    assert_eq!(out.status.code(), Some(3), "LSB: not running");
}

#[tokio::test]
async fn install_writes_a_systemd_unit_that_restarts_on_failure() {
    let agent = Agent::new();
    let units = tempfile::tempdir().expect("tmp");
    let out = agent
        .cmd(&["install", "--unit-dir", &units.path().display().to_string()])
        .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let unit = std::fs::read_to_string(units.path().join("emqxee-agent.service")).expect("unit");
    assert!(unit.contains("Restart=on-failure"), "{unit}");
    assert!(
        unit.contains(&format!("--home {} run", agent.home.path().display())),
        "{unit}"
    );
    let out = agent
        .cmd(&[
            "uninstall",
            "--unit-dir",
            &units.path().display().to_string(),
        ])
        .await;
    assert!(out.status.success());
    assert!(!units.path().join("emqxee-agent.service").exists());
}

#[tokio::test]
async fn the_agent_logs_in_again_when_its_v5_token_expires_and_the_cluster_stays_running() {
    let server = server().await;
    let api = server.api().await;
    let mut events = api.events().await;
    let sim = Sim::start_with("5.6.0", 3, "ttl", &["--token-ttl-secs", "1"]).await;
    let id = api.create_cluster("short tokens").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let agent = Agent::new();
    assert!(agent
        .register(&server.base, &token, &sim.url, "public")
        .await
        .status
        .success());
    assert!(agent.cmd(&["start"]).await.status.success());
    events.wait_status(&id, "running", WAIT).await;
    let logins = Agent::sim_hits(&sim.url, "/api/v5/login").await;
    // The 1 s token expires under the agent twice over: it logs in again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Agent::sim_hits(&sim.url, "/api/v5/login").await < logins + 2 {
        assert!(Instant::now() < deadline, "no new login after expiry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A change EMQX shows now reaches the console after every report made
    // with an expired token: none of them flipped the status.
    sim.control(
        reqwest::Method::PUT,
        "connections",
        json!({ "perNode": 4242 }),
    )
    .await;
    let (c, meanwhile) = events
        .wait_collecting(&id, WAIT, |c| c["connections"]["current"] == 3 * 4242)
        .await;
    assert_eq!(c["status"], "running", "{c}");
    let flips: Vec<&serde_json::Value> = meanwhile
        .iter()
        .filter(|v| v["cluster"]["id"] == id.as_str() && v["cluster"]["status"] != "running")
        .collect();
    assert!(flips.is_empty(), "went abnormal: {flips:?}");
}

#[tokio::test]
async fn the_watchdog_exits_non_zero_after_a_long_disconnection() {
    let mut server = server().await;
    let api = server.api().await;
    let sim = Sim::start("5.6.0", 1, "dog").await;
    let id = api.create_cluster("watchdog").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let agent = Agent::new();
    assert!(agent
        .register(&server.base, &token, &sim.url, "public")
        .await
        .status
        .success());
    server.stop().await; // ECP goes away for good
    let started = Instant::now();
    let out = agent
        .cmd_env(&["run"], &[("EMQXEE_AGENT_WATCHDOG_SECS", "2")])
        .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "must exit non-zero");
    assert!(stderr.contains("no session with ECP"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        agent.credential().is_some(),
        "identity is kept for the restart"
    );
}

#[tokio::test]
async fn the_guide_download_command_fetches_the_agent_and_other_arches_say_what_is_missing() {
    let server = server().await;
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => "arm",
    };
    let other = if host == "amd64" { "arm64" } else { "amd64" };
    let dir = tempfile::tempdir().expect("tmp");
    let target = dir.path().join("emqxee-agent");
    // The guide's command, minus sudo, against this server.
    let out = tokio::process::Command::new("curl")
        .args(["-L", "-f", "-k", "-s", "--output"])
        .arg(&target)
        .arg(format!(
            "{}/dl/emqx/agents/binaries/emqxee-agent-linux-{host}",
            server.base
        ))
        .status()
        .await
        .expect("curl");
    assert!(out.success(), "download failed");
    assert_eq!(
        std::fs::read(&target).expect("read"),
        std::fs::read(sibling("emqxee-agent")).expect("read")
    );
    let r = reqwest::get(format!(
        "{}/dl/emqx/agents/binaries/emqxee-agent-linux-{other}",
        server.base
    ))
    .await
    .expect("get");
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["code"], "AGENT_NOT_BUILT");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("linux-{other} was not built")),
        "{v}"
    );
}
