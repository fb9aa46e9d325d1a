//! Actors of the `ecp` server: the [`registry::Registry`] (started once),
//! one [`cluster::ClusterActor`] per managed cluster around the pure
//! [`machine::Machine`], and one [`session::SessionActor`] per agent WebSocket.

pub mod bucket;
pub mod bus;
pub mod cluster;
pub mod coord;
pub mod directory;
pub mod machine;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod secret;
pub mod session;
pub mod store;
pub mod tunnel;

use std::sync::Arc;

/// What every actor shares.
pub struct Deps {
    pub store: store::SharedActorStore,
    pub coord: coord::SharedCoordinator,
    pub bus: bus::Bus,
    pub dir: directory::Directory,
    pub timing: machine::Timing,
    pub session: session::SessionConfig,
    pub metrics: metrics::Metrics,
}

impl Deps {
    pub fn new(
        store: store::SharedActorStore,
        coord: coord::SharedCoordinator,
        timing: machine::Timing,
        session: session::SessionConfig,
    ) -> Arc<Deps> {
        Arc::new(Deps {
            store,
            coord,
            bus: bus::Bus::new(4096),
            dir: directory::Directory::default(),
            timing,
            session,
            metrics: metrics::Metrics::default(),
        })
    }
}
