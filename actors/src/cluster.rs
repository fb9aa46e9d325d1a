//! One actor per managed cluster: owns the [`Machine`], persists every change
//! (record + history in one store step) before publishing it, and runs timers.
//! A failed store write stops the actor; the registry restarts it from the
//! stored state. Everything reaches it as a [`ClusterInput`] (`Ask`), from
//! this node or, through [`crate::cluster_ref::ClusterRef`], from any other.

use crate::alerting::{self, AlertEngine, Subject, Transition};
use crate::machine::{Effect, Input, Machine};
use crate::model::*;
use crate::msg::*;
use crate::store::StoreError;
use crate::watch::Watch;
use crate::Deps;
use actix::prelude::*;
use ecp_protocol::{Frame, Health, Report};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct ClusterActor {
    deps: Arc<Deps>,
    registry: Recipient<ChildStopped>,
    record: ClusterRecord,
    machine: Machine,
    deleted: bool,
    /// Metrics, EMQX alarms and alert rules (`watch.rs`).
    watch: Watch,
    /// The timer for the alert engine's next time-driven change.
    wake: Option<SpawnHandle>,
}

impl ClusterActor {
    pub fn new(record: ClusterRecord, deps: Arc<Deps>, registry: Recipient<ChildStopped>) -> Self {
        let machine = Machine::load(record.status, record.reason.clone(), now_ms());
        ClusterActor {
            deps,
            registry,
            record,
            machine,
            deleted: false,
            watch: Watch::default(),
            wake: None,
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
        // A transfer: the old project's consoles must hear it leave.
        let left = (old.project_id != rec.project_id)
            .then(|| (old.org_id.clone(), old.project_id.clone()));
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
        let moved = left.is_some();
        Box::pin(write.into_actor(self).map(move |res, act, ctx| match res {
            Ok(rec) => {
                act.record = rec.clone();
                if moved {
                    // The old project's rules no longer apply: their alerts
                    // resolve (notified on the old project's channels), and
                    // the new project's rules are read before anything is
                    // evaluated again.
                    act.resolve_all("the cluster moved to another project");
                    act.watch.rules.clear();
                    // Reads of the old project's rules under way are void.
                    act.watch.rules_applied = act.watch.rules_asked;
                    act.watch.silent_since = None;
                }
                if let Some((org_id, project_id)) = left {
                    act.announce(ClusterChange::Removed {
                        cluster_id: rec.id.clone(),
                        org_id,
                        project_id,
                        revision: rec.revision,
                    });
                }
                if changed && !gone {
                    act.announce(ClusterChange::Upserted {
                        cluster: Box::new(rec.clone()),
                    });
                }
                act.run_effects(fx, ctx);
                if moved {
                    act.refresh(ctx);
                } else if changed && !gone {
                    act.evaluate(ctx);
                }
                if gone {
                    act.resolve_all("the cluster was deleted");
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
            Err(StoreError::NameTaken(n)) => Err(ClusterError::NameTaken(n)),
            Err(e) => {
                tracing::error!(cluster_id = %act.record.id, error = %e, "store write failed; restarting cluster actor");
                ctx.stop();
                Err(ClusterError::from(e))
            }
        }))
    }

    fn announce(&self, change: ClusterChange) {
        self.deps.announce(change);
    }

    /// Sends a frame to an agent's session, wherever it is.
    fn deliver(&self, agent: &str, frame: Frame) {
        if let Some(s) = self.deps.dir.session(agent) {
            if s.deliver.try_send(Deliver(frame)).is_err() {
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
                        let _ = s.shutdown.try_send(Shutdown {
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
            self.watch.session_up(&agent, s.metrics, now);
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
        // Alerts: loaded once, then the rules re-read and evaluated.
        self.refresh(ctx);
        ctx.run_interval(self.deps.watch.eval_interval, |act, ctx| act.refresh(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Rare and not on a hot path: the registry must hear of every stop.
        self.registry.do_send(ChildStopped {
            cluster_id: self.record.id.clone(),
            deleted: self.deleted,
        });
    }
}

impl ClusterActor {
    /// Each connected agent's live state.
    fn live(&self) -> HashMap<String, AgentLive> {
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
        out
    }

    fn step(&mut self, input: Input) -> Vec<Effect> {
        self.machine.step(input, now_ms(), &self.deps.timing)
    }
}

type Answering = AtomicResponse<ClusterActor, Result<ClusterReply, ClusterError>>;

fn answer(r: Result<ClusterReply, ClusterError>) -> Answering {
    AtomicResponse::new(Box::pin(fut::ready(r)))
}

fn record_of(f: ResponseActFuture<ClusterActor, Result<ClusterRecord, ClusterError>>) -> Answering {
    AtomicResponse::new(Box::pin(
        f.map(|r, _, _| r.map(|rec| ClusterReply::Record(Box::new(rec)))),
    ))
}

impl Handler<Ask> for ClusterActor {
    type Result = Answering;
    fn handle(&mut self, Ask(input): Ask, _: &mut Context<Self>) -> Self::Result {
        let deleting = self.machine.status == Status::Deleting;
        match input {
            ClusterInput::Snapshot => {
                answer(Ok(ClusterReply::Record(Box::new(self.record.clone()))))
            }
            ClusterInput::AgentsLive => answer(Ok(ClusterReply::Live(self.live()))),
            ClusterInput::AgentRegistered { .. } | ClusterInput::Edit { .. } if deleting => {
                answer(Err(ClusterError::Deleting))
            }
            ClusterInput::AgentRegistered { agent_id, new } => {
                let fx = self.step(Input::Registered { agent: agent_id });
                record_of(self.commit(fx, move |r| {
                    if new {
                        r.agents.total += 1;
                    }
                }))
            }
            ClusterInput::SessionUp {
                agent_id,
                session_id,
                metrics,
            } => {
                self.watch.session_up(&agent_id, metrics, now_ms());
                let fx = self.step(Input::Connected {
                    agent: agent_id,
                    session: session_id,
                });
                record_of(self.commit(fx, |_| {}))
            }
            ClusterInput::SessionDown {
                agent_id,
                session_id,
                last_seen,
            } => {
                if self.machine.session_of(&agent_id) == Some(session_id) {
                    self.watch.session_down(&agent_id);
                }
                let fx = self.step(Input::Disconnected {
                    agent: agent_id.clone(),
                    session: session_id,
                });
                let store = self.deps.store.clone();
                let remember = async move {
                    if let Ok(Some(mut a)) = store.agent(&agent_id).await {
                        a.last_seen = a.last_seen.max(last_seen);
                        let _ = store.update_agent(&a).await;
                    }
                };
                record_of(Box::pin(
                    remember
                        .into_actor(self)
                        .then(move |_, act, _| act.commit(fx, |_| {})),
                ))
            }
            ClusterInput::Report {
                agent_id,
                session_id,
                report,
            } => {
                let current = self.machine.session_of(&agent_id) == Some(session_id);
                let fx = self.step(Input::Report {
                    agent: agent_id,
                    session: session_id,
                    health: report.health.clone(),
                });
                record_of(self.commit(fx, move |r| {
                    if current && r.status != Status::Deleting {
                        apply_report(r, &report);
                    }
                }))
            }
            ClusterInput::AgentGone { agent_id, removed } => {
                if removed {
                    // Its session ends, on whichever node it is.
                    match self.deps.dir.session(&agent_id) {
                        Some(s) => {
                            let _ = s.shutdown.try_send(Shutdown {
                                code: ecp_protocol::CloseCode::Revoked,
                                reason: "agent was unregistered".into(),
                            });
                        }
                        None => self.to_remote_session(&agent_id, |agent_id| NodeMsg::Shutdown {
                            agent_id,
                            code: ecp_protocol::CloseCode::Revoked,
                            reason: "agent was unregistered".into(),
                        }),
                    }
                }
                let fx = self.step(Input::Unregistered { agent: agent_id });
                record_of(self.commit(fx, move |r| {
                    if removed {
                        r.agents.total = r.agents.total.saturating_sub(1);
                    }
                }))
            }
            ClusterInput::Edit {
                name,
                description,
                service_address,
                move_to,
            } => record_of(self.commit(Vec::new(), move |r| {
                if let Some(n) = name {
                    r.name = n;
                }
                if let Some(d) = description {
                    r.description = d;
                }
                if let Some(s) = service_address {
                    r.service_address = s;
                }
                if let Some((org, project)) = move_to {
                    r.org_id = org;
                    r.project_id = project;
                }
            })),
            ClusterInput::Delete => {
                let fx = self.step(Input::Delete);
                record_of(self.commit(fx, |_| {}))
            }
            ClusterInput::Metrics {
                agent_id, samples, ..
            } => self.on_metrics(agent_id, samples),
            ClusterInput::Alarms {
                agent_id, snapshot, ..
            } => self.on_alarms(agent_id, snapshot),
        }
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

impl Handler<Control> for ClusterActor {
    type Result = ();
    fn handle(&mut self, c: Control, ctx: &mut Context<Self>) {
        match c {
            Control::Fail => {
                tracing::warn!(cluster_id = %self.record.id, "cluster actor told to fail");
            }
            Control::Relinquish => {
                tracing::info!(cluster_id = %self.record.id, "lease lost; another node owns this cluster now");
                self.deleted = true; // not a failure: no restart
            }
        }
        ctx.stop();
    }
}

// ------------------------------------------------------------ the watch

impl ClusterActor {
    /// Stores an agent's samples (its session vouches that it is this
    /// cluster's) when it is the cluster's source (another agent's copy of
    /// the same figures is answered and dropped), then evaluates.
    fn on_metrics(&mut self, agent: String, samples: Vec<ecp_protocol::MetricSample>) -> Answering {
        // An agent that sends samples is able to (after an owner change the
        // new owner learns it here).
        let now = now_ms();
        self.watch.session_up(&agent, true, now);
        let machine = &self.machine;
        if !self.watch.take_source(&agent, |a| machine.is_connected(a)) {
            return answer(Ok(ClusterReply::Done));
        }
        let spacing = self.deps.watch.min_spacing();
        let last = self.watch.latest.as_ref().map(|p| p.at);
        let newest = crate::series::plan_append(last, &[], &samples, spacing, now)
            .raw
            .pop();
        let store = self.deps.store.clone();
        let id = self.record.id.clone();
        let write = async move {
            store
                .append_metrics(&id, &samples, spacing, now)
                .await
                .map(|_| ())
        };
        self.store_then_evaluate(write, "metric samples not stored", move |act| {
            if newest.is_some() {
                act.watch.latest = newest;
            }
        })
    }

    /// Keeps EMQX's alarms as the source agent read them, then evaluates.
    fn on_alarms(&mut self, agent: String, snapshot: ecp_protocol::AlarmSnapshot) -> Answering {
        let machine = &self.machine;
        if !self.watch.take_source(&agent, |a| machine.is_connected(a)) {
            return answer(Ok(ClusterReply::Done));
        }
        let merged = alerting::merge_alarms(&self.watch.alarms, &snapshot);
        if merged == self.watch.alarms {
            return answer(Ok(ClusterReply::Done));
        }
        let store = self.deps.store.clone();
        let id = self.record.id.clone();
        let keep = merged.clone();
        let write = async move { store.put_alarms(&id, &keep).await };
        self.store_then_evaluate(write, "alarms not stored", move |act| {
            act.watch.alarms = merged;
        })
    }

    /// Runs `write`, then reads the project's rules (so an edited rule
    /// applies to this input), takes what was written (`kept`) and
    /// evaluates. A failed write is answered as one (the session ends and
    /// the agent sends it again); the actor keeps running.
    fn store_then_evaluate(
        &mut self,
        write: impl std::future::Future<Output = Result<(), StoreError>> + 'static,
        failed: &'static str,
        kept: impl FnOnce(&mut Self) + 'static,
    ) -> Answering {
        let store = self.deps.store.clone();
        let project = self.record.project_id.clone();
        let read = self.watch.next_rules_read();
        let work = async move {
            write.await?;
            Ok::<_, StoreError>(store.alert_rules(&project).await.ok())
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |res, act, ctx| match res {
                Ok(rules) => {
                    kept(act);
                    act.fresh_rules(read, rules);
                    act.evaluate(ctx);
                    Ok(ClusterReply::Done)
                }
                Err(e) => {
                    tracing::warn!(cluster_id = %act.record.id, error = %e, "{failed}");
                    Err(ClusterError::from(e))
                }
            },
        )))
    }

    /// Loads what the watch starts from (the firing alerts first: nothing
    /// is evaluated before, so a new owner neither fires again what fires
    /// nor forgets to resolve it), or re-reads the rules; then evaluates.
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let store = self.deps.store.clone();
        let id = self.record.id.clone();
        let project = self.record.project_id.clone();
        let load = !self.watch.loaded;
        let read = self.watch.next_rules_read();
        ctx.spawn(
            async move {
                let rules = store.alert_rules(&project).await?;
                if !load {
                    return Ok((rules, None));
                }
                let firing = store.firing_alerts_of_cluster(&id).await?;
                let alarms = store.alarms(&id).await?;
                let latest = store
                    .latest_points(std::slice::from_ref(&id))
                    .await?
                    .pop()
                    .flatten();
                Ok::<_, StoreError>((rules, Some((firing, alarms, latest))))
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok((rules, loaded)) => {
                    if let Some((firing, alarms, latest)) = loaded {
                        if act.watch.loaded {
                            return; // loaded meanwhile
                        }
                        act.watch.silent_since = firing
                            .iter()
                            .filter(|a| a.kind == alerting::AlertKind::NoMetrics)
                            .map(|a| a.started_at)
                            .min();
                        act.watch.engine = AlertEngine::load(firing);
                        // A snapshot taken meanwhile is newer than the store's.
                        if act.watch.alarms == alerting::AlarmSet::default() {
                            act.watch.alarms = alarms;
                        }
                        if act.watch.latest.is_none() {
                            act.watch.latest = latest;
                        }
                        act.watch.loaded = true;
                    }
                    act.fresh_rules(read, Some(rules));
                    act.evaluate(ctx);
                }
                Err(e) => {
                    tracing::warn!(cluster_id = %act.record.id, error = %e, "alert rules not read; alerts not evaluated")
                }
            }),
        );
    }

    /// Takes the project's rules as just read (a sample or an alarm change
    /// reads them too, so an edited rule applies to the next one; `None`:
    /// not read, the last ones stay).
    fn fresh_rules(&mut self, read: u64, rules: Option<Vec<alerting::AlertRule>>) {
        if let Some(rules) = rules {
            // A read that started before the one applied last is older.
            if read <= self.watch.rules_applied {
                return;
            }
            self.watch.rules_applied = read;
            if rules != self.watch.rules {
                self.watch.previous_rules = std::mem::replace(&mut self.watch.rules, rules);
            }
        }
    }

    /// Runs the rules against what the actor knows now; records what fired
    /// or resolved (with its deliveries) before anything else happens.
    fn evaluate(&mut self, ctx: &mut Context<Self>) {
        if !self.watch.loaded || self.deleted || self.machine.status == Status::Deleting {
            return;
        }
        let now = now_ms();
        if let Some(at) = self.watch.budget.wait_until(now) {
            if self.wake.is_none() {
                tracing::warn!(cluster_id = %self.record.id, "alerts flapping; evaluation paused until the next minute");
                let delay = Duration::from_millis(at.saturating_sub(now).max(10));
                self.wake = Some(ctx.run_later(delay, |act, ctx| {
                    act.wake = None;
                    act.evaluate(ctx);
                }));
            }
            return;
        }
        let connected: Vec<String> = self.machine.connected().map(|(a, _)| a.clone()).collect();
        let facts = self
            .watch
            .facts(&self.record, &connected, &self.deps.watch, now);
        let who = Subject {
            org_id: &self.record.org_id,
            project_id: &self.record.project_id,
            cluster_id: &self.record.id,
            cluster_name: &self.record.name,
        };
        let ts = self
            .watch
            .engine
            .evaluate(&self.watch.rules, &facts, &who, now, alerting::new_id);
        if let Some(h) = self.wake.take() {
            ctx.cancel_future(h);
        }
        if let Some(at) = self.watch.engine.next_wake(&self.watch.rules, now) {
            let delay = Duration::from_millis(at.saturating_sub(now).max(10));
            self.wake = Some(ctx.run_later(delay, |act, ctx| {
                act.wake = None;
                act.evaluate(ctx);
            }));
        }
        if ts.is_empty() {
            return;
        }
        self.watch.budget.spend(ts.len());
        let write = self.record_transitions(ts);
        ctx.wait(write.into_actor(self).map(|res, act, ctx| {
            if let Err(e) = res {
                // The engine moved on in memory only: start again from the
                // store (the registry restarts this actor).
                tracing::error!(cluster_id = %act.record.id, error = %e, "alert not recorded; restarting cluster actor");
                ctx.stop();
            }
        }));
    }

    /// Writes each transition with its deliveries (one per channel of its
    /// rule), then wakes this node's delivery worker.
    fn record_transitions(
        &self,
        ts: Vec<Transition>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        let store = self.deps.store.clone();
        let wake = self.deps.wake_deliveries.clone();
        let rules: Vec<alerting::AlertRule> = self
            .watch
            .rules
            .iter()
            .chain(&self.watch.previous_rules)
            .cloned()
            .collect();
        let now = now_ms();
        async move {
            let mut queued = false;
            for t in &ts {
                let (Transition::Fire(alert) | Transition::Resolve(alert)) = t;
                let notice = alerting::notice_of(t);
                let deliveries: Vec<alerting::Delivery> = rules
                    .iter()
                    .find(|r| r.id == alert.rule_id)
                    .map(|r| r.channel_ids.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|channel| {
                        alerting::Delivery::queued(channel, &alert.project_id, notice.clone(), now)
                    })
                    .collect();
                tracing::info!(
                    cluster_id = %alert.cluster_id,
                    rule_id = %alert.rule_id,
                    alert_id = %alert.id,
                    state = alert.state.as_str(),
                    deliveries = deliveries.len(),
                    "alert {}",
                    alert.state.as_str()
                );
                store.record_alert(alert, &deliveries).await?;
                queued |= !deliveries.is_empty();
            }
            if queued {
                wake.notify_one();
            }
            Ok(())
        }
    }

    /// The cluster is gone: its firing alerts resolve (recorded in the
    /// background; the actor is stopping).
    fn resolve_all(&mut self, why: &str) {
        let ts = self.watch.engine.resolve_all(now_ms(), why);
        if ts.is_empty() {
            return;
        }
        let write = self.record_transitions(ts);
        let id = self.record.id.clone();
        actix::spawn(async move {
            if let Err(e) = write.await {
                tracing::warn!(cluster_id = %id, error = %e, "resolved alerts of a deleted cluster not recorded");
            }
        });
    }
}
