//! The Redis coordinator: leases `ecp:lease:{cluster}` = node (SET NX PX,
//! renewed only by their holder), presence `ecp:presence:{agent}` =
//! `node|session` with a TTL, changes on channel `ecp:changes`, node
//! messages on `ecp:node:{node}`, "user U's access changed" notices
//! (`crate::revoke`) on `ecp:access`. Pub/sub is lossy and its connection does
//! not reconnect by itself: the subscriber loop (`subscribe`) resubscribes
//! after every failure and reports it so consoles re-read.

use ecp_actors::coord::{Coordinator, NodeMsg};
use ecp_actors::model::ClusterChange;
use ecp_actors::store::{StoreError, StoreResult};
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const CLAIM: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"#;

const RELEASE_IF: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

const PING: &str = "__ping__";

pub struct RedisCoordinator {
    node: String,
    conn: ConnectionManager,
    client: redis::Client,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

/// What travels on `ecp:changes`.
#[derive(Serialize, Deserialize)]
pub struct ChangeEnvelope {
    pub origin: String,
    pub change: ClusterChange,
}

/// What travels on `ecp:access`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessEnvelope {
    pub origin: String,
    pub user_id: String,
}

const ACCESS_CHANNEL: &str = "ecp:access";

/// What the subscriber hands to the node.
pub enum Inbound {
    /// (Re)subscribed: anything may have been missed before this.
    Subscribed,
    Change(ClusterChange),
    Msg(NodeMsg),
    /// Another node changed this user's authority (`crate::revoke`).
    AccessChanged(String),
}

