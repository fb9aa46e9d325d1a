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
    // ---- protocol 1, second part: the dashboard tunnel and logs (bulk) ----
    /// Server → agent: open tunnel stream `stream`: replay this HTTP request
    /// against `dashboardUrl` (path and query bytes exactly as given) and
    /// send back at most `window` data frames before the next credit.
    TunnelOpen(TunnelRequest),
    /// Agent → server: the response status and headers of a stream.
    TunnelHead {
        stream: u32,
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
    },
    /// Agent → server: body bytes of a stream (at most [`TUNNEL_CHUNK`]).
    TunnelData {
        stream: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Agent → server: the stream is complete (or failed with `error`).
    TunnelEnd { stream: u32, error: Option<String> },
    /// Server → agent: the server consumed `frames` data frames of `stream`.
    TunnelCredit { stream: u32, frames: u32 },
    /// Server → agent: the client went away; stop the stream.
    TunnelCancel { stream: u32 },
    /// Agent → server: log lines read from one node's log files, in order.
    LogBatch(LogBatch),
    /// Server → agent: batch `batch` is stored; the agent may move its cursor.
    LogAck { batch: u64 },
    // ---- protocol 2: credential rotation ----
    /// Server → agent (protocol ≥ 2): a fresh credential for this agent.
    /// The agent stores it durably, then answers [`Frame::CredentialAck`];
    /// from then on the old one no longer works. Sent on every session and
    /// periodically during long ones, so a copy taken from disk dies soon.
    Credential { token: String },
    /// Agent → server: the credential of the last `Credential` is stored.
    CredentialAck,
    // ---- protocol 3: metrics and EMQX alarms ----
    /// Agent → server (bulk): metric samples, oldest first; samples the
    /// agent could not send while disconnected come first after a reconnect.
    Metrics(MetricsBatch),
    /// Server → agent (bulk): batch `batch` is stored (or was already); the
    /// agent drops it from its backlog.
    MetricsAck { batch: u64 },
    /// Agent → server: EMQX's alarms, sent at the start of every session and
    /// whenever they change.
    Alarms(AlarmSnapshot),
}

/// EMQX's eight log levels (RFC 5424 order); `LogLine::level` indexes it.
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The index of a level name (any case), if it is one.
pub fn log_level(name: &str) -> Option<u8> {
    LOG_LEVELS
        .iter()
        .position(|l| l.eq_ignore_ascii_case(name.trim()))
        .map(|i| i as u8)
}

/// Largest body chunk in a [`Frame::TunnelData`].
pub const TUNNEL_CHUNK: usize = 64 * 1024;
/// Data frames a stream may have in flight before the next credit.
pub const TUNNEL_WINDOW: u32 = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelRequest {
    pub stream: u32,
    pub method: String,
    /// Path and query, bytes as the browser sent them (`%2F` stays `%2F`).
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub window: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBatch {
    /// Agent-chosen, increasing; echoed by `LogAck`.
    pub batch: u64,
    /// The EMQX node whose files these lines come from.
    pub node: String,
    pub lines: Vec<LogLine>,
}

/// One parsed log line. `(file, offset)` identifies it for de-duplication:
/// `file` fingerprints the file's contents (reuse changes it), `offset` is
/// where the line starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub file: u64,
    pub offset: u64,
    /// Unix microseconds (0 when the line had no readable time).
    pub time_us: u64,
    /// 0 debug … 7 emergency.
    pub level: u8,
    pub message: String,
    /// Other structured fields as a JSON object text ("" when none).
    pub fields: String,
    /// The line as written.
    pub raw: String,
}

impl Frame {
    /// Bulk frames (log batches, dashboard bytes) never delay control frames.
    pub fn is_bulk(&self) -> bool {
        matches!(
            self,
            Frame::TunnelOpen(_)
                | Frame::TunnelHead { .. }
                | Frame::TunnelData { .. }
                | Frame::TunnelEnd { .. }
                | Frame::TunnelCredit { .. }
                | Frame::TunnelCancel { .. }
                | Frame::LogBatch(_)
                | Frame::LogAck { .. }
                | Frame::Metrics(_)
                | Frame::MetricsAck { .. }
                | Frame::Alarms(_)
        )
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
            Frame::TunnelOpen(_) => "tunnel_open",
            Frame::TunnelHead { .. } => "tunnel_head",
            Frame::TunnelData { .. } => "tunnel_data",
            Frame::TunnelEnd { .. } => "tunnel_end",
            Frame::TunnelCredit { .. } => "tunnel_credit",
            Frame::TunnelCancel { .. } => "tunnel_cancel",
            Frame::LogBatch(_) => "log_batch",
            Frame::LogAck { .. } => "log_ack",
            Frame::Credential { .. } => "credential",
            Frame::CredentialAck => "credential_ack",
            Frame::Metrics(_) => "metrics",
            Frame::MetricsAck { .. } => "metrics_ack",
            Frame::Alarms(_) => "alarms",
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
    /// Protocol 3: collect EMQX metrics every this many seconds (0: do not).
    /// Appended last: an agent of protocol 2 ignores it (trailing bytes).
    pub metrics_interval_secs: u32,
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

/// Metric samples from one agent (see [`crate::metrics`] for the names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsBatch {
    /// Agent-chosen, increasing; echoed by `MetricsAck`.
    pub batch: u64,
    pub samples: Vec<MetricSample>,
}

/// The cluster's metrics at one moment: `(name, value)` pairs. A metric the
/// EMQX version does not offer is simply absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// Unix milliseconds, the agent's clock, when it was collected.
    pub at_ms: u64,
    pub values: Vec<(String, f64)>,
}

impl MetricSample {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// EMQX's alarms as the agent read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmSnapshot {
    pub observed_at_ms: u64,
    /// Every active alarm.
    pub active: Vec<EmqxAlarm>,
    /// The most recent deactivated alarms EMQX still lists.
    pub deactivated: Vec<EmqxAlarm>,
}

/// One EMQX alarm (v5 `/api/v5/alarms`, v4 `/api/v4/alarms/…`), times in
/// Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmqxAlarm {
    pub node: String,
    pub name: String,
    pub message: String,
    /// `details` as JSON text ("" when none).
    pub details: String,
    pub activate_at_ms: u64,
    pub deactivate_at_ms: Option<u64>,
}
