//! The storage interface, split by domain: [`ClusterStore`], [`TokenStore`],
//! [`LogStore`], [`AuditStore`]; the actors hold an [`ActorStore`] (all
//! four). The server adds tenancy (`ecp::store::TenancyStore`, and
//! `ecp::store::Store` for everything). Back ends live in the server crate
//! (`src/store/`): an embedded on-disk database (default) and Redis. The
//! decisions both back ends share are pure functions here
//! ([`plan_registration`], [`plan_append`]).
//!
//! Every method is one atomic step: a failed call leaves nothing half-written.

use crate::model::*;
use async_trait::async_trait;
use std::sync::Arc;

pub type TokenHash = [u8; 32];

/// De-duplication marks ((agent, log file) → offset) kept per cluster; the
/// least recently moved go first. Agents send what they like: without a
/// bound, made-up file fingerprints would grow the marks for ever.
pub const LOG_MARKS_PER_CLUSTER: usize = 1024;

/// History entries (transitions) kept per cluster; the oldest go first.
/// Transitions follow agents' reports, so this too is bounded.
pub const HISTORY_PER_CLUSTER: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a cluster named {0:?} already exists in this project")]
    NameTaken(String),
    #[error("record changed concurrently (expected revision {expected}, found {found})")]
    RevisionConflict { expected: u64, found: u64 },
    #[error("not found")]
    NotFound,
    #[error("node is already managed by cluster {cluster_id}")]
    NodeTaken { cluster_id: String },
    #[error("this agent instance is registered with cluster {cluster_id}")]
    InstanceTaken { cluster_id: String },
    #[error("already exists")]
    Exists,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Outcome of an atomic agent registration.
#[derive(Debug, Clone)]
pub struct Registered {
    pub agent: AgentRecord,
    /// True when the same `nodeId` registered before (idempotent retry).
    pub reused: bool,
    /// The hash of the credential the retry replaced (already revoked).
    pub revoked_credential: Option<TokenHash>,
}

/// Clusters with their history, agents with their node bindings, and
/// registration.
#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// Inserts a new cluster with its first history entry; `NameTaken` if the
    /// project already has the name.
    async fn create_cluster(
        &self,
        cluster: &ClusterRecord,
        event: &ClusterEvent,
    ) -> StoreResult<()>;
    /// Replaces a cluster and appends its history entries in one step, if its
    /// stored revision is `expected_revision` (fencing); `NameTaken` if a
    /// rename collides.
    async fn update_cluster(
        &self,
        cluster: &ClusterRecord,
        expected_revision: u64,
        events: &[ClusterEvent],
    ) -> StoreResult<()>;
    async fn cluster(&self, id: &str) -> StoreResult<Option<ClusterRecord>>;
    async fn clusters_in_project(&self, project_id: &str) -> StoreResult<Vec<ClusterRecord>>;
    async fn all_clusters(&self) -> StoreResult<Vec<ClusterRecord>>;
    /// Removes the cluster with its agents, agent credentials, registration
    /// tokens and node bindings, and leaves a tombstone (so its tokens answer
    /// 410). The history is kept.
    async fn remove_cluster(&self, id: &str) -> StoreResult<()>;
    async fn cluster_deleted(&self, id: &str) -> StoreResult<bool>;
    async fn events(&self, cluster_id: &str) -> StoreResult<Vec<ClusterEvent>>;
    /// Registers (or re-registers, same `node_id`) an agent and stores its new
    /// credential in one step. `NodeTaken` if `node_key` belongs to another cluster.
    async fn register_agent(
        &self,
        agent: &AgentRecord,
        credential: &TokenHash,
        credential_record: &TokenRecord,
    ) -> StoreResult<Registered>;
    async fn agent(&self, id: &str) -> StoreResult<Option<AgentRecord>>;
    async fn agents_of_cluster(&self, cluster_id: &str) -> StoreResult<Vec<AgentRecord>>;
    async fn update_agent(&self, agent: &AgentRecord) -> StoreResult<()>;
    /// Removes an agent, its credential and its node binding.
    async fn remove_agent(&self, id: &str) -> StoreResult<()>;
}

