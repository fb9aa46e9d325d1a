//! The cluster-change bus that feeds live consoles.
//!
//! In-process it is a bounded broadcast channel: a console that falls behind
//! gets `Lagged` and re-reads state instead of slowing anybody down. Changes
//! carry the cluster's revision so a reader can tell a gap. In Redis mode the
//! node's own changes also go out on Redis, and other nodes' changes come in
//! through [`Bus::inject`]; after a resubscribe, [`Bus::resync`] tells every
//! console to re-read.

use crate::model::ClusterChange;
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq)]
pub enum BusEvent {
    Change(ClusterChange),
    /// Something may have been missed: re-read.
    Resync,
}

#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<BusEvent>>,
}

impl Bus {
    pub fn new(capacity: usize) -> Bus {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Bus { tx }
    }

    /// Publishes a change to every subscriber on this node. Never blocks.
    pub fn publish(&self, change: ClusterChange) {
        // No subscriber is fine.
        let _ = self.tx.send(Arc::new(BusEvent::Change(change)));
    }

    /// A change that another node made.
    pub fn inject(&self, change: ClusterChange) {
        self.publish(change);
    }

    pub fn resync(&self) {
        let _ = self.tx.send(Arc::new(BusEvent::Resync));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.tx.subscribe()
    }
}
