//! Domain records shared by the actors, the store back ends and the HTTP API.
//! Times are Unix milliseconds; the API renders them as RFC 3339.

use serde::{Deserialize, Serialize};

pub type Millis = u64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A managed cluster's status, as on the wire (`created`, `registering`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Registering,
    Running,
    Deleting,
    Abnormal,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Created,
        Status::Registering,
        Status::Running,
        Status::Deleting,
        Status::Abnormal,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Registering => "registering",
            Status::Running => "running",
            Status::Deleting => "deleting",
            Status::Abnormal => "abnormal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    AgentOffline,
    EmqxUnreachable,
    EmqxAuthFailed,
    NodesStopped,
    UnsupportedVersion,
    AgentError,
}

/// Why a cluster is abnormal. Present only when the status is `abnormal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reason {
    pub code: ReasonCode,
    pub message: String,
    pub since: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmqxInfo {
    pub version: String,
    pub edition: String,
    pub cluster_name: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounts {
    pub running: u32,
    pub total: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCounts {
    pub current: u64,
    pub max: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCounts {
    pub online: u32,
    pub total: u32,
}

/// The stored record of one managed cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub service_address: String,
    pub status: Status,
    pub reason: Option<Reason>,
    pub emqx: Option<EmqxInfo>,
    pub nodes: NodeCounts,
    pub node_list: Vec<ecp_protocol::NodeStatus>,
    pub connections: ConnectionCounts,
    pub agents: AgentCounts,
    pub started_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub revision: u64,
}

impl ClusterRecord {
    /// A cluster as it is created: status `created`, nothing reported yet,
    /// revision 1.
    pub fn created(
        id: String,
        org_id: String,
        project_id: String,
        name: String,
        now: Millis,
    ) -> Self {
        ClusterRecord {
            id,
            org_id,
            project_id,
            name,
            description: String::new(),
            service_address: String::new(),
            status: Status::Created,
            reason: None,
            emqx: None,
            nodes: NodeCounts::default(),
            node_list: Vec::new(),
            connections: ConnectionCounts::default(),
            agents: AgentCounts::default(),
            started_at: None,
            created_at: now,
            updated_at: now,
            revision: 1,
        }
    }
}

/// One recorded transition of a cluster's status (the history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEvent {
    pub cluster_id: String,
    pub revision: u64,
    pub at: Millis,
    pub from: Status,
    pub to: Status,
    pub reason: Option<Reason>,
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogCollection {
    pub enabled: bool,
    pub dir: String,
}

/// One registered agent (an `emqxee-agent` instance on one EMQX node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRecord {
    pub id: String,
    pub cluster_id: String,
    /// The agent's own stable instance id (kept in its home dir).
    pub node_id: String,
    /// Identity of the EMQX node: node name + machine id or API URL.
    pub node_key: String,
    pub node_name: String,
    pub hostname: String,
    pub machine_id: String,
    pub agent_version: String,
    pub dashboard_url: String,
    pub log_collection: LogCollection,
    pub emqx_reachable: bool,
    pub created_at: Millis,
    pub last_seen: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    /// PHC string (Argon2id).
    pub password_hash: String,
    pub system_admin: bool,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgRecord {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created_at: Millis,
}

/// What a bearer secret (stored only as its SHA-256) stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum TokenKind {
    /// Redeemable by agents to register with one cluster.
    Registration { cluster_id: String },
    /// An agent's credential for connect/unregister.
    Agent {
        cluster_id: String,
        agent_id: String,
    },
    /// A logged-in user's access token.
    Session { user_id: String },
    /// No longer issued (an earlier hand-over to the dashboard origin);
    /// kept so that stored ones still read until they expire (60 s).
    DashboardTicket {
        user_id: String,
        cluster_id: String,
        session: String,
    },
    /// A dashboard capability (`ecpd_…` in the dashboard site's URL) for
    /// one cluster; valid while the console session it came from is
    /// (`session`: that session's hash, hex).
    DashboardSession {
        user_id: String,
        cluster_id: String,
        session: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub kind: TokenKind,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
}

impl TokenRecord {
    /// Whether this is a credential of agent `agent_id`.
    pub fn is_credential_of(&self, agent_id: &str) -> bool {
        matches!(&self.kind, TokenKind::Agent { agent_id: a, .. } if a == agent_id)
    }
}

impl TokenRecord {
    pub fn expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// What live consoles receive (and what crosses nodes in Redis mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum ClusterChange {
    Upserted {
        cluster: Box<ClusterRecord>,
    },
    Removed {
        cluster_id: String,
        org_id: String,
        project_id: String,
        revision: u64,
    },
}

impl ClusterChange {
    pub fn cluster_id(&self) -> &str {
        match self {
            ClusterChange::Upserted { cluster } => &cluster.id,
            ClusterChange::Removed { cluster_id, .. } => cluster_id,
        }
    }
    pub fn project(&self) -> (&str, &str) {
        match self {
            ClusterChange::Upserted { cluster } => (&cluster.org_id, &cluster.project_id),
            ClusterChange::Removed {
                org_id, project_id, ..
            } => (org_id, project_id),
        }
    }
}

/// One audited operation: who did what to which object, with what result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Time-ordered id (newest is largest).
    pub id: u64,
    pub at: Millis,
    /// `user:<id>`, `agent:<id>` or `anonymous`.
    pub actor_id: String,
    pub actor_name: String,
    /// e.g. `login`, `cluster.create`, `token.issue`, `agent.revoke`.
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub object_name: String,
    pub org_id: String,
    pub project_id: String,
    /// `ok`, `denied` or `failed`.
    pub result: String,
    pub address: String,
    pub details: String,
}

impl AuditRecord {
    /// A record made now, with a time-ordered id; no object yet.
    pub fn new(
        actor_id: &str,
        actor_name: &str,
        action: &str,
        result: &str,
        address: &str,
        details: &str,
    ) -> AuditRecord {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let at = now_ms();
        AuditRecord {
            id: at * 1000 + SEQ.fetch_add(1, Ordering::Relaxed) % 1000,
            at,
            actor_id: actor_id.to_string(),
            actor_name: actor_name.to_string(),
            action: action.to_string(),
            object_type: String::new(),
            object_id: String::new(),
            object_name: String::new(),
            org_id: String::new(),
            project_id: String::new(),
            result: result.to_string(),
            address: address.to_string(),
            details: details.to_string(),
        }
    }
}

/// Filters of `GET /api/audit/operations`; empty strings match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub action: String,
    pub actor: String,
    pub object_id: String,
    pub offset: usize,
    pub size: usize,
}

