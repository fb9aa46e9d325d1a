//! EMQX metrics and alarms for ECP (protocol 3).
//!
//! A collector task runs beside the sessions, not inside one: it reads EMQX
//! every `metrics_interval` (the last Welcome's, 15 s before the first),
//! also while ECP is out of reach, and keeps the samples in a bounded
//! backlog until ECP acknowledges them. A session lends it its queues
//! ([`Link`]) while it lasts; the collector sends one batch at a time,
//! oldest samples first, and sends again what was not acknowledged after a
//! reconnect (the server keeps a cluster's samples in strictly increasing
//! time, so a resend is harmless). So a short outage leaves no gap.
//!
//! EMQX alarms are read at the same pace and sent whenever they changed
//! since the last snapshot sent in this session, and once at the start of
//! every session.
//!
//! What each EMQX version offers (an endpoint it lacks answers 404: its
//! metrics are simply absent, and the endpoint is asked again only every
//! [`ABSENT_REPROBE`]):
//! - v5: `monitor_current` (rates, gauges, `license_quota` on Enterprise),
//!   `nodes` (running / total), `license` (quota, expiry).
//! - v4: `stats` (summed over nodes; cluster-wide ones once), `metrics`
//!   (rates from the message counters' growth between two collections),
//!   `nodes`, and on Enterprise `monitor/current_metrics` (rates while the
//!   counters have no previous reading) and `license`.
//!
//! The parsers and the decisions (rates, backlog, alarm changes) are plain
//! functions, tested below; EMQX answers are untrusted: counts, texts and
//! the snapshot's size are bounded.

use crate::emqx::{Emqx, EmqxError, Fetched, Flavor, MAX_NODES};
use ecp_protocol::limits::MAX_NAME_BYTES;
use ecp_protocol::metrics::{
    metric_index, MAX_ACTIVE_ALARMS, MAX_ALARM_TEXT_BYTES, MAX_DEACTIVATED_ALARMS,
};
use ecp_protocol::{AlarmSnapshot, EmqxAlarm, Frame, MetricSample, MetricsBatch};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;

/// The collection interval before the first Welcome says otherwise.
pub const DEFAULT_INTERVAL_SECS: u32 = 15;
/// Samples kept while ECP has not acknowledged them (6 h at 15 s); the
/// oldest go first.
pub const BACKLOG_CAP: usize = 1_440;
/// Samples in one `Metrics` frame (about 20 KiB): ECP's read buffer for a
/// session grows to the largest frame it got and keeps that size, so a
/// backlog resent after an outage costs ECP this much per agent.
pub const BATCH_SAMPLES: usize = 60;
/// An endpoint this EMQX lacks (404) is asked again after this long.
pub const ABSENT_REPROBE: Duration = Duration::from_secs(600);
/// A batch not acknowledged within this long is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// An alarm snapshot stays this small (a frame holds 1 MiB).
pub const SNAPSHOT_BUDGET: usize = 768 * 1024;
/// Alarms read from one EMQX answer at most.
pub const MAX_PARSED_ALARMS: usize = 10_000;
/// v5 alarms asked for per page.
const V5_ALARM_PAGE: u64 = 1_000;

/// A sample's values before they become a [`MetricSample`].
pub type Values = Vec<(String, f64)>;

// ------------------------------------------------------------------ parsing

/// A number that can be a metric: finite and not negative.
fn num(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite() && *f >= 0.0)
}

fn push(out: &mut Values, name: &str, v: Option<f64>) {
    if let Some(v) = v {
        out.push((name.to_string(), v));
    }
}

/// `values` with those of `more` whose names it lacks.
pub fn fill(values: &mut Values, more: Values) {
    for (name, v) in more {
        if !values.iter().any(|(n, _)| *n == name) {
            values.push((name, v));
        }
    }
}

/// The values in the order of [`ecp_protocol::metrics::METRICS`] (others last).
pub fn ordered(mut values: Values) -> Values {
    values.sort_by_key(|(n, _)| metric_index(n).unwrap_or(usize::MAX));
    values
}

/// The names `GET /api/v5/monitor_current` answers with, as the metrics
/// of the same name.
const V5_CURRENT: [&str; 10] = [
    "connections",
    "live_connections",
    "received_msg_rate",
    "sent_msg_rate",
    "dropped_msg_rate",
    "subscriptions",
    "topics",
    "retained_msg_count",
    "shared_subscriptions",
    "license_quota",
];

/// `GET /api/v5/monitor_current`.
pub fn v5_monitor_current(v: &Value) -> Values {
    let mut out = Values::new();
    for name in V5_CURRENT {
        push(&mut out, name, num(&v[name]));
    }
    out
}

/// `GET /api/v5/nodes` (running nodes, then stopped core nodes).
pub fn v5_nodes(v: &Value) -> Values {
    let Some(list) = v.as_array() else {
        return Values::new();
    };
    let running = list
        .iter()
        .filter(|n| n["node_status"].as_str() == Some("running"))
        .count();
    vec![
        ("nodes_running".into(), running as f64),
        ("nodes_total".into(), list.len() as f64),
    ]
}

/// The time of a licence's `expiry_at`, `2295-10-27` (v5) or
/// `2295-10-27 00:00:00` (v4), as Unix seconds (UTC).
pub fn expiry_secs(text: &str) -> Option<f64> {
    let t = text.trim();
    let full = if t.len() == 10 {
        format!("{t}T00:00:00")
    } else {
        t.to_string()
    };
    crate::logship::parse_time(&full).map(|us| (us / 1_000_000) as f64)
}

/// `GET /api/v5/license` or the `data` of `GET /api/v4/license`.
pub fn license(v: &Value) -> Values {
    let mut out = Values::new();
    push(&mut out, "license_quota", num(&v["max_connections"]));
    push(
        &mut out,
        "license_expiry_at",
        v["expiry_at"].as_str().and_then(expiry_secs),
    );
    out
}

