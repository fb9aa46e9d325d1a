//! One actor per managed cluster: owns the [`Machine`], persists every change
//! (record + history in one store step) before publishing it, and runs timers.
//! A failed store write stops the actor; the registry restarts it from the
//! stored state.

use crate::coord::NodeMsg;
use crate::machine::{Effect, Input, Machine, SessionId};
use crate::model::*;
use crate::registry::{ChildStopped, Registry};
use crate::session::Deliver;
use crate::store::StoreError;
use crate::Deps;
use actix::prelude::*;
use ecp_protocol::{Frame, Health, Report};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the cluster is being deleted")]
    Deleting,
    #[error("the cluster actor is unavailable")]
    Unavailable,
}

pub struct ClusterActor {
    deps: Arc<Deps>,
    registry: Addr<Registry>,
    record: ClusterRecord,
    machine: Machine,
    deleted: bool,
}

impl ClusterActor {
    pub fn new(record: ClusterRecord, deps: Arc<Deps>, registry: Addr<Registry>) -> Self {
        let machine = Machine::load(record.status, record.reason.clone(), now_ms());
        ClusterActor {
            deps,
            registry,
            record,
            machine,
            deleted: false,
        }
    }

    /// Persists what `fx` and `patch` changed, then publishes and runs effects.
    fn commit(
        &mut self,
        fx: Vec<Effect>,
        patch: impl FnOnce(&mut ClusterRecord),
    ) -> ResponseActFuture<Self, Result<ClusterRecord, ClusterError>> {
        let now = now_ms();
        let old = self.record.clone();
        let mut rec = old.clone();
        patch(&mut rec);
        rec.status = self.machine.status;
        rec.reason = self.machine.reason.clone();
        rec.agents.online = self.machine.connected().count() as u32;
        if rec.status == Status::Running {
            if old.status != Status::Running || rec.started_at.is_none() {
                rec.started_at = Some(now);
            }
        } else {
            rec.started_at = None;
        }
        let changed = rec != old;
        if changed {
            rec.revision = old.revision + 1;
            rec.updated_at = now;
        }
        let events: Vec<ClusterEvent> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Transition {
                    from,
                    to,
                    reason,
                    cause,
                } => Some(ClusterEvent {
                    cluster_id: rec.id.clone(),
                    revision: rec.revision,
                    at: now,
                    from: *from,
                    to: *to,
                    reason: reason.clone(),
                    cause: (*cause).to_string(),
                }),
                _ => None,
            })
            .collect();
        let gone = fx.contains(&Effect::Gone);
        let store = self.deps.store.clone();
        let id = rec.id.clone();
        let write = async move {
            if changed {
                store.update_cluster(&rec, old.revision, &events).await?;
            }
            if gone {
                store.remove_cluster(&id).await?;
            }
            Ok::<_, StoreError>(rec)
        };
        Box::pin(write.into_actor(self).map(move |res, act, ctx| match res {
            Ok(rec) => {
                act.record = rec.clone();
                if changed && !gone {
                    act.announce(ClusterChange::Upserted {
                        cluster: Box::new(rec.clone()),
                    });
                }
                act.run_effects(fx, ctx);
                if gone {
                    act.announce(ClusterChange::Removed {
                        cluster_id: rec.id.clone(),
                        org_id: rec.org_id.clone(),
                        project_id: rec.project_id.clone(),
                        revision: rec.revision + 1,
                    });
                    act.deleted = true;
                    ctx.stop();
                }
                Ok(rec)
            }
            // The caller's mistake (a name already taken): nothing was
            // written and the machine did not move; refuse, keep running.
            Err(e @ StoreError::NameTaken(_)) => Err(ClusterError::Store(e)),
            Err(e) => {
                tracing::error!(cluster_id = %act.record.id, error = %e, "store write failed; restarting cluster actor");
                ctx.stop();
                Err(ClusterError::Store(e))
            }
        }))
    }

    /// Publishes a change to this node's consoles and, in Redis mode, to the others.
    fn announce(&self, change: ClusterChange) {
        if self.deps.coord.distributed() {
            let coord = self.deps.coord.clone();
            let c = change.clone();
            actix::spawn(async move {
                if let Err(e) = coord.publish_change(&c).await {
                    tracing::warn!(error = %e, "change not published to other nodes");
                }
            });
        }
        self.deps.bus.publish(change);
    }

    /// Sends a frame to an agent's session, wherever it is.
    fn deliver(&self, agent: &str, frame: Frame) {
        if let Some(s) = self.deps.dir.session(agent) {
            if s.addr.try_send(Deliver(frame)).is_err() {
                tracing::warn!(agent_id = %agent, "session mailbox full; frame dropped");
            }
            return;
        }
        self.to_remote_session(agent, |agent_id| NodeMsg::Deliver { agent_id, frame });
    }

    fn to_remote_session(&self, agent: &str, msg: impl FnOnce(String) -> NodeMsg + 'static) {
        if !self.deps.coord.distributed() {
            return;
        }
        let coord = self.deps.coord.clone();
        let agent = agent.to_string();
        actix::spawn(async move {
            if let Ok(p) = coord.presence(std::slice::from_ref(&agent)).await {
                if let Some(Some((node, _))) = p.into_iter().next() {
                    let _ = coord.send(&node, &msg(agent)).await;
                }
            }
        });
    }

    fn run_effects(&mut self, fx: Vec<Effect>, ctx: &mut Context<Self>) {
        for e in fx {
            match e {
                Effect::WakeAt(at) => {
                    let delay = Duration::from_millis(at.saturating_sub(now_ms()));
                    ctx.run_later(delay, |act, ctx| act.input(Input::Tick, ctx));
                }
                Effect::TellUnregister(agents) => {
                    for agent in agents {
                        let frame = Frame::Unregister {
                            reason: "cluster was deleted".into(),
                        };
                        self.deliver(&agent, frame);
                    }
                }
                Effect::Gone => {
                    for (_, s) in self.deps.dir.sessions_of(&self.record.id) {
                        let _ = s.addr.try_send(crate::session::Shutdown {
                            code: ecp_protocol::CloseCode::ClusterDeleted,
                            reason: "cluster was deleted".into(),
                        });
                    }
                    let remote: Vec<String> =
                        self.machine.connected().map(|(a, _)| a.clone()).collect();
                    for agent in remote {
                        if self.deps.dir.session(&agent).is_none() {
                            self.to_remote_session(&agent, |agent_id| NodeMsg::Shutdown {
                                agent_id,
                                code: ecp_protocol::CloseCode::ClusterDeleted,
                                reason: "cluster was deleted".into(),
                            });
                        }
                    }
                }
                Effect::Transition { .. } => {}
            }
        }
    }

    /// Feeds an internal input (timer) through the machine, serialised with messages.
    fn input(&mut self, input: Input, ctx: &mut Context<Self>) {
        let fx = self.machine.step(input, now_ms(), &self.deps.timing);
        if !fx.is_empty() {
            ctx.wait(self.commit(fx, |_| {}).map(|_, _, _| ()));
        }
    }
}

