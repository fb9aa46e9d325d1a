//! Talking to EMQX with the dashboard user: v5 (`POST /api/v5/login`,
//! Bearer, re-login on 401) or v4 (Basic on the dashboard port, `{code,
//! data}` envelope). The flavour is detected. Parsing is in plain functions.

use ecp_protocol::{Connections, EmqxSummary, Health, NodeStatus};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeSet;

/// Most nodes one report carries (EMQX clusters are far smaller).
pub const MAX_NODES: usize = 512;
/// Longest name, version, role, edition or cluster name a report carries
/// (Erlang node and cluster names are atoms: at most 255 characters).
pub const MAX_TEXT: usize = 255;
/// Longest message in a health verdict.
pub const MAX_MESSAGE: usize = 512;
/// Largest EMQX answer the agent reads; a bigger one is an error (its
/// bytes are not kept). A thousand alarms with their details fit easily.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// `s` cut to at most `max` bytes, on a char boundary.
fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A text field of an EMQX answer, bounded.
fn text(v: &Value) -> Option<String> {
    v.as_str().map(|s| clip(s, MAX_TEXT))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    V4,
    V5,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EmqxError {
    Unreachable(String),
    AuthFailed(String),
    Malformed(String),
}

impl EmqxError {
    pub fn health(&self) -> Health {
        match self {
            // Messages can quote EMQX: bounded, so a report always fits a frame.
            EmqxError::Unreachable(m) => Health::EmqxUnreachable {
                message: clip(m, MAX_MESSAGE),
            },
            EmqxError::AuthFailed(m) => Health::EmqxAuthFailed {
                message: clip(m, MAX_MESSAGE),
            },
            EmqxError::Malformed(m) => Health::AgentError {
                message: clip(&format!("unexpected EMQX response: {m}"), MAX_MESSAGE),
            },
        }
    }
}

impl std::fmt::Display for EmqxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmqxError::Unreachable(m) => write!(f, "cannot reach the EMQX API: {m}"),
            EmqxError::AuthFailed(m) => {
                write!(f, "EMQX rejected the dashboard username or password ({m})")
            }
            EmqxError::Malformed(m) => write!(f, "unexpected EMQX response: {m}"),
        }
    }
}

/// One observation of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub health: Health,
    pub emqx: Option<EmqxSummary>,
    pub nodes: Vec<NodeStatus>,
    pub connections: Option<Connections>,
    pub local_node: Option<String>,
}

pub struct Emqx {
    http: reqwest::Client,
    api_url: String,
    username: String,
    password: String,
    pub flavor: Option<Flavor>,
    token: Option<String>,
    /// v4: every node seen so far.
    pub seen: BTreeSet<String>,
}

fn unreachable(e: reqwest::Error) -> EmqxError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    EmqxError::Unreachable(msg)
}

/// An answer's body, at most [`MAX_BODY`] bytes read.
async fn body_text(mut r: reqwest::Response) -> Result<String, EmqxError> {
    let too_big = || EmqxError::Malformed(format!("an answer over {MAX_BODY} bytes"));
    if r.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_big());
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(unreachable)? {
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(too_big());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// What an endpoint answered: its JSON (v4: its `data`), or nothing
/// because this EMQX has no such endpoint (404: another version or the
/// open-source edition).
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Found(Value),
    Missing,
}

fn status_error(status: StatusCode, body: &str) -> EmqxError {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        EmqxError::AuthFailed(format!("HTTP {}", status.as_u16()))
    } else if status.is_server_error() {
        EmqxError::Unreachable(format!("HTTP {}", status.as_u16()))
    } else {
        EmqxError::Malformed(format!(
            "HTTP {}: {}",
            status.as_u16(),
            body.chars().take(200).collect::<String>()
        ))
    }
}

impl Emqx {
    pub fn new(
        http: reqwest::Client,
        api_url: &str,
        username: &str,
        password: &str,
        seen: Vec<String>,
    ) -> Emqx {
        Emqx {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            username: username.to_string(),
            password: password.to_string(),
            flavor: None,
            token: None,
            seen: seen.into_iter().collect(),
        }
    }

