//! The registry: started once, it loads every stored cluster, supervises one
//! [`ClusterActor`] per cluster (restarting a failed one from the stored
//! state, with backoff), and keeps the session index.

use crate::cluster::ClusterActor;
use crate::directory::{ClusterHandle, SessionEntry};
use crate::model::ClusterRecord;
use crate::msg::{ChildStopped, Control, Deliver, Shutdown};
use crate::Deps;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Registry {
    deps: Arc<Deps>,
    /// Recent restarts per cluster (count, last), for backoff.
    restarts: HashMap<String, (u32, Instant)>,
}

impl Registry {
    pub fn new(deps: Arc<Deps>) -> Self {
        Registry {
            deps,
            restarts: HashMap::new(),
        }
    }

    fn spawn(&mut self, record: ClusterRecord, ctx: &mut Context<Self>) {
        let id = record.id.clone();
        let addr = ClusterActor::new(record, self.deps.clone(), ctx.address().recipient()).start();
        let handle = ClusterHandle {
            ask: addr.clone().recipient(),
            control: addr.recipient(),
        };
        self.deps.dir.set_cluster(&id, handle);
    }
}

/// Lease lifetime, and how often leases are claimed or renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(9);
const CLAIM_EVERY: Duration = Duration::from_secs(3);
/// Presence lifetime, refreshed in batches.
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
const PRESENCE_EVERY: Duration = Duration::from_secs(5);

impl Registry {
    /// Renews the leases of clusters run here, takes free ones, and stops
    /// actors whose lease another node holds now.
    fn claim_round(&mut self, ctx: &mut Context<Self>) {
        let store = self.deps.store.clone();
        let coord = self.deps.coord.clone();
        ctx.spawn(
            async move {
                let clusters = match store.all_clusters().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list clusters for leases");
                        return Vec::new();
                    }
                };
                let mut out = Vec::with_capacity(clusters.len());
                for c in clusters {
                    let owned = coord.claim(&c.id, LEASE_TTL.as_millis() as u64).await;
                    out.push((c, owned));
                }
                out
            }
            .into_actor(self)
            .map(|claims, act, ctx| {
                for (record, owned) in claims {
                    let local = act.deps.dir.cluster(&record.id).filter(|a| a.connected());
                    match (owned, local) {
                        (Ok(true), None) => act.spawn(record, ctx),
                        (Ok(false), Some(h)) => {
                            let _ = h.control.try_send(Control::Relinquish);
                        }
                        _ => {} // kept, not ours, or Redis down (decide nothing)
                    }
                }
            }),
        );
    }

    fn refresh_presence(&self) {
        let sessions: Vec<(String, u64)> = self
            .deps
            .dir
            .all_sessions_by_agent()
            .into_iter()
            .map(|(agent, e)| (agent, e.session_id))
            .collect();
        let coord = self.deps.coord.clone();
        actix::spawn(async move {
            if let Err(e) = coord
                .touch_presence(&sessions, PRESENCE_TTL.as_millis() as u64)
                .await
            {
                tracing::warn!(error = %e, "presence refresh failed");
            }
        });
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        if self.deps.coord.distributed() {
            // Clusters are run by whichever node holds their lease.
            self.claim_round(ctx);
            ctx.run_interval(CLAIM_EVERY, |act, ctx| act.claim_round(ctx));
            ctx.run_interval(PRESENCE_EVERY, |act, _| act.refresh_presence());
            return;
        }
        let store = self.deps.store.clone();
        // Block the mailbox until every stored cluster has its actor: `Ready`
        // answers only after this.
        ctx.wait(
            async move { store.all_clusters().await }
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(clusters) => {
                        tracing::info!(clusters = clusters.len(), "registry loaded clusters");
                        for c in clusters {
                            act.spawn(c, ctx);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "registry could not load clusters");
                        System::current().stop_with_code(1);
                    }
                }),
        );
    }
}

/// Answers once the registry has loaded the stored clusters.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Ready;

impl Handler<Ready> for Registry {
    type Result = usize;
    fn handle(&mut self, _: Ready, _: &mut Context<Self>) -> usize {
        self.deps.dir.cluster_count()
    }
}

/// Start the actor of a newly created cluster (here, or — Redis mode —
/// wherever its lease is taken). Answers whether it runs here.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Spawn(pub ClusterRecord);

impl Handler<Spawn> for Registry {
    type Result = bool;
    fn handle(&mut self, m: Spawn, ctx: &mut Context<Self>) -> Self::Result {
        let id = m.0.id.clone();
        if self.deps.coord.distributed() {
            // The creating node takes the lease if it can; the next claim round settles it otherwise.
            let coord = self.deps.coord.clone();
            let record = m.0;
            ctx.wait(
                async move {
                    coord
                        .claim(&id, LEASE_TTL.as_millis() as u64)
                        .await
                        .unwrap_or(false)
                }
                .into_actor(self)
                .map(move |owned, act, ctx| {
                    if owned && act.deps.dir.cluster(&record.id).is_none() {
                        act.spawn(record, ctx);
                    }
                }),
            );
            return false;
        }
        if self.deps.dir.cluster(&id).is_none() {
            self.spawn(m.0, ctx);
        }
        true
    }
}