/// The `data` of `GET /api/v4/stats`: `[{node, stats}]` per running node.
/// Per-node counts are summed; topics, retained messages and shared
/// subscriptions are cluster-wide (every node reports the same), so the
/// largest is taken.
pub fn v4_stats(data: &Value) -> Values {
    const SUMMED: [(&str, &str); 3] = [
        ("connections.count", "connections"),
        ("live_connections.count", "live_connections"),
        ("subscriptions.count", "subscriptions"),
    ];
    const SHARED: [(&str, &str); 3] = [
        ("topics.count", "topics"),
        ("retained.count", "retained_msg_count"),
        ("subscriptions.shared.count", "shared_subscriptions"),
    ];
    let nodes: Vec<&Value> = data
        .as_array()
        .map(|a| a.iter().take(MAX_NODES).map(|n| &n["stats"]).collect())
        .unwrap_or_default();
    let mut out = Values::new();
    for (key, name) in SUMMED {
        let found: Vec<f64> = nodes.iter().filter_map(|s| num(&s[key])).collect();
        if !found.is_empty() {
            out.push((name.into(), found.iter().sum()));
        }
    }
    for (key, name) in SHARED {
        push(
            &mut out,
            name,
            nodes.iter().filter_map(|s| num(&s[key])).reduce(f64::max),
        );
    }
    out
}

/// The data of `GET /api/v4/nodes` (running nodes only: v4 drops stopped
/// ones): running now, and every node seen so far (`seen` grows, to at
/// most [`MAX_NODES`] names).
pub fn v4_nodes(data: &Value, seen: &mut BTreeSet<String>) -> Values {
    let Some(list) = data.as_array() else {
        return Values::new();
    };
    let mut running = 0usize;
    for n in list.iter().take(MAX_NODES) {
        if n["node_status"].as_str() == Some("Running") {
            running += 1;
        }
        if let Some(name) = n["node"].as_str() {
            if seen.len() < MAX_NODES && name.len() <= MAX_NAME_BYTES {
                seen.insert(name.to_string());
            }
        }
    }
    vec![
        ("nodes_running".into(), running as f64),
        ("nodes_total".into(), seen.len().max(running) as f64),
    ]
}

/// The data of the Enterprise-only `GET /api/v4/monitor/current_metrics`.
pub fn v4_current_metrics(data: &Value) -> Values {
    let mut out = Values::new();
    for (key, name) in [
        ("connection", "connections"),
        ("live_connection", "live_connections"),
        ("received", "received_msg_rate"),
        ("sent", "sent_msg_rate"),
        ("subscription", "subscriptions"),
    ] {
        push(&mut out, name, num(&data[key]));
    }
    out
}

/// The message counters EMQX v4 keeps per node, as the rates they become.
const COUNTERS: [(&str, &str); 3] = [
    ("messages.received", "received_msg_rate"),
    ("messages.sent", "sent_msg_rate"),
    ("messages.dropped", "dropped_msg_rate"),
];

/// Each node's message counters (by [`COUNTERS`]).
pub type Counters = BTreeMap<String, [Option<f64>; 3]>;

/// The data of `GET /api/v4/metrics`: `[{node, metrics}]`.
pub fn v4_counters(data: &Value) -> Counters {
    let mut out = Counters::new();
    for n in data.as_array().into_iter().flatten().take(MAX_NODES) {
        let Some(node) = n["node"].as_str() else {
            continue;
        };
        let m = &n["metrics"];
        out.insert(node.to_string(), COUNTERS.map(|(key, _)| num(&m[key])));
    }
    out
}

/// Messages per second from the counters' growth over `elapsed` seconds,
/// summed over the nodes read both times. A counter that went down was
/// reset (the node restarted): it grew by its new value. A node missing
/// either time adds nothing.
pub fn rates(prev: &Counters, cur: &Counters, elapsed_secs: f64) -> Values {
    let mut out = Values::new();
    if elapsed_secs.is_nan() || elapsed_secs <= 0.0 {
        return out;
    }
    for (i, (_, name)) in COUNTERS.iter().enumerate() {
        let mut grown = None;
        for (node, now) in cur {
            if let (Some(now), Some(before)) = (now[i], prev.get(node).and_then(|p| p[i])) {
                let d = if now >= before { now - before } else { now };
                grown = Some(grown.unwrap_or(0.0) + d);
            }
        }
        push(&mut out, name, grown.map(|g| g / elapsed_secs));
    }
    out
}

// ------------------------------------------------------------------ alarms

/// `s` cut to at most `max` bytes, on a char boundary.
fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// An alarm's `details` as JSON text ("" when there are none), bounded.
fn details_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Object(m) if m.is_empty() => String::new(),
        other => clip(&other.to_string(), MAX_ALARM_TEXT_BYTES),
    }
}

fn alarm_of(
    node: &str,
    a: &Value,
    activate_at_ms: u64,
    deactivate_at_ms: Option<u64>,
) -> EmqxAlarm {
    EmqxAlarm {
        node: clip(node, MAX_NAME_BYTES),
        name: clip(a["name"].as_str().unwrap_or_default(), MAX_NAME_BYTES),
        message: clip(
            a["message"].as_str().unwrap_or_default(),
            MAX_ALARM_TEXT_BYTES,
        ),
        details: details_text(&a["details"]),
        activate_at_ms,
        deactivate_at_ms,
    }
}

/// An RFC 3339 time (`2021-10-25T11:52:52.548+08:00`) as Unix ms.
fn rfc3339_ms(v: &Value) -> Option<u64> {
    v.as_str()
        .and_then(crate::logship::parse_time)
        .map(|us| us / 1000)
}

/// `GET /api/v5/alarms` → `{data: [{node, name, message, details,
/// duration, activate_at, deactivate_at?}], meta}`; times are RFC 3339.
pub fn v5_alarms(v: &Value) -> Vec<EmqxAlarm> {
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .take(MAX_PARSED_ALARMS)
        .filter(|a| a["name"].is_string())
        .map(|a| {
            alarm_of(
                a["node"].as_str().unwrap_or_default(),
                a,
                rfc3339_ms(&a["activate_at"]).unwrap_or(0),
                rfc3339_ms(&a["deactivate_at"]),
            )
        })
        .collect()
}

