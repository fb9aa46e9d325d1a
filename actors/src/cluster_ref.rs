//! [`ClusterRef::ask`]: the one way anything talks to a cluster — an HTTP
//! handler, an agent's session, a test — whichever node runs it.
//!
//! The cluster's actor runs on the node holding its lease (one node in
//! embedded mode). When that is this node, the input goes to the actor's
//! mailbox. Otherwise it goes to the owner through its node channel as
//! [`NodeMsg::Ask`] with a request id, and the owner answers with
//! [`NodeMsg::Reply`] on this node's channel: the caller gets the owner's
//! own answer (a rename clash is a 409 at once), never a guess from the
//! change bus. There is a deadline. When no node runs the cluster (a lease
//! moving, an actor restarting) the answer is [`ClusterError::Moving`],
//! after one retry once the lease has moved.
//!
//! [`spawn_inbox`] runs the other side: messages from other nodes go
//! through one bounded queue, and at most [`INBOX_CONCURRENCY`] asks are
//! served at once.

use crate::msg::*;
use crate::Deps;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

/// How long an ask may take in all, retry included.
pub const ASK_DEADLINE: Duration = Duration::from_secs(8);
/// How long the first attempt may take before the owner is looked up again.
const FIRST_ATTEMPT: Duration = Duration::from_secs(4);
/// Asks to other nodes waiting for their answer, at most.
pub const MAX_PENDING: usize = 10_000;
/// Messages from other nodes queued on this one, at most.
pub const INBOX_QUEUE: usize = 4_096;
/// Asks from other nodes served at once.
pub const INBOX_CONCURRENCY: usize = 256;

type Answer = Result<ClusterReply, ClusterError>;

/// Asks sent to other nodes, waiting for their `Reply`.
#[derive(Default)]
pub struct Replies {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Replies {
    fn register(&self) -> Result<(u64, oneshot::Receiver<Answer>), ClusterError> {
        let mut pending = lock(&self.pending);
        if pending.len() >= MAX_PENDING {
            return Err(ClusterError::Busy);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        pending.insert(id, tx);
        Ok((id, rx))
    }

    fn cancel(&self, id: u64) {
        lock(&self.pending).remove(&id);
    }

    /// An owner's answer arrived.
    pub fn complete(&self, id: u64, answer: Answer) {
        if let Some(tx) = lock(&self.pending).remove(&id) {
            let _ = tx.send(answer);
        }
    }

    pub fn waiting(&self) -> usize {
        lock(&self.pending).len()
    }
}

/// A handle on one cluster, wherever it runs.
pub struct ClusterRef {
    deps: Arc<Deps>,
    id: String,
}

impl Deps {
    pub fn cluster(self: &Arc<Self>, id: &str) -> ClusterRef {
        ClusterRef {
            deps: self.clone(),
            id: id.to_string(),
        }
    }
}

impl ClusterRef {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Gives the cluster an input and waits for its answer.
    pub async fn ask(&self, input: ClusterInput) -> Answer {
        self.ask_at(input).await.map(|(reply, _)| reply)
    }

    /// The same, and which node answered (a session re-introduces itself
    /// to a new owner).
    pub async fn ask_at(
        &self,
        input: ClusterInput,
    ) -> Result<(ClusterReply, String), ClusterError> {
        let deadline = Instant::now() + ASK_DEADLINE;
        let first = self
            .attempt(&input, (Instant::now() + FIRST_ATTEMPT).min(deadline))
            .await;
        let tried = match first {
            Err(Attempt::Retry { owner, error }) => (owner, error),
            Err(Attempt::Final(e)) => return Err(e),
            Ok(answer) => return Ok(answer),
        };
        // Once the lease has moved (or the actor is back), one more try.
        if !self.moved(tried.0.as_deref(), deadline).await {
            return Err(tried.1);
        }
        match self.attempt(&input, deadline).await {
            Ok(answer) => Ok(answer),
            Err(Attempt::Retry { error, .. }) | Err(Attempt::Final(error)) => Err(error),
        }
    }

