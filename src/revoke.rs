//! "The authority of user U changed": a notice for everything long-lived
//! that acts for a user (the console's event stream, dashboard-proxy
//! streams), so that it re-checks the user's session and memberships instead
//! of trusting what it read when it started.
//!
//! Who publishes: every place that changes a user's authority — logout,
//! logout everywhere, password change, user deletion, org or project
//! membership set or removed — calls [`Revocations::notify`] *after* the
//! store change is committed. The notice reaches this node's subscribers at
//! once and, in Redis mode, every other node (channel `ecp:access`, see
//! `store::redis_coord`).
//!
//! Who listens: call [`Revocations::subscribe`] once per stream when it
//! starts, then await [`Subscription::recv`] next to the stream's other
//! work. On a notice that [`Notice::concerns`] your user, re-check (for a
//! session: `auth::user_of_session` with the session's hash; 401 means the
//! session ended). [`Notice::Everyone`] arrives when notices may have been
//! missed (the subscriber fell behind, or the link to Redis was re-made):
//! re-check then too. Notices are hints, never authority: a lost one is
//! caught by the periodic re-check a stream should also do.

use std::sync::Arc;
use tokio::sync::broadcast;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// This user's sessions, memberships or account changed.
    User(Arc<str>),
    /// Anything may have changed: re-check every user.
    Everyone,
}

impl Notice {
    /// Whether a stream acting for `user_id` must re-check.
    pub fn concerns(&self, user_id: &str) -> bool {
        match self {
            Notice::User(u) => &**u == user_id,
            Notice::Everyone => true,
        }
    }
}

/// Notices published on other nodes.
#[async_trait::async_trait]
pub trait Remote: Send + Sync {
    async fn publish_access_change(&self, user_id: &str);
}

pub struct Revocations {
    tx: broadcast::Sender<Notice>,
    remote: Option<Arc<dyn Remote>>,
}

/// One listener's notices (bounded; falling behind yields `Everyone`).
pub struct Subscription {
    rx: broadcast::Receiver<Notice>,
}

impl Subscription {
    /// The next notice. Waits forever when there is none, so it fits in a
    /// `select!` beside the stream's other work.
    pub async fn recv(&mut self) -> Notice {
        loop {
            match self.rx.recv().await {
                Ok(n) => return n,
                Err(broadcast::error::RecvError::Lagged(_)) => return Notice::Everyone,
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

impl Revocations {
    /// `remote`: how notices reach other nodes (Redis mode), else `None`.
    pub fn new(remote: Option<Arc<dyn Remote>>) -> Revocations {
        let (tx, _) = broadcast::channel(1024);
        Revocations { tx, remote }
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
        }
    }

    /// Tells this node's and every other node's listeners that `user_id`'s
    /// authority changed. Call it after the change is stored.
    pub async fn notify(&self, user_id: &str) {
        tracing::debug!(user_id, "access changed");
        self.inject(Notice::User(user_id.into()));
        if let Some(r) = &self.remote {
            r.publish_access_change(user_id).await;
        }
    }

    /// A notice from another node (or `Everyone` after a resubscribe).
    pub fn inject(&self, notice: Notice) {
        let _ = self.tx.send(notice); // no listener is fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_get_their_user_and_everyone_after_falling_behind() {
        let r = Revocations::new(None);
        let mut s = r.subscribe();
        r.notify("u1").await;
        let n = s.recv().await;
        assert!(n.concerns("u1") && !n.concerns("u2"));
        for _ in 0..2000 {
            r.inject(Notice::User("u2".into()));
        }
        assert_eq!(s.recv().await, Notice::Everyone, "lagged: re-check all");
        assert!(Notice::Everyone.concerns("anyone"));
    }
}
