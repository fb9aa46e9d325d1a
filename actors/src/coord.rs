//! Coordination between `ecp` nodes sharing one store (Redis mode): cluster
//! ownership leases, agent presence with a TTL, the cross-node change bus,
//! and messages to a given node. A single node uses [`LocalCoordinator`]:
//! it owns everything and sends nothing.

use crate::model::{ClusterChange, Millis};
use crate::store::StoreResult;
use async_trait::async_trait;
use ecp_protocol::{CloseCode, Frame, Report};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A message for the node that owns a cluster or holds an agent's session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeMsg {
    SessionUp {
        cluster_id: String,
        agent_id: String,
        session_id: u64,
    },
    SessionDown {
        cluster_id: String,
        agent_id: String,
        session_id: u64,
        last_seen: Millis,
    },
    Report {
        cluster_id: String,
        agent_id: String,
        session_id: u64,
        report: Report,
    },
    AgentRegistered {
        cluster_id: String,
        agent_id: String,
        new: bool,
    },
    AgentGone {
        cluster_id: String,
        agent_id: String,
        removed: bool,
    },
    Edit {
        cluster_id: String,
        name: Option<String>,
        description: Option<String>,
        service_address: Option<String>,
        /// Transfer: the new (org, project).
        #[serde(default)]
        move_to: Option<(String, String)>,
    },
    Delete {
        cluster_id: String,
    },
    /// To the node holding `agent_id`'s session.
    Deliver {
        agent_id: String,
        frame: Frame,
    },
    Shutdown {
        agent_id: String,
        /// A node of an older build sends none, one of a newer build may
        /// send a code this build does not know: both close as `TryAgain`
        /// (reconnecting is always safe).
        #[serde(
            default = "close_code_try_again",
            deserialize_with = "close_code_or_try_again"
        )]
        code: CloseCode,
        reason: String,
    },
}

impl NodeMsg {
    pub fn cluster_id(&self) -> Option<&str> {
        match self {
            NodeMsg::SessionUp { cluster_id, .. }
            | NodeMsg::SessionDown { cluster_id, .. }
            | NodeMsg::Report { cluster_id, .. }
            | NodeMsg::AgentRegistered { cluster_id, .. }
            | NodeMsg::AgentGone { cluster_id, .. }
            | NodeMsg::Edit { cluster_id, .. }
            | NodeMsg::Delete { cluster_id } => Some(cluster_id),
            NodeMsg::Deliver { .. } | NodeMsg::Shutdown { .. } => None,
        }
    }
}

fn close_code_try_again() -> CloseCode {
    CloseCode::TryAgain
}

fn close_code_or_try_again<'de, D: serde::Deserializer<'de>>(d: D) -> Result<CloseCode, D::Error> {
    let n = u16::deserialize(d)?;
    Ok(CloseCode::from_u16(n).unwrap_or(CloseCode::TryAgain))
}

#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    fn node_id(&self) -> &str;
    /// False for a single node: everything is local, nothing is sent.
    fn distributed(&self) -> bool;
    /// Acquires or renews this node's lease on a cluster.
    async fn claim(&self, cluster_id: &str, ttl_ms: u64) -> StoreResult<bool>;
    async fn release(&self, cluster_id: &str) -> StoreResult<()>;
    async fn owner(&self, cluster_id: &str) -> StoreResult<Option<String>>;
    /// Marks sessions present on this node (batched refresh).
    async fn touch_presence(&self, sessions: &[(String, u64)], ttl_ms: u64) -> StoreResult<()>;
    /// Removes an agent's presence if it is still that session.
    async fn drop_presence(&self, agent_id: &str, session_id: u64) -> StoreResult<()>;
    /// (node, session) of each agent, if present.
    async fn presence(&self, agent_ids: &[String]) -> StoreResult<Vec<Option<(String, u64)>>>;
    async fn publish_change(&self, change: &ClusterChange) -> StoreResult<()>;
    async fn send(&self, node: &str, msg: &NodeMsg) -> StoreResult<()>;
}

pub type SharedCoordinator = Arc<dyn Coordinator>;

pub struct LocalCoordinator;

#[async_trait]
impl Coordinator for LocalCoordinator {
    fn node_id(&self) -> &str {
        "local"
    }
    fn distributed(&self) -> bool {
        false
    }
    async fn claim(&self, _: &str, _: u64) -> StoreResult<bool> {
        Ok(true)
    }
    async fn release(&self, _: &str) -> StoreResult<()> {
        Ok(())
    }
    async fn owner(&self, _: &str) -> StoreResult<Option<String>> {
        Ok(Some("local".into()))
    }
    async fn touch_presence(&self, _: &[(String, u64)], _: u64) -> StoreResult<()> {
        Ok(())
    }
    async fn drop_presence(&self, _: &str, _: u64) -> StoreResult<()> {
        Ok(())
    }
    async fn presence(&self, ids: &[String]) -> StoreResult<Vec<Option<(String, u64)>>> {
        Ok(vec![None; ids.len()])
    }
    async fn publish_change(&self, _: &ClusterChange) -> StoreResult<()> {
        Ok(())
    }
    async fn send(&self, _: &str, _: &NodeMsg) -> StoreResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shutdown_code(v: serde_json::Value) -> CloseCode {
        match serde_json::from_value(v).expect("a node message") {
            NodeMsg::Shutdown { code, .. } => code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shutdown_codes_cross_nodes_of_other_builds() {
        let msg = NodeMsg::Shutdown {
            agent_id: "a".into(),
            code: CloseCode::ClusterDeleted,
            reason: "cluster was deleted".into(),
        };
        let v = serde_json::to_value(&msg).expect("json");
        assert_eq!(v["code"], 4001);
        assert_eq!(shutdown_code(v), CloseCode::ClusterDeleted);
        // An older node sends no code; a newer one may send one unknown here.
        let old = json!({"type": "shutdown", "agent_id": "a", "reason": "cluster was deleted"});
        assert_eq!(shutdown_code(old), CloseCode::TryAgain);
        let newer = json!({"type": "shutdown", "agent_id": "a", "code": 4999, "reason": "x"});
        assert_eq!(shutdown_code(newer), CloseCode::TryAgain);
    }
}
