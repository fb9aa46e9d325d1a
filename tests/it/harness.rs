//! Starts the real `ecp` binary on a free port with its own data directory,
//! and talks to it as a console user would (REST + the SSE event stream).

use futures_util::StreamExt;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub const ADMIN_PASSWORD: &str = "test-admin-pass-1";
/// Short grace so lifecycle tests run quickly; production default is 30 s.
pub const GRACE_SECS: u64 = 2;

pub struct Server {
    child: Option<Child>,
    listen: String,
    pub base: String,
    /// The dashboard listener (`http://127.0.0.1:PORT`), empty when off.
    pub dash: String,
    pub data: tempfile::TempDir,
    pub log: PathBuf,
    env: Vec<(String, String)>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        Server::start_on("127.0.0.1:0", env).await
    }

    /// On an address chosen up front (for settings that name it).
    pub async fn start_on(listen: &str, env: &[(&str, &str)]) -> Server {
        let data = tempfile::tempdir().expect("tempdir");
        let log = data.path().join("ecp.log");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut s = Server {
            child: None,
            listen: listen.into(),
            base: String::new(),
            dash: String::new(),
            data,
            log,
            env,
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecp"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(&self.listen)
            .arg("--data-dir")
            .arg(self.data.path().join("store"))
            .env_remove("ECP_CONFIG")
            .env("ECP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("ECP_AGENT_OFFLINE_GRACE_SECS", GRACE_SECS.to_string())
            .env("ECP_AGENT_DELETE_TIMEOUT_SECS", "3")
            .env("ECP_SERVER_DRAIN_TIMEOUT_SECS", "3")
            .env("ECP_SERVER_WORKERS", "2")
            .env("ECP_SERVER_DASHBOARD_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ecp");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut dash = String::new();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("ecp dashboards on ") {
                    dash = rest.to_string();
                }
                if let Some(rest) = line.strip_prefix("ecp listening on ") {
                    return Some(rest.to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "ecp did not start; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        });
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.base = addr;
        self.dash = dash;
        self.child = Some(child);
    }

    /// SIGTERM, wait for exit, start again on the same data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Starts again (same data) on a given address, e.g. the one it had.
    pub async fn restart_on(&mut self, addr: &str) {
        self.stop().await;
        self.listen = addr.to_string();
        self.spawn().await;
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().and_then(|c| c.id()).expect("running");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// SIGKILL, no drain; returns once it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            crate::stop::child(&mut child, Duration::from_secs(10));
        }
    }

    /// Sends SIGTERM (without waiting).
    pub fn sigterm(&self) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }

    /// Waits for the process to exit; its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let status = tokio::time::timeout(timeout, child.wait()).await.ok()?.ok();
        self.child = None;
        status
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
            let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
            let _ = child.kill().await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn api(&self) -> Api {
        Api::login(&self.base, "admin", ADMIN_PASSWORD).await
    }
}

impl Drop for Server {
    /// SIGTERM (ecp drains, then exits) and wait for it: a test ends only
    /// once its server has.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::stop::child(&mut child, Duration::from_secs(30));
        }
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

pub struct Events {
    rx: mpsc::UnboundedReceiver<Value>,
}

pub const P: &str = "/api/orgs/default/projects/default";

impl Api {
    pub async fn login(base: &str, user: &str, password: &str) -> Api {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/api/account/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(r.status(), 200, "login failed");
        let v: Value = r.json().await.expect("login json");
        Api {
            http,
            base: base.to_string(),
            token: v["accessToken"].as_str().expect("token").to_string(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Enter Dashboard as the console does: the capability URL on the
    /// dashboard site.
    pub async fn open_dashboard(&self, cluster_id: &str) -> String {
        let (s, v) = self
            .post(
                &format!("{P}/clusters/{cluster_id}/dashboard-sessions"),
                json!({}),
            )
            .await;
        assert_eq!(s, 201, "open dashboard: {v}");
        v["url"].as_str().expect("url").to_string()
    }

    pub async fn create_cluster(&self, name: &str) -> Value {
        let (s, v) = self
            .post(&format!("{P}/clusters"), json!({"name": name}))
            .await;
        assert_eq!(s, 201, "create {name}: {v}");
        v
    }

    pub async fn issue_token(&self, cluster_id: &str) -> String {
        let (s, v) = self
            .post(
                &format!("{P}/clusters/{cluster_id}/registration-tokens"),
                json!({}),
            )
            .await;
        assert_eq!(s, 201, "issue token: {v}");
        v["token"].as_str().expect("token").to_string()
    }

    pub async fn cluster(&self, id: &str) -> (u16, Value) {
        self.get(&format!("{P}/clusters/{id}")).await
    }

    /// The recorded transitions as (from, to, reason code) triples.
    pub async fn history(&self, id: &str) -> Vec<(String, String, Option<String>)> {
        let (s, v) = self.get(&format!("{P}/clusters/{id}/events")).await;
        assert_eq!(s, 200, "{v}");
        v["data"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    e["from"].as_str().unwrap_or_default().to_string(),
                    e["to"].as_str().unwrap_or_default().to_string(),
                    e["reason"]["code"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    /// Subscribes to `GET /api/events` (the console's live stream).
    pub async fn events(&self) -> Events {
        let r = self
            .http
            .get(format!("{}/api/events", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("events");
        assert_eq!(r.status(), 200);
        // The server subscribed before it answered 200: nothing is missed.
        Events::from_response(r)
    }
}

impl Events {
    /// Follows an answer of `GET /api/events` already known to be 200.
    pub fn from_response(r: reqwest::Response) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut body = r.bytes_stream();
        tokio::spawn(async move {
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let mut event = "";
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(e) = line.strip_prefix("event: ") {
                            event = if e == "cluster" { "cluster" } else { "other" };
                        } else if let Some(d) = line.strip_prefix("data: ") {
                            data.push_str(d);
                        }
                    }
                    if event == "cluster" {
                        if let Ok(v) = serde_json::from_str::<Value>(&data) {
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Events { rx }
    }
    /// Waits for a change of cluster `id` whose cluster matches `pred`;
    /// returns the cluster and when it arrived.
    pub async fn wait(
        &mut self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Value, Instant) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no matching event for cluster {id} within {timeout:?}"))
                .expect("event stream ended");
            if v["type"] == "upserted" && v["cluster"]["id"] == id && pred(&v["cluster"]) {
                return (v["cluster"].clone(), Instant::now());
            }
            if v["type"] == "removed" && v["clusterId"] == id && pred(&json!({"removed": true})) {
                return (v, Instant::now());
            }
        }
    }

    /// The next change of any cluster.
    pub async fn wait_any(&mut self, timeout: Duration) -> (Value, Instant) {
        let v = tokio::time::timeout(timeout, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {timeout:?}"))
            .expect("event stream ended");
        let c = if v["type"] == "upserted" {
            v["cluster"].clone()
        } else {
            v
        };
        (c, Instant::now())
    }

    /// Waits until the server ends the stream, skipping any events; false
    /// if it is still open after `timeout`.
    pub async fn ended(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async { while self.rx.recv().await.is_some() {} })
            .await
            .is_ok()
    }

    pub async fn wait_status(
        &mut self,
        id: &str,
        status: &str,
        timeout: Duration,
    ) -> (Value, Instant) {
        self.wait(id, timeout, |c| c["status"] == status).await
    }

    /// As `wait`, also returning every change the stream carried before the
    /// match (as sent: `{"type": "upserted", "cluster": …}` or `removed`).
    pub async fn wait_collecting(
        &mut self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Value, Vec<Value>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let v = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no matching event for cluster {id} within {timeout:?}"))
                .expect("event stream ended");
            if v["type"] == "upserted" && v["cluster"]["id"] == id && pred(&v["cluster"]) {
                return (v["cluster"].clone(), before);
            }
            before.push(v);
        }
    }
}

/// Proof that one offline grace has passed on the server (or, in Redis
/// mode, on every node) since this call, instead of sleeping "long enough":
/// a witness cluster in `project` gets an agent (through `base`), runs, and
/// loses it now; its `agent_offline` comes one grace later, from the same
/// kind of timer as any grace started before the call, which has therefore
/// fired by then. `events` is the caller's stream: the changes it carried
/// until the witness went offline are returned, for the caller to check.
pub async fn grace_passed(
    base: &str,
    api: &Api,
    project: &str,
    events: &mut Events,
) -> (String, Vec<Value>) {
    static WITNESSES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = WITNESSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("witness {n} {}", std::process::id());
    let node = format!("emqx@witness{n}-{}", std::process::id());
    let mut own = api.events().await;
    let (s, c) = api
        .post(&format!("{project}/clusters"), json!({ "name": name }))
        .await;
    assert_eq!(s, 201, "witness: {c}");
    let id = c["id"].as_str().expect("id").to_string();
    let (s, t) = api
        .post(
            &format!("{project}/clusters/{id}/registration-tokens"),
            json!({}),
        )
        .await;
    assert_eq!(s, 201, "witness token: {t}");
    let reg = ecp_testkit::register(
        &api.http,
        base,
        &ecp_testkit::register_body(
            t["token"].as_str().expect("token"),
            &format!("inst-{node}"),
            &node,
            "5.6.0",
        ),
    )
    .await
    .expect("witness register");
    let mut session = ecp_testkit::Session::connect(base, &reg.token, &reg.agent_id, None)
        .await
        .expect("witness connect");
    session
        .report(ecp_protocol::Health::Healthy, &[(node.as_str(), true)])
        .await
        .expect("witness report");
    own.wait_status(&id, "running", Duration::from_secs(20))
        .await;
    session.vanish();
    let (_, before) = events
        .wait_collecting(&id, Duration::from_secs(60), |c| {
            c["status"] == "abnormal" && c["reason"]["code"] == "agent_offline"
        })
        .await;
    (id, before)
}

/// A cluster named `name` with one test-client agent (EMQX node `node`)
/// connected and reporting healthy: the cluster is `running`.
pub async fn running_cluster(
    server: &Server,
    api: &Api,
    events: &mut Events,
    name: &str,
    node: &str,
) -> (String, ecp_testkit::Registration, ecp_testkit::Session) {
    let id = api.create_cluster(name).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let reg = ecp_testkit::register(
        &api.http,
        &server.base,
        // One agent instance per node (an instance belongs to one cluster).
        &ecp_testkit::register_body(&token, &format!("inst-{node}"), node, "5.6.0"),
    )
    .await
    .expect("register");
    let mut s = ecp_testkit::Session::connect(&server.base, &reg.token, &reg.agent_id, None)
        .await
        .expect("connect");
    s.report(ecp_protocol::Health::Healthy, &[(node, true)])
        .await
        .expect("report");
    events
        .wait_status(&id, "running", Duration::from_secs(10))
        .await;
    (id, reg, s)
}

/// Sends `METHOD path` with exactly these path bytes (HTTP clients would
/// resolve dot segments first) to `base` (`http://host:port`), with extra
/// header lines; returns the status and the body.
pub async fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("content-length: 0\r\n\r\n");
    conn.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {path}: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
