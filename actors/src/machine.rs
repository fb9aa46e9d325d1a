//! The pure state machine of one managed cluster (PRODUCT.md §3).
//!
//! `Machine::step` takes an input and the current time and returns the effects
//! the actor must carry out; it does no I/O and reads no clock, so every row of
//! the lifecycle table is unit-tested below.

use crate::model::{Millis, Reason, ReasonCode, Status};
use ecp_protocol::Health;
use std::collections::BTreeMap;

pub type AgentId = String;
pub type SessionId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a cluster may have no agent session before `agent_offline`.
    pub offline_grace_ms: u64,
    /// How long `deleting` waits for connected agents to acknowledge.
    pub delete_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A registration token was redeemed by an agent.
    Registered {
        agent: AgentId,
    },
    Connected {
        agent: AgentId,
        session: SessionId,
    },
    Disconnected {
        agent: AgentId,
        session: SessionId,
    },
    Report {
        agent: AgentId,
        session: SessionId,
        health: Health,
    },
    /// A timer asked for by `Effect::WakeAt` fired.
    Tick,
    Delete,
    /// An agent acknowledged `Unregister`, was revoked, or unregistered itself.
    Unregistered {
        agent: AgentId,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Status or reason changed; record it in the history and push it live.
    Transition {
        from: Status,
        to: Status,
        reason: Option<Reason>,
        cause: &'static str,
    },
    /// Call `step(Tick)` at this time.
    WakeAt(Millis),
    /// Tell these connected agents to unregister.
    TellUnregister(Vec<AgentId>),
    /// Deletion finished: remove the record and stop.
    Gone,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub status: Status,
    pub reason: Option<Reason>,
    /// Connected agents and their current session.
    sessions: BTreeMap<AgentId, SessionId>,
    /// Latest health reported by each connected agent *during its current session*.
    health: BTreeMap<AgentId, Health>,
    /// When the last session went away (or the machine was loaded with none).
    offline_since: Option<Millis>,
    delete_deadline: Option<Millis>,
}

impl Machine {
    /// A machine for a stored cluster. Loaded with no sessions: unless an agent
    /// connects within the grace, an active cluster becomes `agent_offline`.
    pub fn load(status: Status, reason: Option<Reason>, now: Millis) -> Machine {
        let offline_since = match status {
            Status::Created => None,
            _ => Some(now),
        };
        Machine {
            status,
            reason,
            sessions: BTreeMap::new(),
            health: BTreeMap::new(),
            offline_since,
            delete_deadline: None,
        }
    }

    pub fn connected(&self) -> impl Iterator<Item = (&AgentId, &SessionId)> {
        self.sessions.iter()
    }

    pub fn is_connected(&self, agent: &str) -> bool {
        self.sessions.contains_key(agent)
    }

    pub fn session_of(&self, agent: &str) -> Option<SessionId> {
        self.sessions.get(agent).copied()
    }

    pub fn health_of(&self, agent: &str) -> Option<&Health> {
        self.health.get(agent)
    }

