//! One actor per agent WebSocket. It owns an `actix-ws` session through a
//! writer task fed by two bounded queues — control frames always ahead of
//! bulk ones — so a slow agent is disconnected instead of growing memory.
//! Every exit path runs `stopped`, which removes the session from the
//! registry and tells the cluster. The cluster is reached only through
//! `ClusterRef::ask`, whichever node runs it.

use crate::bucket::Bucket;
use crate::directory::SessionEntry;
use crate::model::now_ms;
use crate::msg::{ClusterError, ClusterInput, Deliver, Shutdown};
use crate::registry::{Registry, SessionClosed, SessionOpened};
use crate::store::TokenHash;
use crate::tunnel::{Delivery, Tunnel};
use crate::Deps;
use actix::prelude::*;
use actix_web::web::Bytes;
use actix_ws::{AggregatedMessage, CloseReason, ProtocolError};
use ecp_protocol::{CloseCode, Frame, Settings, MAX_FRAME_BYTES};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Frames a second an agent may send beyond what a tunnel stream's credit
/// covers (heartbeats, reports, log batches, frames for no open stream),
/// and the burst. A real agent sends a few; a flood closes the session.
pub const FRAMES_PER_SEC: u32 = 200;
pub const FRAME_BURST: u32 = 1_000;
/// Reports a second (each may change the cluster's record and history),
/// and the burst. A real agent reports on change, once a poll at most.
pub const REPORTS_PER_SEC: u32 = 5;
pub const REPORT_BURST: u32 = 20;
/// Log batches being stored at once for one session (the agent waits for
/// each acknowledgement); more is a broken protocol, not backpressure.
pub const LOG_WINDOW: usize = 4;

/// Session ids are unique across nodes (and below 2^53, so JSON keeps them exact).
fn new_session_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 >> 11
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub heartbeat_interval_secs: u32,
    pub report_interval_secs: u32,
    pub ping_interval_secs: u32,
    /// Close a session that sent nothing (not even a pong) for this long.
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub control_queue: usize,
    pub bulk_queue: usize,
    /// Log lines kept per cluster; older ones are dropped first.
    pub log_cap_lines: u64,
    /// A fresh credential every this long during a session (and one at the
    /// start of every session), for agents of protocol 2 and later.
    pub credential_rotate: Duration,
    /// Agents of protocol 3 collect EMQX metrics this often.
    pub metrics_interval_secs: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            heartbeat_interval_secs: 10,
            report_interval_secs: 10,
            ping_interval_secs: 15,
            idle_timeout: Duration::from_secs(45),
            handshake_timeout: Duration::from_secs(10),
            control_queue: 64,
            bulk_queue: 256,
            log_cap_lines: 1_000_000,
            credential_rotate: Duration::from_secs(3600),
            metrics_interval_secs: 15,
        }
    }
}

pub(crate) enum Out {
    Binary(Bytes),
    Ping,
    Pong(Bytes),
    Close(Option<CloseReason>),
}

pub struct SessionActor {
    deps: Arc<Deps>,
    registry: Addr<Registry>,
    session_id: u64,
    agent_id: String,
    cluster_id: String,
    control: mpsc::Sender<Out>,
    bulk: mpsc::Sender<Out>,
    last_seen: Arc<AtomicU64>,
    /// Handshake done.
    up: bool,
    /// The node whose cluster actor last answered, and the last report:
    /// both are re-sent to a new owner after a failover (`None`: tell the
    /// owner again at the next heartbeat).
    owner: Option<String>,
    last_report: Option<ecp_protocol::Report>,
    closing: bool,
    tunnel: Arc<Tunnel>,
    /// Log batches are stored one after another, in arrival order.
    log_writes: Arc<tokio::sync::Mutex<()>>,
    /// Log batches received and not yet stored.
    pending_logs: usize,
    /// Metric batches are handed to the cluster one at a time, in order.
    metric_writes: Arc<tokio::sync::Mutex<()>>,
    pending_metrics: usize,
    /// Budgets for frames that no tunnel credit covers, and for reports.
    frames: Bucket,
    reports: Bucket,
    /// The agent's address, for the audit log.
    peer: String,
    /// The protocol the agent speaks (from its Hello).
    protocol: u16,
    /// A credential handed to the agent and not yet acknowledged.
    pending_credential: Option<TokenHash>,
}