/// The last page of a v5 alarm list that has more pages than the first
/// (`meta.hasnext`, `meta.count`), if any.
pub fn v5_last_page(v: &Value, limit: u64) -> Option<u64> {
    if v["meta"]["hasnext"].as_bool() != Some(true) {
        return None;
    }
    let count = v["meta"]["count"].as_u64()?;
    let last = count.div_ceil(limit.max(1));
    (last > 1).then_some(last)
}

/// The data of `GET /api/v4/alarms[/activated|/deactivated]`: `[{node,
/// alarms: [{name, message, details, activate_at (µs), deactivate_at
/// ("infinity" | µs), activated, duration}]}]` → (active, deactivated).
pub fn v4_alarms(data: &Value) -> (Vec<EmqxAlarm>, Vec<EmqxAlarm>) {
    let (mut active, mut gone) = (Vec::new(), Vec::new());
    let mut n = 0usize;
    for node in data.as_array().into_iter().flatten().take(MAX_NODES) {
        let name = node["node"].as_str().unwrap_or_default();
        for a in node["alarms"].as_array().into_iter().flatten() {
            if n >= MAX_PARSED_ALARMS {
                break;
            }
            if !a["name"].is_string() {
                continue;
            }
            n += 1;
            let at = a["activate_at"].as_u64().map_or(0, |us| us / 1000);
            let until = a["deactivate_at"].as_u64().map(|us| us / 1000);
            let is_active = a["activated"].as_bool().unwrap_or(until.is_none());
            if is_active {
                active.push(alarm_of(name, a, at, None));
            } else {
                gone.push(alarm_of(name, a, at, until));
            }
        }
    }
    (active, gone)
}

/// What one alarm weighs in a frame (roughly).
fn weight(a: &EmqxAlarm) -> usize {
    a.node.len() + a.name.len() + a.message.len() + a.details.len() + 40
}

/// The snapshot of what was read: active alarms oldest first (at most
/// [`MAX_ACTIVE_ALARMS`], the newest kept), the most recently deactivated
/// ones (at most [`MAX_DEACTIVATED_ALARMS`]) oldest first, and all of it
/// within [`SNAPSHOT_BUDGET`] bytes (older deactivated alarms go first,
/// then older active ones). Also says how many alarms were left out.
pub fn snapshot(
    mut active: Vec<EmqxAlarm>,
    mut deactivated: Vec<EmqxAlarm>,
    observed_at_ms: u64,
) -> (AlarmSnapshot, usize) {
    let total = active.len() + deactivated.len();
    let key = |a: &EmqxAlarm| (a.activate_at_ms, a.node.clone(), a.name.clone());
    active.sort_by_key(key);
    active.dedup();
    if active.len() > MAX_ACTIVE_ALARMS {
        active.drain(..active.len() - MAX_ACTIVE_ALARMS);
    }
    deactivated.sort_by_key(|a| {
        (
            a.deactivate_at_ms,
            a.activate_at_ms,
            a.node.clone(),
            a.name.clone(),
        )
    });
    deactivated.dedup();
    if deactivated.len() > MAX_DEACTIVATED_ALARMS {
        deactivated.drain(..deactivated.len() - MAX_DEACTIVATED_ALARMS);
    }
    let mut bytes: usize = active.iter().chain(&deactivated).map(weight).sum();
    while bytes > SNAPSHOT_BUDGET {
        let cut = if deactivated.is_empty() {
            active.remove(0)
        } else {
            deactivated.remove(0)
        };
        bytes -= weight(&cut);
    }
    let kept = active.len() + deactivated.len();
    (
        AlarmSnapshot {
            observed_at_ms,
            active,
            deactivated,
        },
        total - kept.min(total),
    )
}

/// Whether two snapshots list the same alarms (the time they were read
/// does not count).
pub fn same_alarms(a: &AlarmSnapshot, b: &AlarmSnapshot) -> bool {
    a.active == b.active && a.deactivated == b.deactivated
}

// ------------------------------------------------------------------ backlog

#[derive(Debug, Clone, Copy, PartialEq)]
struct InFlight {
    batch: u64,
    /// The samples of the batch still at the front of the backlog.
    count: usize,
    sent_at: Instant,
}

/// Samples waiting for ECP's acknowledgement: at most `cap`, the oldest
/// dropped first; one batch in flight at a time.
#[derive(Debug)]
pub struct Backlog {
    samples: VecDeque<MetricSample>,
    cap: usize,
    /// Samples dropped because the backlog was full.
    pub dropped: u64,
    next_batch: u64,
    in_flight: Option<InFlight>,
}

impl Backlog {
    pub fn new(cap: usize) -> Backlog {
        Backlog {
            samples: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
            next_batch: 1,
            in_flight: None,
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds a sample; true when the oldest one had to go to make room.
    pub fn push(&mut self, sample: MetricSample) -> bool {
        let mut full = false;
        while self.samples.len() >= self.cap {
            self.samples.pop_front();
            self.dropped += 1;
            full = true;
            if let Some(f) = self.in_flight.as_mut() {
                f.count = f.count.saturating_sub(1);
            }
        }
        self.samples.push_back(sample);
        full
    }

    /// The next batch to send, oldest samples first: none while one is in
    /// flight and not yet overdue (`ACK_TIMEOUT`). Every batch gets a new
    /// number, so an acknowledgement names exactly what it covers.
    pub fn next(&mut self, now: Instant, max: usize) -> Option<MetricsBatch> {
        if let Some(f) = self.in_flight {
            if now.saturating_duration_since(f.sent_at) < ACK_TIMEOUT {
                return None;
            }
        }
        if self.samples.is_empty() {
            self.in_flight = None;
            return None;
        }
        let count = self.samples.len().min(max.max(1));
        let batch = self.next_batch;
        self.next_batch += 1;
        self.in_flight = Some(InFlight {
            batch,
            count,
            sent_at: now,
        });
        Some(MetricsBatch {
            batch,
            samples: self.samples.iter().take(count).cloned().collect(),
        })
    }

    /// ECP stored batch `batch`: its samples leave. Returns how many.
    pub fn acked(&mut self, batch: u64) -> usize {
        match self.in_flight {
            Some(f) if f.batch == batch => {
                self.in_flight = None;
                let n = f.count.min(self.samples.len());
                self.samples.drain(..n);
                n
            }
            _ => 0,
        }
    }

    /// The batch in flight will not be acknowledged (the session ended, or
    /// it was never sent): its samples go again with the next batch.
    pub fn unsent(&mut self) {
        self.in_flight = None;
    }
}

/// The next collection time after `now_ms`: a multiple of the interval,
/// so samples are spaced by it.
pub fn next_tick(now_ms: u64, interval_secs: u32) -> u64 {
    let every = u64::from(interval_secs.max(1)) * 1000;
    (now_ms / every + 1) * every
}

// ------------------------------------------------------------------ collecting

/// One collection: the metric values read, and the alarms (active,
/// deactivated) when both lists could be read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Collection {
    pub values: Values,
    pub alarms: Option<(Vec<EmqxAlarm>, Vec<EmqxAlarm>)>,
}

/// Reads EMQX for the collector: remembers which endpoints this EMQX lacks,
/// and (v4) the last counters.
pub struct Source {
    emqx: Emqx,
    absent: HashMap<&'static str, Instant>,
    counters: Option<(Instant, Counters)>,
    failing: bool,
}

impl Source {
    pub fn new(emqx: Emqx) -> Source {
        Source {
            emqx,
            absent: HashMap::new(),
            counters: None,
            failing: false,
        }
    }