    /// The credentials the dashboard tunnel injects: v4 Basic with the
    /// dashboard user; v5 the current login token.
    pub fn dashboard_auth(&self) -> Option<String> {
        use base64::Engine;
        match self.flavor {
            Some(Flavor::V5) => self.token.as_ref().map(|t| format!("Bearer {t}")),
            _ => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", self.username, self.password))
            )),
        }
    }

    /// v5 if `/api/v5/login` exists, else v4.
    pub async fn detect(&mut self) -> Result<Flavor, EmqxError> {
        match self.login_v5().await {
            Ok(()) => {
                self.flavor = Some(Flavor::V5);
                return Ok(Flavor::V5);
            }
            Err(EmqxError::Malformed(_)) => {}
            Err(e) => return Err(e),
        }
        // v4: a Basic-authenticated call on the dashboard port.
        self.get_v4("/api/v4/brokers").await?;
        self.flavor = Some(Flavor::V4);
        Ok(Flavor::V4)
    }

    async fn login_v5(&mut self) -> Result<(), EmqxError> {
        let r = self
            .http
            .post(format!("{}/api/v5/login", self.api_url))
            .json(&serde_json::json!({"username": self.username, "password": self.password}))
            .send()
            .await
            .map_err(unreachable)?;
        let status = r.status();
        let body = body_text(r).await?;
        if status == StatusCode::OK {
            let v: Value =
                serde_json::from_str(&body).map_err(|e| EmqxError::Malformed(e.to_string()))?;
            let token = v["token"]
                .as_str()
                .ok_or_else(|| EmqxError::Malformed("login answer has no token".into()))?;
            self.token = Some(token.to_string());
            return Ok(());
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(EmqxError::AuthFailed("v5 login refused".into()));
        }
        Err(status_error(status, &body))
    }

    async fn get_v5(&mut self, path: &str) -> Result<Value, EmqxError> {
        let (status, body) = self.get_v5_raw(path).await?;
        if !status.is_success() {
            return Err(status_error(status, &body));
        }
        v5_json(path, &body)
    }

    /// A v5 GET's status and body (logging in first, and once more when
    /// the token is refused).
    async fn get_v5_raw(&mut self, path: &str) -> Result<(StatusCode, String), EmqxError> {
        for attempt in 0..2 {
            if self.token.is_none() {
                self.login_v5().await?;
            }
            let r = self
                .http
                .get(format!("{}{path}", self.api_url))
                .bearer_auth(self.token.as_deref().unwrap_or_default())
                .send()
                .await
                .map_err(unreachable)?;
            let status = r.status();
            let body = body_text(r).await?;
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                // TOKEN_TIME_OUT or BAD_TOKEN: log in again once.
                self.token = None;
                continue;
            }
            return Ok((status, body));
        }
        Err(EmqxError::AuthFailed("token refused after re-login".into()))
    }

    async fn get_v4(&self, path: &str) -> Result<Value, EmqxError> {
        let (status, body) = self.get_v4_raw(path).await?;
        if !status.is_success() {
            return Err(status_error(status, &body));
        }
        v4_data(path, &body)
    }

    async fn get_v4_raw(&self, path: &str) -> Result<(StatusCode, String), EmqxError> {
        let r = self
            .http
            .get(format!("{}{path}", self.api_url))
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(unreachable)?;
        let status = r.status();
        Ok((status, body_text(r).await?))
    }

    /// GETs `path` (and query) with this flavour's authentication: its JSON
    /// (v4: the `data` of the envelope), or [`Fetched::Missing`] on 404.
    /// Detects the flavour first if need be.
    pub async fn fetch(&mut self, path: &str) -> Result<Fetched, EmqxError> {
        let flavor = match self.flavor {
            Some(f) => f,
            None => self.detect().await?,
        };
        let (status, body) = match flavor {
            Flavor::V5 => self.get_v5_raw(path).await?,
            Flavor::V4 => self.get_v4_raw(path).await?,
        };
        if status == StatusCode::NOT_FOUND {
            return Ok(Fetched::Missing);
        }
        if !status.is_success() {
            return Err(status_error(status, &body));
        }
        match flavor {
            Flavor::V5 => v5_json(path, &body),
            Flavor::V4 => v4_data(path, &body),
        }
        .map(Fetched::Found)
    }

    /// Polls the cluster. Errors become the observation's health.
    pub async fn observe(&mut self) -> Observation {
        let flavor = match self.flavor {
            Some(f) => f,
            None => match self.detect().await {
                Ok(f) => f,
                Err(e) => return failed(&e),
            },
        };
        let res = match flavor {
            Flavor::V5 => self.observe_v5().await,
            Flavor::V4 => self.observe_v4().await,
        };
        res.unwrap_or_else(|e| failed(&e))
    }

    async fn observe_v5(&mut self) -> Result<Observation, EmqxError> {
        let nodes = self.get_v5("/api/v5/nodes").await?;
        let stats = self.get_v5("/api/v5/stats?aggregate=true").await?;
        let cluster = self.get_v5("/api/v5/cluster").await?;
        let license = match self.get_v5("/api/v5/license").await {
            Ok(v) => Some(v),
            Err(EmqxError::Malformed(_)) => None, // not EE, or no license API
            Err(e) => return Err(e),
        };
        parse_v5(&nodes, &stats, &cluster, license.as_ref())
    }

    async fn observe_v4(&mut self) -> Result<Observation, EmqxError> {
        let nodes = self.get_v4("/api/v4/nodes").await?;
        let brokers = self.get_v4("/api/v4/brokers").await?;
        let stats = self.get_v4("/api/v4/stats").await?;
        let license = self.get_v4("/api/v4/license").await.ok();
        let mut obs = parse_v4(&nodes, &brokers, &stats, license.as_ref(), &mut self.seen)?;
        // v4 does not say which node answered: the one named after this host.
        let names: Vec<String> = obs.nodes.iter().map(|n| n.name.clone()).collect();
        if let Some(n) = pick_local(&names, &local_hosts()) {
            obs.local_node = Some(n);
        }
        Ok(obs)
    }
}

