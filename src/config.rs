//! Configuration: defaults < `config/ecp.toml` (or `--config FILE`) <
//! environment (`ECP_<SECTION>_<KEY>`, e.g. `ECP_SERVER_LISTEN`) < flags.
//! `config/ecp.toml` documents every option; a test keeps it equal to
//! `Config::default()`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub node: NodeConfig,
    pub cluster: ClusterConfig,
    pub agent: AgentConfig,
    pub tokens: TokenConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub logs: LogsConfig,
    pub audit: AuditConfig,
    pub metrics: MetricsConfig,
    pub alerts: AlertsConfig,
}

/// The audit log's retention, applied by the housekeeping loop (every 10 min).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Records older than this many days are dropped; 0: kept for any age.
    pub retention_days: u32,
    /// At most this many records are kept (the newest); 0: no count limit.
    pub max_records: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: 90,
            max_records: 100_000,
        }
    }
}

/// `/metrics`, and the EMQX metrics agents collect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// How often the clusters-by-status figures and the managed clusters'
    /// latest EMQX metrics are read from the store (in the background;
    /// scrapes read the last reading).
    pub clusters_refresh_secs: u32,
    /// Agents collect EMQX metrics this often (sent to agents at connect).
    pub collect_interval_secs: u32,
    /// A scrape presenting `Authorization: Bearer <this>` also gets every
    /// managed cluster's latest EMQX figures, labelled with org, project and
    /// cluster names (the fleet); without it (or while empty) `/metrics`
    /// holds only this node's own figures, which name no tenant.
    pub scrape_token: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            clusters_refresh_secs: 15,
            collect_interval_secs: 15,
            scrape_token: String::new(),
        }
    }
}

/// Alert evaluation and notification delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Each cluster's rules are evaluated at least this often (and at once
    /// when what they look at changes).
    pub eval_interval_secs: u32,
    /// A channel's storm limit when it sets none: notifications per minute,
    /// then one summary.
    pub max_notifications_per_minute: u32,
    /// The storm-control window ("per minute"); shorter only in tests.
    pub storm_window_secs: u32,
    /// A node taking a delivery holds it this long; a node that dies while
    /// sending leaves it to another after that.
    pub delivery_lease_secs: u32,
    /// One webhook request or SMTP session may take this long.
    pub delivery_timeout_secs: u32,
    /// Deliveries sent at once by one node.
    pub delivery_concurrency: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            eval_interval_secs: 5,
            max_notifications_per_minute: 10,
            storm_window_secs: 60,
            delivery_lease_secs: 30,
            delivery_timeout_secs: 10,
            delivery_concurrency: 8,
        }
    }
}

