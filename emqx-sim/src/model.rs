//! The simulated cluster: nodes, credentials, faults, the scripted load
//! (and the counters, gauges and monitor samples that follow from it), and
//! alarms.
//!
//! The load (`POST /__sim/load`) is the cluster's: its connections and
//! message rates are split evenly over all nodes, and a stopped node's share
//! is gone (its clients are not connected anywhere, its counters stand
//! still). Counters grow by rate × elapsed time, computed when the state is
//! read or changed ([`SimState::advance`]), so they are exact at any moment
//! without a background task. A node that starts again starts its counters
//! from zero, as a restarted EMQX node does.
//!
//! Derived gauges, distinct so that a test can tell them apart: every client
//! is one session and one live connection with two subscriptions; topics are
//! one per connected client, shared subscriptions one per ten, and three
//! messages are retained. Topics, retained messages and shared subscriptions
//! are cluster-wide in EMQX: every node reports the same value.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    Enterprise,
    Opensource,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: String,
    /// e.g. "5.6.0" or "4.4.6"; the major version picks the API flavour.
    pub version: String,
    pub edition: Edition,
    pub nodes: usize,
    pub cluster_name: String,
    pub username: String,
    pub password: String,
    pub license_max_connections: u64,
    /// v5 dashboard token lifetime.
    pub token_ttl: Duration,
    /// v4 `bad_login_penalty`: a failed Basic check sleeps this long.
    pub v4_bad_login_penalty: Duration,
    /// Connections per running node.
    pub connections_per_node: u64,
    /// 1-based index of the node this endpoint belongs to (v5 `self`).
    pub self_node: usize,
    /// Deactivated alarms kept per node (EMQX `alarm.size_limit`, 1000).
    pub alarm_size_limit: usize,
    /// v5 writes alarm times in the node's local time: this offset (minutes
    /// east of UTC; EMQX's own examples are `+08:00`).
    pub utc_offset_minutes: i32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: "127.0.0.1:0".into(),
            version: "5.6.0".into(),
            edition: Edition::Enterprise,
            nodes: 3,
            cluster_name: "emqxcl".into(),
            username: "admin".into(),
            password: "public".into(),
            license_max_connections: 10_000,
            token_ttl: Duration::from_secs(3600),
            v4_bad_login_penalty: Duration::from_secs(2),
            connections_per_node: 100,
            self_node: 1,
            alarm_size_limit: 1000,
            utc_offset_minutes: 8 * 60,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub running: bool,
    pub started: Instant,
    pub connections: u64,
    /// Messages per second: received, sent, dropped ([`RECEIVED`]…).
    pub rates: [f64; 3],
    /// `messages.received`, `messages.sent`, `messages.dropped` since the
    /// node started.
    pub counters: [f64; 3],
}

/// Indexes of [`Node::rates`] and [`Node::counters`].
pub const RECEIVED: usize = 0;
pub const SENT: usize = 1;
pub const DROPPED: usize = 2;

/// The cluster's scripted load (`POST /__sim/load`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Load {
    pub connections: u64,
    /// Messages received per second; as many are sent, less the dropped.
    pub msg_rate: f64,
    pub drop_rate: f64,
}

/// EMQX v5 samples the cluster every 10 s, at multiples of 10 s.
pub const SAMPLE_INTERVAL_MS: u64 = 10_000;
/// Samples kept (24 h; EMQX keeps 7 days).
pub const SAMPLE_RETENTION: usize = 8_640;

/// One v5 monitor sample (`GET /api/v5/monitor`): gauges at `time_stamp`,
/// and the messages of the 10 s before it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    pub time_stamp: u64,
    pub subscriptions: u64,
    pub topics: u64,
    pub connections: u64,
    pub live_connections: u64,
    pub received: u64,
    pub sent: u64,
    pub dropped: u64,
}

/// The cluster's gauges, over its running nodes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gauges {
    pub connections: u64,
    pub live_connections: u64,
    pub subscriptions: u64,
    pub topics: u64,
    pub retained: u64,
    pub shared_subscriptions: u64,
}