    /// An endpoint's answer, or `None`: missing here (asked again after
    /// [`ABSENT_REPROBE`]) or failed (asked again next time).
    async fn get(&mut self, key: &'static str, path: &str, now: Instant) -> Option<Value> {
        if self.absent.get(key).is_some_and(|until| now < *until) {
            return None;
        }
        match self.emqx.fetch(path).await {
            Ok(Fetched::Found(v)) => {
                if self.absent.remove(key).is_some() {
                    tracing::info!(endpoint = key, "EMQX endpoint is present again");
                }
                Some(v)
            }
            Ok(Fetched::Missing) => {
                if self.absent.insert(key, now + ABSENT_REPROBE).is_none() {
                    tracing::info!(
                        endpoint = key,
                        "EMQX has no such endpoint (404): not collected"
                    );
                }
                None
            }
            Err(e) => {
                tracing::debug!(endpoint = key, error = %e, "EMQX endpoint failed");
                None
            }
        }
    }

    /// Reads everything this EMQX offers. `now` is the monotonic time of
    /// the collection (rates divide by the time between two of them).
    pub async fn collect(&mut self, now: Instant) -> Collection {
        let flavor = match self.emqx.flavor {
            Some(f) => Ok(f),
            None => self.emqx.detect().await,
        };
        let out = match flavor {
            Ok(Flavor::V5) => self.collect_v5(now).await,
            Ok(Flavor::V4) => self.collect_v4(now).await,
            Err(e) => {
                self.note_failure(Some(&e));
                return Collection::default();
            }
        };
        if out.values.is_empty() {
            self.note_failure(None);
        } else if self.failing {
            self.failing = false;
            tracing::info!("EMQX metrics collected again");
        }
        out
    }

    fn note_failure(&mut self, e: Option<&EmqxError>) {
        if !self.failing {
            self.failing = true;
            match e {
                Some(e) => tracing::warn!(error = %e, "no EMQX metrics collected"),
                None => tracing::warn!("no EMQX metrics collected"),
            }
        }
    }

    async fn collect_v5(&mut self, now: Instant) -> Collection {
        let mut values = Values::new();
        if let Some(v) = self
            .get("v5 monitor_current", "/api/v5/monitor_current", now)
            .await
        {
            values.extend(v5_monitor_current(&v));
        }
        if let Some(v) = self.get("v5 nodes", "/api/v5/nodes", now).await {
            values.extend(v5_nodes(&v));
        }
        if let Some(v) = self.get("v5 license", "/api/v5/license", now).await {
            fill(&mut values, license(&v));
        }
        let active_path = format!("/api/v5/alarms?activated=true&limit={V5_ALARM_PAGE}");
        let gone_path = format!("/api/v5/alarms?activated=false&limit={V5_ALARM_PAGE}");
        let active = self.get("v5 alarms", &active_path, now).await;
        let gone = match active {
            Some(_) => self.get("v5 alarms", &gone_path, now).await,
            None => None,
        };
        let alarms = match (active, gone) {
            (Some(a), Some(g)) => {
                let mut deactivated = v5_alarms(&g);
                // The newest deactivated alarms are on the last page.
                if let Some(last) = v5_last_page(&g, V5_ALARM_PAGE) {
                    let path = format!("{gone_path}&page={last}");
                    match self.get("v5 alarms", &path, now).await {
                        Some(more) => deactivated.extend(v5_alarms(&more)),
                        None => {
                            return Collection {
                                values,
                                alarms: None,
                            }
                        }
                    }
                }
                Some((v5_alarms(&a), deactivated))
            }
            _ => None,
        };
        Collection { values, alarms }
    }

