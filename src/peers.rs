//! Node-to-node forwarding of bulk traffic (Redis mode). A dashboard request
//! that reaches a node without a session of the cluster's agents goes over
//! plain HTTP to the node that holds one — never through Redis. Each node
//! advertises its URL next to its presence; all nodes share one peer secret,
//! created once in Redis (`SET NX`), so operators configure nothing.
//!
//! The secret goes nowhere but a node's advertised URL: the peer client
//! follows no redirects. `ecp peer-secret rotate` replaces it; nodes keep
//! accepting the previous one until they have all picked up the new one
//! (they re-read both every few seconds, and at once on a mismatch).

use crate::store::redis_coord::RedisCoordinator;
use redis::AsyncCommands;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The header that carries the peer secret.
pub const PEER_HEADER: &str = "x-ecp-peer";
/// The agent whose tunnel a forwarded request is for.
pub const PEER_AGENT_HEADER: &str = "x-ecp-peer-agent";
/// The dashboard path (and query) of a forwarded request, as the browser
/// sent it: in a header, so no URL parser on the way can re-resolve it.
pub const PEER_PATH_HEADER: &str = "x-ecp-peer-path";
/// Where forwarded tunnel requests arrive.
pub const PEER_PATH: &str = "/internal/peer/tunnel";
const URL_TTL_MS: u64 = 15_000;
const SECRET_KEY: &str = "ecp:peer_secret";
const PREVIOUS_KEY: &str = "ecp:peer_secret:previous";
/// How often a mismatch may trigger a fresh read of the secrets.
const REREAD_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Default)]
struct Secrets {
    current: String,
    previous: Option<String>,
}

pub struct Peers {
    coord: Arc<RedisCoordinator>,
    node: String,
    secrets: Mutex<Secrets>,
    last_read: Mutex<Option<Instant>>,
    /// This node's URL, known once the listener is bound.
    url: OnceLock<String>,
    pub http: reqwest::Client,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `header` is one of the accepted secrets (constant time).
pub fn accepts(header: Option<&[u8]>, current: &str, previous: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let Some(h) = header else { return false };
    let is = |s: &str| !s.is_empty() && bool::from(h.ct_eq(s.as_bytes()));
    is(current) | previous.is_some_and(is)
}

async fn read_secrets(conn: &mut redis::aio::ConnectionManager) -> Result<Secrets, String> {
    let (current, previous): (Option<String>, Option<String>) = redis::pipe()
        .get(SECRET_KEY)
        .get(PREVIOUS_KEY)
        .query_async(conn)
        .await
        .map_err(|e| format!("redis: {e}"))?;
    Ok(Secrets {
        current: current.ok_or("redis: the peer secret is missing")?,
        previous,
    })
}

/// `ecp peer-secret rotate`: a new secret; the old one stays accepted as
/// "previous" until the next rotation.
pub async fn rotate(redis_url: &str) -> Result<(), String> {
    let client = redis::Client::open(redis_url).map_err(|e| format!("bad redis URL: {e}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("redis: {e}"))?;
    let (fresh, _) = crate::auth::new_secret("ecpp_");
    let script = redis::Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if cur then redis.call('SET', KEYS[2], cur) end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"#,
    );
    let _: i64 = script
        .key(SECRET_KEY)
        .key(PREVIOUS_KEY)
        .arg(&fresh)
        .invoke_async(&mut conn)
        .await
        .map_err(|e| format!("redis: {e}"))?;
    Ok(())
}

impl Peers {
    pub async fn join(coord: Arc<RedisCoordinator>, node: &str) -> Result<Peers, String> {
        let mut conn = coord.conn();
        let (candidate, _) = crate::auth::new_secret("ecpp_");
        let _: Option<String> = redis::cmd("SET")
            .arg(SECRET_KEY)
            .arg(&candidate)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let secrets = read_secrets(&mut conn).await?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(30))
            // A redirect would carry the secret to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Peers {
            coord,
            node: node.to_string(),
            secrets: Mutex::new(secrets),
            last_read: Mutex::new(Some(Instant::now())),
            url: OnceLock::new(),
            http,
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether a forwarded request carries an accepted secret. On a
    /// mismatch the secrets are read again (at most once a second), so a
    /// rotation is picked up at once.
    pub async fn authentic(&self, header: Option<&[u8]>) -> bool {
        let check = |s: &Secrets| accepts(header, &s.current, s.previous.as_deref());
        if check(&lock(&self.secrets)) {
            return true;
        }
        let due = lock(&self.last_read).is_none_or(|t| t.elapsed() >= REREAD_EVERY);
        if !due {
            return false;
        }
        self.refresh().await;
        check(&lock(&self.secrets))
    }

    /// The secret this node sends.
    pub fn secret(&self) -> String {
        lock(&self.secrets).current.clone()
    }

    /// Reads the secrets again (rotation).
    pub async fn refresh(&self) {
        *lock(&self.last_read) = Some(Instant::now());
        let mut conn = self.coord.conn();
        match read_secrets(&mut conn).await {
            Ok(s) => *lock(&self.secrets) = s,
            Err(e) => tracing::warn!(error = %e, "cannot read the peer secret"),
        }
    }

    /// Sets this node's URL (after binding) and advertises it.
    pub async fn set_url(&self, url: String) {
        let _ = self.url.set(url);
        self.advertise().await;
    }

    /// Refreshes the advertisement and the secrets (every few seconds).
    pub async fn advertise(&self) {
        if let Some(url) = self.url.get() {
            let mut conn = self.coord.conn();
            let r: Result<(), _> = conn
                .pset_ex(format!("ecp:node_url:{}", self.node), url, URL_TTL_MS)
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot advertise this node's URL");
            }
        }
        self.refresh().await;
    }

    /// The URL of another node, if it is alive.
    pub async fn url_of(&self, node: &str) -> Option<String> {
        let mut conn = self.coord.conn();
        conn.get(format!("ecp:node_url:{node}"))
            .await
            .ok()
            .flatten()
    }
}

/// This node's URL for peers: `node.advertise_url`, else the bound address
/// (an unspecified address is replaced by the host name).
pub fn own_url(configured: &str, bound: std::net::SocketAddr) -> String {
    if !configured.is_empty() {
        return configured.trim_end_matches('/').to_string();
    }
    let host = if bound.ip().is_unspecified() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    } else {
        bound.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    format!("http://{host}:{}", bound.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_url_prefers_the_setting_then_the_bound_address() {
        let a: std::net::SocketAddr = "10.1.2.3:8080".parse().expect("addr");
        assert_eq!(own_url("", a), "http://10.1.2.3:8080");
        assert_eq!(own_url("http://ecp-1:8080/", a), "http://ecp-1:8080");
        let v6: std::net::SocketAddr = "[fd00::1]:80".parse().expect("addr");
        assert_eq!(own_url("", v6), "http://[fd00::1]:80");
        let any: std::net::SocketAddr = "0.0.0.0:9".parse().expect("addr");
        assert!(own_url("", any).ends_with(":9") && !own_url("", any).contains("0.0.0.0"));
    }

    #[test]
    fn the_current_and_the_previous_secret_are_accepted() {
        assert!(accepts(Some(b"new"), "new", Some("old")));
        assert!(accepts(Some(b"old"), "new", Some("old")));
        assert!(!accepts(Some(b"older"), "new", Some("old")));
        assert!(!accepts(None, "new", Some("old")));
        assert!(!accepts(Some(b""), "", None));
        assert!(!accepts(Some(b"x"), "new", None));
    }
}
