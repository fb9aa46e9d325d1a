//! Alerting: rules, channels, alerts and deliveries (records), EMQX alarms
//! as kept per cluster, and the pure decisions — which conditions hold for a
//! cluster now ([`conditions`]), when they fire and resolve
//! ([`AlertEngine`]), how collected alarms merge ([`merge_alarms`]), when a
//! delivery is retried ([`retry_after`]) and whether a channel's minute still
//! has room ([`admit`]).
//!
//! Alerts are evaluated by the cluster's actor, so exactly once, on the
//! node that owns the cluster. A firing alert is stored with its
//! deliveries in one step; a new owner loads the firing alerts and so
//! neither fires them again nor forgets to resolve them.

use crate::model::{Millis, ReasonCode, Status};
use crate::series::Point;
use ecp_protocol::EmqxAlarm;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The cluster is abnormal (any reason, or the rule's `reason_code`).
    ClusterAbnormal,
    /// No agent session (the cluster's `agent_offline`).
    AgentOffline,
    /// EMQX nodes are stopped.
    NodesStopped,
    /// Connections over `threshold` (% of the licence, or absolute).
    ConnectionsOver,
    /// The licence expires in fewer than `threshold` days.
    LicenseExpiring,
    /// An EMQX alarm whose name matches `alarm_pattern` is active.
    EmqxAlarm,
    /// Dropped messages per second over `threshold`.
    MsgDroppedRateOver,
    /// The agent is connected but sends no metric samples.
    NoMetrics,
}

impl AlertKind {
    pub const ALL: [AlertKind; 8] = [
        AlertKind::ClusterAbnormal,
        AlertKind::AgentOffline,
        AlertKind::NodesStopped,
        AlertKind::ConnectionsOver,
        AlertKind::LicenseExpiring,
        AlertKind::EmqxAlarm,
        AlertKind::MsgDroppedRateOver,
        AlertKind::NoMetrics,
    ];

    /// Whether a rule of this kind needs a `threshold`.
    pub fn needs_threshold(self) -> bool {
        matches!(
            self,
            AlertKind::ConnectionsOver | AlertKind::LicenseExpiring | AlertKind::MsgDroppedRateOver
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ClusterAbnormal => "cluster_abnormal",
            AlertKind::AgentOffline => "agent_offline",
            AlertKind::NodesStopped => "nodes_stopped",
            AlertKind::ConnectionsOver => "connections_over",
            AlertKind::LicenseExpiring => "license_expiring",
            AlertKind::EmqxAlarm => "emqx_alarm",
            AlertKind::MsgDroppedRateOver => "msg_dropped_rate_over",
            AlertKind::NoMetrics => "no_metrics",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// How a `connections_over` threshold counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdUnit {
    /// Percent of the licence's max connections.
    #[default]
    Percent,
    Absolute,
}

/// An alert rule of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRule {
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    pub name: String,
    pub kind: AlertKind,
    /// Empty: every cluster of the project.
    pub cluster_ids: Vec<String>,
    pub threshold: Option<f64>,
    /// `connections_over` only.
    #[serde(default)]
    pub unit: ThresholdUnit,
    /// `cluster_abnormal` only: just this reason.
    pub reason_code: Option<ReasonCode>,
    /// `emqx_alarm` only: a name pattern, `*` matching any run of
    /// characters (none: every alarm).
    pub alarm_pattern: Option<String>,
    /// The condition must hold this long before the alert fires.
    pub for_secs: u64,
    /// The condition must be gone this long before the alert resolves.
    pub recover_secs: u64,
    pub severity: Severity,
    pub channel_ids: Vec<String>,
    pub enabled: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl AlertRule {
    /// Whether the rule looks at this cluster.
    pub fn covers(&self, cluster_id: &str) -> bool {
        self.enabled
            && (self.cluster_ids.is_empty() || self.cluster_ids.iter().any(|c| c == cluster_id))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Webhook,
    Email,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (a local relay).
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfig {
    pub url: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The body; `None`: the default JSON body. Placeholders `{{cluster}}`,
    /// `{{rule}}`, `{{severity}}`, `{{status}}`, `{{message}}`,
    /// `{{startedAt}}`.
    pub body_template: Option<String>,
    /// HMAC-SHA256 key for the signature header (write-only in the API).
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// Write-only in the API.
    pub password: Option<String>,
    pub from: String,
    /// At most 10.
    pub to: Vec<String>,
}

/// A notification channel of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRecord {
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    pub name: String,
    pub kind: ChannelKind,
    pub webhook: Option<WebhookConfig>,
    pub email: Option<EmailConfig>,
    /// Storm control: notifications per minute, then one summary.
    pub max_per_minute: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert: a rule's condition held for a cluster (and, for `emqx_alarm`,
/// one alarm: the `subject`), from `started_at` to `resolved_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRecord {
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub kind: AlertKind,
    pub cluster_id: String,
    pub cluster_name: String,
    /// What inside the cluster ("" for the cluster itself; `node/alarm`).
    pub subject: String,
    pub severity: Severity,
    pub state: AlertState,
    pub started_at: Millis,
    pub resolved_at: Option<Millis>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Firing,
    Resolved,
    /// Storm control: what a channel's full minute held back.
    Summary,
    /// The channel's Test button.
    Test,
}

/// What a notification says (rendered into the channel's template when it
/// is sent, so an edited template applies to what is still queued).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub kind: NoticeKind,
    pub alert_id: Option<String>,
    pub cluster_id: String,
    pub cluster: String,
    pub rule: String,
    pub severity: Severity,
    /// "firing", "resolved", "summary" or "test".
    pub status: String,
    pub message: String,
    pub started_at: Millis,
    pub resolved_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Queued or waiting for a retry.
    Pending,
    Delivered,
    /// Every attempt failed (or the channel is gone).
    Failed,
    /// Held back by storm control; counted in the minute's summary.
    Suppressed,
}

/// One notification to one channel, with its attempts: the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    pub channel_id: String,
    pub project_id: String,
    pub notice: Notice,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When it is due (or, while claimed, when the claim lapses).
    pub next_at: Millis,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    /// The receiver's HTTP status or SMTP reply code of the last attempt.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// A new alert's or delivery's id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Delivery {
    /// A notification queued for a channel (of `project_id`), due now.
    pub fn queued(channel_id: &str, project_id: &str, notice: Notice, now: Millis) -> Delivery {
        Delivery {
            id: new_id(),
            channel_id: channel_id.to_string(),
            project_id: project_id.to_string(),
            notice,
            state: DeliveryState::Pending,
            attempts: 0,
            next_at: now,
            created_at: now,
            finished_at: None,
            last_status: None,
            last_error: None,
        }
    }
}

/// Delivery attempts before a notification is `failed`.
pub const MAX_ATTEMPTS: u32 = 6;

/// When to try again after `attempts` failed attempts: 1 s, 4 s, 16 s,
/// 64 s, 256 s; `None` after [`MAX_ATTEMPTS`].
pub fn retry_after(attempts: u32) -> Option<Millis> {
    (attempts < MAX_ATTEMPTS).then(|| 1_000u64 << (2 * attempts.saturating_sub(1).min(10)))
}

/// The storm-control window (a minute by default, `alerts.storm_window_secs`)
/// a time falls in: its start.
pub fn window_of(at: Millis, window_ms: Millis) -> Millis {
    at - at % window_ms.max(1)
}

/// Storm control for one notification: `sent` is how many this channel's
/// minute counted including this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Send,
    /// Held back; `first` when it is the first held back this minute (then
    /// a summary is queued for the minute's end).
    Suppress {
        first: bool,
    },
}