    async fn collect_v4(&mut self, now: Instant) -> Collection {
        let mut values = Values::new();
        if let Some(v) = self.get("v4 stats", "/api/v4/stats", now).await {
            values.extend(v4_stats(&v));
        }
        if let Some(v) = self.get("v4 metrics", "/api/v4/metrics", now).await {
            let cur = v4_counters(&v);
            if let Some((then, prev)) = &self.counters {
                let elapsed = now.saturating_duration_since(*then).as_secs_f64();
                values.extend(rates(prev, &cur, elapsed));
            }
            self.counters = Some((now, cur));
        }
        if let Some(v) = self.get("v4 nodes", "/api/v4/nodes", now).await {
            values.extend(v4_nodes(&v, &mut self.emqx.seen));
        }
        if let Some(v) = self
            .get(
                "v4 monitor/current_metrics",
                "/api/v4/monitor/current_metrics",
                now,
            )
            .await
        {
            fill(&mut values, v4_current_metrics(&v));
        }
        if let Some(v) = self.get("v4 license", "/api/v4/license", now).await {
            fill(&mut values, license(&v));
        }
        let active = self.get("v4 alarms", "/api/v4/alarms/activated", now).await;
        let gone = match active {
            Some(_) => {
                self.get("v4 alarms", "/api/v4/alarms/deactivated", now)
                    .await
            }
            None => None,
        };
        let alarms = match (active, gone) {
            (Some(a), Some(g)) => Some((v4_alarms(&a).0, v4_alarms(&g).1)),
            _ => None,
        };
        Collection { values, alarms }
    }
}

// ------------------------------------------------------------------ the task

/// What a session lends the collector while it lasts.
pub struct Link {
    /// The session's bulk queue (`Metrics`).
    pub bulk: mpsc::Sender<Frame>,
    /// Where `Alarms` frames go: the session's bulk queue too (a snapshot
    /// can be large and must not hold heartbeats back), kept apart so the
    /// outbox can be tested on its own.
    pub alarms: mpsc::Sender<Frame>,
    /// The Welcome's `metrics_interval_secs`; 0 (a server older than
    /// protocol 3): nothing is collected or sent.
    pub interval_secs: u32,
}

enum Cmd {
    Up(Link),
    Down,
    Ack(u64),
}

/// The running collector. Dropping it stops it.
pub struct Metrics {
    cmds: mpsc::Sender<Cmd>,
    task: JoinHandle<()>,
}

impl Drop for Metrics {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Metrics {
    /// Starts collecting from `emqx`.
    pub fn spawn(emqx: Emqx) -> Metrics {
        let (cmds, rx) = mpsc::channel(64);
        let task = tokio::spawn(run(Source::new(emqx), rx));
        Metrics { cmds, task }
    }

    /// A session is up: send through it from now on.
    pub async fn up(&self, link: Link) {
        let _ = self.cmds.send(Cmd::Up(link)).await;
    }

    /// The session ended (a lost message is harmless: the collector finds
    /// the session's queues closed).
    pub fn down(&self) {
        let _ = self.cmds.try_send(Cmd::Down);
    }

    /// ECP acknowledged batch `batch` (a lost one is sent again).
    pub fn acked(&self, batch: u64) {
        let _ = self.cmds.try_send(Cmd::Ack(batch));
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The sending side: backlog, the session's link, the alarms.
struct Outbox {
    backlog: Backlog,
    link: Option<Link>,
    interval_secs: u32,
    alarms_latest: Option<AlarmSnapshot>,
    alarms_sent: Option<AlarmSnapshot>,
}

impl Outbox {
    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Up(link) => {
                self.interval_secs = link.interval_secs;
                self.backlog.unsent();
                self.alarms_sent = None;
                if link.interval_secs == 0 {
                    tracing::info!("ECP takes no metrics (older than protocol 3): not collecting");
                }
                self.link = Some(link);
            }
            Cmd::Down => {
                self.link = None;
                self.backlog.unsent();
            }
            Cmd::Ack(batch) => {
                let n = self.backlog.acked(batch);
                tracing::debug!(
                    batch,
                    samples = n,
                    waiting = self.backlog.len(),
                    "metrics acknowledged"
                );
            }
        }
    }

    fn on_collection(&mut self, at_ms: u64, c: Collection) {
        if !c.values.is_empty() {
            let sample = MetricSample {
                at_ms,
                values: ordered(c.values),
            };
            if self.backlog.push(sample) {
                let dropped = self.backlog.dropped;
                if dropped == 1 || dropped % 60 == 0 {
                    tracing::warn!(
                        dropped,
                        kept = self.backlog.len(),
                        "metrics backlog full: oldest samples dropped"
                    );
                }
            }
        }
        if let Some((active, deactivated)) = c.alarms {
            let (snap, left_out) = snapshot(active, deactivated, at_ms);
            if left_out > 0 {
                tracing::warn!(left_out, "too many EMQX alarms: the oldest are not sent");
            }
            self.alarms_latest = Some(snap);
        }
    }