    async fn attempt(
        &self,
        input: &ClusterInput,
        until: Instant,
    ) -> Result<(ClusterReply, String), Attempt> {
        let d = &self.deps;
        let me = d.coord.node_id().to_string();
        if let Some(h) = d.dir.cluster(&self.id) {
            return match tokio::time::timeout_at(until, h.ask.send(Ask(input.clone()))).await {
                Err(_) => Err(Attempt::retry(Some(me), ClusterError::Timeout)),
                Ok(Err(_)) => Err(Attempt::retry(Some(me), ClusterError::Moving)),
                Ok(Ok(Err(e @ ClusterError::Moving))) => Err(Attempt::retry(Some(me), e)),
                Ok(Ok(answer)) => answer.map(|r| (r, me)).map_err(Attempt::Final),
            };
        }
        if !d.coord.distributed() {
            // The registry is restarting the actor.
            return Err(Attempt::retry(None, ClusterError::Moving));
        }
        let owner = match d.coord.owner(&self.id).await {
            Ok(Some(o)) if o != me => o,
            // No owner, or it is us and the actor is not up yet.
            Ok(_) => return Err(Attempt::retry(None, ClusterError::Moving)),
            Err(e) => return Err(Attempt::Final(ClusterError::Store(e.to_string()))),
        };
        let (request_id, rx) = d.replies.register().map_err(Attempt::Final)?;
        let msg = NodeMsg::Ask {
            request_id,
            reply_to: me,
            cluster_id: self.id.clone(),
            input: input.clone(),
        };
        match d.coord.send(&owner, &msg).await {
            Ok(true) => {}
            // Nobody listens on the owner's channel: it is gone.
            Ok(false) => {
                d.replies.cancel(request_id);
                return Err(Attempt::retry(Some(owner), ClusterError::Moving));
            }
            Err(e) => {
                d.replies.cancel(request_id);
                return Err(Attempt::Final(ClusterError::Store(e.to_string())));
            }
        }
        match tokio::time::timeout_at(until, rx).await {
            Err(_) => {
                d.replies.cancel(request_id);
                Err(Attempt::retry(Some(owner), ClusterError::Timeout))
            }
            Ok(Err(_)) => Err(Attempt::retry(Some(owner), ClusterError::Moving)),
            Ok(Ok(Err(e @ ClusterError::Moving))) => Err(Attempt::retry(Some(owner), e)),
            Ok(Ok(answer)) => answer.map(|r| (r, owner)).map_err(Attempt::Final),
        }
    }

    /// Waits until someone other than `tried` runs the cluster (or the
    /// actor is up here again); false at the deadline.
    async fn moved(&self, tried: Option<&str>, deadline: Instant) -> bool {
        let d = &self.deps;
        loop {
            if d.dir.cluster(&self.id).is_some_and(|h| h.ask.connected()) {
                return true;
            }
            if d.coord.distributed() {
                if let Ok(Some(owner)) = d.coord.owner(&self.id).await {
                    if Some(owner.as_str()) != tried && owner != d.coord.node_id() {
                        return true;
                    }
                }
            }
            if Instant::now() + Duration::from_millis(100) >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

enum Attempt {
    /// Try again once the lease moved away from `owner`.
    Retry {
        owner: Option<String>,
        error: ClusterError,
    },
    Final(ClusterError),
}

impl Attempt {
    fn retry(owner: Option<String>, error: ClusterError) -> Attempt {
        Attempt::Retry { owner, error }
    }
}

/// Starts the worker that serves messages from other nodes; returns the
/// queue's sender (full: the message is dropped, its sender times out and
/// retries).
pub fn spawn_inbox(deps: Arc<Deps>) -> mpsc::Sender<NodeMsg> {
    let (tx, mut rx) = mpsc::channel::<NodeMsg>(INBOX_QUEUE);
    let permits = Arc::new(Semaphore::new(INBOX_CONCURRENCY));
    actix::spawn(async move {
        while let Some(msg) = rx.recv().await {
            match msg {
                NodeMsg::Reply { request_id, result } => deps.replies.complete(request_id, result),
                NodeMsg::Deliver { agent_id, frame } => {
                    if let Some(s) = deps.dir.session(&agent_id) {
                        let _ = s.deliver.try_send(Deliver(frame));
                    }
                }
                NodeMsg::Shutdown {
                    agent_id,
                    code,
                    reason,
                } => {
                    if let Some(s) = deps.dir.session(&agent_id) {
                        let _ = s.shutdown.try_send(Shutdown { code, reason });
                    }
                }
                NodeMsg::Ask {
                    request_id,
                    reply_to,
                    cluster_id,
                    input,
                } => {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    let deps = deps.clone();
                    actix::spawn(async move {
                        let result = match deps.dir.cluster(&cluster_id) {
                            Some(h) => h
                                .ask
                                .send(Ask(input))
                                .await
                                .unwrap_or(Err(ClusterError::Moving)),
                            // Not ours (any more): the asker looks again.
                            None => Err(ClusterError::Moving),
                        };
                        let reply = NodeMsg::Reply { request_id, result };
                        if let Err(e) = deps.coord.send(&reply_to, &reply).await {
                            tracing::warn!(error = %e, "reply to another node not sent");
                        }
                        drop(permit);
                    });
                }
            }
        }
    });
    tx
}