pub fn admit(sent: u32, max_per_minute: u32) -> Admit {
    if sent <= max_per_minute {
        Admit::Send
    } else {
        Admit::Suppress {
            first: sent == max_per_minute + 1,
        }
    }
}

// ---------------------------------------------------------------- alarms

/// EMQX alarms kept for a cluster: the active ones as last collected, and
/// the deactivated ones, newest first, at most [`ALARM_HISTORY`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlarmSet {
    pub active: Vec<EmqxAlarm>,
    pub history: Vec<EmqxAlarm>,
}

pub const ALARM_HISTORY: usize = 200;

fn same_alarm(a: &EmqxAlarm, b: &EmqxAlarm) -> bool {
    a.node == b.node && a.name == b.name && a.activate_at_ms == b.activate_at_ms
}

/// Merges a snapshot into what was kept: the snapshot's active alarms
/// become the active set; an alarm active before and missing now is
/// deactivated (at the time EMQX lists, else the snapshot's); EMQX's
/// deactivated alarms join the history once.
pub fn merge_alarms(prev: &AlarmSet, snap: &ecp_protocol::AlarmSnapshot) -> AlarmSet {
    let mut history = prev.history.clone();
    let mut add = |a: EmqxAlarm| {
        if !history.iter().any(|h| same_alarm(h, &a)) {
            history.push(a);
        }
    };
    for a in &snap.deactivated {
        let mut a = a.clone();
        a.deactivate_at_ms = Some(a.deactivate_at_ms.unwrap_or(snap.observed_at_ms));
        add(a);
    }
    for old in &prev.active {
        if !snap.active.iter().any(|a| same_alarm(a, old)) {
            let mut gone = old.clone();
            gone.deactivate_at_ms = Some(snap.observed_at_ms);
            add(gone);
        }
    }
    history.sort_by(|a, b| {
        b.deactivate_at_ms
            .cmp(&a.deactivate_at_ms)
            .then(b.activate_at_ms.cmp(&a.activate_at_ms))
    });
    history.truncate(ALARM_HISTORY);
    let mut active = snap.active.clone();
    for a in &mut active {
        a.deactivate_at_ms = None;
    }
    AlarmSet { active, history }
}