/// One alarm of one node. Times in Unix microseconds, as EMQX keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub node: String,
    pub name: String,
    pub message: String,
    pub details: Value,
    pub activate_at_us: u64,
    pub deactivate_at_us: Option<u64>,
}

#[derive(Debug)]
pub struct SimState {
    pub config: SimConfig,
    pub nodes: Vec<Node>,
    pub password: String,
    /// v5 tokens → expiry.
    pub tokens: HashMap<String, Instant>,
    pub latency: Duration,
    /// Answer every API call with this 5xx status.
    pub fail_status: Option<u16>,
    /// Requests seen, by path (for tests).
    pub hits: HashMap<String, u64>,
    /// Log writing jobs started through `/__sim/logs`.
    pub log_jobs: Vec<LogJob>,
    pub load: Load,
    /// Unix ms up to which counters and samples are computed.
    pub clock_ms: u64,
    /// Messages of the running nodes since the simulator started (never
    /// reset), and their whole part at the last sample.
    pub cumulative: [f64; 3],
    pub sampled: [u64; 3],
    pub samples: VecDeque<Sample>,
    /// Active alarms, and deactivated ones (at most `alarm_size_limit` per
    /// node, the oldest dropped first), each in activation order.
    pub alarms: Vec<Alarm>,
    pub deactivated: Vec<Alarm>,
}

#[derive(Debug)]
pub struct LogJob {
    pub node: String,
    pub total: u64,
    pub written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub done: std::sync::Arc<std::sync::Mutex<Option<Result<f64, String>>>>,
}

impl SimState {
    pub fn new(config: SimConfig) -> SimState {
        let host = if config.cluster_name.is_empty() {
            "emqxcl"
        } else {
            &config.cluster_name
        };
        let nodes = (1..=config.nodes.max(1))
            .map(|i| Node {
                name: format!("emqx@node{i}.{host}"),
                running: true,
                started: Instant::now(),
                connections: config.connections_per_node,
                rates: [0.0; 3],
                counters: [0.0; 3],
            })
            .collect::<Vec<_>>();
        let load = Load {
            connections: config.connections_per_node * nodes.len() as u64,
            ..Load::default()
        };
        SimState {
            password: config.password.clone(),
            config,
            nodes,
            tokens: HashMap::new(),
            latency: Duration::ZERO,
            fail_status: None,
            hits: HashMap::new(),
            log_jobs: Vec::new(),
            load,
            clock_ms: now_ms(),
            cumulative: [0.0; 3],
            sampled: [0; 3],
            samples: VecDeque::new(),
            alarms: Vec::new(),
            deactivated: Vec::new(),
        }
    }

    pub fn major(&self) -> u32 {
        self.config
            .version
            .trim_start_matches(['v', 'e'])
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(5)
    }

