//! Node-to-node forwarding of bulk traffic (Redis mode). A dashboard request
//! that reaches a node without a session of the cluster's agents goes over
//! plain HTTP to the node that holds one — never through Redis. Each node
//! advertises its URL next to its presence; all nodes share one peer secret,
//! created once in Redis (`SET NX`), so operators configure nothing.

use crate::store::redis_coord::RedisCoordinator;
use redis::AsyncCommands;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The header that carries the peer secret.
pub const PEER_HEADER: &str = "x-ecp-peer";
/// Where forwarded tunnel requests arrive: `{PEER_PATH}/{agentId}/{path}`.
pub const PEER_PATH: &str = "/internal/peer/tunnel";
const URL_TTL_MS: u64 = 15_000;

pub struct Peers {
    coord: Arc<RedisCoordinator>,
    node: String,
    secret: String,
    /// This node's URL, known once the listener is bound.
    url: OnceLock<String>,
    pub http: reqwest::Client,
}

impl Peers {
    pub async fn join(coord: Arc<RedisCoordinator>, node: &str) -> Result<Peers, String> {
        let mut conn = coord.conn();
        let (candidate, _) = crate::auth::new_secret("ecpp_");
        let _: Option<String> = redis::cmd("SET")
            .arg("ecp:peer_secret")
            .arg(&candidate)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let secret: String = conn
            .get("ecp:peer_secret")
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Peers {
            coord,
            node: node.to_string(),
            secret,
            url: OnceLock::new(),
            http,
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether a forwarded request carries the shared secret.
    pub fn authentic(&self, header: Option<&[u8]>) -> bool {
        use subtle::ConstantTimeEq;
        header.is_some_and(|h| bool::from(h.ct_eq(self.secret.as_bytes())))
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Sets this node's URL (after binding) and advertises it.
    pub async fn set_url(&self, url: String) {
        let _ = self.url.set(url);
        self.advertise().await;
    }

    /// Refreshes the advertisement (every few seconds, with the presence).
    pub async fn advertise(&self) {
        let Some(url) = self.url.get() else { return };
        let mut conn = self.coord.conn();
        let r: Result<(), _> = conn
            .pset_ex(format!("ecp:node_url:{}", self.node), url, URL_TTL_MS)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot advertise this node's URL");
        }
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
}