    /// Sends what is due through the session, if there is one.
    fn flush(&mut self, now: Instant) {
        let Some(link) = self.link.as_ref() else {
            return;
        };
        if link.interval_secs == 0 {
            return;
        }
        let mut closed = false;
        if let Some(latest) = &self.alarms_latest {
            let due = self
                .alarms_sent
                .as_ref()
                .is_none_or(|sent| !same_alarms(sent, latest));
            if due {
                match link.alarms.try_send(Frame::Alarms(latest.clone())) {
                    Ok(()) => {
                        tracing::info!(
                            active = latest.active.len(),
                            deactivated = latest.deactivated.len(),
                            "EMQX alarms sent"
                        );
                        self.alarms_sent = Some(latest.clone());
                    }
                    Err(TrySendError::Full(_)) => {}
                    Err(TrySendError::Closed(_)) => closed = true,
                }
            }
        }
        if !closed {
            if let Some(batch) = self.backlog.next(now, BATCH_SAMPLES) {
                let (n, b) = (batch.samples.len(), batch.batch);
                match link.bulk.try_send(Frame::Metrics(batch)) {
                    Ok(()) => tracing::debug!(batch = b, samples = n, "metrics sent"),
                    Err(TrySendError::Full(_)) => self.backlog.unsent(),
                    Err(TrySendError::Closed(_)) => closed = true,
                }
            }
        }
        if closed {
            self.link = None;
            self.backlog.unsent();
        }
    }
}

/// Sleeps until `at_ms` on the wall clock; forever when `at_ms` is `None`.
async fn until(at_ms: Option<u64>) {
    match at_ms {
        Some(at) => tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await,
        None => std::future::pending().await,
    }
}

async fn run(mut source: Source, mut cmds: mpsc::Receiver<Cmd>) {
    let mut out = Outbox {
        backlog: Backlog::new(BACKLOG_CAP),
        link: None,
        interval_secs: DEFAULT_INTERVAL_SECS,
        alarms_latest: None,
        alarms_sent: None,
    };
    let tick_of = |interval: u32| (interval > 0).then(|| next_tick(now_ms(), interval));
    let mut next = tick_of(out.interval_secs);
    // Overdue acknowledgements and full queues are retried every second.
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut late = false;
    loop {
        tokio::select! {
            _ = until(next) => {
                let at_ms = next.unwrap_or_else(now_ms);
                let budget = Duration::from_secs(u64::from(out.interval_secs.max(1)));
                // Commands are served while EMQX is being read.
                let collection = {
                    let read = source.collect(Instant::now());
                    tokio::pin!(read);
                    let deadline = tokio::time::sleep(budget);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            c = &mut read => break Some(c),
                            _ = &mut deadline => break None,
                            cmd = cmds.recv() => match cmd {
                                Some(c) => out.on_cmd(c),
                                None => return,
                            },
                        }
                    }
                };
                match collection {
                    Some(c) => {
                        late = false;
                        out.on_collection(at_ms, c);
                    }
                    None if !late => {
                        late = true;
                        tracing::warn!(budget = ?budget, "reading EMQX took longer than the interval: no sample");
                    }
                    None => {}
                }
                next = tick_of(out.interval_secs);
                out.flush(Instant::now());
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return };
                let before = out.interval_secs;
                out.on_cmd(cmd);
                if out.interval_secs != before {
                    next = tick_of(out.interval_secs);
                }
                out.flush(Instant::now());
            }
            _ = retry.tick() => out.flush(Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(values: &Values, name: &str) -> Option<f64> {
        values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    #[test]
    fn v5_answers_become_metrics() {
        let cur = json!({"received_msg_rate": 300, "sent_msg_rate": 270, "dropped_msg_rate": 30,
            "connections": 3000, "live_connections": 2990, "subscriptions": 6000, "topics": 3000,
            "retained_msg_count": 3, "shared_subscriptions": 300, "license_quota": 10000,
            "node_uptime": 5, "bogus": 1});
        let v = v5_monitor_current(&cur);
        assert_eq!(v.len(), 10);
        assert_eq!(get(&v, "live_connections"), Some(2990.0));
        assert_eq!(get(&v, "node_uptime"), None);
        // Open source: no quota; odd values are left out, not guessed.
        let v =
            v5_monitor_current(&json!({"connections": -1, "topics": "7", "subscriptions": 2.5}));
        assert_eq!(v, vec![("subscriptions".to_string(), 2.5)]);
        let nodes = json!([{"node": "a", "node_status": "running"}, {"node": "b", "node_status": "stopped"}]);
        assert_eq!(
            v5_nodes(&nodes),
            vec![("nodes_running".into(), 1.0), ("nodes_total".into(), 2.0)]
        );
        assert!(v5_nodes(&json!({"data": []})).is_empty());
        let lic = license(&json!({"max_connections": 10, "expiry_at": "2295-10-27"}));
        assert_eq!(get(&lic, "license_quota"), Some(10.0));
        assert_eq!(get(&lic, "license_expiry_at"), Some(10_281_859_200.0));
        assert_eq!(expiry_secs("1970-01-02 00:00:10"), Some(86_410.0));
        assert_eq!(expiry_secs("soon"), None);
    }

    #[test]
    fn v4_stats_sum_per_node_counts_and_take_cluster_wide_ones_once() {
        let node = |c: u64| {
            json!({"node": "n", "stats": {"connections.count": c, "live_connections.count": c - 1,
            "subscriptions.count": 2 * c, "topics.count": 3000, "retained.count": 3,
            "subscriptions.shared.count": 300}})
        };
        let v = v4_stats(&json!([node(1000), node(2000)]));
        assert_eq!(get(&v, "connections"), Some(3000.0));
        assert_eq!(get(&v, "live_connections"), Some(2998.0));
        assert_eq!(get(&v, "subscriptions"), Some(6000.0));
        assert_eq!(get(&v, "topics"), Some(3000.0), "not summed");
        assert_eq!(get(&v, "shared_subscriptions"), Some(300.0));
        // Before 4.4.0 there is no live_connections.count: absent, not 0.
        let old = v4_stats(&json!([{"stats": {"connections.count": 5}}]));
        assert_eq!(old, vec![("connections".to_string(), 5.0)]);
        let cur = v4_current_metrics(
            &json!({"connection": 3, "live_connection": 2, "received": 9,
            "sent": 8, "subscription": 6}),
        );
        assert_eq!(get(&cur, "received_msg_rate"), Some(9.0));
        assert_eq!(get(&cur, "live_connections"), Some(2.0));
    }

    #[test]
    fn v4_nodes_remember_the_stopped_ones() {
        let mut seen = BTreeSet::new();
        let n = |name: &str| json!({"node": name, "node_status": "Running"});
        let v = v4_nodes(&json!([n("a"), n("b"), n("c")]), &mut seen);
        assert_eq!(get(&v, "nodes_total"), Some(3.0));
        let v = v4_nodes(&json!([n("a"), n("c")]), &mut seen);
        assert_eq!(
            (get(&v, "nodes_running"), get(&v, "nodes_total")),
            (Some(2.0), Some(3.0))
        );
        let many: Vec<Value> = (0..2 * MAX_NODES).map(|i| n(&format!("x{i}"))).collect();
        v4_nodes(&json!(many), &mut seen);
        assert_eq!(seen.len(), MAX_NODES, "bounded");
    }

    fn counters(list: &[(&str, [Option<f64>; 3])]) -> Counters {
        list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn rates_come_from_counter_growth_and_survive_a_reset() {
        let prev = counters(&[
            ("a", [Some(100.0), Some(90.0), Some(10.0)]),
            ("b", [Some(50.0), None, Some(0.0)]),
        ]);
        let cur = counters(&[
            ("a", [Some(400.0), Some(360.0), Some(40.0)]),
            // b restarted: its counters began again at zero.
            ("b", [Some(20.0), Some(5.0), Some(1.0)]),
            // c is new: nothing to compare with yet.
            ("c", [Some(1e9), Some(1e9), Some(1e9)]),
        ]);
        let r = rates(&prev, &cur, 10.0);
        assert_eq!(get(&r, "received_msg_rate"), Some((300.0 + 20.0) / 10.0));
        assert_eq!(
            get(&r, "sent_msg_rate"),
            Some(27.0),
            "b had no sent counter before"
        );
        assert_eq!(get(&r, "dropped_msg_rate"), Some(3.1));
        assert!(rates(&prev, &cur, 0.0).is_empty());
        assert!(
            rates(&Counters::new(), &cur, 10.0).is_empty(),
            "first reading: no rate"
        );
        let data = json!([{"node": "a", "metrics": {"messages.received": 5, "messages.sent": 4}}, {"metrics": {}}]);
        assert_eq!(
            v4_counters(&data),
            counters(&[("a", [Some(5.0), Some(4.0), None])])
        );
    }

    #[test]
    fn values_keep_the_metric_order_and_fill_only_what_is_missing() {
        let mut v: Values = vec![("topics".into(), 1.0), ("connections".into(), 2.0)];
        fill(
            &mut v,
            vec![("connections".into(), 9.0), ("license_quota".into(), 5.0)],
        );
        assert_eq!(get(&v, "connections"), Some(2.0));
        let names: Vec<String> = ordered(v).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["connections", "topics", "license_quota"]);
    }

    #[test]
    fn alarms_parse_from_both_versions() {
        let v5 = json!({"data": [
            {"node": "emqx@a", "name": "high_cpu_usage", "message": "95% cpu usage",
             "details": {"usage": 95}, "duration": 1000, "activate_at": "2021-10-25T11:52:52.548+08:00"},
            {"node": "emqx@a", "name": "partition", "message": "m", "details": {},
             "activate_at": "2021-10-25T03:52:52.548Z", "deactivate_at": "2021-10-25T04:00:00.000+00:00"},
            {"node": "emqx@a", "message": "no name"}
        ], "meta": {"page": 1, "limit": 100, "hasnext": false, "count": 2}});
        let a = v5_alarms(&v5);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].activate_at_ms, 1_635_133_972_548);
        assert_eq!(
            a[1].activate_at_ms, 1_635_133_972_548,
            "same instant in UTC"
        );
        assert_eq!(a[0].details, r#"{"usage":95}"#);
        assert_eq!(
            (a[0].deactivate_at_ms, a[1].deactivate_at_ms),
            (None, Some(1_635_134_400_000))
        );
        assert_eq!(a[1].details, "", "no details");
        assert_eq!(v5_last_page(&v5, 100), None);
        let more = json!({"data": [], "meta": {"hasnext": true, "count": 2500}});
        assert_eq!(v5_last_page(&more, 1000), Some(3));
        let v4 = json!([{"node": "emqx@b", "alarms": [
            {"name": "high_system_memory_usage", "message": "m", "details": {"high_watermark": 70},
             "activate_at": 1_635_133_972_548_123u64, "deactivate_at": "infinity", "activated": true, "duration": 5},
            {"name": "x", "message": "", "details": "no_details",
             "activate_at": 1_000_000u64, "deactivate_at": 2_000_000u64, "activated": false, "duration": 1}
        ]}]);
        let (active, gone) = v4_alarms(&v4);
        assert_eq!(active.len(), 1);
        assert_eq!(
            (active[0].node.as_str(), active[0].activate_at_ms),
            ("emqx@b", 1_635_133_972_548)
        );
        assert_eq!(active[0].deactivate_at_ms, None);
        assert_eq!(
            (gone[0].activate_at_ms, gone[0].deactivate_at_ms),
            (1_000, Some(2_000))
        );
        assert_eq!(gone[0].details, r#""no_details""#);
    }

    fn alarm(name: &str, at: u64, until: Option<u64>) -> EmqxAlarm {
        EmqxAlarm {
            node: "emqx@a".into(),
            name: name.into(),
            message: String::new(),
            details: String::new(),
            activate_at_ms: at,
            deactivate_at_ms: until,
        }
    }

    #[test]
    fn snapshots_are_bounded_and_texts_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_ALARM_TEXT_BYTES); // 2 bytes each
        let v = json!({"data": [{"node": "n".repeat(300), "name": "big", "message": long,
            "details": {"k": long}, "activate_at": "2024-01-01T00:00:00Z"}]});
        let a = &v5_alarms(&v)[0];
        assert_eq!(a.message.len(), MAX_ALARM_TEXT_BYTES);
        assert!(
            a.details.len() <= MAX_ALARM_TEXT_BYTES && a.details.len() >= MAX_ALARM_TEXT_BYTES - 1
        );
        assert_eq!(a.node.len(), MAX_NAME_BYTES);
        let active: Vec<EmqxAlarm> = (0..MAX_ACTIVE_ALARMS as u64 + 10)
            .map(|i| alarm(&format!("a{i}"), i, None))
            .collect();
        let gone: Vec<EmqxAlarm> = (0..300u64)
            .map(|i| alarm(&format!("g{i}"), i, Some(1000 + i)))
            .collect();
        let (s, left_out) = snapshot(active, gone, 7);
        assert_eq!(
            (s.active.len(), s.deactivated.len()),
            (MAX_ACTIVE_ALARMS, MAX_DEACTIVATED_ALARMS)
        );
        assert_eq!(left_out, 10 + 100);
        assert_eq!(s.active[0].name, "a10", "the oldest active go");
        assert_eq!(
            s.deactivated[0].name, "g100",
            "the most recently deactivated stay"
        );
        // Huge alarms: the snapshot still fits a frame.
        let text = clip(&long, MAX_ALARM_TEXT_BYTES);
        let fat = |i: u64, until| EmqxAlarm {
            message: text.clone(),
            details: text.clone(),
            ..alarm(&format!("f{i}"), i, until)
        };
        let (s, left_out) = snapshot(
            (0..400).map(|i| fat(i, None)).collect(),
            (0..200).map(|i| fat(i, Some(i + 1))).collect(),
            7,
        );
        assert!(
            left_out > 0 && s.deactivated.is_empty(),
            "deactivated go first"
        );
        let frame = Frame::Alarms(s);
        assert!(ecp_protocol::encode(&frame).is_ok());
        assert!(ecp_protocol::limits::check_from_agent(&frame).is_ok());
    }

