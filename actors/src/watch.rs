//! What a cluster's actor watches beside its lifecycle: its metric samples,
//! EMQX alarms and alert rules ([`Watch`]). The decisions are pure (which
//! agent's samples count, the facts the rules see); the actor
//! (`cluster.rs`) does the store calls around them.

use crate::alerting::{AlarmSet, AlertEngine, AlertRule, Facts};
use crate::model::{ClusterRecord, Millis};
use crate::series::Point;
use std::collections::{BTreeMap, BTreeSet};
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

/// Alert transitions one cluster may cause per minute. An honest cluster
/// never comes near; one whose agent flips alarms as fast as its budget
/// allows waits for the next minute (nothing is lost: the engine is simply
/// not run until then).
pub const TRANSITIONS_PER_MINUTE: u32 = 120;

/// The per-minute count of alert transitions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransitionBudget {
    window: Millis,
    used: u32,
}

impl TransitionBudget {
    /// `None`: evaluate now; `Some(t)`: not before `t`.
    pub fn wait_until(&mut self, now: Millis) -> Option<Millis> {
        let window = now - now % 60_000;
        if window != self.window {
            *self = TransitionBudget { window, used: 0 };
        }
        (self.used >= TRANSITIONS_PER_MINUTE).then_some(window + 60_000)
    }

    pub fn spend(&mut self, n: usize) {
        self.used = self
            .used
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
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
    /// The read before: a rule deleted since still names the channels its
    /// alerts' resolved notices go to.
    pub previous_rules: Vec<AlertRule>,
    /// The newest stored sample.
    pub latest: Option<Point>,
    pub alarms: AlarmSet,
    /// The agent whose samples and alarms count (a cluster may have several
    /// agents; they all see the same cluster-wide figures).
    pub source: Option<String>,
    /// Connected agents that send metrics, since when.
    pub capable: BTreeMap<String, Millis>,
    /// Connected agents too old to send metrics.
    pub incapable: BTreeSet<String>,
    /// The earliest start of a `no_metrics` alert firing when the watch
    /// was loaded: silence is counted from there, not from when a new
    /// owner heard of the session again.
    pub silent_since: Option<Millis>,
    pub budget: TransitionBudget,
    /// Rule reads started, and the newest one applied (reads overlap).
    pub rules_asked: u64,
    pub rules_applied: u64,
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

    /// Numbers a read of the rules about to start.
    pub fn next_rules_read(&mut self) -> u64 {
        self.rules_asked += 1;
        self.rules_asked
    }

    pub fn session_up(&mut self, agent: &str, metrics: bool, now: Millis) {
        if metrics {
            self.incapable.remove(agent);
            self.capable.entry(agent.to_string()).or_insert(now);
        } else {
            self.capable.remove(agent);
            self.incapable.insert(agent.to_string());
        }
    }

    pub fn session_down(&mut self, agent: &str) {
        self.capable.remove(agent);
        self.incapable.remove(agent);
        if self.source.as_deref() == Some(agent) {
            self.source = None;
        }
    }

    /// What the rules see now; `connected`: the agents with a session now
    /// (what the lifecycle machine says; entries of others are stale).
    pub fn facts(
        &self,
        record: &ClusterRecord,
        connected: &[String],
        cfg: &WatchConfig,
        now: Millis,
    ) -> Facts {
        let expected = connected
            .iter()
            .filter_map(|a| self.capable.get(a))
            .min()
            .map(|since| self.silent_since.map_or(*since, |s| s.min(*since)));
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
            metrics_expected_since: expected,
            metrics_capability_unknown: connected
                .iter()
                .any(|a| !self.capable.contains_key(a) && !self.incapable.contains(a)),
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
    fn a_flapping_cluster_waits_for_the_next_minute() {
        let mut b = TransitionBudget::default();
        assert_eq!(b.wait_until(60_500), None);
        b.spend(TRANSITIONS_PER_MINUTE as usize - 1);
        assert_eq!(b.wait_until(61_000), None);
        b.spend(5);
        assert_eq!(b.wait_until(62_000), Some(120_000));
        assert_eq!(b.wait_until(120_000), None, "a new minute");
    }

    #[test]
    fn only_connected_agents_count_and_a_new_owner_keeps_the_silence() {
        use crate::model::Status;
        let record = ClusterRecord {
            status: Status::Running,
            ..ClusterRecord::created("c".into(), "o".into(), "p".into(), "c".into(), 1)
        };
        let cfg = WatchConfig::default();
        let mut w = Watch::default();
        w.session_up("gone", true, 5);
        let f = w.facts(&record, &["a".to_string()], &cfg, 100);
        assert_eq!(
            f.metrics_expected_since, None,
            "a stale entry does not count"
        );
        assert!(
            f.metrics_capability_unknown,
            "a's capability is not known yet"
        );
        w.session_up("a", false, 50);
        let f = w.facts(&record, &["a".to_string()], &cfg, 100);
        assert!(!f.metrics_capability_unknown && f.metrics_expected_since.is_none());
        // A new owner: a no_metrics alert fired at 1,000; the session
        // introduces itself again at 90,000.
        let mut w = Watch {
            silent_since: Some(1_000),
            ..Watch::default()
        };
        w.session_up("a", true, 90_000);
        let f = w.facts(&record, &["a".to_string()], &cfg, 100_000);
        assert_eq!(f.metrics_expected_since, Some(1_000));
    }

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
