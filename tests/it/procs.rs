//! The other real binaries: `emqx-sim` and `emqxee-agent`, run the way a
//! user runs them. They are siblings of the `ecp` binary in the target dir
//! (`scripts/test` builds the whole workspace first).

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub fn sibling(name: &str) -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_ecp")).with_file_name(name);
    assert!(p.exists(), "{} is missing: build the whole workspace first (scripts/test does: cargo build --workspace --all-targets)", p.display());
    p
}

pub struct Sim {
    /// Stopped when the test ends (see `Drop`).
    child: Child,
    pub url: String,
    pub cluster_name: String,
}

impl Sim {
    pub async fn start(version: &str, nodes: usize, cluster_name: &str) -> Sim {
        Sim::start_with(version, nodes, cluster_name, &[]).await
    }

    pub async fn start_with(
        version: &str,
        nodes: usize,
        cluster_name: &str,
        extra: &[&str],
    ) -> Sim {
        let mut child = Command::new(sibling("emqx-sim"))
            .args(extra)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--emqx-version",
                version,
                "--nodes",
                &nodes.to_string(),
            ])
            .args([
                "--cluster-name",
                cluster_name,
                "--v4-bad-login-penalty",
                "0.2",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn emqx-sim");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let url = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(u) = l.strip_prefix("emqx-sim listening on ") {
                    return u.to_string();
                }
            }
            String::new()
        })
        .await
        .expect("emqx-sim did not start");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Sim {
            child,
            url,
            cluster_name: cluster_name.to_string(),
        }
    }

    pub fn node(&self, i: usize) -> String {
        format!("emqx@node{i}.{}", self.cluster_name)
    }

    pub async fn control(&self, method: reqwest::Method, path: &str, body: serde_json::Value) {
        let r = reqwest::Client::new()
            .request(method, format!("{}/__sim/{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("sim control");
        assert!(
            r.status().is_success(),
            "sim control {path}: {}",
            r.status()
        );
    }

    pub async fn stop_node(&self, i: usize) {
        self.control(
            reqwest::Method::POST,
            &format!("nodes/{}/stop", self.node(i)),
            serde_json::json!({}),
        )
        .await;
    }

    pub async fn start_node(&self, i: usize) {
        self.control(
            reqwest::Method::POST,
            &format!("nodes/{}/start", self.node(i)),
            serde_json::json!({}),
        )
        .await;
    }
}

impl Drop for Sim {
    /// SIGTERM (its default action ends emqx-sim) and wait for it.
    fn drop(&mut self) {
        crate::stop::child(&mut self.child, Duration::from_secs(10));
    }
}

pub struct Agent {
    pub home: tempfile::TempDir,
}

impl Agent {
    pub fn new() -> Agent {
        Agent {
            home: tempfile::tempdir().expect("tmp"),
        }
    }

    /// Runs `emqxee-agent --home HOME args…` to completion.
    pub async fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_env(args, &[]).await
    }

    pub async fn cmd_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(sibling("emqxee-agent"))
            .arg("--home")
            .arg(self.home.path())
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            // A test that fails while a sub-command runs (`run` does not
            // return by itself) does not leave it behind.
            .kill_on_drop(true)
            .output()
            .await
            .expect("run emqxee-agent")
    }

    pub async fn sim_hits(sim_url: &str, path: &str) -> u64 {
        let v: serde_json::Value = reqwest::get(format!("{sim_url}/__sim/state"))
            .await
            .expect("state")
            .json()
            .await
            .expect("json");
        v["hits"][path].as_u64().unwrap_or(0)
    }

    /// The seed's register command, with the simulator as EMQX.
    pub async fn register(&self, ecp: &str, token: &str, sim_url: &str, password: &str) -> Output {
        let args = seed_args(ecp, token, sim_url, password);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(&args).await
    }

    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.home.path().join("run/agent.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The detached agent (`start`) of this home, if it runs: its pid and
    /// start time. The pid file may outlive the process; the command line
    /// names this home, so a pid given to another process does not count.
    fn running(&self) -> Vec<(u32, u64)> {
        let home = self.home.path().display().to_string();
        self.pid()
            .and_then(|p| u32::try_from(p).ok())
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&home))
            })
            .filter_map(|p| Some((p, crate::stop::started(p)?)))
            .collect()
    }

    pub fn credential(&self) -> Option<serde_json::Value> {
        std::fs::read_to_string(self.home.path().join("etc/credential.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
    }

    /// SIGKILL the detached agent; returns once it is gone, reaped too (so
    /// that `start` right after does not find it "already running").
    pub fn kill9(&self) {
        let running = self.running();
        for (pid, _) in &running {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        assert!(
            crate::stop::gone_and_reaped(&running, Duration::from_secs(30)),
            "the killed agent {running:?} was not reaped"
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("log/agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    /// The detached agent (`emqxee-agent start`) is no child of the test:
    /// SIGTERM it (as `emqxee-agent stop` does; `run` exits on it) and wait
    /// until it is gone.
    fn drop(&mut self) {
        crate::stop::others(&self.running(), Duration::ZERO, Duration::from_secs(10));
    }
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// `register` with the seed's flags, exactly as the registration guide renders it.
pub fn seed_args(ecp: &str, token: &str, emqx: &str, password: &str) -> Vec<String> {
    [
        "register",
        "--url",
        &format!("{ecp}/api"),
        "--registration-token",
        token,
        "--emqx-dashboard-username",
        "admin",
        "--emqx-dashboard-password",
        password,
        "--emqx-dashboard-url",
        emqx,
        "--emqx-api-url",
        emqx,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A cluster `name` adopted the way the guide says: `emqxee-agent start`,
/// then the seed's `register` against `agent_base` (plus `extra` flags);
/// returns once the cluster is running, with the cluster as last seen.
pub async fn adopted(
    api: &crate::harness::Api,
    agent_base: &str,
    sim: &Sim,
    name: &str,
    extra: &[&str],
) -> (String, serde_json::Value, Agent) {
    adopted_showing(api, agent_base, sim, name, extra, &sim.url).await
}

/// As `adopted`, with the agent's `--emqx-dashboard-url` pointing at
/// `dashboard` (EMQX's API stays the simulator's).
pub async fn adopted_showing(
    api: &crate::harness::Api,
    agent_base: &str,
    sim: &Sim,
    name: &str,
    extra: &[&str],
    dashboard: &str,
) -> (String, serde_json::Value, Agent) {
    adopted_in(
        api,
        crate::harness::P,
        agent_base,
        sim,
        name,
        extra,
        dashboard,
    )
    .await
}

/// As `adopted_showing`, in the project at `project` (`/api/orgs/…/projects/…`).
pub async fn adopted_in(
    api: &crate::harness::Api,
    project: &str,
    agent_base: &str,
    sim: &Sim,
    name: &str,
    extra: &[&str],
    dashboard: &str,
) -> (String, serde_json::Value, Agent) {
    let mut events = api.events().await;
    let (s, c) = api
        .post(
            &format!("{project}/clusters"),
            serde_json::json!({"name": name}),
        )
        .await;
    assert_eq!(s, 201, "create {name}: {c}");
    let id = c["id"].as_str().expect("id").to_string();
    let (s, t) = api
        .post(
            &format!("{project}/clusters/{id}/registration-tokens"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 201, "token: {t}");
    let token = t["token"].as_str().expect("token").to_string();
    let agent = Agent::new();
    assert!(agent.cmd(&["start"]).await.status.success());
    let mut args = seed_args(agent_base, &token, &sim.url, "public");
    if let Some(i) = args.iter().position(|a| a == "--emqx-dashboard-url") {
        args[i + 1] = dashboard.to_string();
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = agent.cmd(&args).await;
    assert!(out.status.success(), "register: {:?}", text(&out));
    let (c, _) = events
        .wait_status(&id, "running", Duration::from_secs(20))
        .await;
    (id, c, agent)
}