impl Handler<ChildStopped> for Registry {
    type Result = ();
    fn handle(&mut self, m: ChildStopped, ctx: &mut Context<Self>) {
        // Only forget the handle if it belongs to a stopped actor.
        if let Some(h) = self.deps.dir.cluster(&m.cluster_id) {
            if h.connected() {
                return;
            }
        }
        self.deps.dir.remove_cluster(&m.cluster_id);
        if m.deleted {
            self.restarts.remove(&m.cluster_id);
            return;
        }
        if self.deps.coord.distributed() {
            return; // the next claim round restarts it here if this node still holds the lease
        }
        let entry = self
            .restarts
            .entry(m.cluster_id.clone())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() > Duration::from_secs(60) {
            entry.0 = 0; // it ran fine for a while: start the backoff over
        }
        entry.0 += 1;
        entry.1 = Instant::now();
        let n = entry.0;
        let delay = Duration::from_millis((50u64 << n.min(7)).min(5_000));
        tracing::warn!(cluster_id = %m.cluster_id, restarts = n, ?delay, "cluster actor stopped; restarting from the store");
        let id = m.cluster_id;
        ctx.run_later(delay, move |act, ctx| {
            let store = act.deps.store.clone();
            let id2 = id.clone();
            ctx.wait(
                async move { store.cluster(&id2).await }
                    .into_actor(act)
                    .map(move |res, act, ctx| match res {
                        Ok(Some(record)) => {
                            if act.deps.dir.cluster(&id).is_none() {
                                act.spawn(record, ctx);
                            }
                        }
                        Ok(None) => {
                            act.restarts.remove(&id);
                        }
                        Err(e) => {
                            tracing::error!(cluster_id = %id, error = %e, "reload failed; retrying");
                            ctx.notify(ChildStopped {
                                cluster_id: id.clone(),
                                deleted: false,
                            });
                        }
                    }),
            );
        });
    }
}

/// A session finished its handshake; replaces (and closes) an older session
/// of the same agent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionOpened {
    pub agent_id: String,
    pub entry: SessionEntry,
}

impl Handler<SessionOpened> for Registry {
    type Result = ();
    fn handle(&mut self, m: SessionOpened, _: &mut Context<Self>) -> Self::Result {
        if self.deps.coord.distributed() {
            let coord = self.deps.coord.clone();
            let entry = vec![(m.agent_id.clone(), m.entry.session_id)];
            actix::spawn(async move {
                let _ = coord
                    .touch_presence(&entry, PRESENCE_TTL.as_millis() as u64)
                    .await;
            });
        }
        if let Some(old) = self.deps.dir.put_session(&m.agent_id, m.entry) {
            let _ = old.shutdown.try_send(Shutdown {
                code: ecp_protocol::CloseCode::Superseded,
                reason: "replaced by a newer session".into(),
            });
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub agent_id: String,
    pub session_id: u64,
}

impl Handler<SessionClosed> for Registry {
    type Result = ();
    fn handle(&mut self, m: SessionClosed, _: &mut Context<Self>) {
        self.deps.dir.remove_session(&m.agent_id, m.session_id);
    }
}

/// Drain: tell every agent on this node to reconnect (elsewhere), `batch`
/// sessions at a time, one batch every `every`.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain {
    pub batch: usize,
    pub every: Duration,
    pub after_ms: u64,
}

impl Handler<Drain> for Registry {
    type Result = usize;
    fn handle(&mut self, m: Drain, ctx: &mut Context<Self>) -> usize {
        let sessions = self.deps.dir.all_sessions();
        let n = sessions.len();
        for (i, chunk) in sessions.chunks(m.batch.max(1)).enumerate() {
            let chunk: Vec<SessionEntry> = chunk.to_vec();
            let after_ms = m.after_ms;
            ctx.run_later(m.every * i as u32, move |_, _| {
                for s in chunk {
                    let _ = s.deliver.try_send(Deliver(ecp_protocol::Frame::Reconnect {
                        after_ms,
                        reason: "node draining".into(),
                    }));
                }
            });
        }
        n
    }
}

/// Drain, last step: stop this node's cluster actors and release their
/// leases so other nodes take them over at once (not after expiry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseAll;

impl Handler<ReleaseAll> for Registry {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: ReleaseAll, _: &mut Context<Self>) -> Self::Result {
        let ids = self.deps.dir.cluster_ids();
        for id in &ids {
            if let Some(h) = self.deps.dir.cluster(id) {
                let _ = h.control.try_send(Control::Relinquish);
            }
        }
        let coord = self.deps.coord.clone();
        Box::pin(
            async move {
                for id in ids {
                    let _ = coord.release(&id).await;
                }
            }
            .into_actor(self),
        )
    }
}