const SWEEP_EVERY: Duration = Duration::from_secs(2);

impl ClusterActor {
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let connected: Vec<(String, u64)> = self
            .machine
            .connected()
            .map(|(a, s)| (a.clone(), *s))
            .collect();
        if connected.is_empty() {
            return;
        }
        let coord = self.deps.coord.clone();
        let agents: Vec<String> = connected.iter().map(|(a, _)| a.clone()).collect();
        ctx.spawn(
            async move { coord.presence(&agents).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let Ok(present) = res else { return }; // Redis down: decide nothing
                    for ((agent, session), p) in connected.into_iter().zip(present) {
                        let still = matches!(p, Some((_, sid)) if sid == session);
                        if !still && act.machine.session_of(&agent) == Some(session) {
                            act.input(Input::Disconnected { agent, session }, ctx);
                        }
                    }
                }),
        );
    }
}

impl Actor for ClusterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(256);
        let now = now_ms();
        let timing = self.deps.timing;
        let mut fx = self.machine.resume(&timing);
        // After a restart, sessions that are still open belong to us again.
        for (agent, s) in self.deps.dir.sessions_of(&self.record.id) {
            fx.extend(self.machine.step(
                Input::Connected {
                    agent,
                    session: s.session_id,
                },
                now,
                &timing,
            ));
        }
        if fx.iter().any(|e| !matches!(e, Effect::WakeAt(_))) {
            ctx.wait(self.commit(fx, |_| {}).map(|_, _, _| ()));
        } else {
            self.run_effects(fx, ctx);
        }
        if self.deps.coord.distributed() {
            // A new owner learns who is connected elsewhere from presence.
            let store = self.deps.store.clone();
            let coord = self.deps.coord.clone();
            let id = self.record.id.clone();
            ctx.wait(
                async move {
                    let agents: Vec<String> = store
                        .agents_of_cluster(&id)
                        .await
                        .map(|a| a.into_iter().map(|a| a.id).collect())
                        .unwrap_or_default();
                    let present = coord.presence(&agents).await.unwrap_or_default();
                    agents
                        .into_iter()
                        .zip(present)
                        .filter_map(|(a, p)| p.map(|(_, sid)| (a, sid)))
                        .collect::<Vec<_>>()
                }
                .into_actor(self)
                .map(|present, act, ctx| {
                    let now = now_ms();
                    let mut fx = Vec::new();
                    for (agent, session) in present {
                        if !act.machine.is_connected(&agent) {
                            fx.extend(act.machine.step(
                                Input::Connected { agent, session },
                                now,
                                &act.deps.timing,
                            ));
                        }
                    }
                    if !fx.is_empty() {
                        ctx.wait(act.commit(fx, |_| {}).map(|_, _, _| ()));
                    }
                }),
            );
            // Sessions held by nodes that died end when their presence lapses.
            ctx.run_interval(SWEEP_EVERY, |act, ctx| act.sweep(ctx));
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Rare and not on a hot path: the registry must hear of every stop.
        self.registry.do_send(ChildStopped {
            cluster_id: self.record.id.clone(),
            deleted: self.deleted,
        });
    }
}