/// `*` matches any run of characters; everything else itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

// ---------------------------------------------------------------- facts

/// What the cluster's actor knows, for the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub status: Status,
    pub reason: Option<(ReasonCode, String)>,
    /// Nodes stopped, as the record lists them.
    pub stopped_nodes: Vec<String>,
    /// The newest metric sample, when it is recent (younger than
    /// [`Facts::stale_after_ms`]); `None` leaves metric rules as they are.
    pub latest: Option<Point>,
    /// Since when an agent able to send metrics is connected (`None`: none is).
    pub metrics_expected_since: Option<Millis>,
    /// A connected agent's ability to send metrics is not known yet (a
    /// new owner learns it when the session introduces itself again).
    pub metrics_capability_unknown: bool,
    /// The last metric sample's time, when any.
    pub last_sample_at: Option<Millis>,
    /// The collection interval.
    pub metrics_interval_ms: Millis,
    pub active_alarms: Vec<EmqxAlarm>,
}

impl Facts {
    /// Samples older than three intervals are stale.
    pub fn stale_after_ms(&self) -> Millis {
        3 * self.metrics_interval_ms.max(1_000)
    }
}

/// The outcome of one rule for one cluster now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The condition holds for these subjects (with a message each);
    /// other subjects' conditions do not.
    Holds(Vec<(String, String)>),
    /// Not enough data to say (a stale or missing metric): nothing changes.
    Unknown,
}

fn one(holds: bool, message: impl FnOnce() -> String) -> Verdict {
    Verdict::Holds(if holds {
        vec![(String::new(), message())]
    } else {
        Vec::new()
    })
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// Whether `rule`'s condition holds for the cluster now.
pub fn conditions(rule: &AlertRule, f: &Facts, now: Millis) -> Verdict {
    let abnormal = |code: Option<ReasonCode>| match (&f.reason, f.status) {
        (Some((c, m)), Status::Abnormal) if code.is_none_or(|want| want == *c) => Some(m.clone()),
        _ => None,
    };
    let metric = |name: &str| f.latest.as_ref().and_then(|p| p.get(name));
    let threshold = rule.threshold.unwrap_or(0.0);
    match rule.kind {
        AlertKind::ClusterAbnormal => {
            let m = abnormal(rule.reason_code);
            one(m.is_some(), || m.unwrap_or_default())
        }
        AlertKind::AgentOffline => {
            let m = abnormal(Some(ReasonCode::AgentOffline));
            one(m.is_some(), || m.unwrap_or_default())
        }
        AlertKind::NodesStopped => {
            let m = abnormal(Some(ReasonCode::NodesStopped));
            one(m.is_some(), || {
                m.filter(|m| !m.is_empty())
                    .unwrap_or_else(|| format!("nodes stopped: {}", f.stopped_nodes.join(", ")))
            })
        }
        AlertKind::ConnectionsOver => {
            let Some(conns) = metric("connections").or_else(|| metric("live_connections")) else {
                return Verdict::Unknown;
            };
            match rule.unit {
                ThresholdUnit::Absolute => one(conns > threshold, || {
                    format!(
                        "{} connections, over {}",
                        fmt_num(conns),
                        fmt_num(threshold)
                    )
                }),
                ThresholdUnit::Percent => match metric("license_quota").filter(|q| *q > 0.0) {
                    None => Verdict::Unknown,
                    Some(quota) => {
                        let pct = conns * 100.0 / quota;
                        one(pct > threshold, || {
                            format!(
                                "{} connections, {:.1}% of the licence's {}, over {}%",
                                fmt_num(conns),
                                pct,
                                fmt_num(quota),
                                fmt_num(threshold)
                            )
                        })
                    }
                },
            }
        }
        AlertKind::LicenseExpiring => {
            let Some(at) = metric("license_expiry_at") else {
                return Verdict::Unknown;
            };
            let days = (at * 1000.0 - now as f64) / 86_400_000.0;
            one(days < threshold, || {
                if days <= 0.0 {
                    "the licence has expired".to_string()
                } else {
                    format!("the licence expires in {:.1} days", days)
                }
            })
        }
        AlertKind::MsgDroppedRateOver => {
            let Some(rate) = metric("dropped_msg_rate") else {
                return Verdict::Unknown;
            };
            one(rate > threshold, || {
                format!(
                    "{} messages dropped per second, over {}",
                    fmt_num(rate),
                    fmt_num(threshold)
                )
            })
        }
        AlertKind::EmqxAlarm => {
            let pattern = rule.alarm_pattern.as_deref().unwrap_or("*");
            let mut out: Vec<(String, String)> = f
                .active_alarms
                .iter()
                .filter(|a| pattern_matches(pattern, &a.name))
                .map(|a| {
                    (
                        format!("{}/{}", a.node, a.name),
                        if a.message.is_empty() {
                            format!("EMQX alarm {} on {}", a.name, a.node)
                        } else {
                            format!("EMQX alarm {} on {}: {}", a.name, a.node, a.message)
                        },
                    )
                })
                .collect();
            out.sort();
            out.dedup_by(|a, b| a.0 == b.0);
            Verdict::Holds(out)
        }
        AlertKind::NoMetrics => {
            let Some(since) = f.metrics_expected_since else {
                if f.metrics_capability_unknown {
                    return Verdict::Unknown;
                }
                return one(false, String::new);
            };
            let last = f.last_sample_at.unwrap_or(0).max(since);
            let silent = now.saturating_sub(last);
            one(silent > f.stale_after_ms(), || {
                format!(
                    "the agent is connected but sent no metrics for {} s",
                    silent / 1000
                )
            })
        }
    }
}

// ---------------------------------------------------------------- engine

// A handful per cluster: boxing the firing alert would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
enum Track {
    /// The condition holds since `since`, not yet for `for_secs`.
    Pending { since: Millis, message: String },
    /// Firing as `alert`; `clearing`: the condition is gone since then.
    Firing {
        alert: AlertRecord,
        clearing: Option<Millis>,
    },
}

/// Subjects one rule tracks for one cluster, at most (EMQX alarms are
/// the only kind with several).
pub const MAX_SUBJECTS_PER_RULE: usize = 20;

/// What the engine decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// A new alert (state `firing`; the caller gives it an id and stores it).
    Fire(AlertRecord),
    /// An alert resolved (state `resolved`, `resolved_at` set).
    Resolve(AlertRecord),
}

