//! The simulated cluster: nodes, credentials, faults.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    Enterprise,
    Opensource,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: String,
    /// e.g. "5.6.0" or "4.4.6"; the major version picks the API flavour.
    pub version: String,
    pub edition: Edition,
    pub nodes: usize,
    pub cluster_name: String,
    pub username: String,
    pub password: String,
    pub license_max_connections: u64,
    /// v5 dashboard token lifetime.
    pub token_ttl: Duration,
    /// v4 `bad_login_penalty`: a failed Basic check sleeps this long.
    pub v4_bad_login_penalty: Duration,
    /// Connections per running node.
    pub connections_per_node: u64,
    /// 1-based index of the node this endpoint belongs to (v5 `self`).
    pub self_node: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: "127.0.0.1:0".into(),
            version: "5.6.0".into(),
            edition: Edition::Enterprise,
            nodes: 3,
            cluster_name: "emqxcl".into(),
            username: "admin".into(),
            password: "public".into(),
            license_max_connections: 10_000,
            token_ttl: Duration::from_secs(3600),
            v4_bad_login_penalty: Duration::from_secs(2),
            connections_per_node: 100,
            self_node: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub running: bool,
    pub started: Instant,
    pub connections: u64,
}

#[derive(Debug)]
pub struct SimState {
    pub config: SimConfig,
    pub nodes: Vec<Node>,
    pub password: String,
    /// v5 tokens → expiry.
    pub tokens: HashMap<String, Instant>,
    pub latency: Duration,
    /// Answer every API call with this 5xx status.
    pub fail_status: Option<u16>,
    /// Requests seen, by path (for tests).
    pub hits: HashMap<String, u64>,
    /// Log writing jobs started through `/__sim/logs`.
    pub log_jobs: Vec<LogJob>,
}

#[derive(Debug)]
pub struct LogJob {
    pub node: String,
    pub total: u64,
    pub written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub done: std::sync::Arc<std::sync::Mutex<Option<Result<f64, String>>>>,
}

impl SimState {
    pub fn new(config: SimConfig) -> SimState {
        let host = if config.cluster_name.is_empty() {
            "emqxcl"
        } else {
            &config.cluster_name
        };
        let nodes = (1..=config.nodes.max(1))
            .map(|i| Node {
                name: format!("emqx@node{i}.{host}"),
                running: true,
                started: Instant::now(),
                connections: config.connections_per_node,
            })
            .collect();
        SimState {
            password: config.password.clone(),
            config,
            nodes,
            tokens: HashMap::new(),
            latency: Duration::ZERO,
            fail_status: None,
            hits: HashMap::new(),
            log_jobs: Vec::new(),
        }
    }

    pub fn major(&self) -> u32 {
        self.config
            .version
            .trim_start_matches(['v', 'e'])
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(5)
    }

    pub fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.running)
    }

    pub fn enterprise(&self) -> bool {
        self.config.edition == Edition::Enterprise
    }
}

/// v4's uptime text: "2 days, 19 hours, 41 minutes, 47 seconds", leading zero units dropped.
pub fn uptime_text(secs: u64) -> String {
    let units = [
        (86_400, "days"),
        (3_600, "hours"),
        (60, "minutes"),
        (1, "seconds"),
    ];
    let mut rest = secs;
    let mut parts = Vec::new();
    for (size, name) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || !parts.is_empty() || size == 1 {
            parts.push(format!("{n} {name}"));
        }
    }
    parts.join(", ")
}

/// The `kmg` formatting EMQX uses for memory: "512.00M".
pub fn kmg(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1_073_741_824.0 {
        format!("{:.2}G", b / 1_073_741_824.0)
    } else if b >= 1_048_576.0 {
        format!("{:.2}M", b / 1_048_576.0)
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_text_drops_leading_zero_units() {
        assert_eq!(uptime_text(7), "7 seconds");
        assert_eq!(uptime_text(3_600 + 5), "1 hours, 0 minutes, 5 seconds");
        assert_eq!(
            uptime_text(2 * 86_400 + 19 * 3_600 + 41 * 60 + 47),
            "2 days, 19 hours, 41 minutes, 47 seconds"
        );
    }

    #[test]
    fn kmg_like_emqx() {
        assert_eq!(kmg(512 * 1_048_576), "512.00M");
        assert_eq!(kmg(2_083_059_712), "1.94G");
    }
}
