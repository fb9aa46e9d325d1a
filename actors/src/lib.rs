//! Actors of the `ecp` server: the [`registry::Registry`] (started once),
//! one [`cluster::ClusterActor`] per managed cluster around the pure
//! [`machine::Machine`], and one [`session::SessionActor`] per agent WebSocket.

pub mod alerting;
pub mod bucket;
pub mod bus;
pub mod cluster;
pub mod cluster_ref;
pub mod coord;
pub mod directory;
pub mod machine;
pub mod metrics;
pub mod model;
pub mod msg;
pub mod registry;
pub mod secret;
pub mod series;
pub mod session;
pub mod store;
pub mod tunnel;
pub mod watch;

use std::sync::Arc;

/// What every actor shares.
pub struct Deps {
    pub store: store::SharedActorStore,
    pub coord: coord::SharedCoordinator,
    pub bus: bus::Bus,
    pub dir: directory::Directory,
    pub timing: machine::Timing,
    pub session: session::SessionConfig,
    /// Metric and alert timing of the cluster actors.
    pub watch: watch::WatchConfig,
    pub metrics: metrics::Metrics,
    /// Asks this node sent to other nodes, waiting for their answers.
    pub replies: cluster_ref::Replies,
    /// Poked when this node queued notifications, so its delivery worker
    /// sends them at once instead of at its next poll.
    pub wake_deliveries: Arc<tokio::sync::Notify>,
    /// Changes on their way to other nodes, in order, through one bounded
    /// queue and one publisher (started on first use).
    outbox: std::sync::OnceLock<tokio::sync::mpsc::Sender<model::ClusterChange>>,
}

/// Changes waiting to be published to other nodes, at most.
pub const OUTBOX: usize = 4_096;

impl Deps {
    pub fn new(
        store: store::SharedActorStore,
        coord: coord::SharedCoordinator,
        timing: machine::Timing,
        session: session::SessionConfig,
        watch: watch::WatchConfig,
    ) -> Arc<Deps> {
        Arc::new(Deps {
            store,
            coord,
            bus: bus::Bus::new(4096),
            dir: directory::Directory::default(),
            timing,
            session,
            watch,
            metrics: metrics::Metrics::default(),
            replies: cluster_ref::Replies::default(),
            wake_deliveries: Arc::new(tokio::sync::Notify::new()),
            outbox: std::sync::OnceLock::new(),
        })
    }

    /// Publishes a change to this node's consoles and, in Redis mode, to
    /// every other node's: every change goes through here.
    pub fn announce(&self, change: model::ClusterChange) {
        if self.coord.distributed() {
            let outbox = self.outbox.get_or_init(|| {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<model::ClusterChange>(OUTBOX);
                let coord = self.coord.clone();
                actix::spawn(async move {
                    while let Some(c) = rx.recv().await {
                        if let Err(e) = coord.publish_change(&c).await {
                            tracing::warn!(error = %e, "change not published to other nodes");
                        }
                    }
                });
                tx
            });
            // Full: other nodes miss it like any lost pub/sub message and
            // catch up from the revisions (a console re-reads after a gap).
            if outbox.try_send(change.clone()).is_err() {
                tracing::warn!("change outbox full; a change was not published to other nodes");
            }
        }
        self.bus.publish(change);
    }
}
