//! What a cluster's actor watches beside its lifecycle: its metric samples,
//! EMQX alarms and alert rules ([`Watch`]). The decisions are pure (which
//! agent's samples count, the facts the rules see); the actor
//! (`cluster.rs`) does the store calls around them.

use crate::alerting::{AlarmSet, AlertEngine, AlertRule, Facts};
use crate::model::{ClusterRecord, Millis};
use crate::series::Point;
use std::collections::BTreeMap;
use std::time::Duration;

/// Timing of the watch, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// Rules are re-read and evaluated at least this often.
    pub eval_interval: Duration,
    /// Agents collect metrics this often.
    pub metrics_interval_ms: Millis,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            eval_interval: Duration::from_secs(5),
            metrics_interval_ms: 15_000,
        }
    }
}

impl WatchConfig {
    /// Samples closer than half an interval to the previous one are not kept.
    pub fn min_spacing(&self) -> Millis {
        (self.metrics_interval_ms / 2).max(500)
    }
}

/// A cluster's watch state, owned by its actor.
#[derive(Debug, Default)]
pub struct Watch {
    /// The firing alerts were loaded from the store (nothing is evaluated
    /// before: a new owner must not fire what is already firing).
    pub loaded: bool,
    pub engine: AlertEngine,
    /// The project's rules as last read.
    pub rules: Vec<AlertRule>,
    /// The newest stored sample.
    pub latest: Option<Point>,
    pub alarms: AlarmSet,
    /// The agent whose samples and alarms count (a cluster may have several
    /// agents; they all see the same cluster-wide figures).
    pub source: Option<String>,
    /// Connected agents that send metrics, since when.
    pub capable: BTreeMap<String, Millis>,
}

impl Watch {
    /// Whether `agent`'s samples count: it is the source, or there is no
    /// connected source and it becomes one.
    pub fn take_source(&mut self, agent: &str, connected: impl Fn(&str) -> bool) -> bool {
        match &self.source {
            Some(s) if s == agent => true,
            Some(s) if connected(s) => false,
            _ => {
                self.source = Some(agent.to_string());
                true
            }
        }
    }

    pub fn session_up(&mut self, agent: &str, metrics: bool, now: Millis) {
        if metrics {
            self.capable.entry(agent.to_string()).or_insert(now);
        } else {
            self.capable.remove(agent);
        }
    }

    pub fn session_down(&mut self, agent: &str) {
        self.capable.remove(agent);
        if self.source.as_deref() == Some(agent) {
            self.source = None;
        }
    }

    /// What the rules see now.
    pub fn facts(&self, record: &ClusterRecord, cfg: &WatchConfig, now: Millis) -> Facts {
        let mut facts = Facts {
            status: record.status,
            reason: record.reason.as_ref().map(|r| (r.code, r.message.clone())),
            stopped_nodes: record
                .node_list
                .iter()
                .filter(|n| !n.running)
                .map(|n| n.name.clone())
                .collect(),
            latest: None,
            metrics_expected_since: self.capable.values().min().copied(),
            last_sample_at: self.latest.as_ref().map(|p| p.at),
            metrics_interval_ms: cfg.metrics_interval_ms,
            active_alarms: self.alarms.active.clone(),
        };
        let stale = facts.stale_after_ms();
        facts.latest = self
            .latest
            .clone()
            .filter(|p| now.saturating_sub(p.at) <= stale);
        facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_is_the_source_until_it_goes() {
        let mut w = Watch::default();
        let connected = |_: &str| true;
        assert!(w.take_source("a", connected));
        assert!(!w.take_source("b", connected), "a is still connected");
        assert!(w.take_source("b", |s| s != "a"), "a is gone: b takes over");
        w.session_down("b");
        assert!(w.take_source("a", connected));
    }

    #[test]
    fn metrics_are_expected_from_the_first_capable_session() {
        let mut w = Watch::default();
        w.session_up("old", false, 5);
        w.session_up("a", true, 10);
        w.session_up("b", true, 20);
        w.session_up("a", true, 30); // a reintroduction keeps the first time
        assert_eq!(w.capable.values().min(), Some(&10));
        w.session_down("a");
        assert_eq!(w.capable.values().min(), Some(&20));
        assert_eq!(
            WatchConfig {
                eval_interval: Duration::from_secs(1),
                metrics_interval_ms: 15_000
            }
            .min_spacing(),
            7_500
        );
    }
}