    pub fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.running)
    }

    pub fn enterprise(&self) -> bool {
        self.config.edition == Edition::Enterprise
    }

    /// Brings counters and samples up to now.
    pub fn advance(&mut self) {
        self.advance_to(now_ms());
    }

    /// Brings counters and samples up to `now` (Unix ms): each sample
    /// boundary passed on the way records a sample with the state that held
    /// until then (nothing changed in between: every change advances first).
    pub fn advance_to(&mut self, now: u64) {
        if now <= self.clock_ms {
            return;
        }
        let mut at = self.clock_ms;
        // After a long idle time, only the retained window matters.
        let window = SAMPLE_INTERVAL_MS * SAMPLE_RETENTION as u64;
        if now - at > window {
            let skip_to = (now - window) / SAMPLE_INTERVAL_MS * SAMPLE_INTERVAL_MS;
            self.accumulate(skip_to.saturating_sub(at));
            self.sampled = self.cumulative.map(|c| c as u64);
            at = skip_to;
        }
        loop {
            let boundary = (at / SAMPLE_INTERVAL_MS + 1) * SAMPLE_INTERVAL_MS;
            if boundary > now {
                break;
            }
            self.accumulate(boundary - at);
            self.record_sample(boundary);
            at = boundary;
        }
        self.accumulate(now - at);
        self.clock_ms = now;
    }

    fn accumulate(&mut self, ms: u64) {
        let secs = ms as f64 / 1000.0;
        for n in self.nodes.iter_mut().filter(|n| n.running) {
            for i in 0..3 {
                let grown = n.rates[i] * secs;
                n.counters[i] += grown;
                self.cumulative[i] += grown;
            }
        }
    }

    fn record_sample(&mut self, time_stamp: u64) {
        let whole = self.cumulative.map(|c| c as u64);
        let delta = |i: usize| whole[i].saturating_sub(self.sampled[i]);
        let g = self.gauges();
        self.samples.push_back(Sample {
            time_stamp,
            subscriptions: g.subscriptions,
            topics: g.topics,
            connections: g.connections,
            live_connections: g.live_connections,
            received: delta(RECEIVED),
            sent: delta(SENT),
            dropped: delta(DROPPED),
        });
        self.sampled = whole;
        while self.samples.len() > SAMPLE_RETENTION {
            self.samples.pop_front();
        }
    }

    /// Sets the load; a missing part stays as it was. Advances first.
    pub fn set_load(
        &mut self,
        connections: Option<u64>,
        msg_rate: Option<f64>,
        drop_rate: Option<f64>,
    ) {
        self.advance();
        if let Some(c) = connections {
            self.load.connections = c;
            let n = self.nodes.len();
            for (i, node) in self.nodes.iter_mut().enumerate() {
                node.connections = split(c as f64, n, i) as u64;
            }
        }
        if let Some(r) = msg_rate {
            self.load.msg_rate = r;
        }
        if let Some(r) = drop_rate {
            self.load.drop_rate = r;
        }
        let sent = (self.load.msg_rate - self.load.drop_rate).max(0.0);
        let totals = [self.load.msg_rate, sent, self.load.drop_rate];
        let n = self.nodes.len();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.rates = totals.map(|t| split(t, n, i));
        }
    }

    /// Every node gets `per_node` connections (`PUT /__sim/connections`).
    pub fn set_connections_per_node(&mut self, per_node: u64) {
        self.advance();
        for node in self.nodes.iter_mut() {
            node.connections = per_node;
        }
        self.load.connections = per_node * self.nodes.len() as u64;
    }

    /// Stops or starts node `idx`. A started node's counters begin at zero.
    pub fn set_running(&mut self, idx: usize, running: bool) {
        self.advance();
        if let Some(n) = self.nodes.get_mut(idx) {
            if running && !n.running {
                n.started = Instant::now();
                n.counters = [0.0; 3];
            }
            n.running = running;
        }
    }

    /// The gauges of one node (cluster-wide ones as every node reports them).
    pub fn node_gauges(&self, node: &Node) -> Gauges {
        let total: u64 = self.running().map(|n| n.connections).sum();
        Gauges {
            connections: node.connections,
            live_connections: node.connections,
            subscriptions: 2 * node.connections,
            topics: total,
            retained: 3,
            shared_subscriptions: total / 10,
        }
    }

    /// The cluster's gauges: per-node ones summed over running nodes,
    /// cluster-wide ones once.
    pub fn gauges(&self) -> Gauges {
        let mut g = Gauges::default();
        for n in self.running() {
            let ng = self.node_gauges(n);
            g.connections += ng.connections;
            g.live_connections += ng.live_connections;
            g.subscriptions += ng.subscriptions;
            g.topics = ng.topics;
            g.retained = ng.retained;
            g.shared_subscriptions = ng.shared_subscriptions;
        }
        g
    }

    /// Messages per second over the running nodes (each node's rate in
    /// whole messages, as EMQX computes it per node), by [`RECEIVED`]….
    pub fn rates(&self) -> [u64; 3] {
        let mut out = [0u64; 3];
        for n in self.running() {
            for (o, r) in out.iter_mut().zip(n.rates) {
                *o += r as u64;
            }
        }
        out
    }

    /// The index of a node by full name or by the part before the host's
    /// first dot (`emqx@node2`).
    pub fn node_index(&self, node: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.name == node || n.name.starts_with(&format!("{node}.")))
    }

    /// Raises an alarm on a node; an alarm of that name already active
    /// there stays as it is (EMQX: `already_existed`).
    pub fn activate_alarm(&mut self, node: &str, name: &str, message: &str, details: Value) {
        if self.alarms.iter().any(|a| a.node == node && a.name == name) {
            return;
        }
        self.alarms.push(Alarm {
            node: node.to_string(),
            name: name.to_string(),
            message: message.to_string(),
            details,
            activate_at_us: now_us(),
            deactivate_at_us: None,
        });
    }

    /// Clears an active alarm: it joins the node's deactivated ones, of
    /// which the oldest go beyond `alarm_size_limit`. False when no such
    /// alarm is active.
    pub fn deactivate_alarm(&mut self, node: &str, name: &str) -> bool {
        let Some(i) = self
            .alarms
            .iter()
            .position(|a| a.node == node && a.name == name)
        else {
            return false;
        };
        let mut alarm = self.alarms.remove(i);
        alarm.deactivate_at_us = Some(now_us().max(alarm.activate_at_us));
        let limit = self.config.alarm_size_limit.max(1);
        while self.deactivated.iter().filter(|a| a.node == node).count() >= limit {
            match self.deactivated.iter().position(|a| a.node == node) {
                Some(oldest) => {
                    self.deactivated.remove(oldest);
                }
                None => break,
            }
        }
        self.deactivated.push(alarm);
        true
    }
}