/// The current record.
#[derive(Message)]
#[rtype(result = "ClusterRecord")]
pub struct Snapshot;

impl Handler<Snapshot> for ClusterActor {
    type Result = MessageResult<Snapshot>;
    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.record.clone())
    }
}

/// A registration token was redeemed (`new`: a new agent, not a retry).
#[derive(Message)]
#[rtype(result = "Result<ClusterRecord, ClusterError>")]
pub struct AgentRegistered {
    pub agent_id: String,
    pub new: bool,
}

impl Handler<AgentRegistered> for ClusterActor {
    type Result = AtomicResponse<Self, Result<ClusterRecord, ClusterError>>;
    fn handle(&mut self, m: AgentRegistered, _: &mut Context<Self>) -> Self::Result {
        if self.machine.status == Status::Deleting {
            return AtomicResponse::new(Box::pin(fut::ready(Err(ClusterError::Deleting))));
        }
        let fx = self.machine.step(
            Input::Registered { agent: m.agent_id },
            now_ms(),
            &self.deps.timing,
        );
        AtomicResponse::new(self.commit(fx, |r| {
            if m.new {
                r.agents.total += 1;
            }
        }))
    }
}

/// A session finished its handshake.
#[derive(Message)]
#[rtype(result = "Result<ClusterRecord, ClusterError>")]
pub struct SessionUp {
    pub agent_id: String,
    pub session_id: SessionId,
}