    /// The effects to run right after `load` (e.g. a pending grace timer).
    pub fn resume(&self, t: &Timing) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let Some(since) = self.offline_since {
            if self.status != Status::Deleting {
                fx.push(Effect::WakeAt(since + t.offline_grace_ms));
            }
        }
        if self.status == Status::Deleting {
            // Agents cannot be connected to a freshly loaded machine: finish.
            fx.push(Effect::Gone);
        }
        fx
    }

    pub fn step(&mut self, input: Input, now: Millis, t: &Timing) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Registered { .. } => {
                if self.status == Status::Created {
                    self.set(Status::Registering, None, "token_redeemed", &mut fx);
                    if self.sessions.is_empty() {
                        // The agent must now connect within the grace.
                        let since = *self.offline_since.get_or_insert(now);
                        fx.push(Effect::WakeAt(since + t.offline_grace_ms));
                    }
                }
            }
            Input::Connected { agent, session } => {
                self.sessions.insert(agent.clone(), session);
                self.health.remove(&agent);
                self.offline_since = None;
                if self.status == Status::Deleting {
                    fx.push(Effect::TellUnregister(vec![agent]));
                }
            }
            Input::Disconnected { agent, session } => {
                // A stale disconnect (the agent already has a newer session) is ignored.
                if self.sessions.get(&agent) == Some(&session) {
                    self.sessions.remove(&agent);
                    self.health.remove(&agent);
                    if self.sessions.is_empty() {
                        self.offline_since = Some(now);
                        if self.status != Status::Deleting {
                            fx.push(Effect::WakeAt(now + t.offline_grace_ms));
                        }
                    } else {
                        self.evaluate(now, "agent_disconnected", &mut fx);
                    }
                }
                if self.status == Status::Deleting && self.sessions.is_empty() {
                    fx.push(Effect::Gone);
                }
            }
            Input::Report {
                agent,
                session,
                health,
            } => {
                // A report from an agent with no session implies its session is up
                // (across nodes the "connected" message may be lost; the report is not).
                if !self.sessions.contains_key(&agent) && self.status != Status::Deleting {
                    self.sessions.insert(agent.clone(), session);
                    self.offline_since = None;
                }
                if self.sessions.get(&agent) == Some(&session) && self.status != Status::Deleting {
                    self.health.insert(agent, health);
                    self.evaluate(now, "report", &mut fx);
                }
            }
            Input::Tick => {
                if self.status == Status::Deleting {
                    if self.sessions.is_empty() || self.delete_deadline.is_some_and(|d| now >= d) {
                        fx.push(Effect::Gone);
                    }
                } else if let Some(since) = self.offline_since {
                    if self.sessions.is_empty()
                        && now >= since + t.offline_grace_ms
                        && self.status != Status::Created
                    {
                        let reason = Reason {
                            code: ReasonCode::AgentOffline,
                            message: format!(
                                "no agent session for more than {} s",
                                t.offline_grace_ms / 1000
                            ),
                            since,
                        };
                        self.set(Status::Abnormal, Some(reason), "agent_offline", &mut fx);
                    }
                }
            }
            Input::Delete => {
                if self.status != Status::Deleting {
                    self.set(Status::Deleting, None, "delete_requested", &mut fx);
                    if self.sessions.is_empty() {
                        fx.push(Effect::Gone);
                    } else {
                        self.delete_deadline = Some(now + t.delete_timeout_ms);
                        fx.push(Effect::TellUnregister(
                            self.sessions.keys().cloned().collect(),
                        ));
                        fx.push(Effect::WakeAt(now + t.delete_timeout_ms));
                    }
                }
            }
            Input::Unregistered { agent } => {
                self.sessions.remove(&agent);
                self.health.remove(&agent);
                if self.status == Status::Deleting {
                    if self.sessions.is_empty() {
                        fx.push(Effect::Gone);
                    }
                } else if self.sessions.is_empty() {
                    self.offline_since = Some(now);
                    fx.push(Effect::WakeAt(now + t.offline_grace_ms));
                } else {
                    self.evaluate(now, "agent_unregistered", &mut fx);
                }
            }
        }
        fx
    }

    /// Derives the status from the current sessions' reports.
    fn evaluate(&mut self, now: Millis, cause: &'static str, fx: &mut Vec<Effect>) {
        // Only agents that reported during their current session count.
        let worst = self
            .health
            .iter()
            .filter(|(a, _)| self.sessions.contains_key(*a))
            .map(|(_, h)| h)
            .max_by_key(|h| severity(h));
        let Some(worst) = worst.cloned() else {
            return; // nothing fresh to judge by: keep the status
        };
        if worst.is_healthy() {
            self.set(Status::Running, None, cause, fx);
        } else {
            let (code, message) = describe(&worst);
            let since = match &self.reason {
                Some(r) if r.code == code => r.since,
                _ => now,
            };
            self.set(
                Status::Abnormal,
                Some(Reason {
                    code,
                    message,
                    since,
                }),
                cause,
                fx,
            );
        }
    }

    fn set(
        &mut self,
        to: Status,
        reason: Option<Reason>,
        cause: &'static str,
        fx: &mut Vec<Effect>,
    ) {
        let same_reason = match (&self.reason, &reason) {
            (None, None) => true,
            (Some(a), Some(b)) => a.code == b.code && a.message == b.message,
            _ => false,
        };
        if self.status == to && same_reason {
            return;
        }
        let from = self.status;
        self.status = to;
        self.reason = reason.clone();
        fx.push(Effect::Transition {
            from,
            to,
            reason,
            cause,
        });
    }
}

