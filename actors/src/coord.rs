//! Coordination between `ecp` nodes sharing one store (Redis mode): cluster
//! ownership leases, agent presence with a TTL, the cross-node change bus,
//! and messages to a given node. A single node uses [`LocalCoordinator`]:
//! it owns everything and sends nothing.

use crate::model::ClusterChange;
use crate::store::StoreResult;
use async_trait::async_trait;
use std::sync::Arc;

pub use crate::msg::NodeMsg;

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
    /// Sends to a node's channel; false when nobody listens there (the
    /// node is gone).
    async fn send(&self, node: &str, msg: &NodeMsg) -> StoreResult<bool>;
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
    async fn send(&self, _: &str, _: &NodeMsg) -> StoreResult<bool> {
        Ok(false)
    }
}
