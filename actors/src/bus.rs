//! The cluster-change bus that feeds live consoles.
//!
//! In-process it is a bounded broadcast channel: a console that falls behind
//! gets `Lagged` and re-reads state instead of slowing anybody down. Changes
//! carry the cluster's revision so a reader can tell a gap.

use crate::model::ClusterChange;
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<ClusterChange>>,
}

impl Bus {
    pub fn new(capacity: usize) -> Bus {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Bus { tx }
    }

    /// Publishes a change to every subscriber on this node. Never blocks.
    pub fn publish(&self, change: ClusterChange) {
        // No subscriber is fine.
        let _ = self.tx.send(Arc::new(change));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ClusterChange>> {
        self.tx.subscribe()
    }
}