impl AuditQuery {
    pub fn matches(&self, r: &AuditRecord) -> bool {
        self.since.is_none_or(|s| r.at >= s)
            && self.until.is_none_or(|u| r.at <= u)
            && (self.action.is_empty()
                || r.action == self.action
                || r.action.starts_with(&format!("{}.", self.action)))
            && (self.actor.is_empty()
                || r.actor_name
                    .to_lowercase()
                    .contains(&self.actor.to_lowercase()))
            && (self.object_id.is_empty() || r.object_id == self.object_id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Viewer,
}

/// A user's role in an org (`project_id` empty) or in one of its projects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    pub user_id: String,
    pub org_id: String,
    pub project_id: String,
    pub role: Role,
}

/// A stored log line. `seq` orders a cluster's lines (per node in the order
/// the node wrote them) and is the paging cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredLog {
    pub seq: u64,
    pub time_us: u64,
    pub level: u8,
    pub node: String,
    pub message: String,
    pub fields: String,
    pub raw: String,
}

/// Filters for reading logs; every field optional.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// This level or more severe (0 debug … 7 emergency).
    pub min_level: Option<u8>,
    pub node: Option<String>,
    /// Unix microseconds, inclusive.
    pub since_us: Option<u64>,
    pub until_us: Option<u64>,
    /// Case-insensitive substring of the line.
    pub text: Option<String>,
    /// Only lines with `seq` below this.
    pub before: Option<u64>,
    /// Only lines with `seq` above this (live tail), oldest first then.
    pub after: Option<u64>,
    pub limit: usize,
    /// Read at most this many stored lines (matching or not); `None`: no
    /// bound. A read that stops at the budget is `partial`.
    pub scan_budget: Option<usize>,
}