/// Bearer tokens, stored only as SHA-256 hashes with an expiry, and agent
/// credentials.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    async fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> StoreResult<()>;
    /// Unexpired tokens only.
    async fn token(&self, hash: &TokenHash, now: Millis) -> StoreResult<Option<TokenRecord>>;
    async fn delete_token(&self, hash: &TokenHash) -> StoreResult<()>;
    /// Revokes the cluster's registration tokens; returns how many.
    async fn revoke_registration_tokens(&self, cluster_id: &str) -> StoreResult<u64>;
    /// Drops expired tokens; returns how many.
    async fn purge_expired_tokens(&self, now: Millis) -> StoreResult<u64>;
    /// Credential rotation: makes `credential` — already stored with
    /// `put_token` as this agent's, with an expiry — the agent's only
    /// credential, without expiry; the one it replaces stops working, in the
    /// same step. `NotFound` if the agent or that token is gone.
    async fn adopt_agent_credential(
        &self,
        agent_id: &str,
        credential: &TokenHash,
    ) -> StoreResult<()>;
}

/// Log lines per cluster, with de-duplication marks per (agent, file).
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// Appends one agent's lines of `node` in one step, skipping every line
    /// at or before what that agent already stored from the same file
    /// (`file`, `offset`), and trims the cluster to its newest `cap` lines.
    /// Returns how many lines were new.
    async fn append_logs(
        &self,
        cluster_id: &str,
        agent_id: &str,
        node: &str,
        lines: &[ecp_protocol::LogLine],
        cap: u64,
    ) -> StoreResult<usize>;
    /// Newest first, from `cursor` (exclusive) down, matching `q`.
    async fn logs(&self, cluster_id: &str, q: &LogQuery) -> StoreResult<LogPage>;
}

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    /// Newest first: the page asked for and the total number of matches.
    async fn audit(&self, query: &AuditQuery) -> StoreResult<(Vec<AuditRecord>, usize)>;
    /// Drops audit records older than `before` (0: none for their age) and
    /// the oldest beyond the newest `max_records` (0: no count limit);
    /// returns how many.
    async fn purge_audit(&self, before: Millis, max_records: u64) -> StoreResult<u64>;
}

/// What an append of metric samples did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsAppended {
    /// Samples stored.
    pub kept: usize,
    /// Samples refused (see [`crate::series::plan_append`]).
    pub refused: usize,
    /// Roll-ups written.
    pub rollups: usize,
}

/// Metric series per cluster (raw and 5-minute roll-ups, see
/// [`crate::series`]) and the cluster's EMQX alarms. `remove_cluster`
/// removes both.
#[async_trait]
pub trait MetricStore: Send + Sync + 'static {
    /// Appends samples in one step: reads the newest raw point and the open
    /// bucket's points, decides with [`crate::series::plan_append`] (spacing
    /// `min_spacing`), writes the raw points and the closed buckets'
    /// roll-ups, and drops points beyond each tier's retention and cap.
    async fn append_metrics(
        &self,
        cluster_id: &str,
        samples: &[ecp_protocol::MetricSample],
        min_spacing: Millis,
        now: Millis,
    ) -> StoreResult<MetricsAppended>;
    /// The points of one tier with `since <= at <= until`, oldest first.
    async fn metric_points(
        &self,
        cluster_id: &str,
        tier: crate::series::Tier,
        since: Millis,
        until: Millis,
    ) -> StoreResult<Vec<crate::series::Point>>;
    /// The newest raw point of each cluster (in the order asked).
    async fn latest_points(
        &self,
        cluster_ids: &[String],
    ) -> StoreResult<Vec<Option<crate::series::Point>>>;
    /// The stored bytes of a cluster's series (both tiers), for benchmarks.
    async fn metrics_bytes(&self, cluster_id: &str) -> StoreResult<u64>;
    async fn alarms(&self, cluster_id: &str) -> StoreResult<crate::alerting::AlarmSet>;
    async fn put_alarms(
        &self,
        cluster_id: &str,
        alarms: &crate::alerting::AlarmSet,
    ) -> StoreResult<()>;
}

