//! Every message between the actors of a node, and between nodes, in one
//! place: the other modules depend on this one, never on each other's
//! messages.

use crate::model::{ClusterRecord, Millis};
use crate::store::StoreError;
use actix::prelude::*;
use ecp_protocol::{CloseCode, Frame, Report};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Everything a cluster accepts, from any caller on any node (HTTP
/// handlers, agent sessions, tests): the one vocabulary of
/// [`crate::cluster_ref::ClusterRef::ask`]. Serialisable, so that a node
/// without the cluster's actor sends it to the owner unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClusterInput {
    /// The current record.
    Snapshot,
    /// Each agent's live state as the actor knows it.
    AgentsLive,
    /// A registration token was redeemed (`new`: a new agent, not a retry).
    AgentRegistered { agent_id: String, new: bool },
    /// A session finished its handshake (`metrics`: the agent speaks
    /// protocol 3, so it sends metric samples; absent from older nodes).
    SessionUp {
        agent_id: String,
        session_id: u64,
        #[serde(default)]
        metrics: bool,
    },
    /// A session ended (any reason).
    SessionDown {
        agent_id: String,
        session_id: u64,
        last_seen: Millis,
    },
    /// A report from a connected agent.
    Report {
        agent_id: String,
        session_id: u64,
        report: Report,
    },
    /// An agent unregistered, acknowledged `Unregister`, or was revoked
    /// (`removed`: its record is gone from the store).
    AgentGone { agent_id: String, removed: bool },
    /// Edit name, description or service address; or transfer (`move_to`:
    /// the new org and project).
    Edit {
        name: Option<String>,
        description: Option<String>,
        service_address: Option<String>,
        move_to: Option<(String, String)>,
    },
    /// Start deleting.
    Delete,
    /// Metric samples from a connected agent (answered `Done` once stored,
    /// or dropped as another agent's duplicate).
    Metrics {
        agent_id: String,
        session_id: u64,
        samples: Vec<ecp_protocol::MetricSample>,
    },
    /// EMQX's alarms as a connected agent read them.
    Alarms {
        agent_id: String,
        session_id: u64,
        snapshot: ecp_protocol::AlarmSnapshot,
    },
}

impl ClusterInput {
    /// Short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterInput::Snapshot => "snapshot",
            ClusterInput::AgentsLive => "agents_live",
            ClusterInput::AgentRegistered { .. } => "agent_registered",
            ClusterInput::SessionUp { .. } => "session_up",
            ClusterInput::SessionDown { .. } => "session_down",
            ClusterInput::Report { .. } => "report",
            ClusterInput::AgentGone { .. } => "agent_gone",
            ClusterInput::Edit { .. } => "edit",
            ClusterInput::Delete => "delete",
            ClusterInput::Metrics { .. } => "metrics",
            ClusterInput::Alarms { .. } => "alarms",
        }
    }
}

/// A connected agent as its cluster's actor knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentLive {
    pub connected: bool,
    pub emqx_reachable: Option<bool>,
}

/// What a cluster answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClusterReply {
    /// The record after the input (in `deleting`, or as it was last, for a
    /// cluster that finished deleting).
    Record(Box<ClusterRecord>),
    Live(HashMap<String, AgentLive>),
    /// Taken (metrics stored, alarms kept).
    Done,
}

impl ClusterReply {
    /// The record, for inputs that answer one.
    pub fn record(self) -> Result<ClusterRecord, ClusterError> {
        match self {
            ClusterReply::Record(r) => Ok(*r),
            ClusterReply::Live(_) | ClusterReply::Done => Err(ClusterError::Store(
                "a cluster answered something else where a record was expected".into(),
            )),
        }
    }
}

/// Why a cluster could not take an input. Serialisable: the owner node's
/// answer travels back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ClusterError {
    #[error("a cluster named {0:?} already exists in this project")]
    NameTaken(String),
    #[error("the cluster is being deleted")]
    Deleting,
    #[error("the cluster was not found")]
    NotFound,
    /// No node runs the cluster right now (a lease moving, an actor
    /// restarting): retry in a moment.
    #[error("the cluster is moving between nodes or restarting; retry in a moment")]
    Moving,
    #[error("the node running the cluster did not answer in time; retry")]
    Timeout,
    #[error("too many requests for other nodes' clusters are waiting; retry")]
    Busy,
    #[error("the store is unavailable: {0}")]
    Store(String),
}

impl From<StoreError> for ClusterError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameTaken(n) => ClusterError::NameTaken(n),
            StoreError::NotFound => ClusterError::NotFound,
            other => ClusterError::Store(other.to_string()),
        }
    }
}

/// [`ClusterInput`] for a cluster actor on this node.
#[derive(Message, Debug)]
#[rtype(result = "Result<ClusterReply, ClusterError>")]
pub struct Ask(pub ClusterInput);

/// Supervision of a cluster actor.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum Control {
    /// This node lost the cluster's lease: stop without a restart here.
    Relinquish,
    /// Tests and operations: fail as a store error would (restarted).
    Fail,
}

/// A cluster actor stopped (to its registry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChildStopped {
    pub cluster_id: String,
    /// Deleted or relinquished: do not restart.
    pub deleted: bool,
}

/// Send a frame to the agent (control or bulk queue by its kind).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Deliver(pub Frame);

/// Close a session with a code (what the agent acts on) and a reason
/// (for people).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub code: CloseCode,
    pub reason: String,
}

/// A message for another node, through Redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeMsg {
    /// An input for a cluster this node is believed to own; answer with
    /// `Reply` to `reply_to`.
    Ask {
        request_id: u64,
        reply_to: String,
        cluster_id: String,
        input: ClusterInput,
    },
    /// The answer to an `Ask` this node sent.
    Reply {
        request_id: u64,
        result: Result<ClusterReply, ClusterError>,
    },
    /// To the node holding `agent_id`'s session.
    Deliver { agent_id: String, frame: Frame },
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

fn close_code_try_again() -> CloseCode {
    CloseCode::TryAgain
}

fn close_code_or_try_again<'de, D: serde::Deserializer<'de>>(d: D) -> Result<CloseCode, D::Error> {
    let n = u16::deserialize(d)?;
    Ok(CloseCode::from_u16(n).unwrap_or(CloseCode::TryAgain))
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
