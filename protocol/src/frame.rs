use serde::{Deserialize, Serialize};

/// One message on the agent WebSocket. Append new variants at the end only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Agent → server, first frame of every session.
    Hello { protocol: u16, agent: AgentHello },
    /// Server → agent, answer to `Hello`.
    Welcome { settings: Settings },
    /// Agent → server, every `heartbeat_interval_secs` (keeps presence fresh).
    Heartbeat { seq: u64, at_ms: u64 },
    /// Agent → server, when the observed EMQX state changed (and with heartbeats).
    Report(Report),
    /// Server → agent: this node is draining; reconnect (to another node) after the delay.
    Reconnect { after_ms: u64, reason: String },
    /// Server → agent: the agent was removed (cluster deleted or agent revoked);
    /// drop the credential and idle.
    Unregister { reason: String },
    /// Agent → server: credential dropped after `Unregister`.
    UnregisterAck,
}

impl Frame {
    /// Bulk frames (log batches, dashboard bytes) never delay control frames.
    /// None exist in protocol 1; later variants opt in here.
    pub fn is_bulk(&self) -> bool {
        false
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "hello",
            Frame::Welcome { .. } => "welcome",
            Frame::Heartbeat { .. } => "heartbeat",
            Frame::Report(_) => "report",
            Frame::Reconnect { .. } => "reconnect",
            Frame::Unregister { .. } => "unregister",
            Frame::UnregisterAck => "unregister_ack",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentHello {
    pub agent_id: String,
    pub agent_version: String,
    pub node_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub cluster_id: String,
    pub heartbeat_interval_secs: u32,
    pub report_interval_secs: u32,
    pub ping_interval_secs: u32,
}

/// What the agent observed of its EMQX cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub seq: u64,
    pub observed_at_ms: u64,
    pub health: Health,
    pub emqx: Option<EmqxSummary>,
    pub nodes: Vec<NodeStatus>,
    pub connections: Option<Connections>,
}

/// The agent's verdict on the EMQX cluster; maps onto the cluster's `reason` codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Healthy,
    NodesStopped { nodes: Vec<String> },
    EmqxUnreachable { message: String },
    EmqxAuthFailed { message: String },
    UnsupportedVersion { found: String, required: String },
    AgentError { message: String },
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmqxSummary {
    pub version: String,
    pub edition: String,
    pub cluster_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub running: bool,
    pub version: Option<String>,
    pub role: Option<String>,
    pub connections: Option<u64>,
    pub uptime_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    pub current: u64,
    pub max: Option<u64>,
}