/// Alerts kept per project (the newest; firing ones are never dropped).
pub const ALERTS_PER_PROJECT: usize = 10_000;
/// Finished deliveries kept per channel (its delivery log).
pub const DELIVERIES_PER_CHANNEL: usize = 200;

/// What the metric and alert stores keep at most. The defaults are the
/// constants ([`crate::series::RAW_CAP`], [`crate::series::ROLLUP_CAP`],
/// [`ALERTS_PER_PROJECT`], [`DELIVERIES_PER_CHANNEL`]); tests pass smaller
/// ones to a back end to see the trimming without writing thousands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Raw points per cluster.
    pub raw_points: u64,
    /// Roll-ups per cluster.
    pub rollup_points: u64,
    /// Resolved alerts per project.
    pub alerts_per_project: usize,
    /// Finished deliveries per channel.
    pub deliveries_per_channel: usize,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps {
            raw_points: crate::series::RAW_CAP,
            rollup_points: crate::series::ROLLUP_CAP,
            alerts_per_project: ALERTS_PER_PROJECT,
            deliveries_per_channel: DELIVERIES_PER_CHANNEL,
        }
    }
}

/// Alert rules, notification channels, alerts and their deliveries.
/// Deleting a project deletes its rules, channels, alerts and deliveries.
/// Deleting a cluster resolves its firing alerts (no notification: the
/// store does not queue any; the alerts stay as history).
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    async fn alert_rules(&self, project_id: &str) -> StoreResult<Vec<crate::alerting::AlertRule>>;
    async fn alert_rule(&self, id: &str) -> StoreResult<Option<crate::alerting::AlertRule>>;
    /// Inserts or replaces (by id).
    async fn put_alert_rule(&self, rule: &crate::alerting::AlertRule) -> StoreResult<()>;
    /// `NotFound` when there is none.
    async fn delete_alert_rule(&self, id: &str) -> StoreResult<()>;
    async fn channels(&self, project_id: &str) -> StoreResult<Vec<crate::alerting::ChannelRecord>>;
    async fn channel(&self, id: &str) -> StoreResult<Option<crate::alerting::ChannelRecord>>;
    /// Inserts or replaces (by id).
    async fn put_channel(&self, channel: &crate::alerting::ChannelRecord) -> StoreResult<()>;
    /// `NotFound` when there is none; its pending deliveries fail.
    async fn delete_channel(&self, id: &str) -> StoreResult<()>;
    /// Writes an alert (new, or its new state) and queues its deliveries,
    /// in one step; trims the project's resolved alerts to
    /// [`ALERTS_PER_PROJECT`].
    async fn record_alert(
        &self,
        alert: &crate::alerting::AlertRecord,
        deliveries: &[crate::alerting::Delivery],
    ) -> StoreResult<()>;
    /// Newest first (by `started_at`), at most `limit`, of one state or both.
    async fn alerts(
        &self,
        project_id: &str,
        state: Option<crate::alerting::AlertState>,
        limit: usize,
    ) -> StoreResult<Vec<crate::alerting::AlertRecord>>;
    async fn firing_alerts_of_cluster(
        &self,
        cluster_id: &str,
    ) -> StoreResult<Vec<crate::alerting::AlertRecord>>;
    /// Queues deliveries not tied to an alert change (tests, summaries).
    async fn queue_deliveries(&self, deliveries: &[crate::alerting::Delivery]) -> StoreResult<()>;
    /// Claims at most `limit` pending deliveries due at `now` (any
    /// project): each one's `next_at` moves to `now + lease_ms` in the same
    /// step, so no other node takes it until the claim lapses.
    async fn claim_deliveries(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> StoreResult<Vec<crate::alerting::Delivery>>;
    /// Stores a claimed delivery's outcome (state, attempts, `next_at` for a
    /// retry, status, error); trims the channel's finished deliveries to
    /// [`DELIVERIES_PER_CHANNEL`].
    async fn finish_delivery(&self, delivery: &crate::alerting::Delivery) -> StoreResult<()>;
    /// A channel's deliveries, newest first.
    async fn deliveries(
        &self,
        channel_id: &str,
        limit: usize,
    ) -> StoreResult<Vec<crate::alerting::Delivery>>;
    /// Counts one notification in a channel's storm-control window (the
    /// window's start, [`crate::alerting::window_of`]; shared by all nodes;
    /// forgotten a few minutes after); returns the count including it.
    async fn count_notification(&self, channel_id: &str, window: Millis) -> StoreResult<u32>;
}