impl LogQuery {
    pub fn matches(&self, l: &StoredLog) -> bool {
        self.min_level.is_none_or(|m| l.level >= m)
            && self.node.as_ref().is_none_or(|n| &l.node == n)
            && self.since_us.is_none_or(|s| l.time_us >= s)
            && self.until_us.is_none_or(|u| l.time_us <= u)
            && self
                .text
                .as_ref()
                .is_none_or(|t| l.raw.to_lowercase().contains(&t.to_lowercase()))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPage {
    pub data: Vec<StoredLog>,
    /// Where the next page starts: pass as `before` (or, for a tail read,
    /// as `after`); `None` at the end.
    pub next: Option<u64>,
    /// The scan budget ran out: `next` is where the scan stopped (also with
    /// no match at all); matches may lie beyond it.
    pub partial: bool,
    /// Stored lines read.
    pub scanned: u64,
}

/// Pages lines through a query, one line at a time, in the order the store
/// reads them (newest first, or oldest first with `after`): keeps at most
/// `limit` matches, reads at most `scan_budget` lines, and knows where the
/// next page starts.
pub struct LogScan<'q> {
    q: &'q LogQuery,
    limit: usize,
    page: LogPage,
    done: bool,
}

impl<'q> LogScan<'q> {
    pub fn new(q: &'q LogQuery) -> LogScan<'q> {
        LogScan {
            q,
            limit: q.limit.clamp(1, 1000),
            page: LogPage::default(),
            done: false,
        }
    }

    /// Offers the next stored line; false once the page is complete (read
    /// no further).
    pub fn push(&mut self, l: StoredLog) -> bool {
        if self.done {
            return false;
        }
        self.page.scanned += 1;
        let seq = l.seq;
        if self.q.matches(&l) {
            if self.page.data.len() == self.limit {
                // One match more than the page holds: there is a next page.
                self.page.next = self.page.data.last().map(|d| d.seq);
                self.done = true;
                return false;
            }
            self.page.data.push(l);
        }
        if self
            .q
            .scan_budget
            .is_some_and(|b| self.page.scanned >= b.max(1) as u64)
        {
            self.page.next = Some(seq);
            self.page.partial = true;
            self.done = true;
            return false;
        }
        true
    }

    /// How many more lines may be read (a bound for chunked reads).
    pub fn room(&self) -> usize {
        if self.done {
            return 0;
        }
        match self.q.scan_budget {
            Some(b) => (b.max(1) as u64).saturating_sub(self.page.scanned) as usize,
            None => usize::MAX,
        }
    }

    /// The page; call when the page is complete or the lines ran out.
    pub fn finish(self) -> LogPage {
        self.page
    }
}

/// Pages newest-first (or, with `after`, oldest-first) lines through `q`.
pub fn page_logs(lines: impl Iterator<Item = StoredLog>, q: &LogQuery) -> LogPage {
    let mut scan = LogScan::new(q);
    for l in lines {
        if !scan.push(l) {
            break;
        }
    }
    scan.finish()
}

#[cfg(test)]
mod log_scan_tests {
    use super::*;

    fn line(seq: u64, text: &str) -> StoredLog {
        StoredLog {
            seq,
            time_us: seq,
            level: 1,
            node: "n".into(),
            message: text.into(),
            fields: String::new(),
            raw: text.into(),
        }
    }

    /// Newest first: 100 … 1, with "needle" at every seq divisible by 10.
    fn lines(from: u64) -> impl Iterator<Item = StoredLog> {
        (1..from)
            .rev()
            .map(|s| line(s, if s % 10 == 0 { "needle" } else { "hay" }))
    }

    #[test]
    fn a_page_ends_at_the_limit_and_says_where_the_next_starts() {
        let q = LogQuery {
            text: Some("needle".into()),
            limit: 3,
            ..Default::default()
        };
        let p = page_logs(lines(101), &q);
        let seqs: Vec<u64> = p.data.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, [100, 90, 80]);
        assert_eq!((p.next, p.partial), (Some(80), false));
        let last = page_logs(lines(31), &q);
        assert_eq!((last.data.len(), last.next, last.partial), (3, None, false));
    }

    #[test]
    fn the_budget_stops_the_scan_and_following_next_finds_every_match_once() {
        let mut q = LogQuery {
            text: Some("needle".into()),
            limit: 100,
            scan_budget: Some(7),
            ..Default::default()
        };
        let mut found = Vec::new();
        let mut pages = 0;
        loop {
            let p = page_logs(
                lines(101).filter(|l| q.before.is_none_or(|b| l.seq < b)),
                &q,
            );
            assert!(p.scanned <= 7, "{p:?}");
            pages += 1;
            found.extend(p.data.iter().map(|l| l.seq));
            match p.next {
                Some(n) => {
                    assert!(p.partial, "stopped early: {p:?}");
                    q.before = Some(n);
                }
                None => break,
            }
        }
        assert_eq!(found, [100, 90, 80, 70, 60, 50, 40, 30, 20, 10]);
        assert_eq!(pages, 15, "100 lines, 7 a time");
        // With no match within the budget, the page is empty but goes on.
        let none = page_logs(
            lines(101),
            &LogQuery {
                text: Some("nowhere".into()),
                limit: 10,
                scan_budget: Some(50),
                ..Default::default()
            },
        );
        assert_eq!(
            (none.data.len(), none.next, none.partial),
            (0, Some(51), true)
        );
    }
}
