//! Shared, read-mostly indexes of live actors. The registry is the only
//! writer; HTTP handlers and actors read them without a mailbox round trip.

use crate::msg::{Ask, Control, Deliver, Shutdown};
use actix::Recipient;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A cluster actor running on this node.
#[derive(Clone)]
pub struct ClusterHandle {
    /// Its inputs (use `Deps::cluster(id).ask`, which also reaches other
    /// nodes' clusters).
    pub ask: Recipient<Ask>,
    pub control: Recipient<Control>,
}

impl ClusterHandle {
    pub fn connected(&self) -> bool {
        self.ask.connected()
    }
}

#[derive(Clone)]
pub struct SessionEntry {
    pub session_id: u64,
    pub cluster_id: String,
    pub deliver: Recipient<Deliver>,
    pub shutdown: Recipient<Shutdown>,
    /// Unix ms of the last frame or pong; updated by the session itself.
    pub last_seen: Arc<AtomicU64>,
    /// The session's dashboard tunnel.
    pub tunnel: Arc<crate::tunnel::Tunnel>,
    /// The agent sends metric samples (protocol 3 or later).
    pub metrics: bool,
}

impl SessionEntry {
    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Directory {
    clusters: RwLock<HashMap<String, ClusterHandle>>,
    sessions: RwLock<HashMap<String, SessionEntry>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Directory {
    pub fn cluster(&self, id: &str) -> Option<ClusterHandle> {
        read(&self.clusters).get(id).cloned()
    }
    pub fn cluster_ids(&self) -> Vec<String> {
        read(&self.clusters).keys().cloned().collect()
    }

    pub fn cluster_count(&self) -> usize {
        read(&self.clusters).len()
    }
    pub(crate) fn set_cluster(&self, id: &str, handle: ClusterHandle) {
        write(&self.clusters).insert(id.to_string(), handle);
    }
    pub(crate) fn remove_cluster(&self, id: &str) {
        write(&self.clusters).remove(id);
    }

    pub fn session(&self, agent_id: &str) -> Option<SessionEntry> {
        read(&self.sessions).get(agent_id).cloned()
    }
    pub fn session_count(&self) -> usize {
        read(&self.sessions).len()
    }
    pub fn all_sessions_by_agent(&self) -> Vec<(String, SessionEntry)> {
        read(&self.sessions)
            .iter()
            .map(|(a, e)| (a.clone(), e.clone()))
            .collect()
    }

    pub fn all_sessions(&self) -> Vec<SessionEntry> {
        read(&self.sessions).values().cloned().collect()
    }

    pub fn sessions_of(&self, cluster_id: &str) -> Vec<(String, SessionEntry)> {
        read(&self.sessions)
            .iter()
            .filter(|(_, e)| e.cluster_id == cluster_id)
            .map(|(a, e)| (a.clone(), e.clone()))
            .collect()
    }
    /// Installs a session, returning the one it replaces.
    pub(crate) fn put_session(&self, agent_id: &str, entry: SessionEntry) -> Option<SessionEntry> {
        write(&self.sessions).insert(agent_id.to_string(), entry)
    }
    /// Removes the agent's session only if it is still `session_id`.
    pub(crate) fn remove_session(&self, agent_id: &str, session_id: u64) -> bool {
        let mut map = write(&self.sessions);
        if map.get(agent_id).map(|e| e.session_id) == Some(session_id) {
            map.remove(agent_id);
            true
        } else {
            false
        }
    }
}