/// The store as the actors see it: everything but tenancy (users, orgs,
/// projects, memberships), which only the server uses (`ecp::store::Store`
/// adds it). Implemented by every back end.
pub trait ActorStore:
    ClusterStore + TokenStore + LogStore + AuditStore + MetricStore + AlertStore
{
}

impl<T: ClusterStore + TokenStore + LogStore + AuditStore + MetricStore + AlertStore + ?Sized>
    ActorStore for T
{
}

/// The registration decision, from what the store holds: the agent bound
/// to the registering EMQX node (`by_node_key`) and the agent of the same
/// agent instance (`by_instance`, its `nodeId`). Both back ends read these
/// and apply the answer atomically: the agent to replace (a retry of the
/// same instance, or the same EMQX node registering again), or a refusal —
/// the node belongs to another cluster, or the instance is registered with
/// another cluster (it must unregister there first; taking it over would
/// let one cluster's token remove another cluster's agent).
pub fn plan_registration(
    cluster_id: &str,
    by_node_key: Option<&AgentRecord>,
    by_instance: Option<&AgentRecord>,
) -> StoreResult<Option<AgentRecord>> {
    if let Some(other) = by_node_key.filter(|a| a.cluster_id != cluster_id) {
        return Err(StoreError::NodeTaken {
            cluster_id: other.cluster_id.clone(),
        });
    }
    if let Some(other) = by_instance.filter(|a| a.cluster_id != cluster_id) {
        return Err(StoreError::InstanceTaken {
            cluster_id: other.cluster_id.clone(),
        });
    }
    Ok(by_instance.or(by_node_key).cloned())
}

/// The distinct log files (fingerprints) of a batch, in order of first
/// appearance: the marks a store reads before planning an append.
pub fn batch_files(lines: &[ecp_protocol::LogLine]) -> Vec<u64> {
    let mut files = Vec::new();
    for l in lines {
        if !files.contains(&l.file) {
            files.push(l.file);
        }
    }
    files
}

/// One file's de-duplication mark in an [`AppendPlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkMove {
    pub file: u64,
    /// The mark the plan was made from (`None`: nothing stored from this
    /// file yet). A store applies the plan only while the mark is still this.
    pub was: Option<u64>,
    /// The mark after the batch: the offset after its last stored line.
    pub now: u64,
}

/// What appending one agent's batch changes (see [`plan_append`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendPlan {
    /// Indexes into the batch of the lines to store, in batch order.
    pub keep: Vec<usize>,
    /// Every file of the batch, in order of first appearance (as
    /// [`batch_files`]), also those with nothing new: writing a mark counts
    /// as moving it (it becomes the most recently moved).
    pub marks: Vec<MarkMove>,
}

impl AppendPlan {
    /// Whether the batch adds marks (files not seen before), so the
    /// cluster's marks may now exceed `LOG_MARKS_PER_CLUSTER`.
    pub fn adds_marks(&self) -> bool {
        self.marks.iter().any(|m| m.was.is_none())
    }
}

/// The de-duplication decision for one agent's batch of log lines, from
/// the marks stored for the batch's files (`mark(file)`: the offset after
/// the last line stored from that file, if any). A line at or before the
/// running mark of its file was stored before (a resend after a lost ack,
/// or an overlap) and is skipped; a stored line moves the mark past it.
/// A reused file has a new fingerprint, hence no mark: its lines are new.
/// Both back ends read the marks, plan with this, and apply the plan
/// atomically (the Redis one only while the marks are still what it read).
pub fn plan_append(
    lines: &[ecp_protocol::LogLine],
    mark: impl Fn(u64) -> Option<u64>,
) -> AppendPlan {
    let mut plan = AppendPlan::default();
    for (i, l) in lines.iter().enumerate() {
        let at = match plan.marks.iter().position(|m| m.file == l.file) {
            Some(at) => at,
            None => {
                let was = mark(l.file);
                plan.marks.push(MarkMove {
                    file: l.file,
                    was,
                    now: was.unwrap_or(0),
                });
                plan.marks.len() - 1
            }
        };
        let m = &mut plan.marks[at];
        if l.offset < m.now {
            continue; // stored before
        }
        m.now = l.offset.saturating_add(1);
        plan.keep.push(i);
    }
    plan
}