/// The JSON of a v5 answer (HTTP 2xx; v5 answers are bare values).
pub fn v5_json(path: &str, body: &str) -> Result<Value, EmqxError> {
    serde_json::from_str(body).map_err(|e| EmqxError::Malformed(format!("{path}: {e}")))
}

/// The `data` of a v4 answer (HTTP 2xx): `{"code": 0, "data": …}`; errors
/// come on HTTP 200 with a non-zero code (or none).
pub fn v4_data(path: &str, body: &str) -> Result<Value, EmqxError> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| EmqxError::Malformed(format!("{path}: {e}")))?;
    match v.get("code").and_then(Value::as_i64) {
        Some(0) => Ok(v["data"].clone()),
        _ => Err(EmqxError::Malformed(format!(
            "{path}: code {} {}",
            clip(&v["code"].to_string(), 40),
            clip(v["message"].as_str().unwrap_or_default(), 200)
        ))),
    }
}

fn failed(e: &EmqxError) -> Observation {
    Observation {
        health: e.health(),
        emqx: None,
        nodes: Vec::new(),
        connections: None,
        local_node: None,
    }
}

/// Minimum versions: v4 ≥ 4.4.6, v5 ≥ 5.6.0. `Err` names found and required.
pub fn check_version(version: &str) -> Result<(), (String, String)> {
    ecp_protocol::check_emqx_version(version)
        .map_err(|required| (version.to_string(), required.to_string()))
}

/// The verdict on a cluster: version first, then stopped nodes.
fn verdict(version: &str, nodes: &[NodeStatus]) -> Health {
    let stopped: Vec<String> = nodes
        .iter()
        .filter(|n| !n.running)
        .map(|n| n.name.clone())
        .collect();
    match check_version(version) {
        Err((found, required)) => Health::UnsupportedVersion { found, required },
        Ok(()) if !stopped.is_empty() => Health::NodesStopped { nodes: stopped },
        Ok(()) => Health::Healthy,
    }
}

fn u64_of(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().map(|f| f as u64))
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

