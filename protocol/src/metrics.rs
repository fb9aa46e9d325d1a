//! The metrics an agent collects, by name. One list for the agent (what to
//! send), the server (what to keep: other names are dropped, so a newer
//! agent's extra metric costs nothing) and the API (what may be asked for).

/// A collected metric: its name and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricName {
    pub name: &'static str,
    pub unit: &'static str,
    pub help: &'static str,
}

const fn m(name: &'static str, unit: &'static str, help: &'static str) -> MetricName {
    MetricName { name, unit, help }
}

/// Every metric, in a fixed order (stores keep values in this order).
/// Append only: a stored sample's i-th value is `METRICS[i]`.
pub const METRICS: &[MetricName] = &[
    m(
        "connections",
        "connections",
        "sessions (v5 `connections`, v4 `connections.count`)",
    ),
    m(
        "live_connections",
        "connections",
        "connected clients (`live_connections`)",
    ),
    m(
        "received_msg_rate",
        "messages/s",
        "messages received per second",
    ),
    m("sent_msg_rate", "messages/s", "messages sent per second"),
    m(
        "dropped_msg_rate",
        "messages/s",
        "messages dropped per second",
    ),
    m("subscriptions", "subscriptions", "subscriptions"),
    m("topics", "topics", "topics"),
    m("retained_msg_count", "messages", "retained messages"),
    m(
        "shared_subscriptions",
        "subscriptions",
        "shared subscriptions",
    ),
    m(
        "license_quota",
        "connections",
        "the licence's max connections (Enterprise)",
    ),
    m(
        "license_expiry_at",
        "unix seconds",
        "when the licence expires (Enterprise)",
    ),
    m("nodes_running", "nodes", "EMQX nodes running"),
    m("nodes_total", "nodes", "EMQX nodes known"),
];

/// The index of a metric name, if it is one.
pub fn metric_index(name: &str) -> Option<usize> {
    METRICS.iter().position(|m| m.name == name)
}

/// Samples in one [`crate::MetricsBatch`] (the agent sends at most 240).
pub const MAX_SAMPLES_PER_BATCH: usize = 1_000;
/// Values in one sample.
pub const MAX_VALUES_PER_SAMPLE: usize = 64;
/// One metric name.
pub const MAX_METRIC_NAME_BYTES: usize = 64;
/// Active alarms in one snapshot (the agent sends at most this many).
pub const MAX_ACTIVE_ALARMS: usize = 500;
/// Deactivated alarms in one snapshot.
pub const MAX_DEACTIVATED_ALARMS: usize = 200;
/// An alarm's message, and its details (JSON text).
pub const MAX_ALARM_TEXT_BYTES: usize = 4 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, m) in METRICS.iter().enumerate() {
            assert_eq!(metric_index(m.name), Some(i), "{}", m.name);
            assert!(m.name.len() <= MAX_METRIC_NAME_BYTES);
        }
        assert_eq!(metric_index("no_such_metric"), None);
    }
}