/// Share `i` of `total` split over `n`: whole totals in whole shares (the
/// first ones get the remainder), so the shares add up exactly.
fn split(total: f64, n: usize, i: usize) -> f64 {
    let n = n.max(1);
    if total.fract() == 0.0 && total < 9.0e15 {
        let t = total as u64;
        let n = n as u64;
        let i = i as u64;
        (t / n + u64::from(i < t % n)) as f64
    } else {
        total / n as f64
    }
}

pub fn now_ms() -> u64 {
    now_us() / 1000
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// RFC 3339 with milliseconds at a UTC offset, as Erlang's
/// `calendar:system_time_to_rfc3339(Ms, [{unit, millisecond}])` writes it
/// in local time: `2021-10-25T11:52:52.548+08:00`.
pub fn rfc3339_ms(ms: u64, offset_minutes: i32) -> String {
    let local = ms as i64 + i64::from(offset_minutes) * 60_000;
    let (days, rest) = (local.div_euclid(86_400_000), local.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.unsigned_abs();
    format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}{sign}{:02}:{:02}",
        off / 60,
        off % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// v4's uptime text: "2 days, 19 hours, 41 minutes, 47 seconds", leading zero units dropped.
pub fn uptime_text(secs: u64) -> String {
    let units = [
        (86_400, "days"),
        (3_600, "hours"),
        (60, "minutes"),
        (1, "seconds"),
    ];
    let mut rest = secs;
    let mut parts = Vec::new();
    for (size, name) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || !parts.is_empty() || size == 1 {
            parts.push(format!("{n} {name}"));
        }
    }
    parts.join(", ")
}

/// The `kmg` formatting EMQX uses for memory: "512.00M".
pub fn kmg(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1_073_741_824.0 {
        format!("{:.2}G", b / 1_073_741_824.0)
    } else if b >= 1_048_576.0 {
        format!("{:.2}M", b / 1_048_576.0)
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_text_drops_leading_zero_units() {
        assert_eq!(uptime_text(7), "7 seconds");
        assert_eq!(uptime_text(3_600 + 5), "1 hours, 0 minutes, 5 seconds");
        assert_eq!(
            uptime_text(2 * 86_400 + 19 * 3_600 + 41 * 60 + 47),
            "2 days, 19 hours, 41 minutes, 47 seconds"
        );
    }

    #[test]
    fn times_are_rfc3339_in_local_time() {
        assert_eq!(rfc3339_ms(0, 0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(
            rfc3339_ms(1_635_133_972_548, 480),
            "2021-10-25T11:52:52.548+08:00"
        );
        assert_eq!(
            rfc3339_ms(1_709_251_200_000, -90),
            "2024-02-29T22:30:00.000-01:30"
        );
    }

    #[test]
    fn shares_add_up() {
        let total: f64 = (0..3).map(|i| split(100.0, 3, i)).sum();
        assert_eq!(total, 100.0);
        assert_eq!(split(100.0, 3, 0), 34.0);
        assert_eq!(split(2.5, 2, 1), 1.25);
    }

    fn state(nodes: usize) -> SimState {
        SimState::new(SimConfig {
            nodes,
            ..SimConfig::default()
        })
    }

    #[test]
    fn counters_follow_the_load_and_stopped_nodes_add_nothing() {
        let mut st = state(2);
        // 3 s after a boundary an hour ahead (so the wall clock, which
        // `set_load` advances to, is behind it and changes nothing).
        let t0 = (now_ms() / SAMPLE_INTERVAL_MS + 360) * SAMPLE_INTERVAL_MS + 3_000;
        st.clock_ms = t0;
        st.set_load(Some(1000), Some(100.0), Some(10.0));
        st.advance_to(t0 + 10_000);
        let received: f64 = st.nodes.iter().map(|n| n.counters[RECEIVED]).sum();
        assert!((received - 1000.0).abs() < 1e-6, "{received}");
        assert_eq!(st.nodes[0].counters[SENT].round(), 450.0);
        assert_eq!(st.rates(), [100, 90, 10]);
        // One boundary passed, 7 s into the interval: 700 received.
        assert_eq!(st.samples.len(), 1);
        let s = &st.samples[0];
        assert_eq!((s.time_stamp, s.received, s.dropped), (t0 + 7_000, 700, 70));
        assert_eq!(
            (s.connections, s.subscriptions, s.topics),
            (1000, 2000, 1000)
        );
        // Node 2 stops: its share stops counting and leaves the gauges.
        st.nodes[1].running = false;
        st.advance_to(t0 + 30_000);
        // 3 s of both nodes, then 7 s of one; then 10 s of one.
        assert_eq!(st.samples[1].received, 300 + 350);
        let s = &st.samples[2];
        assert_eq!((s.received, s.connections), (500, 500));
        assert_eq!(st.rates(), [50, 45, 5]);
        assert_eq!(st.gauges().topics, 500);
    }

    #[test]
    fn a_restarted_node_counts_from_zero_and_samples_stay_bounded() {
        let mut st = state(1);
        st.set_load(None, Some(5.0), None);
        let t = st.clock_ms;
        st.advance_to(t + 2_000);
        assert!(st.nodes[0].counters[RECEIVED] >= 10.0);
        st.set_running(0, false);
        st.set_running(0, true);
        assert!(st.nodes[0].counters[RECEIVED] < 10.0);
        let t = st.clock_ms;
        st.advance_to(t + 30 * 86_400_000);
        assert_eq!(st.samples.len(), SAMPLE_RETENTION);
    }

    #[test]
    fn deactivated_alarms_are_bounded_per_node() {
        let mut st = SimState::new(SimConfig {
            alarm_size_limit: 2,
            ..SimConfig::default()
        });
        let n1 = st.nodes[0].name.clone();
        for name in ["a", "b", "c"] {
            st.activate_alarm(&n1, name, "m", Value::Null);
            st.activate_alarm(&n1, name, "again", Value::Null);
            assert!(st.deactivate_alarm(&n1, name));
        }
        assert!(!st.deactivate_alarm(&n1, "a"), "no longer active");
        let names: Vec<&str> = st.deactivated.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert!(st.alarms.is_empty());
    }

    #[test]
    fn kmg_like_emqx() {
        assert_eq!(kmg(512 * 1_048_576), "512.00M");
        assert_eq!(kmg(2_083_059_712), "1.94G");
    }
}