impl RedisCoordinator {
    pub async fn connect(url: &str, node: &str) -> StoreResult<RedisCoordinator> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad redis URL: {e}")))?;
        let conn = ConnectionManager::new(client.clone())
            .await
            .map_err(unavailable)?;
        Ok(RedisCoordinator {
            node: node.to_string(),
            conn,
            client,
        })
    }

    /// A handle on the shared connection (for small shared counters).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs forever: subscribes to the change channel and this node's
    /// channel, feeding `on` (which must not block), resubscribing after
    /// every connection loss.
    pub async fn subscribe(&self, on: impl Fn(Inbound)) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.client.get_async_pubsub().await {
                Ok(mut ps) => {
                    let ok = ps.subscribe("ecp:changes").await.is_ok()
                        && ps.subscribe(ACCESS_CHANNEL).await.is_ok()
                        && ps
                            .subscribe(format!("ecp:node:{}", self.node))
                            .await
                            .is_ok();
                    if ok {
                        delay = Duration::from_millis(100);
                        on(Inbound::Subscribed);
                        let mut stream = ps.on_message();
                        // A dead connection does not always end the stream: the
                        // subscriber pings its own channel and gives up on silence.
                        let mut ping = tokio::time::interval(Duration::from_secs(1));
                        let mut last_heard = tokio::time::Instant::now();
                        let own = format!("ecp:node:{}", self.node);
                        loop {
                            tokio::select! {
                                msg = stream.next() => {
                                    let Some(msg) = msg else { break };
                                    last_heard = tokio::time::Instant::now();
                                    let channel = msg.get_channel_name().to_string();
                                    let Ok(payload) = msg.get_payload::<String>() else { continue };
                                    if payload == PING {
                                        continue;
                                    }
                                    if channel == ACCESS_CHANNEL {
                                        if let Ok(env) = serde_json::from_str::<AccessEnvelope>(&payload) {
                                            if env.origin != self.node {
                                                on(Inbound::AccessChanged(env.user_id));
                                            }
                                        }
                                    } else if channel == "ecp:changes" {
                                        if let Ok(env) = serde_json::from_str::<ChangeEnvelope>(&payload) {
                                            if env.origin != self.node {
                                                on(Inbound::Change(env.change));
                                            }
                                        }
                                    } else if let Ok(m) = serde_json::from_str::<NodeMsg>(&payload) {
                                        on(Inbound::Msg(m));
                                    }
                                }
                                _ = ping.tick() => {
                                    if last_heard.elapsed() > Duration::from_secs(3) {
                                        break;
                                    }
                                    let _ = self.conn.clone().publish::<_, _, ()>(&own, PING).await;
                                }
                            }
                        }
                    }
                    tracing::warn!(node = %self.node, "redis subscription lost; resubscribing");
                }
                Err(e) => tracing::warn!(error = %e, "redis pub/sub connect failed"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

#[async_trait::async_trait]
impl crate::revoke::Remote for RedisCoordinator {
    async fn publish_access_change(&self, user_id: &str) {
        let env = AccessEnvelope {
            origin: self.node.clone(),
            user_id: user_id.to_string(),
        };
        let Ok(payload) = serde_json::to_string(&env) else {
            return;
        };
        // Lost notices are caught by the streams' periodic re-check.
        if let Err(e) = self
            .conn
            .clone()
            .publish::<_, _, ()>(ACCESS_CHANNEL, payload)
            .await
        {
            tracing::warn!(error = %e, user_id, "access change not published to other nodes");
        }
    }
}

#[async_trait::async_trait]
impl Coordinator for RedisCoordinator {
    fn node_id(&self) -> &str {
        &self.node
    }
    fn distributed(&self) -> bool {
        true
    }
    async fn claim(&self, cluster_id: &str, ttl_ms: u64) -> StoreResult<bool> {
        let n: i64 = Script::new(CLAIM)
            .key(format!("ecp:lease:{cluster_id}"))
            .arg(&self.node)
            .arg(ttl_ms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }
    async fn release(&self, cluster_id: &str) -> StoreResult<()> {
        let _: i64 = Script::new(RELEASE_IF)
            .key(format!("ecp:lease:{cluster_id}"))
            .arg(&self.node)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
    async fn owner(&self, cluster_id: &str) -> StoreResult<Option<String>> {
        self.conn
            .clone()
            .get(format!("ecp:lease:{cluster_id}"))
            .await
            .map_err(unavailable)
    }
    async fn touch_presence(&self, sessions: &[(String, u64)], ttl_ms: u64) -> StoreResult<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (agent, session) in sessions {
            pipe.cmd("SET")
                .arg(format!("ecp:presence:{agent}"))
                .arg(format!("{}|{session}", self.node))
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }
    async fn drop_presence(&self, agent_id: &str, session_id: u64) -> StoreResult<()> {
        let _: i64 = Script::new(RELEASE_IF)
            .key(format!("ecp:presence:{agent_id}"))
            .arg(format!("{}|{session_id}", self.node))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
    async fn presence(&self, agent_ids: &[String]) -> StoreResult<Vec<Option<(String, u64)>>> {
        if agent_ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = agent_ids
            .iter()
            .map(|a| format!("ecp:presence:{a}"))
            .collect();
        let vals: Vec<Option<String>> = redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(vals
            .into_iter()
            .map(|v| {
                v.and_then(|s| {
                    s.rsplit_once('|')
                        .and_then(|(n, sid)| sid.parse().ok().map(|sid| (n.to_string(), sid)))
                })
            })
            .collect())
    }
    async fn publish_change(&self, change: &ClusterChange) -> StoreResult<()> {
        let env = ChangeEnvelope {
            origin: self.node.clone(),
            change: change.clone(),
        };
        let payload =
            serde_json::to_string(&env).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn
            .clone()
            .publish::<_, _, ()>("ecp:changes", payload)
            .await
            .map_err(unavailable)
    }
    async fn send(&self, node: &str, msg: &NodeMsg) -> StoreResult<bool> {
        let payload = serde_json::to_string(msg).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let receivers: i64 = self
            .conn
            .clone()
            .publish(format!("ecp:node:{node}"), payload)
            .await
            .map_err(unavailable)?;
        Ok(receivers > 0)
    }
}