/// Collected EMQX logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Lines kept per cluster; the oldest go first.
    pub lines_per_cluster: u64,
    /// Stored lines one log request may read (its scan budget); a search
    /// that stops there answers `partial` with a cursor to continue.
    pub scan_lines_per_request: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            lines_per_cluster: 1_000_000,
            scan_lines_per_request: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Agent registrations admitted per second on this node (token bucket);
    /// beyond it: 429 with Retry-After.
    pub registrations_per_sec: u32,
    pub registration_burst: u32,
    /// Agent WebSocket upgrades admitted per second on this node.
    pub ws_upgrades_per_sec: u32,
    pub ws_upgrade_burst: u32,
    /// After repeated wrong passwords: how long a refused (user, address)
    /// stays refused, and how long failures are remembered.
    pub login_lockout_secs: u32,
    /// Open `GET /api/events` streams one user may hold on this node;
    /// beyond it: 429.
    pub event_streams_per_user: u32,
    /// Password hashes/verifications (Argon2id, ~19 MiB each) run at once
    /// on this node; 0: one per core.
    pub argon2_concurrency: usize,
    /// Password checks waiting for a place; beyond it: 429.
    pub argon2_queue: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            registrations_per_sec: 100,
            registration_burst: 200,
            ws_upgrades_per_sec: 500,
            ws_upgrade_burst: 1000,
            login_lockout_secs: 900,
            event_streams_per_user: 8,
            argon2_concurrency: 0,
            argon2_queue: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: String,
    /// The console's public URL (used in links); empty: from the request.
    pub public_url: String,
    /// Largest accepted JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0: one per core.
    pub workers: usize,
    /// On SIGTERM: how long to wait for agents to move before exiting.
    pub drain_timeout_secs: u32,
    /// On SIGTERM: agents told to reconnect per batch, and the pause between batches.
    pub drain_batch: u32,
    pub drain_batch_interval_ms: u32,
    /// Load balancers whose `X-Forwarded-For` is believed (comma-separated
    /// addresses or CIDR ranges); empty: the peer address is the client.
    pub trusted_proxies: String,
    /// Where EMQX dashboards are served: a listener of their own, so that
    /// their pages run on an origin other than the console's (same host,
    /// another port). Empty: no dashboard listener (then dashboards are
    /// served only on `dashboard_origin`, if set).
    pub dashboard_listen: String,
    /// The public origin (scheme://host[:port]) under which browsers reach
    /// dashboards: a second DNS name for ECP's nodes (served by the main
    /// listener for that host name only), or the dashboard listener behind a
    /// load balancer. Empty: the console's scheme and host with the
    /// dashboard listener's port.
    pub dashboard_origin: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// "embedded" (on-disk, single node) or "redis".
    pub backend: String,
    /// Directory of the embedded store.
    pub data_dir: String,
    /// Redis URL for the "redis" back end.
    pub redis_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id; empty: the host name.
    pub id: String,
    /// URL other nodes use to reach this one; empty: derived from `server.listen`.
    pub advertise_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    pub agent: ClusterAgentConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterAgentConfig {
    /// The ECP address agents use (download and register commands);
    /// empty: `server.public_url`, else the console's own address.
    pub url: String,
    /// Directory holding `emqxee-agent-linux-{amd64,arm,arm64}` for download;
    /// empty: the directory of the `ecp` executable (whose own-architecture
    /// `emqxee-agent` is also served).
    pub binaries_dir: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub heartbeat_interval_secs: u32,
    pub report_interval_secs: u32,
    pub ping_interval_secs: u32,
    /// A session silent (no frame, no pong) this long is closed.
    pub idle_timeout_secs: u32,
    /// No agent session for longer than this: `abnormal` / `agent_offline`.
    pub offline_grace_secs: u32,
    /// How long `deleting` waits for agents to acknowledge.
    pub delete_timeout_secs: u32,
    /// Outbound queue lengths per session (frames).
    pub control_queue: usize,
    pub bulk_queue: usize,
    /// Agents get a fresh credential at every session and then this often;
    /// the old one stops working once the agent stored the new one.
    pub credential_rotate_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Default lifetime of a registration token.
    pub registration_ttl_secs: u64,
    /// Upper bound for `ttlSeconds` when issuing one.
    pub registration_max_ttl_secs: u64,
    /// Lifetime of a console/API login.
    pub session_ttl_secs: u64,
    /// An opened dashboard's capability lapses after this long without use
    /// (never later than the login it was opened from).
    pub dashboard_idle_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// "text" or "json".
    pub format: String,
    /// tracing filter, e.g. "info" or "ecp=debug,info".
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:8080".into(),
            public_url: String::new(),
            max_body_bytes: 64 * 1024,
            workers: 0,
            drain_timeout_secs: 15,
            drain_batch: 200,
            drain_batch_interval_ms: 100,
            trusted_proxies: String::new(),
            dashboard_listen: "0.0.0.0:8081".into(),
            dashboard_origin: String::new(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: "embedded".into(),
            data_dir: "./data".into(),
            redis_url: String::new(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            heartbeat_interval_secs: 10,
            report_interval_secs: 10,
            ping_interval_secs: 15,
            idle_timeout_secs: 45,
            offline_grace_secs: 30,
            delete_timeout_secs: 10,
            control_queue: 64,
            bulk_queue: 256,
            credential_rotate_secs: 3600,
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            registration_ttl_secs: 24 * 3600,
            registration_max_ttl_secs: 7 * 24 * 3600,
            session_ttl_secs: 12 * 3600,
            dashboard_idle_secs: 30 * 60,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration in {origin}: {message}")]
    Invalid { origin: String, message: String },
}

fn invalid(origin: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_string(),
        message: message.to_string(),
    }
}

impl Config {
    /// Defaults, then `file` (if given), then `ECP_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut value =
            toml::Value::try_from(Config::default()).map_err(|e| invalid("defaults", e))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let file_value: toml::Value =
                toml::from_str(&text).map_err(|e| invalid(&path.display().to_string(), e))?;
            merge(&mut value, file_value);
        }
        let env: Vec<(String, String)> = env.filter(|(k, _)| k.starts_with("ECP_")).collect();
        apply_env(&mut value, &[], &env)?;
        let origin = file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "environment".into());
        let config: Config = value.try_into().map_err(|e| invalid(&origin, e))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.store.backend.as_str() {
            "embedded" => {}
            "redis" if !self.store.redis_url.is_empty() => {}
            "redis" => {
                return Err(invalid(
                    "store.redis_url",
                    "required with store.backend = \"redis\"",
                ))
            }
            other => {
                return Err(invalid(
                    "store.backend",
                    format!("unknown back end {other:?}; use \"embedded\" or \"redis\""),
                ))
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "use \"text\" or \"json\""));
        }
        let a = &self.agent;
        if a.heartbeat_interval_secs == 0
            || a.report_interval_secs == 0
            || a.ping_interval_secs == 0
        {
            return Err(invalid("agent", "intervals must be at least 1 second"));
        }
        if a.idle_timeout_secs <= a.ping_interval_secs {
            return Err(invalid(
                "agent.idle_timeout_secs",
                "must be longer than agent.ping_interval_secs",
            ));
        }
        if self.limits.registrations_per_sec == 0 || self.limits.ws_upgrades_per_sec == 0 {
            return Err(invalid("limits", "rates must be at least 1 per second"));
        }
        if let Err(e) = origin_host(&self.server.dashboard_origin) {
            return Err(invalid("server.dashboard_origin", e));
        }
        if self.tokens.dashboard_idle_secs < 60 {
            return Err(invalid(
                "tokens.dashboard_idle_secs",
                "must be at least 60 seconds",
            ));
        }
        if let Err(e) = crate::client_ip::parse_trusted(&self.server.trusted_proxies) {
            return Err(invalid("server.trusted_proxies", e));
        }
        if !self.metrics.scrape_token.is_empty() && self.metrics.scrape_token.len() < 16 {
            return Err(invalid(
                "metrics.scrape_token",
                "must be at least 16 characters (or empty: no fleet export)",
            ));
        }
        if self.alerts.delivery_lease_secs <= self.alerts.delivery_timeout_secs {
            return Err(invalid(
                "alerts.delivery_lease_secs",
                "must be longer than alerts.delivery_timeout_secs (else a slow delivery is sent twice)",
            ));
        }
        if self.metrics.clusters_refresh_secs == 0 {
            return Err(invalid(
                "metrics.clusters_refresh_secs",
                "must be at least 1",
            ));
        }
        if self.server.drain_batch == 0 {
            return Err(invalid("server.drain_batch", "must be at least 1"));
        }
        if self.tokens.registration_ttl_secs == 0
            || self.tokens.registration_ttl_secs > self.tokens.registration_max_ttl_secs
        {
            return Err(invalid(
                "tokens.registration_ttl_secs",
                "must be between 1 and tokens.registration_max_ttl_secs",
            ));
        }
        Ok(())
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `ECP_SERVER_LISTEN` sets `server.listen`; `ECP_CLUSTER_AGENT_URL` sets
/// `cluster.agent.url`. Values are parsed as the option's type.
fn apply_env(
    value: &mut toml::Value,
    path: &[String],
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    let Some(table) = value.as_table_mut() else {
        return Ok(());
    };
    for (key, slot) in table.iter_mut() {
        let mut p = path.to_vec();
        p.push(key.clone());
        if slot.is_table() {
            apply_env(slot, &p, env)?;
            continue;
        }
        let var = format!("ECP_{}", p.join("_").to_uppercase());
        if let Some((_, raw)) = env.iter().find(|(k, _)| *k == var) {
            *slot = match slot {
                toml::Value::Integer(_) => toml::Value::Integer(
                    raw.parse()
                        .map_err(|_| invalid(&var, format!("{raw:?} is not a number")))?,
                ),
                toml::Value::Boolean(_) => toml::Value::Boolean(
                    raw.parse()
                        .map_err(|_| invalid(&var, format!("{raw:?} is not true/false")))?,
                ),
                _ => toml::Value::String(raw.clone()),
            };
        }
    }
    Ok(())
}

