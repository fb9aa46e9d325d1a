//! Where a cluster's inputs go: its actor on this node, or (Redis mode) the
//! node that owns it, through Redis. Also the dispatch of messages other
//! nodes sent to this one.

use crate::error::ApiError;
use crate::AppState;
use ecp_actors::bus::BusEvent;
use ecp_actors::cluster as ca;
use ecp_actors::coord::NodeMsg;
use ecp_actors::model::{ClusterChange, ClusterRecord, Status};
use ecp_actors::session::{Deliver, Shutdown};
use ecp_actors::Deps;
use std::sync::Arc;
use std::time::Duration;

/// Sends a message to the owner node of its cluster (fire and forget).
pub async fn to_owner(deps: &Deps, msg: &NodeMsg) -> Result<(), ApiError> {
    let Some(cluster_id) = msg.cluster_id() else {
        return Ok(());
    };
    match deps.coord.owner(cluster_id).await? {
        Some(owner) => Ok(deps.coord.send(&owner, msg).await?),
        None => Err(ApiError::unavailable(
            "the cluster has no owner node right now; retry in a moment",
        )),
    }
}

/// Runs an edit or delete on the owner node and waits for the change it
/// publishes (so the answer shows the new record).
pub async fn remote_change(
    state: &AppState,
    current: &ClusterRecord,
    msg: NodeMsg,
) -> Result<ClusterRecord, ApiError> {
    let mut rx = state.deps.bus.subscribe();
    to_owner(&state.deps, &msg).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| ApiError::unavailable("the owner node did not answer in time; retry"))?;
        let Ok(ev) = ev else { continue };
        match &*ev {
            BusEvent::Change(ClusterChange::Upserted { cluster })
                if cluster.id == current.id && cluster.revision > current.revision =>
            {
                return Ok((**cluster).clone());
            }
            BusEvent::Change(ClusterChange::Removed { cluster_id, .. })
                if *cluster_id == current.id =>
            {
                let mut gone = current.clone();
                gone.status = Status::Deleting;
                return Ok(gone);
            }
            _ => {}
        }
    }
}

/// Handles a message another node sent to this one.
pub fn dispatch(deps: Arc<Deps>, msg: NodeMsg) {
    match msg {
        NodeMsg::Deliver { agent_id, frame } => {
            if let Some(s) = deps.dir.session(&agent_id) {
                let _ = s.addr.try_send(Deliver(frame));
            }
        }
        NodeMsg::Shutdown {
            agent_id,
            code,
            reason,
        } => {
            if let Some(s) = deps.dir.session(&agent_id) {
                let _ = s.addr.try_send(Shutdown { code, reason });
            }
        }
        other => {
            let Some(addr) = other.cluster_id().and_then(|id| deps.dir.cluster(id)) else {
                tracing::debug!("message for a cluster not run here; dropped (the sender re-sends to the new owner)");
                return;
            };
            actix_web::rt::spawn(async move {
                let _ = match other {
                    NodeMsg::SessionUp {
                        agent_id,
                        session_id,
                        ..
                    } => addr
                        .send(ca::SessionUp {
                            agent_id,
                            session_id,
                        })
                        .await
                        .map(|_| ()),
                    NodeMsg::SessionDown {
                        agent_id,
                        session_id,
                        last_seen,
                        ..
                    } => {
                        addr.send(ca::SessionDown {
                            agent_id,
                            session_id,
                            last_seen,
                        })
                        .await
                    }
                    NodeMsg::Report {
                        agent_id,
                        session_id,
                        report,
                        ..
                    } => addr
                        .send(ca::AgentReport {
                            agent_id,
                            session_id,
                            report,
                        })
                        .await
                        .map(|_| ()),
                    NodeMsg::AgentRegistered { agent_id, new, .. } => addr
                        .send(ca::AgentRegistered { agent_id, new })
                        .await
                        .map(|_| ()),
                    NodeMsg::AgentGone {
                        agent_id, removed, ..
                    } => addr
                        .send(ca::AgentGone { agent_id, removed })
                        .await
                        .map(|_| ()),
                    NodeMsg::Edit {
                        name,
                        description,
                        service_address,
                        move_to,
                        ..
                    } => addr
                        .send(ca::Edit {
                            name,
                            description,
                            service_address,
                            move_to,
                        })
                        .await
                        .map(|_| ()),
                    NodeMsg::Delete { .. } => addr.send(ca::Delete).await.map(|_| ()),
                    NodeMsg::Deliver { .. } | NodeMsg::Shutdown { .. } => Ok(()),
                };
            });
        }
    }
}