/// The alert state of one cluster: for each (rule, subject), pending or
/// firing. Owned by the cluster's actor; rebuilt from the stored firing
/// alerts on a new owner ([`AlertEngine::load`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertEngine {
    tracks: BTreeMap<(String, String), Track>,
}

/// The cluster as an alert names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject<'a> {
    pub org_id: &'a str,
    pub project_id: &'a str,
    pub cluster_id: &'a str,
    pub cluster_name: &'a str,
}

impl AlertEngine {
    /// Starts from the stored firing alerts of the cluster.
    pub fn load(firing: Vec<AlertRecord>) -> AlertEngine {
        let mut tracks = BTreeMap::new();
        for alert in firing.into_iter().filter(|a| a.state == AlertState::Firing) {
            tracks.insert(
                (alert.rule_id.clone(), alert.subject.clone()),
                Track::Firing {
                    alert,
                    clearing: None,
                },
            );
        }
        AlertEngine { tracks }
    }

    /// The alerts firing now.
    pub fn firing(&self) -> impl Iterator<Item = &AlertRecord> {
        self.tracks.values().filter_map(|t| match t {
            Track::Firing { alert, .. } => Some(alert),
            Track::Pending { .. } => None,
        })
    }

    /// Evaluates every rule (of the cluster's project) against the facts.
    /// Rules that no longer cover the cluster (deleted, disabled, scoped
    /// elsewhere) resolve their alerts. `new_id` names new alerts.
    pub fn evaluate(
        &mut self,
        rules: &[AlertRule],
        facts: &Facts,
        who: &Subject<'_>,
        now: Millis,
        mut new_id: impl FnMut() -> String,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let live: Vec<&AlertRule> = rules.iter().filter(|r| r.covers(who.cluster_id)).collect();
        // Tracks of rules gone: pending ones are forgotten, firing ones resolve.
        let gone: Vec<(String, String)> = self
            .tracks
            .keys()
            .filter(|(rule, _)| !live.iter().any(|r| &r.id == rule))
            .cloned()
            .collect();
        for key in gone {
            if let Some(Track::Firing { mut alert, .. }) = self.tracks.remove(&key) {
                alert.state = AlertState::Resolved;
                alert.resolved_at = Some(now);
                alert.message = format!("{} (the rule no longer applies)", alert.message);
                out.push(Transition::Resolve(alert));
            }
        }
        for rule in live {
            let Verdict::Holds(mut holding) = conditions(rule, facts, now) else {
                // Not known now (a stale or missing metric): a pending
                // condition was not seen to hold throughout, nor a firing
                // one to stay away; both start over when data is back.
                for ((r, _), t) in self.tracks.iter_mut() {
                    if r == &rule.id {
                        if let Track::Firing { clearing, .. } = t {
                            *clearing = None;
                        }
                    }
                }
                self.tracks
                    .retain(|(r, _), t| r != &rule.id || matches!(t, Track::Firing { .. }));
                continue;
            };
            // A cluster cannot make a rule track more than a bounded number
            // of subjects (one alert per EMQX alarm): the first ones by
            // name, the rest named in the last one's message.
            if holding.len() > MAX_SUBJECTS_PER_RULE {
                let more = holding.len() - MAX_SUBJECTS_PER_RULE + 1;
                holding.truncate(MAX_SUBJECTS_PER_RULE);
                if let Some((_, m)) = holding.last_mut() {
                    *m = format!("{m} (and {more} more like it)");
                }
            }
            let for_ms = rule.for_secs.saturating_mul(1000);
            let recover_ms = rule.recover_secs.saturating_mul(1000);
            // Subjects the rule tracks now, and subjects whose condition holds.
            let tracked: Vec<String> = self
                .tracks
                .keys()
                .filter(|(r, _)| r == &rule.id)
                .map(|(_, s)| s.clone())
                .collect();
            for (subject, message) in &holding {
                let key = (rule.id.clone(), subject.clone());
                match self.tracks.get_mut(&key) {
                    None if for_ms == 0 => {
                        let alert = new_alert(rule, who, subject, message, now, new_id());
                        self.tracks.insert(
                            key,
                            Track::Firing {
                                alert: alert.clone(),
                                clearing: None,
                            },
                        );
                        out.push(Transition::Fire(alert));
                    }
                    None => {
                        self.tracks.insert(
                            key,
                            Track::Pending {
                                since: now,
                                message: message.clone(),
                            },
                        );
                    }
                    Some(Track::Pending { since, .. }) if now.saturating_sub(*since) >= for_ms => {
                        let alert = new_alert(rule, who, subject, message, *since, new_id());
                        self.tracks.insert(
                            key,
                            Track::Firing {
                                alert: alert.clone(),
                                clearing: None,
                            },
                        );
                        out.push(Transition::Fire(alert));
                    }
                    Some(Track::Pending { message: m, .. }) => *m = message.clone(),
                    Some(Track::Firing { clearing, .. }) => *clearing = None,
                }
            }
            for subject in tracked {
                if holding.iter().any(|(s, _)| s == &subject) {
                    continue;
                }
                let key = (rule.id.clone(), subject);
                match self.tracks.get_mut(&key) {
                    Some(Track::Pending { .. }) => {
                        self.tracks.remove(&key);
                    }
                    Some(Track::Firing { clearing, .. }) => {
                        let since = *clearing.get_or_insert(now);
                        if now.saturating_sub(since) >= recover_ms {
                            if let Some(Track::Firing { mut alert, .. }) = self.tracks.remove(&key)
                            {
                                alert.state = AlertState::Resolved;
                                alert.resolved_at = Some(now);
                                out.push(Transition::Resolve(alert));
                            }
                        }
                    }
                    None => {}
                }
            }
        }
        out
    }