/// The `host[:port]` of an origin like `https://dash.example.com`; empty
/// for an empty origin.
pub fn origin_host(origin: &str) -> Result<String, String> {
    if origin.is_empty() {
        return Ok(String::new());
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{origin:?} must start with http:// or https://"))?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "{origin:?} must be scheme://host[:port], without a path"
        ));
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {

    #[test]
    fn dashboard_origins_are_scheme_and_host_only() {
        assert_eq!(origin_host(""), Ok(String::new()));
        assert_eq!(
            origin_host("https://Dash.Example.com/"),
            Ok("dash.example.com".into())
        );
        assert_eq!(
            origin_host("http://localhost:8081"),
            Ok("localhost:8081".into())
        );
        for bad in ["dash.example.com", "ftp://x", "https://x/path", "https://"] {
            assert!(origin_host(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ecp.toml")
    }

    #[test]
    fn shipped_file_equals_the_code_defaults_key_for_key() {
        let text = std::fs::read_to_string(shipped()).expect("config/ecp.toml");
        let file: toml::Value = toml::from_str(&text).expect("valid toml");
        let defaults = toml::Value::try_from(Config::default()).expect("serialize");
        assert_eq!(
            file, defaults,
            "config/ecp.toml must list every option with its default"
        );
    }

    #[test]
    fn precedence_file_then_env() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[server]\nlisten = \"127.0.0.1:1\"\n[agent]\noffline_grace_secs = 5\n",
        )
        .expect("write");
        let env = vec![
            ("ECP_SERVER_LISTEN".to_string(), "127.0.0.1:2".to_string()),
            (
                "ECP_CLUSTER_AGENT_URL".to_string(),
                "https://ecp.example".to_string(),
            ),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let c = Config::load(Some(&f), env.into_iter()).expect("load");
        assert_eq!(c.server.listen, "127.0.0.1:2");
        assert_eq!(c.agent.offline_grace_secs, 5);
        assert_eq!(c.cluster.agent.url, "https://ecp.example");
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let env = vec![(
            "ECP_AGENT_OFFLINE_GRACE_SECS".to_string(),
            "soon".to_string(),
        )];
        let e = Config::load(None, env.into_iter()).expect_err("must fail");
        assert!(
            e.to_string().contains("ECP_AGENT_OFFLINE_GRACE_SECS"),
            "{e}"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[server]\nlisten_addr = \"x\"\n").expect("write");
        let e = Config::load(Some(&f), std::iter::empty()).expect_err("unknown key");
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let env = vec![("ECP_STORE_BACKEND".to_string(), "redis".to_string())];
        let e = Config::load(None, env.into_iter()).expect_err("redis without url");
        assert!(e.to_string().contains("redis_url"), "{e}");
    }
}