/// The recency stamp of the `i`-th mark a batch moves, past `newest`, the
/// newest stamp among the cluster's marks: a batch's marks, also those a
/// resend rewrites without storing a line, become the most recently moved,
/// in batch order, and no two marks share a stamp.
pub fn mark_touch(newest: Option<u64>, i: usize) -> u64 {
    newest
        .map_or(0, |t| t.saturating_add(1))
        .saturating_add(i as u64)
}

/// A cluster keeps its newest `line_cap(cap)` log lines: `cap`, but never
/// fewer than one.
pub fn line_cap(cap: u64) -> u64 {
    cap.max(1)
}

/// How many of a cluster's oldest log lines go when it holds `held`.
pub fn lines_over_cap(held: u64, cap: u64) -> u64 {
    held.saturating_sub(line_cap(cap))
}

/// How many of a cluster's least recently moved marks go when it holds
/// `held`.
pub fn marks_over_cap(held: usize) -> usize {
    held.saturating_sub(LOG_MARKS_PER_CLUSTER)
}

/// Pages matches of an audit query out of newest-first records.
pub fn page_audit(
    newest_first: impl Iterator<Item = AuditRecord>,
    q: &AuditQuery,
) -> (Vec<AuditRecord>, usize) {
    let mut total = 0;
    let mut page = Vec::new();
    for r in newest_first.filter(|r| q.matches(r)) {
        if total >= q.offset && page.len() < q.size {
            page.push(r);
        }
        total += 1;
    }
    (page, total)
}