pub fn parse_v5(
    nodes: &Value,
    stats: &Value,
    cluster: &Value,
    license: Option<&Value>,
) -> Result<Observation, EmqxError> {
    let list = nodes
        .as_array()
        .ok_or_else(|| EmqxError::Malformed("/api/v5/nodes is not an array".into()))?;
    if list.is_empty() {
        return Err(EmqxError::Malformed("/api/v5/nodes is empty".into()));
    }
    too_many(list.len())?;
    let mut out = Vec::new();
    for n in list {
        let name =
            text(&n["node"]).ok_or_else(|| EmqxError::Malformed("node without a name".into()))?;
        let running = n["node_status"].as_str() == Some("running");
        out.push(NodeStatus {
            name,
            running,
            version: text(&n["version"]),
            role: text(&n["role"]),
            connections: u64_of(&n["connections"]),
            uptime_secs: u64_of(&n["uptime"]).map(|ms| ms / 1000),
        });
    }
    let first = list
        .iter()
        .find(|n| n["node_status"] == "running")
        .unwrap_or(&list[0]);
    let version = text(&first["version"]).unwrap_or_default();
    let edition = text(&first["edition"]).unwrap_or_default();
    let summary = EmqxSummary {
        version: version.clone(),
        edition,
        cluster_name: text(&cluster["name"]).unwrap_or_default(),
    };
    let connections = Connections {
        current: u64_of(&stats["connections.count"])
            .or_else(|| u64_of(&stats["live_connections.count"]))
            .unwrap_or(0),
        max: license.and_then(|l| u64_of(&l["max_connections"])),
    };
    let health = verdict(&version, &out);
    Ok(Observation {
        health,
        emqx: Some(summary),
        nodes: out,
        connections: Some(connections),
        local_node: text(&cluster["self"]),
    })
}

/// More nodes than a report carries: an error rather than a report that
/// cannot be sent.
fn too_many(n: usize) -> Result<(), EmqxError> {
    if n > MAX_NODES {
        return Err(EmqxError::Malformed(format!(
            "{n} nodes; at most {MAX_NODES} are supported"
        )));
    }
    Ok(())
}

/// The node whose host part (`emqx@HOST`) names this machine.
pub fn pick_local(names: &[String], hosts: &[String]) -> Option<String> {
    names
        .iter()
        .find(|n| {
            n.split_once('@')
                .is_some_and(|(_, h)| hosts.iter().any(|x| x.eq_ignore_ascii_case(h)))
        })
        .cloned()
}

/// This machine's names: host name (full and short) and interface addresses.
pub fn local_hosts() -> Vec<String> {
    let mut out = Vec::new();
    let host = crate::home::hostname();
    if !host.is_empty() {
        if let Some((short, _)) = host.split_once('.') {
            out.push(short.to_string());
        }
        out.push(host);
    }
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            if let Some(ip) = a.address.as_ref().and_then(|s| {
                s.as_sockaddr_in()
                    .map(|v| std::net::IpAddr::V4(v.ip()))
                    .or_else(|| s.as_sockaddr_in6().map(|v| std::net::IpAddr::V6(v.ip())))
            }) {
                if !ip.is_loopback() {
                    out.push(ip.to_string());
                }
            }
        }
    }
    out
}