    #[test]
    fn an_alarm_change_is_seen_and_the_read_time_is_not() {
        let (a, _) = snapshot(vec![alarm("x", 1, None)], vec![], 1);
        let (b, _) = snapshot(vec![alarm("x", 1, None)], vec![], 2);
        assert!(same_alarms(&a, &b));
        let (c, _) = snapshot(vec![], vec![alarm("x", 1, Some(5))], 3);
        assert!(!same_alarms(&b, &c));
        // Order as EMQX lists them does not matter.
        let (d, _) = snapshot(vec![alarm("y", 2, None), alarm("x", 1, None)], vec![], 4);
        let (e, _) = snapshot(vec![alarm("x", 1, None), alarm("y", 2, None)], vec![], 5);
        assert!(same_alarms(&d, &e));
    }

    fn sample(at_ms: u64) -> MetricSample {
        MetricSample {
            at_ms,
            values: vec![("connections".into(), at_ms as f64)],
        }
    }

    #[test]
    fn the_backlog_sends_one_batch_at_a_time_and_drops_only_on_ack() {
        let t0 = Instant::now();
        let mut b = Backlog::new(10);
        assert!(b.next(t0, 4).is_none(), "nothing to send");
        for i in 0..6 {
            b.push(sample(i));
        }
        let first = b.next(t0, 4).expect("a batch");
        assert_eq!(
            first.samples.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert!(b.next(t0, 4).is_none(), "one in flight");
        assert_eq!(b.acked(first.batch + 7), 0, "someone else's ack");
        assert_eq!(b.acked(first.batch), 4);
        assert_eq!(b.acked(first.batch), 0, "twice changes nothing");
        let second = b.next(t0, 4).expect("the rest");
        assert!(second.batch > first.batch);
        assert_eq!(
            second.samples.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
            [4, 5]
        );
        // The session ends before the ack: the same samples go again, as a
        // new batch; the old batch's late ack removes nothing.
        b.unsent();
        b.push(sample(6));
        let third = b.next(t0, 4).expect("resend");
        assert_eq!(
            third.samples.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
            [4, 5, 6]
        );
        assert_eq!(b.acked(second.batch), 0);
        // No ack in time: sent again.
        assert!(b
            .next(t0 + ACK_TIMEOUT - Duration::from_millis(1), 4)
            .is_none());
        let again = b.next(t0 + ACK_TIMEOUT, 4).expect("overdue");
        assert_eq!(again.samples.len(), 3);
        assert_eq!(b.acked(again.batch), 3);
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_backlog_drops_the_oldest_even_in_flight() {
        let t0 = Instant::now();
        let mut b = Backlog::new(3);
        for i in 0..3 {
            assert!(!b.push(sample(i)));
        }
        let batch = b.next(t0, 2).expect("batch");
        assert!(b.push(sample(3)), "full: 0 goes");
        assert_eq!(b.dropped, 1);
        // The ack covers what is left of the batch (1), not sample 2.
        assert_eq!(b.acked(batch.batch), 1);
        let rest = b.next(t0, 10).expect("rest");
        assert_eq!(
            rest.samples.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
            [2, 3]
        );
    }

    #[test]
    fn ticks_are_multiples_of_the_interval() {
        assert_eq!(next_tick(1_000, 15), 15_000);
        assert_eq!(next_tick(15_000, 15), 30_000);
        assert_eq!(next_tick(29_999, 15), 30_000);
        assert_eq!(next_tick(5, 0), 1_000, "never zero");
    }

    #[test]
    fn the_outbox_sends_alarms_on_change_and_once_per_session() {
        let (bulk, mut bulk_rx) = mpsc::channel(8);
        let (control, mut control_rx) = mpsc::channel(8);
        let mut out = Outbox {
            backlog: Backlog::new(BACKLOG_CAP),
            link: None,
            interval_secs: DEFAULT_INTERVAL_SECS,
            alarms_latest: None,
            alarms_sent: None,
        };
        let collection = |name: &str| Collection {
            values: vec![("connections".into(), 1.0)],
            alarms: Some((vec![alarm(name, 1, None)], vec![])),
        };
        // Disconnected: kept.
        out.on_collection(15_000, collection("x"));
        out.on_collection(30_000, collection("x"));
        out.flush(Instant::now());
        assert_eq!(out.backlog.len(), 2);
        let link =
            |bulk: &mpsc::Sender<Frame>, control: &mpsc::Sender<Frame>, interval_secs| Link {
                bulk: bulk.clone(),
                alarms: control.clone(),
                interval_secs,
            };
        out.on_cmd(Cmd::Up(link(&bulk, &control, 15)));
        out.flush(Instant::now());
        let Ok(Frame::Alarms(a)) = control_rx.try_recv() else {
            panic!("alarms after connect")
        };
        assert_eq!(a.active[0].name, "x");
        let Ok(Frame::Metrics(m)) = bulk_rx.try_recv() else {
            panic!("the backlog")
        };
        assert_eq!(
            m.samples.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
            [15_000, 30_000]
        );
        out.on_cmd(Cmd::Ack(m.batch));
        // Unchanged alarms are not sent again; changed ones are.
        out.on_collection(45_000, collection("x"));
        out.flush(Instant::now());
        assert!(control_rx.try_recv().is_err());
        out.on_collection(60_000, collection("y"));
        out.flush(Instant::now());
        assert!(matches!(control_rx.try_recv(), Ok(Frame::Alarms(_))));
        // A new session: once more, and the unacknowledged samples again.
        out.on_cmd(Cmd::Down);
        out.on_cmd(Cmd::Up(link(&bulk, &control, 15)));
        out.flush(Instant::now());
        assert!(matches!(control_rx.try_recv(), Ok(Frame::Alarms(_))));
        let mut last = None;
        while let Ok(Frame::Metrics(m)) = bulk_rx.try_recv() {
            last = Some(m);
        }
        assert_eq!(
            last.expect("resent")
                .samples
                .iter()
                .map(|s| s.at_ms)
                .collect::<Vec<_>>(),
            [45_000, 60_000]
        );
        // A server older than protocol 3: nothing is sent.
        out.on_cmd(Cmd::Up(link(&bulk, &control, 0)));
        out.on_collection(75_000, collection("z"));
        out.flush(Instant::now());
        assert!(control_rx.try_recv().is_err() && bulk_rx.try_recv().is_err());
    }
}