impl Handler<SessionUp> for ClusterActor {
    type Result = AtomicResponse<Self, Result<ClusterRecord, ClusterError>>;
    fn handle(&mut self, m: SessionUp, _: &mut Context<Self>) -> Self::Result {
        let fx = self.machine.step(
            Input::Connected {
                agent: m.agent_id,
                session: m.session_id,
            },
            now_ms(),
            &self.deps.timing,
        );
        AtomicResponse::new(self.commit(fx, |_| {}))
    }
}

/// A session ended (any reason).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionDown {
    pub agent_id: String,
    pub session_id: SessionId,
    pub last_seen: Millis,
}

impl Handler<SessionDown> for ClusterActor {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, m: SessionDown, _: &mut Context<Self>) -> Self::Result {
        let fx = self.machine.step(
            Input::Disconnected {
                agent: m.agent_id.clone(),
                session: m.session_id,
            },
            now_ms(),
            &self.deps.timing,
        );
        let store = self.deps.store.clone();
        let agent_id = m.agent_id;
        let last_seen = m.last_seen;
        let remember = async move {
            if let Ok(Some(mut a)) = store.agent(&agent_id).await {
                a.last_seen = a.last_seen.max(last_seen);
                let _ = store.update_agent(&a).await;
            }
        };
        AtomicResponse::new(Box::pin(
            remember
                .into_actor(self)
                .then(move |_, act, _| act.commit(fx, |_| {}))
                .map(|_, _, _| ()),
        ))
    }
}

/// A report from a connected agent.
#[derive(Message)]
#[rtype(result = "Result<ClusterRecord, ClusterError>")]
pub struct AgentReport {
    pub agent_id: String,
    pub session_id: SessionId,
    pub report: Report,
}

impl Handler<AgentReport> for ClusterActor {
    type Result = AtomicResponse<Self, Result<ClusterRecord, ClusterError>>;
    fn handle(&mut self, m: AgentReport, _: &mut Context<Self>) -> Self::Result {
        let current = self.machine.session_of(&m.agent_id) == Some(m.session_id);
        let report = m.report;
        let fx = self.machine.step(
            Input::Report {
                agent: m.agent_id,
                session: m.session_id,
                health: report.health.clone(),
            },
            now_ms(),
            &self.deps.timing,
        );
        AtomicResponse::new(self.commit(fx, move |r| {
            if current && r.status != Status::Deleting {
                apply_report(r, &report);
            }
        }))
    }
}

/// Copies what the cluster card shows from a report.
fn apply_report(r: &mut ClusterRecord, report: &Report) {
    if let Some(e) = &report.emqx {
        r.emqx = Some(EmqxInfo {
            version: e.version.clone(),
            edition: e.edition.clone(),
            cluster_name: e.cluster_name.clone(),
        });
    }
    if !report.nodes.is_empty() {
        r.nodes = NodeCounts {
            running: report.nodes.iter().filter(|n| n.running).count() as u32,
            total: report.nodes.len() as u32,
        };
        r.node_list = report.nodes.clone();
    }
    if let Some(c) = report.connections {
        r.connections = ConnectionCounts {
            current: c.current,
            max: c.max,
        };
    }
}

/// An agent unregistered, acknowledged `Unregister`, or was revoked.
#[derive(Message)]
#[rtype(result = "Result<ClusterRecord, ClusterError>")]
pub struct AgentGone {
    pub agent_id: String,
    /// The agent record was removed from the store.
    pub removed: bool,
}