/// v4 drops stopped nodes from `/api/v4/nodes`: compare with every node seen.
pub fn parse_v4(
    nodes: &Value,
    brokers: &Value,
    stats: &Value,
    license: Option<&Value>,
    seen: &mut BTreeSet<String>,
) -> Result<Observation, EmqxError> {
    let list = nodes
        .as_array()
        .ok_or_else(|| EmqxError::Malformed("/api/v4/nodes data is not an array".into()))?;
    too_many(list.len())?;
    let mut running = Vec::new();
    let mut names = BTreeSet::new();
    for n in list {
        let name =
            text(&n["node"]).ok_or_else(|| EmqxError::Malformed("node without a name".into()))?;
        if n["node_status"].as_str() == Some("Running") {
            running.push((name.clone(), n));
        }
        names.insert(name);
    }
    // Every node seen so far is reported: that set is bounded too.
    too_many(seen.union(&names).count())?;
    seen.extend(names);
    let version = list
        .first()
        .and_then(|n| text(&n["version"]))
        .unwrap_or_default();
    let sysdescr = brokers
        .as_array()
        .and_then(|b| b.first())
        .and_then(|b| b["sysdescr"].as_str())
        .unwrap_or_default();
    let edition = if sysdescr.contains("Enterprise") {
        "Enterprise"
    } else {
        "Opensource"
    };
    let mut out: Vec<NodeStatus> = Vec::new();
    for name in seen.iter() {
        let live = running.iter().find(|(n, _)| n == name);
        out.push(NodeStatus {
            // Names remembered by an older agent were not cut yet.
            name: clip(name, MAX_TEXT),
            running: live.is_some(),
            version: live.and_then(|(_, v)| text(&v["version"])),
            role: None,
            connections: live.and_then(|(_, v)| u64_of(&v["connections"])),
            uptime_secs: live.and_then(|(_, v)| v["uptime"].as_str().map(uptime_secs)),
        });
    }
    let current: u64 = stats
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| u64_of(&s["stats"]["connections.count"]))
                .fold(0u64, u64::saturating_add)
        })
        .unwrap_or(0);
    let health = verdict(&version, &out);
    Ok(Observation {
        health,
        emqx: Some(EmqxSummary {
            version,
            edition: edition.into(),
            cluster_name: String::new(),
        }),
        nodes: out,
        connections: Some(Connections {
            current,
            max: license.and_then(|l| u64_of(&l["max_connections"])),
        }),
        local_node: running.first().map(|(n, _)| n.clone()),
    })
}