pub type SharedActorStore = Arc<dyn ActorStore>;

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, cluster: &str) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            cluster_id: cluster.into(),
            node_id: format!("inst-{id}"),
            node_key: format!("emqx@{id}|m"),
            node_name: format!("emqx@{id}"),
            hostname: String::new(),
            machine_id: String::new(),
            agent_version: "1".into(),
            dashboard_url: String::new(),
            log_collection: LogCollection {
                enabled: false,
                dir: String::new(),
            },
            emqx_reachable: true,
            created_at: 0,
            last_seen: 0,
        }
    }

    fn line(file: u64, offset: u64) -> ecp_protocol::LogLine {
        ecp_protocol::LogLine {
            file,
            offset,
            time_us: 0,
            level: 0,
            message: String::new(),
            fields: String::new(),
            raw: String::new(),
        }
    }

    /// Plans `batch` (file, offset) against stored `marks` (file, mark).
    fn plan(marks: &[(u64, u64)], batch: &[(u64, u64)]) -> AppendPlan {
        let lines: Vec<_> = batch.iter().map(|&(f, o)| line(f, o)).collect();
        plan_append(&lines, |file| {
            marks.iter().find(|(f, _)| *f == file).map(|(_, m)| *m)
        })
    }

    fn mv(file: u64, was: Option<u64>, now: u64) -> MarkMove {
        MarkMove { file, was, now }
    }

    #[test]
    fn a_first_batch_stores_every_line_and_marks_after_the_last() {
        let p = plan(&[], &[(7, 0), (7, 10), (7, 20)]);
        assert_eq!(p.keep, [0, 1, 2]);
        assert_eq!(p.marks, [mv(7, None, 21)]);
        assert!(p.adds_marks());
    }

    #[test]
    fn a_resend_after_a_lost_ack_stores_nothing_and_still_moves_the_mark() {
        let p = plan(&[(7, 21)], &[(7, 0), (7, 10), (7, 20)]);
        assert!(p.keep.is_empty());
        assert_eq!(p.marks, [mv(7, Some(21), 21)], "rewritten: recently moved");
        assert!(!p.adds_marks());
    }

    #[test]
    fn an_overlapping_batch_stores_only_what_is_after_the_mark() {
        let p = plan(&[(7, 21)], &[(7, 10), (7, 20), (7, 21), (7, 30)]);
        assert_eq!(p.keep, [2, 3], "the mark is the offset after the last line");
        assert_eq!(p.marks, [mv(7, Some(21), 31)]);
    }

    #[test]
    fn a_reused_file_has_a_new_fingerprint_and_its_lines_are_new() {
        let p = plan(&[(7, 500)], &[(8, 0), (8, 10)]);
        assert_eq!(p.keep, [0, 1]);
        assert_eq!(p.marks, [mv(8, None, 11)]);
    }

    #[test]
    fn several_files_in_one_batch_each_have_their_own_mark() {
        let p = plan(
            &[(1, 15), (2, 0)],
            &[(1, 10), (2, 0), (3, 5), (1, 20), (2, 7), (3, 5)],
        );
        assert_eq!(p.keep, [1, 2, 3, 4], "(1,10) before mark 15; (3,5) twice");
        assert_eq!(
            p.marks,
            [mv(1, Some(15), 21), mv(2, Some(0), 8), mv(3, None, 6)],
            "in order of first appearance"
        );
        assert_eq!(
            batch_files(&[line(1, 0), line(2, 0), line(3, 0), line(1, 1)]),
            [1, 2, 3]
        );
    }

    #[test]
    fn out_of_order_offsets_skip_what_is_at_or_before_the_running_mark() {
        let p = plan(&[], &[(7, 20), (7, 10), (7, 20), (7, 21), (7, 0)]);
        assert_eq!(p.keep, [0, 3], "only lines past the line stored last");
        assert_eq!(p.marks, [mv(7, None, 22)]);
    }

    #[test]
    fn the_largest_offset_does_not_overflow() {
        let p = plan(&[], &[(7, u64::MAX)]);
        assert_eq!(p.keep, [0]);
        assert_eq!(p.marks, [mv(7, None, u64::MAX)]);
    }

    #[test]
    fn an_empty_batch_changes_nothing() {
        assert_eq!(plan(&[(7, 3)], &[]), AppendPlan::default());
    }

    #[test]
    fn a_batch_moves_its_marks_past_every_other_mark() {
        assert_eq!([0, 1].map(|i| mark_touch(None, i)), [0, 1]);
        assert_eq!([0, 1].map(|i| mark_touch(Some(41), i)), [42, 43]);
    }

    #[test]
    fn caps_keep_the_newest() {
        assert_eq!(lines_over_cap(25, 20), 5);
        assert_eq!(lines_over_cap(20, 20), 0);
        assert_eq!(lines_over_cap(3, 0), 2, "at least one line is kept");
        assert_eq!(marks_over_cap(LOG_MARKS_PER_CLUSTER + 3), 3);
        assert_eq!(marks_over_cap(LOG_MARKS_PER_CLUSTER), 0);
    }

    #[test]
    fn registration_decisions() {
        let (mine, theirs) = (agent("a", "c1"), agent("b", "c2"));
        assert_eq!(plan_registration("c1", None, None).ok(), Some(None), "new");
        assert_eq!(
            plan_registration("c1", None, Some(&mine))
                .ok()
                .flatten()
                .map(|a| a.id),
            Some("a".into()),
            "a retry of the same instance"
        );
        assert_eq!(
            plan_registration("c1", Some(&mine), None)
                .ok()
                .flatten()
                .map(|a| a.id),
            Some("a".into()),
            "the same node again, a new instance"
        );
        assert!(matches!(
            plan_registration("c1", Some(&theirs), None),
            Err(StoreError::NodeTaken { cluster_id }) if cluster_id == "c2"
        ));
        assert!(matches!(
            plan_registration("c1", None, Some(&theirs)),
            Err(StoreError::InstanceTaken { cluster_id }) if cluster_id == "c2"
        ));
    }
}