/// Starts the session actor and its writer for an accepted WebSocket whose
/// credential already identified `agent_id` of `cluster_id`.
pub fn start_session(
    deps: Arc<Deps>,
    registry: Addr<Registry>,
    (agent_id, cluster_id, peer): (String, String, String),
    ws: actix_ws::Session,
    stream: actix_ws::MessageStream,
) -> Addr<SessionActor> {
    let (control, control_rx) = mpsc::channel(deps.session.control_queue.max(4));
    let (bulk, bulk_rx) = mpsc::channel(deps.session.bulk_queue.max(4));
    let tunnel = Tunnel::new(bulk.clone());
    actix_web::rt::spawn(writer(ws, control_rx, bulk_rx));
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    SessionActor::create(move |ctx| {
        ctx.add_stream(stream);
        SessionActor {
            session_id: new_session_id(),
            up: false,
            owner: None,
            last_report: None,
            deps,
            registry,
            agent_id,
            cluster_id,
            control,
            bulk,
            last_seen: Arc::new(AtomicU64::new(now_ms())),
            closing: false,
            tunnel,
            log_writes: Arc::new(tokio::sync::Mutex::new(())),
            pending_logs: 0,
            metric_writes: Arc::new(tokio::sync::Mutex::new(())),
            pending_metrics: 0,
            frames: Bucket::new(FRAMES_PER_SEC, FRAME_BURST),
            reports: Bucket::new(REPORTS_PER_SEC, REPORT_BURST),
            peer,
            protocol: 0,
            pending_credential: None,
        }
    })
}

async fn writer(
    mut ws: actix_ws::Session,
    mut control: mpsc::Receiver<Out>,
    mut bulk: mpsc::Receiver<Out>,
) {
    loop {
        let next = tokio::select! {
            biased;
            c = control.recv() => c,
            Some(b) = bulk.recv() => Some(b),
        };
        let ok = match next {
            None => {
                let _ = ws.close(None).await;
                return;
            }
            Some(Out::Binary(b)) => ws.binary(b).await.is_ok(),
            Some(Out::Ping) => ws.ping(b"").await.is_ok(),
            Some(Out::Pong(b)) => ws.pong(&b).await.is_ok(),
            Some(Out::Close(reason)) => {
                let _ = ws.close(reason).await;
                return;
            }
        };
        if !ok {
            return;
        }
    }
}