impl Handler<AgentGone> for ClusterActor {
    type Result = AtomicResponse<Self, Result<ClusterRecord, ClusterError>>;
    fn handle(&mut self, m: AgentGone, _: &mut Context<Self>) -> Self::Result {
        if m.removed {
            if let Some(s) = self.deps.dir.session(&m.agent_id) {
                let _ = s.addr.try_send(crate::session::Shutdown {
                    code: ecp_protocol::CloseCode::Revoked,
                    reason: "agent was unregistered".into(),
                });
            }
        }
        let fx = self.machine.step(
            Input::Unregistered { agent: m.agent_id },
            now_ms(),
            &self.deps.timing,
        );
        AtomicResponse::new(self.commit(fx, move |r| {
            if m.removed {
                r.agents.total = r.agents.total.saturating_sub(1);
            }
        }))
    }
}

/// Edit name, description or service address.
#[derive(Message, Default)]
#[rtype(result = "Result<ClusterRecord, ClusterError>")]
pub struct Edit {
    pub name: Option<String>,
    pub description: Option<String>,
    pub service_address: Option<String>,
    /// Transfer: the new (org, project).
    pub move_to: Option<(String, String)>,
}

impl Handler<Edit> for ClusterActor {
    type Result = AtomicResponse<Self, Result<ClusterRecord, ClusterError>>;
    fn handle(&mut self, m: Edit, _: &mut Context<Self>) -> Self::Result {
        if self.machine.status == Status::Deleting {
            return AtomicResponse::new(Box::pin(fut::ready(Err(ClusterError::Deleting))));
        }
        AtomicResponse::new(self.commit(Vec::new(), move |r| {
            if let Some(n) = m.name {
                r.name = n;
            }
            if let Some(d) = m.description {
                r.description = d;
            }
            if let Some(s) = m.service_address {
                r.service_address = s;
            }
            if let Some((org, project)) = m.move_to {
                r.org_id = org;
                r.project_id = project;
            }
        }))
    }
}

/// Start deleting. Answers with the record in `deleting` (or already gone).
#[derive(Message)]
#[rtype(result = "Result<ClusterRecord, ClusterError>")]
pub struct Delete;

impl Handler<Delete> for ClusterActor {
    type Result = AtomicResponse<Self, Result<ClusterRecord, ClusterError>>;
    fn handle(&mut self, _: Delete, _: &mut Context<Self>) -> Self::Result {
        let fx = self
            .machine
            .step(Input::Delete, now_ms(), &self.deps.timing);
        AtomicResponse::new(self.commit(fx, |_| {}))
    }
}

/// Live state of each agent as this actor knows it.
#[derive(Message)]
#[rtype(result = "HashMap<String, AgentLive>")]
pub struct AgentsLive;

#[derive(Debug, Clone)]
pub struct AgentLive {
    pub connected: bool,
    pub emqx_reachable: Option<bool>,
}

impl Handler<AgentsLive> for ClusterActor {
    type Result = MessageResult<AgentsLive>;
    fn handle(&mut self, _: AgentsLive, _: &mut Context<Self>) -> Self::Result {
        let mut out = HashMap::new();
        for (agent, _) in self.machine.connected() {
            let reachable = self.machine.health_of(agent).map(|h| {
                !matches!(
                    h,
                    Health::EmqxUnreachable { .. } | Health::EmqxAuthFailed { .. }
                )
            });
            out.insert(
                agent.clone(),
                AgentLive {
                    connected: true,
                    emqx_reachable: reachable,
                },
            );
        }
        MessageResult(out)
    }
}

/// Test and operations hook: make the actor fail as a store error would.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail;

impl Handler<Fail> for ClusterActor {
    type Result = ();
    fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
        tracing::warn!(cluster_id = %self.record.id, "cluster actor told to fail");
        ctx.stop();
    }
}

/// This node lost the cluster's lease: stop without being restarted here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relinquish;

impl Handler<Relinquish> for ClusterActor {
    type Result = ();
    fn handle(&mut self, _: Relinquish, ctx: &mut Context<Self>) {
        tracing::info!(cluster_id = %self.record.id, "lease lost; another node owns this cluster now");
        self.deleted = true; // not a failure: no restart
        ctx.stop();
    }
}