    /// The cluster is gone: every firing alert resolves.
    pub fn resolve_all(&mut self, now: Millis, why: &str) -> Vec<Transition> {
        let tracks = std::mem::take(&mut self.tracks);
        tracks
            .into_values()
            .filter_map(|t| match t {
                Track::Firing { mut alert, .. } => {
                    alert.state = AlertState::Resolved;
                    alert.resolved_at = Some(now);
                    alert.message = format!("{} ({why})", alert.message);
                    Some(Transition::Resolve(alert))
                }
                Track::Pending { .. } => None,
            })
            .collect()
    }

    /// The next time (after `now`) a pending or clearing track may change
    /// by time alone. A deadline already past is waiting for data, not time.
    pub fn next_wake(&self, rules: &[AlertRule], now: Millis) -> Option<Millis> {
        self.tracks
            .iter()
            .filter_map(|((rule, _), t)| {
                let r = rules.iter().find(|r| &r.id == rule)?;
                match t {
                    Track::Pending { since, .. } => Some(since + r.for_secs.saturating_mul(1000)),
                    Track::Firing {
                        clearing: Some(c), ..
                    } => Some(c + r.recover_secs.saturating_mul(1000)),
                    Track::Firing { .. } => None,
                }
            })
            .filter(|at| *at > now)
            .min()
    }
}

fn new_alert(
    rule: &AlertRule,
    who: &Subject<'_>,
    subject: &str,
    message: &str,
    started_at: Millis,
    id: String,
) -> AlertRecord {
    AlertRecord {
        id,
        org_id: who.org_id.to_string(),
        project_id: who.project_id.to_string(),
        rule_id: rule.id.clone(),
        rule_name: rule.name.clone(),
        kind: rule.kind,
        cluster_id: who.cluster_id.to_string(),
        cluster_name: who.cluster_name.to_string(),
        subject: subject.to_string(),
        severity: rule.severity,
        state: AlertState::Firing,
        started_at,
        resolved_at: None,
        message: message.to_string(),
    }
}