impl SessionActor {
    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, why: &str) {
        if !self.closing {
            self.closing = true;
            tracing::info!(agent_id = %self.agent_id, session_id = self.session_id, code = code.code(), reason = why, "closing agent session");
            let _ = self.control.try_send(Out::Close(Some(CloseReason {
                code: actix_ws::CloseCode::Other(code.code()),
                description: Some(why.to_string()),
            })));
        }
        ctx.stop();
    }

    fn send_frame(&mut self, frame: &Frame, ctx: &mut Context<Self>) {
        let bytes = match ecp_protocol::encode(frame) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, kind = frame.kind(), "cannot encode frame");
                return;
            }
        };
        let queue = if frame.is_bulk() {
            &self.bulk
        } else {
            &self.control
        };
        if queue.try_send(Out::Binary(bytes)).is_err() {
            self.deps
                .metrics
                .slow_disconnects
                .fetch_add(1, Ordering::Relaxed);
            self.close(
                ctx,
                CloseCode::TooSlow,
                "agent too slow: outbound queue full",
            );
        } else {
            self.deps.metrics.frames_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gives the cluster an input and waits for the answer before the
    /// next frame is read: inputs stay in order, and a busy cluster pushes
    /// back on the agent. A failed input makes the next heartbeat tell the
    /// owner again (the session and the last report).
    fn ask(&mut self, input: ClusterInput, ctx: &mut Context<Self>) {
        let cluster = self.deps.cluster(&self.cluster_id);
        let kind = input.kind();
        ctx.wait(
            async move { cluster.ask_at(input).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok((_, owner)) => act.owner = Some(owner),
                    Err(ClusterError::NotFound) => {
                        act.close(ctx, CloseCode::ClusterDeleted, "cluster was deleted")
                    }
                    Err(e) => {
                        tracing::warn!(agent_id = %act.agent_id, input = kind, error = %e, "cluster input not taken; told again at the next heartbeat");
                        act.owner = None;
                    }
                }),
        );
    }

    /// At a heartbeat (Redis mode): when the cluster's owner changed or an
    /// input was lost, the owner hears that this session is up, with its
    /// last report.
    fn reintroduce(&mut self, ctx: &mut Context<Self>) {
        if !self.deps.coord.distributed() && self.owner.is_some() {
            return;
        }
        let coord = self.deps.coord.clone();
        let cluster_id = self.cluster_id.clone();
        let known = self.owner.clone();
        ctx.wait(
            async move { coord.owner(&cluster_id).await.ok().flatten() }
                .into_actor(self)
                .map(move |owner, act, ctx| {
                    let changed = known.is_none() || (owner.is_some() && owner != known);
                    if !changed {
                        return;
                    }
                    act.ask(
                        ClusterInput::SessionUp {
                            agent_id: act.agent_id.clone(),
                            session_id: act.session_id,
                            metrics: act.protocol >= ecp_protocol::METRICS_SINCE,
                        },
                        ctx,
                    );
                    if let Some(report) = act.last_report.clone() {
                        act.ask(
                            ClusterInput::Report {
                                agent_id: act.agent_id.clone(),
                                session_id: act.session_id,
                                report,
                            },
                            ctx,
                        );
                    }
                }),
        );
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if let Err(v) = ecp_protocol::limits::check_from_agent(&frame) {
            return self.refuse(
                ctx,
                CloseCode::OverBound,
                &format!("frame over a bound: {v}"),
            );
        }
        if !self.up {
            return self.on_hello(frame, ctx);
        }
        let frame = match frame {
            f @ (Frame::TunnelHead { .. } | Frame::TunnelData { .. } | Frame::TunnelEnd { .. }) => {
                match self.tunnel.on_frame(f) {
                    Delivery::Delivered => {}
                    Delivery::Unknown => self.spend(ctx),
                    Delivery::Overrun => self.refuse(
                        ctx,
                        CloseCode::OverBound,
                        "tunnel stream overran its window",
                    ),
                }
                return;
            }
            other => other,
        };
        self.spend(ctx);
        // Everything the cluster's actor handles spends the report budget.
        if matches!(
            frame,
            Frame::Report(_) | Frame::Alarms(_) | Frame::Metrics(_)
        ) && self.reports.admit().is_err()
        {
            self.refuse(
                ctx,
                CloseCode::OverBound,
                &format!(
                    "more than {REPORTS_PER_SEC} reports a second (burst {REPORT_BURST}; alarm snapshots and metric batches count as reports)"
                ),
            );
        }
        if self.closing {
            return;
        }
        let frame = match frame {
            Frame::LogBatch(batch) => return self.on_logs(batch, ctx),
            Frame::Metrics(batch) => return self.on_metrics(batch, ctx),
            Frame::CredentialAck => return self.on_credential_ack(ctx),
            other => other,
        };
        match frame {
            // Heartbeats are when a changed owner is noticed.
            Frame::Heartbeat { .. } => self.reintroduce(ctx),
            Frame::Report(report) => {
                self.last_report = Some(report.clone());
                let input = ClusterInput::Report {
                    agent_id: self.agent_id.clone(),
                    session_id: self.session_id,
                    report,
                };
                self.ask(input, ctx);
            }
            Frame::Alarms(snapshot) => {
                // The agent sends a snapshot again only when the alarms
                // change or a session starts: one not kept ends the session.
                let input = ClusterInput::Alarms {
                    agent_id: self.agent_id.clone(),
                    session_id: self.session_id,
                    snapshot,
                };
                let cluster = self.deps.cluster(&self.cluster_id);
                ctx.wait(
                    async move { cluster.ask(input).await }
                        .into_actor(self)
                        .map(|res, act, ctx| {
                            if let Err(e) = res {
                                act.not_kept(ctx, e, "alarms");
                            }
                        }),
                );
            }
            Frame::UnregisterAck => {
                let input = ClusterInput::AgentGone {
                    agent_id: self.agent_id.clone(),
                    removed: false,
                };
                self.ask(input, ctx);
                ctx.wait(fut::ready(()).map(|_, act: &mut Self, ctx| {
                    act.close(ctx, CloseCode::Unregistered, "unregistered");
                }));
            }
            other => {
                let why = format!("unexpected {} frame from agent", other.kind());
                self.bad_frame(ctx, CloseCode::BadFrame, &why);
            }
        }
    }

    fn on_hello(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        let Frame::Hello { protocol, agent } = frame else {
            let why = format!("expected Hello, got {}", frame.kind());
            return self.bad_frame(ctx, CloseCode::BadFrame, &why);
        };
        if !ecp_protocol::server_accepts(protocol) {
            let why = format!(
                "unsupported protocol {protocol}; this server speaks {}..={}",
                ecp_protocol::MIN_PROTOCOL_VERSION,
                ecp_protocol::PROTOCOL_VERSION
            );
            return self.close(ctx, CloseCode::UnsupportedProtocol, &why);
        }
        if agent.agent_id != self.agent_id {
            return self.close(ctx, CloseCode::BadFrame, "Hello names another agent");
        }
        self.protocol = protocol;
        let entry = SessionEntry {
            session_id: self.session_id,
            cluster_id: self.cluster_id.clone(),
            deliver: ctx.address().recipient(),
            shutdown: ctx.address().recipient(),
            last_seen: self.last_seen.clone(),
            tunnel: self.tunnel.clone(),
            metrics: protocol >= ecp_protocol::METRICS_SINCE,
        };
        let opened = SessionOpened {
            agent_id: self.agent_id.clone(),
            entry,
        };
        let cluster = self.deps.cluster(&self.cluster_id);
        let up = ClusterInput::SessionUp {
            agent_id: self.agent_id.clone(),
            session_id: self.session_id,
            metrics: protocol >= ecp_protocol::METRICS_SINCE,
        };
        ctx.wait(
            self.registry
                .send(opened)
                .into_actor(self)
                .then(move |_, act, _| async move { cluster.ask_at(up).await }.into_actor(act))
                .map(|res, act, ctx| {
                    match res {
                        Ok((_, owner)) => act.owner = Some(owner),
                        Err(ClusterError::NotFound | ClusterError::Deleting) => {
                            return act.close(ctx, CloseCode::ClusterDeleted, "cluster was deleted");
                        }
                        // Nobody runs the cluster this very moment: the
                        // session stands, and the next heartbeat tells the
                        // owner.
                        Err(e) => {
                            tracing::warn!(agent_id = %act.agent_id, error = %e, "session up not taken yet");
                        }
                    }
                    act.up = true;
                    let s = &act.deps.session;
                    let welcome = Frame::Welcome {
                        settings: Settings {
                            cluster_id: act.cluster_id.clone(),
                            heartbeat_interval_secs: s.heartbeat_interval_secs,
                            report_interval_secs: s.report_interval_secs,
                            ping_interval_secs: s.ping_interval_secs,
                            metrics_interval_secs: s.metrics_interval_secs,
                        },
                    };
                    act.send_frame(&welcome, ctx);
                    tracing::info!(agent_id = %act.agent_id, cluster_id = %act.cluster_id, session_id = act.session_id, "agent session up");
                    if act.protocol >= ecp_protocol::CREDENTIAL_ROTATION_SINCE {
                        // A fresh credential now and now and then: a copy
                        // taken from the agent's disk dies soon.
                        act.rotate_credential(ctx);
                        let every = act.deps.session.credential_rotate.max(Duration::from_secs(1));
                        ctx.run_interval(every, |act, ctx| act.rotate_credential(ctx));
                    }
                }),
        );
    }

    /// Hands the agent a fresh credential (stored first, with an expiry
    /// that only the acknowledgement lifts). One at a time.
    fn rotate_credential(&mut self, ctx: &mut Context<Self>) {
        if self.pending_credential.is_some() || self.closing {
            return;
        }
        let (token, hash) = crate::secret::new_secret(crate::secret::AGENT_PREFIX);
        let now = now_ms();
        let rec = crate::model::TokenRecord {
            kind: crate::model::TokenKind::Agent {
                cluster_id: self.cluster_id.clone(),
                agent_id: self.agent_id.clone(),
            },
            created_at: now,
            // Unacknowledged, it lapses on its own.
            expires_at: Some(now + 3_600_000),
        };
        self.pending_credential = Some(hash);
        let store = self.deps.store.clone();
        ctx.spawn(
            async move { store.put_token(&hash, &rec).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(()) => act.send_frame(&Frame::Credential { token }, ctx),
                    Err(e) => {
                        tracing::warn!(agent_id = %act.agent_id, error = %e, "credential not rotated");
                        act.pending_credential = None;
                    }
                }),
        );
    }

    /// The agent stored its new credential: it becomes the only one.
    fn on_credential_ack(&mut self, ctx: &mut Context<Self>) {
        let Some(hash) = self.pending_credential else {
            return self.refuse(
                ctx,
                CloseCode::BadFrame,
                "CredentialAck without a credential to acknowledge",
            );
        };
        let store = self.deps.store.clone();
        let agent_id = self.agent_id.clone();
        ctx.spawn(
            async move { store.adopt_agent_credential(&agent_id, &hash).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.pending_credential = None;
                    match res {
                        Ok(()) => tracing::info!(agent_id = %act.agent_id, "agent credential rotated"),
                        Err(e) => {
                            tracing::warn!(agent_id = %act.agent_id, error = %e, "credential rotation not completed");
                            act.close(ctx, CloseCode::TryAgain, "credential rotation failed; reconnect");
                        }
                    }
                }),
        );
    }

    /// Takes a frame from the session's budget; over it, the session ends.
    fn spend(&mut self, ctx: &mut Context<Self>) {
        if self.frames.admit().is_err() {
            self.refuse(
                ctx,
                CloseCode::OverBound,
                &format!("more than {FRAMES_PER_SEC} frames a second (burst {FRAME_BURST})"),
            );
        }
    }

    /// The agent broke a bound: close with the reason, count it, audit it.
    /// Nothing of the offending frame was acted on.
    fn refuse(&mut self, ctx: &mut Context<Self>, code: CloseCode, why: &str) {
        if self.closing {
            return;
        }
        let store = self.deps.store.clone();
        let rec = crate::model::AuditRecord::new(
            &format!("agent:{}", self.agent_id),
            &format!("agent {}", &self.agent_id[..self.agent_id.len().min(8)]),
            "agent.frame_refused",
            "denied",
            &self.peer,
            why,
        );
        let cluster_id = self.cluster_id.clone();
        actix_web::rt::spawn(async move {
            let mut rec = rec;
            if let Ok(Some(c)) = store.cluster(&cluster_id).await {
                rec.object_type = "cluster".into();
                rec.object_id = c.id;
                rec.object_name = c.name;
                rec.org_id = c.org_id;
                rec.project_id = c.project_id;
            }
            if let Err(e) = store.append_audit(&rec).await {
                tracing::error!(error = %e, "audit record not written");
            }
        });
        self.bad_frame(ctx, code, why);
    }

    /// Stores a batch of log lines (de-duplicated by file and offset) and
    /// acknowledges it; the agent sends the next batch only after the ack.
    /// At most [`LOG_WINDOW`] batches are pending at once: never a growing
    /// pile of spawned writes.
    fn on_logs(&mut self, batch: ecp_protocol::LogBatch, ctx: &mut Context<Self>) {
        if self.pending_logs >= LOG_WINDOW {
            return self.refuse(
                ctx,
                CloseCode::OverBound,
                &format!("more than {LOG_WINDOW} log batches waiting for their acknowledgement"),
            );
        }
        self.pending_logs += 1;
        let store = self.deps.store.clone();
        let cap = self.deps.session.log_cap_lines;
        let lock = self.log_writes.clone();
        let cluster_id = self.cluster_id.clone();
        let agent_id = self.agent_id.clone();
        let n = batch.lines.len();
        ctx.spawn(
            async move {
                let _serial = lock.lock().await;
                store
                    .append_logs(&cluster_id, &agent_id, &batch.node, &batch.lines, cap)
                    .await
                    .map(|stored| (batch.batch, stored))
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.pending_logs -= 1;
                match res {
                                Ok((batch, stored)) => {
                    act.deps
                        .metrics
                        .log_lines
                        .fetch_add(stored as u64, Ordering::Relaxed);
                    tracing::debug!(agent_id = %act.agent_id, batch, lines = n, stored, "log batch stored");
                    act.send_frame(&Frame::LogAck { batch }, ctx);
                }
                Err(e) => {
                    // No ack: the agent keeps its cursor and sends the batch again.
                    tracing::warn!(agent_id = %act.agent_id, error = %e, "log batch not stored");
                    act.close(ctx, CloseCode::TryAgain, "log storage unavailable");
                }
            }
            }),
        );
    }

    /// Hands metric samples to the cluster (which stores them) and
    /// acknowledges them once taken; in order (one at a time, like the log
    /// writes), at most [`LOG_WINDOW`] batches waiting. Not taken (the
    /// store or the owner unavailable): the session ends, so the agent
    /// sends the batch again on its next one.
    fn on_metrics(&mut self, batch: ecp_protocol::MetricsBatch, ctx: &mut Context<Self>) {
        if self.pending_metrics >= LOG_WINDOW {
            return self.refuse(
                ctx,
                CloseCode::OverBound,
                &format!("more than {LOG_WINDOW} metric batches waiting for their acknowledgement"),
            );
        }
        self.pending_metrics += 1;
        let cluster = self.deps.cluster(&self.cluster_id);
        let lock = self.metric_writes.clone();
        let input = ClusterInput::Metrics {
            agent_id: self.agent_id.clone(),
            session_id: self.session_id,
            samples: batch.samples,
        };
        let id = batch.batch;
        ctx.spawn(
            async move {
                let _serial = lock.lock().await;
                cluster.ask(input).await
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.pending_metrics -= 1;
                match res {
                    Ok(_) => act.send_frame(&Frame::MetricsAck { batch: id }, ctx),
                    Err(e) => act.not_kept(ctx, e, "metrics"),
                }
            }),
        );
    }

    /// What the agent sent (`what`) was not kept: the session ends, so the
    /// agent sends it again on its next one (or drops it, the cluster gone).
    fn not_kept(&mut self, ctx: &mut Context<Self>, e: ClusterError, what: &str) {
        if e == ClusterError::NotFound {
            return self.close(ctx, CloseCode::ClusterDeleted, "cluster was deleted");
        }
        tracing::warn!(agent_id = %self.agent_id, error = %e, "{what} not kept");
        self.close(
            ctx,
            CloseCode::TryAgain,
            &format!("{what} storage unavailable"),
        );
    }

    fn bad_frame(&mut self, ctx: &mut Context<Self>, code: CloseCode, why: &str) {
        self.deps.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(agent_id = %self.agent_id, reason = why, "bad frame");
        self.close(ctx, code, why);
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        self.deps.metrics.sessions.fetch_add(1, Ordering::Relaxed);
        let cfg = self.deps.session.clone();
        ctx.run_later(cfg.handshake_timeout, |act, ctx| {
            if !act.up {
                act.close(ctx, CloseCode::Timeout, "no Hello received in time");
            }
        });
        let ping = Duration::from_secs(u64::from(cfg.ping_interval_secs.max(1)));
        ctx.run_interval(ping, move |act, ctx| {
            let idle = now_ms().saturating_sub(act.last_seen.load(Ordering::Relaxed));
            if idle > cfg.idle_timeout.as_millis() as u64 {
                act.close(ctx, CloseCode::Timeout, "no traffic from agent: timed out");
            } else if act.control.try_send(Out::Ping).is_err() {
                act.deps
                    .metrics
                    .slow_disconnects
                    .fetch_add(1, Ordering::Relaxed);
                act.close(
                    ctx,
                    CloseCode::TooSlow,
                    "agent too slow: outbound queue full",
                );
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        self.tunnel.close();
        let registry = self.registry.clone();
        let agent_id = self.agent_id.clone();
        let session_id = self.session_id;
        let last_seen = self.last_seen.load(Ordering::Relaxed);
        let coord = self.deps.coord.clone();
        let cluster = self.deps.cluster(&self.cluster_id);
        let told = self.up;
        actix_web::rt::spawn(async move {
            if coord.distributed() {
                let _ = coord.drop_presence(&agent_id, session_id).await;
            }
            let _ = registry
                .send(SessionClosed {
                    agent_id: agent_id.clone(),
                    session_id,
                })
                .await;
            if told {
                // Lost if nobody runs the cluster now: the owner's sweeper
                // then sees the lapsed presence.
                let _ = cluster
                    .ask(ClusterInput::SessionDown {
                        agent_id,
                        session_id,
                        last_seen,
                    })
                    .await;
            }
        });
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for SessionActor {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.last_seen.store(now_ms(), Ordering::Relaxed);
        match item {
            Ok(AggregatedMessage::Binary(bytes)) => {
                self.deps.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
                match ecp_protocol::decode(&bytes) {
                    Ok(frame) => self.on_frame(frame, ctx),
                    Err(ecp_protocol::CodecError::TooLarge { .. }) => {
                        self.bad_frame(ctx, CloseCode::OverBound, "frame exceeds 1 MiB")
                    }
                    Err(e) => self.bad_frame(ctx, CloseCode::BadFrame, &e.to_string()),
                }
            }
            Ok(AggregatedMessage::Text(_)) => {
                self.bad_frame(ctx, CloseCode::BadFrame, "text messages are not accepted")
            }
            Ok(AggregatedMessage::Ping(b)) => {
                if self.control.try_send(Out::Pong(b)).is_err() {
                    self.close(
                        ctx,
                        CloseCode::TooSlow,
                        "agent too slow: outbound queue full",
                    );
                }
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => {
                self.closing = true;
                ctx.stop();
            }
            Err(ProtocolError::Overflow) => {
                self.bad_frame(ctx, CloseCode::OverBound, "frame exceeds 1 MiB")
            }
            Err(ProtocolError::Io(e)) => {
                // The agent went away mid-frame: a disconnect, not a bad frame.
                tracing::info!(agent_id = %self.agent_id, error = %e, "agent connection lost");
                self.closing = true;
                ctx.stop();
            }
            Err(e) => {
                tracing::debug!(agent_id = %self.agent_id, error = %e, "websocket error");
                self.bad_frame(ctx, CloseCode::BadFrame, &e.to_string());
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Deliver> for SessionActor {
    type Result = ();
    fn handle(&mut self, m: Deliver, ctx: &mut Context<Self>) {
        if !self.closing {
            self.send_frame(&m.0, ctx);
        }
    }
}

impl Handler<Shutdown> for SessionActor {
    type Result = ();
    fn handle(&mut self, m: Shutdown, ctx: &mut Context<Self>) {
        self.close(ctx, m.code, &m.reason);
    }
}