/// "2 days, 19 hours, 41 minutes, 47 seconds" → seconds.
pub fn uptime_secs(text: &str) -> u64 {
    text.split(',')
        .filter_map(|part| {
            let mut it = part.split_whitespace();
            let n: u64 = it.next()?.parse().ok()?;
            let unit = it.next()?;
            Some(n.saturating_mul(match unit.trim_end_matches('s') {
                "day" => 86_400,
                "hour" => 3_600,
                "minute" => 60,
                _ => 1,
            }))
        })
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_local_node_is_the_one_named_after_this_host() {
        let names = vec!["emqx@10.0.0.5".to_string(), "emqx@web-2".to_string()];
        let hosts = vec!["web-2".to_string(), "192.168.1.9".to_string()];
        assert_eq!(pick_local(&names, &hosts), Some("emqx@web-2".into()));
        assert_eq!(
            pick_local(&names, &["10.0.0.5".into()]),
            Some("emqx@10.0.0.5".into())
        );
        assert_eq!(pick_local(&names, &["other".into()]), None);
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn versions() {
        assert!(check_version("4.4.6").is_ok());
        assert!(check_version("5.6.1-patch.1").is_ok());
        assert_eq!(
            check_version("4.4.5"),
            Err(("4.4.5".into(), "4.4.6 or later".into()))
        );
        assert_eq!(
            check_version("5.5.1"),
            Err(("5.5.1".into(), "5.6.0 or later".into()))
        );
    }

    #[test]
    fn v5_stopped_core_nodes_have_three_fields() {
        let nodes = json!([
            {"node": "emqx@a", "node_status": "running", "role": "core", "version": "5.6.0", "edition": "Enterprise", "uptime": 5120000, "connections": 7},
            {"node": "emqx@b", "node_status": "stopped", "role": "core"}
        ]);
        let o = parse_v5(
            &nodes,
            &json!({"connections.count": 7}),
            &json!({"name": "emqxcl", "self": "emqx@a"}),
            Some(&json!({"max_connections": 100})),
        )
        .expect("parse");
        assert_eq!(
            o.health,
            Health::NodesStopped {
                nodes: vec!["emqx@b".into()]
            }
        );
        assert_eq!(
            o.connections,
            Some(Connections {
                current: 7,
                max: Some(100)
            })
        );
        assert_eq!(o.nodes[0].uptime_secs, Some(5120));
        assert_eq!(o.local_node.as_deref(), Some("emqx@a"));
        assert!(parse_v5(&json!({"data": []}), &json!({}), &json!({}), None).is_err());
    }

    #[test]
    fn v4_remembers_nodes_that_vanished() {
        let mut seen = BTreeSet::new();
        let node = |n: &str| json!({"node": n, "node_status": "Running", "version": "4.4.6", "uptime": "1 hours, 2 minutes, 3 seconds", "connections": 4});
        let brokers = json!([{"sysdescr": "EMQ X Enterprise"}]);
        let stats = json!([{"node": "emqx@a", "stats": {"connections.count": 4}}, {"node": "emqx@b", "stats": {"connections.count": 4}}]);
        let o = parse_v4(
            &json!([node("emqx@a"), node("emqx@b")]),
            &brokers,
            &stats,
            None,
            &mut seen,
        )
        .expect("parse");
        assert_eq!(o.health, Health::Healthy);
        assert_eq!(o.connections.map(|c| c.current), Some(8));
        assert_eq!(o.nodes[0].uptime_secs, Some(3723));
        assert_eq!(o.emqx.map(|e| e.edition), Some("Enterprise".into()));
        let o =
            parse_v4(&json!([node("emqx@a")]), &brokers, &stats, None, &mut seen).expect("parse");
        assert_eq!(
            o.health,
            Health::NodesStopped {
                nodes: vec!["emqx@b".into()]
            }
        );
        assert_eq!(o.nodes.len(), 2);
    }

    /// Found by the fuzzer (emqx-v4, short pass): `connections.count`
    /// values summed with `+` overflowed (a panic in debug builds).
    #[test]
    fn huge_counts_and_uptimes_saturate() {
        let stats = json!([{"stats": {"connections.count": u64::MAX}}, {"stats": {"connections.count": 1}}]);
        let nodes = json!([{"node": "emqx@a", "node_status": "Running", "version": "4.4.6",
            "uptime": "18446744073709551615 days, 1 seconds"}]);
        let o = parse_v4(&nodes, &json!([]), &stats, None, &mut BTreeSet::new()).expect("parse");
        assert_eq!(o.connections.map(|c| c.current), Some(u64::MAX));
        assert_eq!(o.nodes[0].uptime_secs, Some(u64::MAX));
        assert_eq!(uptime_secs("213503982334602 days, 2 days"), u64::MAX);
    }

    /// Found by the fuzzer (emqx-v5 and emqx-v4, short pass): texts from
    /// EMQX went into reports uncut, so a long enough answer made a report
    /// larger than a frame, which the agent cannot send (it lost its session
    /// on every poll). Names, versions and messages are now bounded, and so
    /// is the number of nodes.
    #[test]
    fn reports_from_any_answer_fit_a_frame() {
        let long = "n".repeat(300_000);
        let nodes = json!([{"node": long, "node_status": "running", "version": long, "role": long, "edition": long}]);
        let o = parse_v5(
            &nodes,
            &json!({}),
            &json!({"name": long, "self": long}),
            None,
        )
        .expect("parse");
        assert_eq!(o.nodes[0].name.len(), MAX_TEXT);
        assert_eq!(o.local_node.map(|n| n.len()), Some(MAX_TEXT));
        let many: Vec<Value> = (0..=MAX_NODES)
            .map(|i| json!({"node": format!("emqx@{i}"), "node_status": "running"}))
            .collect();
        assert!(parse_v5(&json!(many), &json!({}), &json!({}), None).is_err());
        let mut seen: BTreeSet<String> = (0..MAX_NODES).map(|i| format!("emqx@old{i}")).collect();
        let e = parse_v4(
            &json!([{"node": "emqx@new"}]),
            &json!([]),
            &json!([]),
            None,
            &mut seen,
        )
        .expect_err("one more node than a report carries");
        assert!(!seen.contains("emqx@new"), "seen is left as it was");
        let e4 = v4_data(
            "/api/v4/nodes",
            &json!({"code": 1, "message": long}).to_string(),
        )
        .expect_err("an error answer");
        for e in [e, e4] {
            let h = e.health();
            let Health::AgentError { message } = &h else {
                panic!("{h:?}");
            };
            assert!(message.len() <= MAX_MESSAGE);
        }
    }

    #[test]
    fn old_versions_are_unsupported_in_reports() {
        let nodes = json!([{"node": "emqx@a", "node_status": "running", "version": "5.5.1", "edition": "Enterprise"}]);
        let o = parse_v5(&nodes, &json!({}), &json!({}), None).expect("parse");
        assert!(matches!(o.health, Health::UnsupportedVersion { .. }));
    }
}