/// Higher is worse; decides which agent's verdict the cluster shows.
fn severity(h: &Health) -> u8 {
    match h {
        Health::Healthy => 0,
        Health::AgentError { .. } => 1,
        Health::NodesStopped { .. } => 2,
        Health::EmqxUnreachable { .. } => 3,
        Health::EmqxAuthFailed { .. } => 4,
        Health::UnsupportedVersion { .. } => 5,
    }
}

/// Reason code and a message an operator understands.
pub fn describe(h: &Health) -> (ReasonCode, String) {
    match h {
        Health::Healthy => (ReasonCode::AgentError, String::new()),
        Health::NodesStopped { nodes } => (
            ReasonCode::NodesStopped,
            format!("EMQX nodes not running: {}", nodes.join(", ")),
        ),
        Health::EmqxUnreachable { message } => (
            ReasonCode::EmqxUnreachable,
            format!("the agent cannot reach the EMQX API: {message}"),
        ),
        Health::EmqxAuthFailed { message } => (
            ReasonCode::EmqxAuthFailed,
            format!("EMQX rejected the dashboard credentials: {message}"),
        ),
        Health::UnsupportedVersion { found, required } => (
            ReasonCode::UnsupportedVersion,
            format!("EMQX {found} is not supported; {required} is required"),
        ),
        Health::AgentError { message } => (ReasonCode::AgentError, message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        offline_grace_ms: 30_000,
        delete_timeout_ms: 10_000,
    };

    fn stopped(n: &str) -> Health {
        Health::NodesStopped {
            nodes: vec![n.to_string()],
        }
    }

    fn report(agent: &str, session: SessionId, health: Health) -> Input {
        Input::Report {
            agent: agent.into(),
            session,
            health,
        }
    }

    fn connect(agent: &str, session: SessionId) -> Input {
        Input::Connected {
            agent: agent.into(),
            session,
        }
    }

    fn disconnect(agent: &str, session: SessionId) -> Input {
        Input::Disconnected {
            agent: agent.into(),
            session,
        }
    }

    fn transitions(fx: &[Effect]) -> Vec<(Status, Status)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Transition { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect()
    }

    /// created → registering → running, the happy path.
    fn running() -> Machine {
        let mut m = Machine::load(Status::Created, None, 0);
        m.step(Input::Registered { agent: "a".into() }, 0, &T);
        m.step(connect("a", 1), 0, &T);
        m.step(report("a", 1, Health::Healthy), 0, &T);
        assert_eq!(m.status, Status::Running);
        m
    }

    #[test]
    fn created_to_registering_on_token_redeemed() {
        let mut m = Machine::load(Status::Created, None, 0);
        let fx = m.step(Input::Registered { agent: "a".into() }, 5, &T);
        assert_eq!(
            transitions(&fx),
            vec![(Status::Created, Status::Registering)]
        );
        // A second agent registering changes nothing.
        let fx = m.step(Input::Registered { agent: "b".into() }, 6, &T);
        assert!(transitions(&fx).is_empty());
    }

    #[test]
    fn created_never_goes_offline() {
        let mut m = Machine::load(Status::Created, None, 0);
        assert!(m.resume(&T).is_empty());
        m.step(Input::Tick, 1_000_000, &T);
        assert_eq!(m.status, Status::Created);
    }

    #[test]
    fn registering_without_a_session_goes_offline_after_the_grace() {
        let mut m = Machine::load(Status::Created, None, 0);
        let fx = m.step(Input::Registered { agent: "a".into() }, 100, &T);
        assert!(fx.contains(&Effect::WakeAt(30_100)), "{fx:?}");
        m.step(Input::Tick, 30_099, &T);
        assert_eq!(m.status, Status::Registering, "not before the grace");
        let fx = m.step(Input::Tick, 30_100, &T);
        assert_eq!(
            transitions(&fx),
            vec![(Status::Registering, Status::Abnormal)]
        );
        assert_eq!(
            m.reason.as_ref().map(|r| (r.code, r.since)),
            Some((ReasonCode::AgentOffline, 100))
        );
        // A registration whose agent connects in time never goes offline.
        let mut m = Machine::load(Status::Created, None, 0);
        m.step(Input::Registered { agent: "a".into() }, 0, &T);
        m.step(connect("a", 1), 10, &T);
        m.step(Input::Tick, 30_000, &T);
        assert_eq!(m.status, Status::Registering);
    }

    #[test]
    fn delete_is_accepted_in_every_state() {
        let abnormal = {
            let mut m = running();
            m.step(report("a", 1, stopped("emqx@n2")), 1, &T);
            m
        };
        let registering = {
            let mut m = Machine::load(Status::Created, None, 0);
            m.step(Input::Registered { agent: "a".into() }, 0, &T);
            m
        };
        for (m, connected) in [
            (Machine::load(Status::Created, None, 0), false),
            (registering, false),
            (running(), true),
            (abnormal, true),
        ] {
            let mut m = m;
            let from = m.status;
            let fx = m.step(Input::Delete, 5, &T);
            assert_eq!(transitions(&fx), vec![(from, Status::Deleting)], "{from:?}");
            if connected {
                assert!(
                    fx.contains(&Effect::TellUnregister(vec!["a".into()])),
                    "{from:?}"
                );
                let fx = m.step(Input::Unregistered { agent: "a".into() }, 6, &T);
                assert_eq!(fx, vec![Effect::Gone], "{from:?}");
            } else {
                assert!(fx.contains(&Effect::Gone), "{from:?}: {fx:?}");
            }
            // Deleting again changes nothing.
            assert!(m.step(Input::Delete, 7, &T).is_empty());
        }
    }

    #[test]
    fn registering_to_running_on_healthy_report() {
        let mut m = Machine::load(Status::Created, None, 0);
        m.step(Input::Registered { agent: "a".into() }, 0, &T);
        let fx = m.step(connect("a", 1), 1, &T);
        assert!(
            transitions(&fx).is_empty(),
            "connecting alone is not running"
        );
        let fx = m.step(report("a", 1, Health::Healthy), 2, &T);
        assert_eq!(
            transitions(&fx),
            vec![(Status::Registering, Status::Running)]
        );
        assert_eq!(m.reason, None);
    }

    #[test]
    fn registering_to_abnormal_on_bad_report() {
        let mut m = Machine::load(Status::Created, None, 0);
        m.step(Input::Registered { agent: "a".into() }, 0, &T);
        m.step(connect("a", 1), 0, &T);
        m.step(
            report(
                "a",
                1,
                Health::EmqxAuthFailed {
                    message: "401".into(),
                },
            ),
            9,
            &T,
        );
        assert_eq!(m.status, Status::Abnormal);
        let r = m.reason.clone().expect("reason");
        assert_eq!(r.code, ReasonCode::EmqxAuthFailed);
        assert_eq!(r.since, 9);
    }

    #[test]
    fn registering_to_abnormal_when_offline_past_grace() {
        let mut m = Machine::load(Status::Created, None, 0);
        m.step(Input::Registered { agent: "a".into() }, 0, &T);
        m.step(connect("a", 1), 0, &T);
        let fx = m.step(disconnect("a", 1), 100, &T);
        assert_eq!(fx, vec![Effect::WakeAt(30_100)]);
        m.step(Input::Tick, 30_100, &T);
        assert_eq!(m.status, Status::Abnormal);
        assert_eq!(
            m.reason.as_ref().map(|r| r.code),
            Some(ReasonCode::AgentOffline)
        );
    }

    #[test]
    fn running_to_abnormal_nodes_stopped_names_the_node() {
        let mut m = running();
        let fx = m.step(report("a", 1, stopped("emqx@n2")), 50, &T);
        assert_eq!(transitions(&fx), vec![(Status::Running, Status::Abnormal)]);
        let r = m.reason.clone().expect("reason");
        assert_eq!(r.code, ReasonCode::NodesStopped);
        assert!(r.message.contains("emqx@n2"), "{}", r.message);
    }

    #[test]
    fn abnormal_to_running_on_healthy_report() {
        let mut m = running();
        m.step(report("a", 1, stopped("emqx@n2")), 50, &T);
        let fx = m.step(report("a", 1, Health::Healthy), 60, &T);
        assert_eq!(transitions(&fx), vec![(Status::Abnormal, Status::Running)]);
        assert_eq!(m.reason, None);
    }

    #[test]
    fn each_bad_health_maps_to_its_reason_code() {
        let cases = [
            (stopped("x"), ReasonCode::NodesStopped),
            (
                Health::EmqxUnreachable {
                    message: "connect refused".into(),
                },
                ReasonCode::EmqxUnreachable,
            ),
            (
                Health::EmqxAuthFailed {
                    message: "401".into(),
                },
                ReasonCode::EmqxAuthFailed,
            ),
            (
                Health::UnsupportedVersion {
                    found: "5.5.1".into(),
                    required: ">= 5.6.0".into(),
                },
                ReasonCode::UnsupportedVersion,
            ),
            (
                Health::AgentError {
                    message: "bad json".into(),
                },
                ReasonCode::AgentError,
            ),
        ];
        for (health, code) in cases {
            let mut m = running();
            m.step(report("a", 1, health.clone()), 1, &T);
            assert_eq!(m.status, Status::Abnormal, "{health:?}");
            assert_eq!(m.reason.as_ref().map(|r| r.code), Some(code));
        }
    }

    #[test]
    fn same_bad_report_twice_records_one_transition_and_keeps_since() {
        let mut m = running();
        m.step(report("a", 1, stopped("n2")), 10, &T);
        let fx = m.step(report("a", 1, stopped("n2")), 20, &T);
        assert!(transitions(&fx).is_empty());
        assert_eq!(m.reason.as_ref().map(|r| r.since), Some(10));
        // Another node stopping changes the message (a new entry) but not `since`.
        let fx = m.step(
            report(
                "a",
                1,
                Health::NodesStopped {
                    nodes: vec!["n2".into(), "n3".into()],
                },
            ),
            30,
            &T,
        );
        assert_eq!(transitions(&fx), vec![(Status::Abnormal, Status::Abnormal)]);
        assert_eq!(m.reason.as_ref().map(|r| r.since), Some(10));
    }

    #[test]
    fn reconnect_within_grace_does_not_flap() {
        let mut m = running();
        let fx = m.step(disconnect("a", 1), 1_000, &T);
        assert!(transitions(&fx).is_empty());
        // New session before the grace ends, then the old timer fires.
        m.step(connect("a", 2), 5_000, &T);
        let fx = m.step(Input::Tick, 31_000, &T);
        assert!(transitions(&fx).is_empty());
        assert_eq!(m.status, Status::Running);
        let fx = m.step(report("a", 2, Health::Healthy), 31_500, &T);
        assert!(transitions(&fx).is_empty());
    }

    #[test]
    fn new_session_before_old_one_closes_does_not_flap() {
        // LB failover: the new session arrives first, the old close comes late.
        let mut m = running();
        m.step(connect("a", 2), 1_000, &T);
        let fx = m.step(disconnect("a", 1), 1_100, &T);
        assert!(fx.is_empty(), "stale disconnect ignored: {fx:?}");
        m.step(Input::Tick, 40_000, &T);
        assert_eq!(m.status, Status::Running);
    }

    #[test]
    fn connectivity_outranks_a_stale_healthy_report() {
        let mut m = running();
        m.step(disconnect("a", 1), 1_000, &T);
        // Still running within the grace ...
        m.step(Input::Tick, 30_999, &T);
        assert_eq!(m.status, Status::Running);
        // ... but not a millisecond after it, although the last report was healthy.
        let fx = m.step(Input::Tick, 31_000, &T);
        assert_eq!(transitions(&fx), vec![(Status::Running, Status::Abnormal)]);
        let r = m.reason.clone().expect("reason");
        assert_eq!(r.code, ReasonCode::AgentOffline);
        assert_eq!(r.since, 1_000);
    }

    #[test]
    fn after_offline_a_reconnect_alone_is_not_running_a_fresh_report_is() {
        let mut m = running();
        m.step(disconnect("a", 1), 0, &T);
        m.step(Input::Tick, 30_000, &T);
        assert_eq!(m.status, Status::Abnormal);
        let fx = m.step(connect("a", 2), 40_000, &T);
        assert!(transitions(&fx).is_empty());
        // A report sent on the old session does not count.
        let fx = m.step(report("a", 1, Health::Healthy), 40_001, &T);
        assert!(transitions(&fx).is_empty());
        let fx = m.step(report("a", 2, Health::Healthy), 40_002, &T);
        assert_eq!(transitions(&fx), vec![(Status::Abnormal, Status::Running)]);
    }

    #[test]
    fn one_agent_leaving_while_another_stays_is_not_offline() {
        let mut m = running();
        m.step(connect("b", 7), 0, &T);
        m.step(report("b", 7, Health::Healthy), 0, &T);
        let fx = m.step(disconnect("a", 1), 10, &T);
        assert!(!fx.iter().any(|e| matches!(e, Effect::WakeAt(_))));
        m.step(Input::Tick, 100_000, &T);
        assert_eq!(m.status, Status::Running);
    }

    #[test]
    fn worst_connected_agent_decides_and_a_departed_ones_verdict_is_dropped() {
        let mut m = running();
        m.step(connect("b", 7), 0, &T);
        m.step(
            report(
                "b",
                7,
                Health::EmqxUnreachable {
                    message: "timeout".into(),
                },
            ),
            1,
            &T,
        );
        assert_eq!(
            m.reason.as_ref().map(|r| r.code),
            Some(ReasonCode::EmqxUnreachable)
        );
        m.step(disconnect("b", 7), 2, &T);
        assert_eq!(m.status, Status::Running);
    }

    #[test]
    fn loaded_active_cluster_goes_offline_unless_an_agent_returns() {
        let m = Machine::load(Status::Running, None, 1_000);
        assert_eq!(m.resume(&T), vec![Effect::WakeAt(31_000)]);
        let mut gone = m.clone();
        gone.step(Input::Tick, 31_000, &T);
        assert_eq!(gone.status, Status::Abnormal);
        let mut back = m;
        back.step(connect("a", 1), 2_000, &T);
        back.step(Input::Tick, 31_000, &T);
        assert_eq!(back.status, Status::Running);
    }

    #[test]
    fn a_report_from_an_agent_without_a_session_connects_it() {
        // Across nodes the Connected message can be lost; the first report is enough.
        let mut m = Machine::load(Status::Registering, None, 0);
        let fx = m.step(report("a", 9, Health::Healthy), 5, &T);
        assert_eq!(
            transitions(&fx),
            vec![(Status::Registering, Status::Running)]
        );
        assert!(m.is_connected("a"));
        // But never while another session of that agent is current.
        let fx = m.step(report("a", 8, stopped("x")), 6, &T);
        assert!(fx.is_empty());
    }

    #[test]
    fn delete_without_sessions_is_gone_at_once() {
        let mut m = running();
        m.step(disconnect("a", 1), 0, &T);
        let fx = m.step(Input::Delete, 1, &T);
        assert_eq!(transitions(&fx), vec![(Status::Running, Status::Deleting)]);
        assert!(fx.contains(&Effect::Gone));
    }

    #[test]
    fn delete_tells_agents_and_is_gone_when_they_acknowledge() {
        let mut m = running();
        m.step(connect("b", 9), 0, &T);
        let fx = m.step(Input::Delete, 100, &T);
        assert!(fx.contains(&Effect::TellUnregister(vec!["a".into(), "b".into()])));
        assert!(fx.contains(&Effect::WakeAt(10_100)));
        assert!(!fx.contains(&Effect::Gone));
        // Reports during deletion are ignored.
        let fx = m.step(report("a", 1, stopped("x")), 101, &T);
        assert!(fx.is_empty());
        let fx = m.step(Input::Unregistered { agent: "a".into() }, 102, &T);
        assert!(!fx.contains(&Effect::Gone));
        let fx = m.step(disconnect("b", 9), 103, &T);
        assert_eq!(fx, vec![Effect::Gone]);
    }

    #[test]
    fn delete_times_out_when_agents_do_not_answer() {
        let mut m = running();
        m.step(Input::Delete, 0, &T);
        assert!(m.step(Input::Tick, 9_999, &T).is_empty());
        assert_eq!(m.step(Input::Tick, 10_000, &T), vec![Effect::Gone]);
    }

    #[test]
    fn an_agent_connecting_while_deleting_is_told_to_unregister() {
        let mut m = running();
        m.step(Input::Delete, 0, &T);
        let fx = m.step(connect("c", 3), 1, &T);
        assert_eq!(fx, vec![Effect::TellUnregister(vec!["c".into()])]);
    }

    #[test]
    fn delete_twice_is_one_transition() {
        let mut m = running();
        m.step(Input::Delete, 0, &T);
        assert!(m.step(Input::Delete, 1, &T).is_empty());
    }

    #[test]
    fn a_loaded_deleting_cluster_finishes() {
        let m = Machine::load(Status::Deleting, None, 0);
        assert!(m.resume(&T).contains(&Effect::Gone));
    }

    #[test]
    fn revoked_last_agent_starts_the_grace() {
        let mut m = running();
        let fx = m.step(Input::Unregistered { agent: "a".into() }, 5, &T);
        assert_eq!(fx, vec![Effect::WakeAt(30_005)]);
    }
}