/// The notices a transition sends: one per channel of its rule.
pub fn notice_of(t: &Transition) -> Notice {
    let (alert, kind) = match t {
        Transition::Fire(a) => (a, NoticeKind::Firing),
        Transition::Resolve(a) => (a, NoticeKind::Resolved),
    };
    Notice {
        kind,
        alert_id: Some(alert.id.clone()),
        cluster_id: alert.cluster_id.clone(),
        cluster: alert.cluster_name.clone(),
        rule: alert.rule_name.clone(),
        severity: alert.severity,
        status: alert.state.as_str().to_string(),
        message: alert.message.clone(),
        started_at: alert.started_at,
        resolved_at: alert.resolved_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: AlertKind) -> AlertRule {
        AlertRule {
            id: "r1".into(),
            org_id: "o".into(),
            project_id: "p".into(),
            name: "rule one".into(),
            kind,
            cluster_ids: vec![],
            threshold: None,
            unit: ThresholdUnit::Percent,
            reason_code: None,
            alarm_pattern: None,
            for_secs: 0,
            recover_secs: 0,
            severity: Severity::Warning,
            channel_ids: vec!["ch".into()],
            enabled: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn facts() -> Facts {
        Facts {
            status: Status::Running,
            reason: None,
            stopped_nodes: vec![],
            latest: None,
            metrics_expected_since: None,
            metrics_capability_unknown: false,
            last_sample_at: None,
            metrics_interval_ms: 15_000,
            active_alarms: vec![],
        }
    }

    fn who() -> Subject<'static> {
        Subject {
            org_id: "o",
            project_id: "p",
            cluster_id: "c1",
            cluster_name: "prod",
        }
    }

    fn point(values: &[(&str, f64)]) -> Point {
        Point::from_sample(&ecp_protocol::MetricSample {
            at_ms: 0,
            values: values.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        })
        .expect("known metrics")
    }

    fn alarm(name: &str) -> EmqxAlarm {
        EmqxAlarm {
            node: "emqx@n1".into(),
            name: name.into(),
            message: "hot".into(),
            details: String::new(),
            activate_at_ms: 5,
            deactivate_at_ms: None,
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("a{n}")
        }
    }

    #[test]
    fn fires_once_after_for_and_resolves_once_after_recover() {
        let mut r = rule(AlertKind::AgentOffline);
        r.for_secs = 10;
        r.recover_secs = 5;
        let rules = vec![r];
        let mut e = AlertEngine::default();
        let mut down = facts();
        down.status = Status::Abnormal;
        down.reason = Some((ReasonCode::AgentOffline, "no agent session".into()));
        let mut id = ids();
        assert!(
            e.evaluate(&rules, &down, &who(), 1_000, &mut id).is_empty(),
            "pending"
        );
        assert_eq!(e.next_wake(&rules, 1_000), Some(11_000));
        assert_eq!(
            e.next_wake(&rules, 11_000),
            None,
            "a past deadline waits for data"
        );
        assert!(e
            .evaluate(&rules, &down, &who(), 10_999, &mut id)
            .is_empty());
        let fired = e.evaluate(&rules, &down, &who(), 11_000, &mut id);
        let [Transition::Fire(a)] = fired.as_slice() else {
            panic!("one firing, got {fired:?}");
        };
        assert_eq!(
            (a.started_at, a.message.as_str()),
            (1_000, "no agent session")
        );
        assert!(
            e.evaluate(&rules, &down, &who(), 20_000, &mut id)
                .is_empty(),
            "fires once"
        );
        let up = facts();
        assert!(
            e.evaluate(&rules, &up, &who(), 21_000, &mut id).is_empty(),
            "clearing"
        );
        // Back before recover_secs: still the same alert, clearing restarts.
        assert!(e
            .evaluate(&rules, &down, &who(), 22_000, &mut id)
            .is_empty());
        assert!(e.evaluate(&rules, &up, &who(), 23_000, &mut id).is_empty());
        let resolved = e.evaluate(&rules, &up, &who(), 28_000, &mut id);
        let [Transition::Resolve(a)] = resolved.as_slice() else {
            panic!("one resolution, got {resolved:?}");
        };
        assert_eq!((a.id.as_str(), a.resolved_at), ("a1", Some(28_000)));
        assert!(e.evaluate(&rules, &up, &who(), 40_000, &mut id).is_empty());
    }

    #[test]
    fn a_new_owner_does_not_fire_again_and_still_resolves() {
        let rules = vec![rule(AlertKind::AgentOffline)];
        let mut down = facts();
        down.status = Status::Abnormal;
        down.reason = Some((ReasonCode::AgentOffline, "offline".into()));
        let mut first = AlertEngine::default();
        let fired = first.evaluate(&rules, &down, &who(), 1_000, ids());
        let stored: Vec<AlertRecord> = first.firing().cloned().collect();
        assert_eq!(fired.len(), 1);
        let mut second = AlertEngine::load(stored);
        assert!(second
            .evaluate(&rules, &down, &who(), 2_000, ids())
            .is_empty());
        let resolved = second.evaluate(&rules, &facts(), &who(), 3_000, ids());
        assert!(matches!(resolved.as_slice(), [Transition::Resolve(a)] if a.id == "a1"));
    }

    #[test]
    fn each_matching_alarm_is_its_own_alert() {
        let mut r = rule(AlertKind::EmqxAlarm);
        r.alarm_pattern = Some("high_*_usage".into());
        let rules = vec![r];
        let mut f = facts();
        f.active_alarms = vec![
            alarm("high_cpu_usage"),
            alarm("high_system_memory_usage"),
            alarm("partition"),
        ];
        let mut e = AlertEngine::default();
        let fired = e.evaluate(&rules, &f, &who(), 1, ids());
        let subjects: Vec<&str> = fired
            .iter()
            .map(|t| match t {
                Transition::Fire(a) => a.subject.as_str(),
                Transition::Resolve(_) => "resolve?",
            })
            .collect();
        assert_eq!(
            subjects,
            vec!["emqx@n1/high_cpu_usage", "emqx@n1/high_system_memory_usage"]
        );
        f.active_alarms.remove(0);
        let t = e.evaluate(&rules, &f, &who(), 2, ids());
        assert!(
            matches!(t.as_slice(), [Transition::Resolve(a)] if a.subject == "emqx@n1/high_cpu_usage")
        );
    }

    #[test]
    fn a_cluster_cannot_make_a_rule_track_more_than_the_cap() {
        let rules = vec![rule(AlertKind::EmqxAlarm)];
        let mut f = facts();
        f.active_alarms = (0..MAX_SUBJECTS_PER_RULE + 30)
            .map(|i| alarm(&format!("flood_{i:03}")))
            .collect();
        let mut e = AlertEngine::default();
        let fired = e.evaluate(&rules, &f, &who(), 1, ids());
        assert_eq!(fired.len(), MAX_SUBJECTS_PER_RULE);
        let Some(Transition::Fire(last)) = fired.last() else {
            panic!("firings: {fired:?}");
        };
        assert!(
            last.message.ends_with("(and 31 more like it)"),
            "{}",
            last.message
        );
    }

    #[test]
    fn a_pending_metric_condition_starts_over_after_a_gap_in_the_data() {
        let mut r = rule(AlertKind::MsgDroppedRateOver);
        r.threshold = Some(10.0);
        r.for_secs = 60;
        let rules = vec![r];
        let mut f = facts();
        f.latest = Some(point(&[("dropped_msg_rate", 50.0)]));
        let mut e = AlertEngine::default();
        assert!(e.evaluate(&rules, &f, &who(), 1_000, ids()).is_empty());
        assert_eq!(e.next_wake(&rules, 1_000), Some(61_000));
        // The samples stop (stale): nothing to wake for, and the pending
        // condition is forgotten rather than fired without being seen.
        let mut stale = f.clone();
        stale.latest = None;
        assert!(e.evaluate(&rules, &stale, &who(), 30_000, ids()).is_empty());
        assert_eq!(e.next_wake(&rules, 30_000), None);
        assert!(
            e.evaluate(&rules, &f, &who(), 70_000, ids()).is_empty(),
            "for_secs again"
        );
        assert_eq!(e.next_wake(&rules, 70_000), Some(130_000));
    }

    #[test]
    fn metric_rules_wait_for_data_and_read_thresholds() {
        let mut r = rule(AlertKind::ConnectionsOver);
        r.threshold = Some(80.0);
        let mut f = facts();
        assert_eq!(conditions(&r, &f, 0), Verdict::Unknown, "no sample");
        f.latest = Some(point(&[("connections", 900.0)]));
        assert_eq!(
            conditions(&r, &f, 0),
            Verdict::Unknown,
            "percent without a licence"
        );
        f.latest = Some(point(&[("connections", 900.0), ("license_quota", 1_000.0)]));
        assert!(matches!(conditions(&r, &f, 0), Verdict::Holds(v) if v.len() == 1));
        r.unit = ThresholdUnit::Absolute;
        r.threshold = Some(1_000.0);
        assert_eq!(conditions(&r, &f, 0), Verdict::Holds(vec![]));
        let mut d = rule(AlertKind::MsgDroppedRateOver);
        d.threshold = Some(10.0);
        f.latest = Some(point(&[("dropped_msg_rate", 12.5)]));
        assert!(matches!(conditions(&d, &f, 0), Verdict::Holds(v) if v[0].1.contains("12.50")));
        let mut l = rule(AlertKind::LicenseExpiring);
        l.threshold = Some(30.0);
        f.latest = Some(point(&[("license_expiry_at", 10.0 * 86_400.0)]));
        assert!(matches!(conditions(&l, &f, 0), Verdict::Holds(v) if v.len() == 1));
        assert_eq!(conditions(&l, &f, 0).clone(), conditions(&l, &f, 0));
        f.latest = Some(point(&[("license_expiry_at", 100.0 * 86_400.0)]));
        assert_eq!(conditions(&l, &f, 0), Verdict::Holds(vec![]));
    }

    #[test]
    fn no_metrics_counts_from_the_session_or_the_last_sample() {
        let r = rule(AlertKind::NoMetrics);
        let mut f = facts();
        assert_eq!(
            conditions(&r, &f, 100_000),
            Verdict::Holds(vec![]),
            "no capable agent"
        );
        f.metrics_expected_since = Some(100_000);
        assert_eq!(
            conditions(&r, &f, 140_000),
            Verdict::Holds(vec![]),
            "within 3 intervals"
        );
        assert!(matches!(conditions(&r, &f, 146_000), Verdict::Holds(v) if v.len() == 1));
        f.last_sample_at = Some(140_000);
        assert_eq!(conditions(&r, &f, 146_000), Verdict::Holds(vec![]));
    }

    #[test]
    fn abnormal_rules_filter_by_reason() {
        let mut r = rule(AlertKind::ClusterAbnormal);
        let mut f = facts();
        f.status = Status::Abnormal;
        f.reason = Some((ReasonCode::NodesStopped, "emqx@n2 stopped".into()));
        assert!(matches!(conditions(&r, &f, 0), Verdict::Holds(v) if v[0].1 == "emqx@n2 stopped"));
        r.reason_code = Some(ReasonCode::EmqxAuthFailed);
        assert_eq!(conditions(&r, &f, 0), Verdict::Holds(vec![]));
        assert!(
            matches!(conditions(&rule(AlertKind::NodesStopped), &f, 0), Verdict::Holds(v) if v.len() == 1)
        );
    }

    #[test]
    fn a_removed_or_disabled_rule_resolves_its_alerts() {
        let rules = vec![rule(AlertKind::AgentOffline)];
        let mut down = facts();
        down.status = Status::Abnormal;
        down.reason = Some((ReasonCode::AgentOffline, "offline".into()));
        let mut e = AlertEngine::default();
        assert_eq!(e.evaluate(&rules, &down, &who(), 1, ids()).len(), 1);
        let mut off = rules.clone();
        off[0].enabled = false;
        let t = e.evaluate(&off, &down, &who(), 2, ids());
        assert!(
            matches!(t.as_slice(), [Transition::Resolve(a)] if a.message.contains("no longer applies"))
        );
        assert_eq!(e.firing().count(), 0);
    }

    #[test]
    fn alarms_merge_into_history_once() {
        let snap =
            |active: Vec<EmqxAlarm>, deactivated: Vec<EmqxAlarm>, at| ecp_protocol::AlarmSnapshot {
                observed_at_ms: at,
                active,
                deactivated,
            };
        let s1 = merge_alarms(
            &AlarmSet::default(),
            &snap(vec![alarm("a"), alarm("b")], vec![], 10),
        );
        assert_eq!(s1.active.len(), 2);
        // "a" vanished: deactivated at the snapshot's time.
        let s2 = merge_alarms(&s1, &snap(vec![alarm("b")], vec![], 20));
        assert_eq!(s2.history.len(), 1);
        assert_eq!(
            (s2.history[0].name.as_str(), s2.history[0].deactivate_at_ms),
            ("a", Some(20))
        );
        // EMQX lists "a" as deactivated (at 15): kept once.
        let mut a = alarm("a");
        a.deactivate_at_ms = Some(15);
        let s3 = merge_alarms(&s2, &snap(vec![alarm("b")], vec![a], 30));
        assert_eq!(s3.history.len(), 1);
    }

    #[test]
    fn patterns_and_storm_control_and_retries() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("high_*_usage", "high_cpu_usage"));
        assert!(!pattern_matches("high_*_usage", "high_cpu"));
        assert!(pattern_matches("resource down*", "resource down: bridge"));
        assert!(pattern_matches("partition", "partition"));
        assert!(!pattern_matches("partition", "partitions"));
        assert!(!pattern_matches("a*a", "a"));
        assert_eq!(admit(3, 3), Admit::Send);
        assert_eq!(admit(4, 3), Admit::Suppress { first: true });
        assert_eq!(admit(5, 3), Admit::Suppress { first: false });
        assert_eq!(retry_after(1), Some(1_000));
        assert_eq!(retry_after(2), Some(4_000));
        assert_eq!(retry_after(5), Some(256_000));
        assert_eq!(retry_after(MAX_ATTEMPTS), None);
        assert_eq!(window_of(61_234, 60_000), 60_000);
        assert_eq!(window_of(61_234, 0), 61_234);
    }
}
