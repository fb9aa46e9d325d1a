//! The embedded, on-disk back end (redb): one file under `store.data_dir`,
//! every call one ACID transaction, run on the blocking pool.

mod alerting;
mod blocks;

use super::TenancyStore;
use ecp_actors::model::*;
use ecp_actors::store::*;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::sync::Arc;

type Json = &'static [u8];
const USERS: TableDefinition<&str, Json> = TableDefinition::new("users");
const USER_NAMES: TableDefinition<&str, &str> = TableDefinition::new("user_names");
const ORGS: TableDefinition<&str, Json> = TableDefinition::new("orgs");
const PROJECTS: TableDefinition<&str, Json> = TableDefinition::new("projects");
const CLUSTERS: TableDefinition<&str, Json> = TableDefinition::new("clusters");
/// "{project_id}/{name}" → cluster id
const CLUSTER_NAMES: TableDefinition<&str, &str> = TableDefinition::new("cluster_names");
const TOMBSTONES: TableDefinition<&str, u64> = TableDefinition::new("cluster_tombstones");
/// "{cluster_id}/{revision:020}/{n:04}" → event
const EVENTS: TableDefinition<&str, Json> = TableDefinition::new("events");
const TOKENS: TableDefinition<&[u8], Json> = TableDefinition::new("tokens");
/// "{cluster_id}/{token hash hex}" → () for registration tokens
const CLUSTER_TOKENS: TableDefinition<&str, ()> = TableDefinition::new("cluster_tokens");
const AGENTS: TableDefinition<&str, Json> = TableDefinition::new("agents");
/// "{cluster_id}/{agent_id}" → ()
const CLUSTER_AGENTS: TableDefinition<&str, ()> = TableDefinition::new("cluster_agents");
const AGENT_CREDS: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_credentials");
const NODE_KEYS: TableDefinition<&str, &str> = TableDefinition::new("node_keys");
const NODE_IDS: TableDefinition<&str, &str> = TableDefinition::new("node_ids");
const AUDIT: TableDefinition<u64, Json> = TableDefinition::new("audit");
/// "{user}/{org}/{project}" → membership
const MEMBERSHIPS: TableDefinition<&str, Json> = TableDefinition::new("memberships");
/// "{user_id}/{token hash hex}" → () for console/API sessions
const USER_SESSIONS: TableDefinition<&str, ()> = TableDefinition::new("user_sessions");
/// (cluster_id, seq) → stored log line
const LOGS: TableDefinition<(&str, u64), Json> = TableDefinition::new("logs");
/// cluster_id → (next seq, lines kept)
const LOG_META: TableDefinition<&str, (u64, u64)> = TableDefinition::new("log_meta");
/// "{cluster_id}/{agent_id}/{file}" → the offset after the last stored line
const LOG_MARKS: TableDefinition<&str, u64> = TableDefinition::new("log_marks");
/// When each mark was last moved: (cluster, touch) → mark key, and back.
/// The least recently moved marks go beyond `LOG_MARKS_PER_CLUSTER`.
const LOG_MARK_ORDER: TableDefinition<(&str, u64), &str> = TableDefinition::new("log_mark_order");
const LOG_MARK_TOUCH: TableDefinition<&str, u64> = TableDefinition::new("log_mark_touch");

/// redb's page cache (its default is 1 GiB).
const CACHE_BYTES: usize = 64 * 1024 * 1024;

pub struct EmbeddedStore {
    db: Arc<Database>,
    caps: Caps,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn to_json<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: DeserializeOwned>(b: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn name_key(project_id: &str, name: &str) -> String {
    format!("{project_id}/{name}")
}

/// Keys starting with `prefix` in a `&str`-keyed table.
fn keys_with_prefix<V: redb::Value + 'static>(
    t: &impl ReadableTable<&'static str, V>,
    prefix: &str,
) -> StoreResult<Vec<String>> {
    let mut out = Vec::new();
    for item in t.range(prefix..).map_err(unavailable)? {
        let (k, _) = item.map_err(unavailable)?;
        let k = k.value();
        if !k.starts_with(prefix) {
            break;
        }
        out.push(k.to_string());
    }
    Ok(out)
}

/// Values (JSON) whose keys start with `prefix`, in key order.
fn values_with_prefix<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, Json>,
    prefix: &str,
) -> StoreResult<Vec<T>> {
    let mut out = Vec::new();
    for item in t.range(prefix..).map_err(unavailable)? {
        let (k, v) = item.map_err(unavailable)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push(from_json(v.value())?);
    }
    Ok(out)
}

fn get_json<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, Json>,
    key: &str,
) -> StoreResult<Option<T>> {
    match t.get(key).map_err(unavailable)? {
        Some(v) => Ok(Some(from_json(v.value())?)),
        None => Ok(None),
    }
}

fn all_json<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, Json>,
) -> StoreResult<Vec<T>> {
    let mut out = Vec::new();
    for item in t.iter().map_err(unavailable)? {
        let (_, v) = item.map_err(unavailable)?;
        out.push(from_json(v.value())?);
    }
    Ok(out)
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/ecp.redb`.
    pub fn open(dir: &Path) -> StoreResult<EmbeddedStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("ecp.redb");
        // A bounded page cache: memory stays flat as logs and history grow.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(unavailable)?;
        {
            tx.open_table(USERS).map_err(unavailable)?;
            tx.open_table(USER_NAMES).map_err(unavailable)?;
            tx.open_table(ORGS).map_err(unavailable)?;
            tx.open_table(PROJECTS).map_err(unavailable)?;
            tx.open_table(CLUSTERS).map_err(unavailable)?;
            tx.open_table(CLUSTER_NAMES).map_err(unavailable)?;
            tx.open_table(TOMBSTONES).map_err(unavailable)?;
            tx.open_table(EVENTS).map_err(unavailable)?;
            tx.open_table(TOKENS).map_err(unavailable)?;
            tx.open_table(CLUSTER_TOKENS).map_err(unavailable)?;
            tx.open_table(AGENTS).map_err(unavailable)?;
            tx.open_table(CLUSTER_AGENTS).map_err(unavailable)?;
            tx.open_table(AGENT_CREDS).map_err(unavailable)?;
            tx.open_table(NODE_KEYS).map_err(unavailable)?;
            tx.open_table(NODE_IDS).map_err(unavailable)?;
            tx.open_table(AUDIT).map_err(unavailable)?;
            tx.open_table(MEMBERSHIPS).map_err(unavailable)?;
            tx.open_table(USER_SESSIONS).map_err(unavailable)?;
            tx.open_table(LOGS).map_err(unavailable)?;
            tx.open_table(LOG_META).map_err(unavailable)?;
            tx.open_table(LOG_MARKS).map_err(unavailable)?;
            tx.open_table(LOG_MARK_ORDER).map_err(unavailable)?;
            tx.open_table(LOG_MARK_TOUCH).map_err(unavailable)?;
            alerting::create_tables(&tx)?;
        }
        tx.commit().map_err(unavailable)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            caps: Caps::default(),
        })
    }

    /// The same store keeping at most `caps` (tests: smaller than the
    /// defaults).
    pub fn with_caps(mut self, caps: Caps) -> EmbeddedStore {
        self.caps = caps;
        self
    }

    /// Runs `f` on the blocking pool: redb does synchronous file I/O.
    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| unavailable(format!("store task failed: {e}")))?
    }

    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.run(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            let out = f(&tx)?; // on error the transaction is dropped: aborted
            tx.commit().map_err(unavailable)?;
            Ok(out)
        })
        .await
    }

    /// Inserts one JSON record under `key`.
    async fn put_one<T: Serialize>(
        &self,
        table: TableDefinition<'static, &'static str, Json>,
        key: &str,
        value: &T,
    ) -> StoreResult<()> {
        let (key, bytes) = (key.to_string(), to_json(value)?);
        self.write(move |tx| {
            tx.open_table(table)
                .map_err(unavailable)?
                .insert(key.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    /// Reads one JSON record.
    async fn get_one<T: DeserializeOwned + Send + 'static>(
        &self,
        table: TableDefinition<'static, &'static str, Json>,
        key: &str,
    ) -> StoreResult<Option<T>> {
        let key = key.to_string();
        self.read(move |tx| get_json(&tx.open_table(table).map_err(unavailable)?, &key))
            .await
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.run(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            f(&tx)
        })
        .await
    }
}

/// Removes an agent with its bindings inside `tx`. Its credential is
/// removed, or with `keep_credential_until` kept until then (so a deleted
/// cluster's agent is told 410, not 401).
fn remove_agent_in(
    tx: &redb::WriteTransaction,
    id: &str,
    keep_credential_until: Option<Millis>,
) -> StoreResult<()> {
    let mut agents = tx.open_table(AGENTS).map_err(unavailable)?;
    let Some(agent): Option<AgentRecord> = get_json(&agents, id)? else {
        return Ok(());
    };
    agents.remove(id).map_err(unavailable)?;
    let mut creds = tx.open_table(AGENT_CREDS).map_err(unavailable)?;
    let old = creds
        .remove(id)
        .map_err(unavailable)?
        .map(|h| h.value().to_vec());
    if let Some(h) = old {
        let mut tokens = tx.open_table(TOKENS).map_err(unavailable)?;
        match keep_credential_until {
            None => {
                tokens.remove(h.as_slice()).map_err(unavailable)?;
            }
            Some(until) => {
                let rec: Option<TokenRecord> =
                    match tokens.get(h.as_slice()).map_err(unavailable)? {
                        Some(v) => Some(from_json(v.value())?),
                        None => None,
                    };
                if let Some(mut rec) = rec {
                    rec.expires_at = Some(until);
                    tokens
                        .insert(h.as_slice(), to_json(&rec)?.as_slice())
                        .map_err(unavailable)?;
                }
            }
        }
    }
    let mut keys = tx.open_table(NODE_KEYS).map_err(unavailable)?;
    let bound = keys
        .get(agent.node_key.as_str())
        .map_err(unavailable)?
        .map(|v| v.value() == id);
    if bound == Some(true) {
        keys.remove(agent.node_key.as_str()).map_err(unavailable)?;
    }
    let mut ids = tx.open_table(NODE_IDS).map_err(unavailable)?;
    let bound = ids
        .get(agent.node_id.as_str())
        .map_err(unavailable)?
        .map(|v| v.value() == id);
    if bound == Some(true) {
        ids.remove(agent.node_id.as_str()).map_err(unavailable)?;
    }
    tx.open_table(CLUSTER_AGENTS)
        .map_err(unavailable)?
        .remove(format!("{}/{}", agent.cluster_id, id).as_str())
        .map_err(unavailable)?;
    Ok(())
}

fn session_key(user_id: &str, hash: &[u8]) -> String {
    format!("{user_id}/{}", hex::encode(hash))
}

/// Ends a user's sessions inside `tx`, except `except`; how many tokens
/// were removed.
fn delete_sessions_in(
    tx: &redb::WriteTransaction,
    user_id: &str,
    except: Option<&TokenHash>,
) -> StoreResult<u64> {
    let mut idx = tx.open_table(USER_SESSIONS).map_err(unavailable)?;
    let mut tokens = tx.open_table(TOKENS).map_err(unavailable)?;
    let keep = except.map(hex::encode);
    let mut n = 0;
    for k in keys_with_prefix(&idx, &format!("{user_id}/"))? {
        let Some((_, h)) = k.split_once('/') else {
            continue;
        };
        if keep.as_deref() == Some(h) {
            continue;
        }
        if let Ok(hash) = hex::decode(h) {
            if tokens
                .remove(hash.as_slice())
                .map_err(unavailable)?
                .is_some()
            {
                n += 1;
            }
        }
        idx.remove(k.as_str()).map_err(unavailable)?;
    }
    Ok(n)
}

/// Appends history entries, keeping each cluster's newest
/// `HISTORY_PER_CLUSTER` (reports come from agents: a flapping one must
/// not grow the history for ever).
fn put_events(tx: &redb::WriteTransaction, events: &[ClusterEvent]) -> StoreResult<()> {
    let mut t = tx.open_table(EVENTS).map_err(unavailable)?;
    for (n, e) in events.iter().enumerate() {
        let key = format!("{}/{:020}/{:04}", e.cluster_id, e.revision, n);
        t.insert(key.as_str(), to_json(e)?.as_slice())
            .map_err(unavailable)?;
    }
    if let Some(e) = events.first() {
        let prefix = format!("{}/", e.cluster_id);
        let end = format!("{}0", e.cluster_id);
        let keys: Vec<String> = t
            .range(prefix.as_str()..end.as_str())
            .map_err(unavailable)?
            .filter_map(|r| r.ok())
            .map(|(k, _)| k.value().to_string())
            .collect();
        for k in keys
            .iter()
            .take(keys.len().saturating_sub(HISTORY_PER_CLUSTER))
        {
            t.remove(k.as_str()).map_err(unavailable)?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl TenancyStore for EmbeddedStore {
    async fn user_count(&self) -> StoreResult<u64> {
        self.read(|tx| {
            tx.open_table(USERS)
                .map_err(unavailable)?
                .len()
                .map_err(unavailable)
        })
        .await
    }

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        let user = user.clone();
        self.write(move |tx| {
            let mut names = tx.open_table(USER_NAMES).map_err(unavailable)?;
            if names
                .get(user.username.as_str())
                .map_err(unavailable)?
                .is_some()
            {
                return Err(StoreError::Exists);
            }
            names
                .insert(user.username.as_str(), user.id.as_str())
                .map_err(unavailable)?;
            tx.open_table(USERS)
                .map_err(unavailable)?
                .insert(user.id.as_str(), to_json(&user)?.as_slice())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        self.get_one(USERS, id).await
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let username = username.to_string();
        self.read(move |tx| {
            let names = tx.open_table(USER_NAMES).map_err(unavailable)?;
            let Some(id) = names.get(username.as_str()).map_err(unavailable)? else {
                return Ok(None);
            };
            get_json(&tx.open_table(USERS).map_err(unavailable)?, id.value())
        })
        .await
    }

    async fn put_org(&self, org: &OrgRecord) -> StoreResult<()> {
        self.put_one(ORGS, &org.id, org).await
    }

    async fn org(&self, id: &str) -> StoreResult<Option<OrgRecord>> {
        self.get_one(ORGS, id).await
    }

    async fn orgs(&self) -> StoreResult<Vec<OrgRecord>> {
        self.read(|tx| all_json(&tx.open_table(ORGS).map_err(unavailable)?))
            .await
    }

    async fn put_project(&self, project: &ProjectRecord) -> StoreResult<()> {
        self.put_one(PROJECTS, &project.id, project).await
    }

    async fn project(&self, id: &str) -> StoreResult<Option<ProjectRecord>> {
        self.get_one(PROJECTS, id).await
    }

    async fn projects(&self, org_id: &str) -> StoreResult<Vec<ProjectRecord>> {
        let org_id = org_id.to_string();
        self.read(move |tx| {
            let all: Vec<ProjectRecord> = all_json(&tx.open_table(PROJECTS).map_err(unavailable)?)?;
            Ok(all.into_iter().filter(|p| p.org_id == org_id).collect())
        })
        .await
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        except: Option<&TokenHash>,
    ) -> StoreResult<u64> {
        let (user_id, except) = (user_id.to_string(), except.copied());
        self.write(move |tx| delete_sessions_in(tx, &user_id, except.as_ref()))
            .await
    }

    async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        keep_session: Option<&TokenHash>,
    ) -> StoreResult<u64> {
        let (id, hash, keep) = (
            user_id.to_string(),
            password_hash.to_string(),
            keep_session.copied(),
        );
        self.write(move |tx| {
            let mut users = tx.open_table(USERS).map_err(unavailable)?;
            let Some(mut user): Option<UserRecord> = get_json(&users, &id)? else {
                return Err(StoreError::NotFound);
            };
            user.password_hash = hash;
            users
                .insert(id.as_str(), to_json(&user)?.as_slice())
                .map_err(unavailable)?;
            drop(users);
            delete_sessions_in(tx, &id, keep.as_ref())
        })
        .await
    }

    async fn delete_org(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |tx| {
            tx.open_table(ORGS)
                .map_err(unavailable)?
                .remove(id.as_str())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn delete_project(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |tx| {
            tx.open_table(PROJECTS)
                .map_err(unavailable)?
                .remove(id.as_str())
                .map_err(unavailable)?;
            // Its rules, channels, alerts and deliveries go with it.
            alerting::delete_project_in(tx, &id)
        })
        .await
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |tx| {
            let mut users = tx.open_table(USERS).map_err(unavailable)?;
            let user: Option<UserRecord> = get_json(&users, &id)?;
            users.remove(id.as_str()).map_err(unavailable)?;
            if let Some(u) = user {
                tx.open_table(USER_NAMES)
                    .map_err(unavailable)?
                    .remove(u.username.as_str())
                    .map_err(unavailable)?;
            }
            drop(users);
            let mut ms = tx.open_table(MEMBERSHIPS).map_err(unavailable)?;
            for k in keys_with_prefix(&ms, &format!("{id}/"))? {
                ms.remove(k.as_str()).map_err(unavailable)?;
            }
            drop(ms);
            delete_sessions_in(tx, &id, None)?;
            Ok(())
        })
        .await
    }

    async fn users(&self) -> StoreResult<Vec<UserRecord>> {
        self.read(|tx| all_json(&tx.open_table(USERS).map_err(unavailable)?))
            .await
    }

    async fn put_membership(&self, m: &Membership) -> StoreResult<()> {
        let key = format!("{}/{}/{}", m.user_id, m.org_id, m.project_id);
        self.put_one(MEMBERSHIPS, &key, m).await
    }

    async fn remove_membership(
        &self,
        user_id: &str,
        org_id: &str,
        project_id: &str,
    ) -> StoreResult<()> {
        let key = format!("{user_id}/{org_id}/{project_id}");
        // An org membership's key is the prefix of the user's project
        // memberships in that org: they go with it.
        let cascade = project_id.is_empty();
        self.write(move |tx| {
            let mut ms = tx.open_table(MEMBERSHIPS).map_err(unavailable)?;
            let keys = if cascade {
                keys_with_prefix(&ms, &key)?
            } else {
                vec![key]
            };
            for k in keys {
                ms.remove(k.as_str()).map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>> {
        let prefix = format!("{user_id}/");
        self.read(move |tx| {
            values_with_prefix(&tx.open_table(MEMBERSHIPS).map_err(unavailable)?, &prefix)
        })
        .await
    }
}

#[async_trait::async_trait]
impl ClusterStore for EmbeddedStore {
    async fn create_cluster(&self, c: &ClusterRecord, event: &ClusterEvent) -> StoreResult<()> {
        let c = c.clone();
        let event = event.clone();
        self.write(move |tx| {
            let mut names = tx.open_table(CLUSTER_NAMES).map_err(unavailable)?;
            let key = name_key(&c.project_id, &c.name);
            if names.get(key.as_str()).map_err(unavailable)?.is_some() {
                return Err(StoreError::NameTaken(c.name.clone()));
            }
            names
                .insert(key.as_str(), c.id.as_str())
                .map_err(unavailable)?;
            let mut clusters = tx.open_table(CLUSTERS).map_err(unavailable)?;
            if clusters.get(c.id.as_str()).map_err(unavailable)?.is_some() {
                return Err(StoreError::Exists);
            }
            clusters
                .insert(c.id.as_str(), to_json(&c)?.as_slice())
                .map_err(unavailable)?;
            put_events(tx, std::slice::from_ref(&event))
        })
        .await
    }

    async fn update_cluster(
        &self,
        c: &ClusterRecord,
        expected_revision: u64,
        events: &[ClusterEvent],
    ) -> StoreResult<()> {
        let c = c.clone();
        let events = events.to_vec();
        self.write(move |tx| {
            let mut clusters = tx.open_table(CLUSTERS).map_err(unavailable)?;
            let Some(old): Option<ClusterRecord> = get_json(&clusters, &c.id)? else {
                return Err(StoreError::NotFound);
            };
            if old.revision != expected_revision {
                return Err(StoreError::RevisionConflict {
                    expected: expected_revision,
                    found: old.revision,
                });
            }
            if old.name != c.name || old.project_id != c.project_id {
                let mut names = tx.open_table(CLUSTER_NAMES).map_err(unavailable)?;
                let key = name_key(&c.project_id, &c.name);
                if names.get(key.as_str()).map_err(unavailable)?.is_some() {
                    return Err(StoreError::NameTaken(c.name.clone()));
                }
                names
                    .remove(name_key(&old.project_id, &old.name).as_str())
                    .map_err(unavailable)?;
                names
                    .insert(key.as_str(), c.id.as_str())
                    .map_err(unavailable)?;
            }
            clusters
                .insert(c.id.as_str(), to_json(&c)?.as_slice())
                .map_err(unavailable)?;
            put_events(tx, &events)
        })
        .await
    }

    async fn cluster(&self, id: &str) -> StoreResult<Option<ClusterRecord>> {
        self.get_one(CLUSTERS, id).await
    }

    async fn clusters_in_project(&self, project_id: &str) -> StoreResult<Vec<ClusterRecord>> {
        let project_id = project_id.to_string();
        self.read(move |tx| {
            let names = tx.open_table(CLUSTER_NAMES).map_err(unavailable)?;
            let clusters = tx.open_table(CLUSTERS).map_err(unavailable)?;
            let mut out = Vec::new();
            for key in keys_with_prefix(&names, &format!("{project_id}/"))? {
                if let Some(id) = names.get(key.as_str()).map_err(unavailable)? {
                    if let Some(c) = get_json::<ClusterRecord>(&clusters, id.value())? {
                        out.push(c);
                    }
                }
            }
            out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            Ok(out)
        })
        .await
    }

    async fn all_clusters(&self) -> StoreResult<Vec<ClusterRecord>> {
        self.read(|tx| all_json(&tx.open_table(CLUSTERS).map_err(unavailable)?))
            .await
    }

    async fn remove_cluster(&self, id: &str) -> StoreResult<()> {
        let (id, caps) = (id.to_string(), self.caps);
        self.write(move |tx| {
            let mut clusters = tx.open_table(CLUSTERS).map_err(unavailable)?;
            if let Some(c) = get_json::<ClusterRecord>(&clusters, &id)? {
                clusters.remove(id.as_str()).map_err(unavailable)?;
                tx.open_table(CLUSTER_NAMES)
                    .map_err(unavailable)?
                    .remove(name_key(&c.project_id, &c.name).as_str())
                    .map_err(unavailable)?;
            }
            drop(clusters);
            let agent_keys = keys_with_prefix(
                &tx.open_table(CLUSTER_AGENTS).map_err(unavailable)?,
                &format!("{id}/"),
            )?;
            // Credentials and registration tokens stay until they expire (at
            // most 7 days) so that they answer 410 "cluster was deleted".
            let keep_until = now_ms() + 7 * 24 * 3600 * 1000;
            for k in agent_keys {
                if let Some((_, agent_id)) = k.split_once('/') {
                    remove_agent_in(tx, agent_id, Some(keep_until))?;
                }
            }
            tx.open_table(TOMBSTONES)
                .map_err(unavailable)?
                .insert(id.as_str(), now_ms())
                .map_err(unavailable)?;
            // The cluster's logs go with it.
            tx.open_table(LOGS)
                .map_err(unavailable)?
                .retain_in((id.as_str(), 0)..=(id.as_str(), u64::MAX), |_, _| false)
                .map_err(unavailable)?;
            tx.open_table(LOG_META)
                .map_err(unavailable)?
                .remove(id.as_str())
                .map_err(unavailable)?;
            let marks = keys_with_prefix(
                &tx.open_table(LOG_MARKS).map_err(unavailable)?,
                &format!("{id}/"),
            )?;
            let mut t = tx.open_table(LOG_MARKS).map_err(unavailable)?;
            let mut touch = tx.open_table(LOG_MARK_TOUCH).map_err(unavailable)?;
            for k in marks {
                t.remove(k.as_str()).map_err(unavailable)?;
                touch.remove(k.as_str()).map_err(unavailable)?;
            }
            tx.open_table(LOG_MARK_ORDER)
                .map_err(unavailable)?
                .retain_in((id.as_str(), 0)..=(id.as_str(), u64::MAX), |_, _| false)
                .map_err(unavailable)?;
            // Its series and alarms go; its firing alerts resolve.
            alerting::remove_cluster_in(tx, &id, now_ms(), caps)
        })
        .await
    }

    async fn cluster_deleted(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.read(move |tx| {
            Ok(tx
                .open_table(TOMBSTONES)
                .map_err(unavailable)?
                .get(id.as_str())
                .map_err(unavailable)?
                .is_some())
        })
        .await
    }

    async fn events(&self, cluster_id: &str) -> StoreResult<Vec<ClusterEvent>> {
        let prefix = format!("{cluster_id}/");
        self.read(move |tx| {
            values_with_prefix(&tx.open_table(EVENTS).map_err(unavailable)?, &prefix)
        })
        .await
    }

    async fn register_agent(
        &self,
        agent: &AgentRecord,
        credential: &TokenHash,
        credential_record: &TokenRecord,
    ) -> StoreResult<Registered> {
        let mut agent = agent.clone();
        let credential = *credential;
        let mut cred_rec = credential_record.clone();
        self.write(move |tx| {
            let agents = tx.open_table(AGENTS).map_err(unavailable)?;
            // Is this EMQX node already managed (by any cluster)?
            let by_key: Option<AgentRecord> = {
                let keys = tx.open_table(NODE_KEYS).map_err(unavailable)?;
                let id = keys
                    .get(agent.node_key.as_str())
                    .map_err(unavailable)?
                    .map(|v| v.value().to_string());
                match id {
                    Some(id) => get_json(&agents, &id)?,
                    None => None,
                }
            };
            // Same agent instance (retry) or same node re-registering?
            let by_node_id: Option<AgentRecord> = {
                let ids = tx.open_table(NODE_IDS).map_err(unavailable)?;
                let id = ids
                    .get(agent.node_id.as_str())
                    .map_err(unavailable)?
                    .map(|v| v.value().to_string());
                match id {
                    Some(id) => get_json(&agents, &id)?,
                    None => None,
                }
            };
            drop(agents);
            let previous =
                plan_registration(&agent.cluster_id, by_key.as_ref(), by_node_id.as_ref())?;
            let mut revoked = None;
            let reused = previous.is_some();
            if let Some(prev) = &previous {
                agent.id = prev.id.clone();
                agent.created_at = prev.created_at;
                let creds = tx.open_table(AGENT_CREDS).map_err(unavailable)?;
                revoked = creds
                    .get(prev.id.as_str())
                    .map_err(unavailable)?
                    .and_then(|h| {
                        let v = h.value();
                        <[u8; 32]>::try_from(v).ok()
                    });
                drop(creds);
                remove_agent_in(tx, &prev.id, None)?;
            }
            if let TokenKind::Agent { agent_id, .. } = &mut cred_rec.kind {
                agent_id.clone_from(&agent.id);
            }
            // The instance may have been bound to another cluster before: rebind.
            let stale_instance = tx
                .open_table(NODE_IDS)
                .map_err(unavailable)?
                .get(agent.node_id.as_str())
                .map_err(unavailable)?
                .map(|v| v.value().to_string());
            if let Some(stale) = stale_instance {
                remove_agent_in(tx, &stale, None)?;
            }
            tx.open_table(AGENTS)
                .map_err(unavailable)?
                .insert(agent.id.as_str(), to_json(&agent)?.as_slice())
                .map_err(unavailable)?;
            tx.open_table(CLUSTER_AGENTS)
                .map_err(unavailable)?
                .insert(format!("{}/{}", agent.cluster_id, agent.id).as_str(), ())
                .map_err(unavailable)?;
            tx.open_table(NODE_KEYS)
                .map_err(unavailable)?
                .insert(agent.node_key.as_str(), agent.id.as_str())
                .map_err(unavailable)?;
            tx.open_table(NODE_IDS)
                .map_err(unavailable)?
                .insert(agent.node_id.as_str(), agent.id.as_str())
                .map_err(unavailable)?;
            tx.open_table(AGENT_CREDS)
                .map_err(unavailable)?
                .insert(agent.id.as_str(), credential.as_slice())
                .map_err(unavailable)?;
            tx.open_table(TOKENS)
                .map_err(unavailable)?
                .insert(credential.as_slice(), to_json(&cred_rec)?.as_slice())
                .map_err(unavailable)?;
            Ok(Registered {
                agent,
                reused,
                revoked_credential: revoked,
            })
        })
        .await
    }

    async fn agent(&self, id: &str) -> StoreResult<Option<AgentRecord>> {
        self.get_one(AGENTS, id).await
    }

    async fn agents_of_cluster(&self, cluster_id: &str) -> StoreResult<Vec<AgentRecord>> {
        let prefix = format!("{cluster_id}/");
        self.read(move |tx| {
            let idx = tx.open_table(CLUSTER_AGENTS).map_err(unavailable)?;
            let agents = tx.open_table(AGENTS).map_err(unavailable)?;
            let mut out = Vec::new();
            for k in keys_with_prefix(&idx, &prefix)? {
                if let Some((_, id)) = k.split_once('/') {
                    if let Some(a) = get_json::<AgentRecord>(&agents, id)? {
                        out.push(a);
                    }
                }
            }
            out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            Ok(out)
        })
        .await
    }

    async fn update_agent(&self, agent: &AgentRecord) -> StoreResult<()> {
        let agent = agent.clone();
        self.write(move |tx| {
            let mut t = tx.open_table(AGENTS).map_err(unavailable)?;
            // Only update an agent that still exists (no resurrection).
            if t.get(agent.id.as_str()).map_err(unavailable)?.is_none() {
                return Err(StoreError::NotFound);
            }
            t.insert(agent.id.as_str(), to_json(&agent)?.as_slice())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn remove_agent(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |tx| remove_agent_in(tx, &id, None)).await
    }
}

#[async_trait::async_trait]
impl TokenStore for EmbeddedStore {
    async fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> StoreResult<()> {
        let hash = *hash;
        let token = token.clone();
        self.write(move |tx| {
            tx.open_table(TOKENS)
                .map_err(unavailable)?
                .insert(hash.as_slice(), to_json(&token)?.as_slice())
                .map_err(unavailable)?;
            if let TokenKind::Registration { cluster_id } = &token.kind {
                tx.open_table(CLUSTER_TOKENS)
                    .map_err(unavailable)?
                    .insert(format!("{cluster_id}/{}", hex::encode(hash)).as_str(), ())
                    .map_err(unavailable)?;
            }
            if let TokenKind::Session { user_id } = &token.kind {
                tx.open_table(USER_SESSIONS)
                    .map_err(unavailable)?
                    .insert(session_key(user_id, &hash).as_str(), ())
                    .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn token(&self, hash: &TokenHash, now: Millis) -> StoreResult<Option<TokenRecord>> {
        let hash = *hash;
        self.read(move |tx| {
            let t = tx.open_table(TOKENS).map_err(unavailable)?;
            let rec: Option<TokenRecord> = match t.get(hash.as_slice()).map_err(unavailable)? {
                Some(v) => Some(from_json(v.value())?),
                None => None,
            };
            Ok(rec.filter(|r| !r.expired(now)))
        })
        .await
    }

    async fn delete_token(&self, hash: &TokenHash) -> StoreResult<()> {
        let hash = *hash;
        self.write(move |tx| {
            let mut t = tx.open_table(TOKENS).map_err(unavailable)?;
            let old: Option<TokenRecord> = match t.remove(hash.as_slice()).map_err(unavailable)? {
                Some(v) => Some(from_json(v.value())?),
                None => None,
            };
            match old.map(|r| r.kind) {
                Some(TokenKind::Registration { cluster_id }) => {
                    tx.open_table(CLUSTER_TOKENS)
                        .map_err(unavailable)?
                        .remove(format!("{cluster_id}/{}", hex::encode(hash)).as_str())
                        .map_err(unavailable)?;
                }
                Some(TokenKind::Session { user_id }) => {
                    tx.open_table(USER_SESSIONS)
                        .map_err(unavailable)?
                        .remove(session_key(&user_id, &hash).as_str())
                        .map_err(unavailable)?;
                }
                _ => {}
            }
            Ok(())
        })
        .await
    }

    async fn revoke_registration_tokens(&self, cluster_id: &str) -> StoreResult<u64> {
        let prefix = format!("{cluster_id}/");
        self.write(move |tx| {
            let mut ct = tx.open_table(CLUSTER_TOKENS).map_err(unavailable)?;
            let mut tokens = tx.open_table(TOKENS).map_err(unavailable)?;
            let keys = keys_with_prefix(&ct, &prefix)?;
            for k in &keys {
                if let Some(h) = k.split_once('/').and_then(|(_, h)| hex::decode(h).ok()) {
                    tokens.remove(h.as_slice()).map_err(unavailable)?;
                }
                ct.remove(k.as_str()).map_err(unavailable)?;
            }
            Ok(keys.len() as u64)
        })
        .await
    }

    async fn purge_expired_tokens(&self, now: Millis) -> StoreResult<u64> {
        self.write(move |tx| {
            let mut t = tx.open_table(TOKENS).map_err(unavailable)?;
            let mut expired = Vec::new();
            for item in t.iter().map_err(unavailable)? {
                let (k, v) = item.map_err(unavailable)?;
                let rec: TokenRecord = from_json(v.value())?;
                if rec.expired(now) {
                    expired.push((k.value().to_vec(), rec));
                }
            }
            let mut ct = tx.open_table(CLUSTER_TOKENS).map_err(unavailable)?;
            let mut us = tx.open_table(USER_SESSIONS).map_err(unavailable)?;
            for (k, rec) in &expired {
                t.remove(k.as_slice()).map_err(unavailable)?;
                match &rec.kind {
                    TokenKind::Registration { cluster_id } => {
                        ct.remove(format!("{cluster_id}/{}", hex::encode(k)).as_str())
                            .map_err(unavailable)?;
                    }
                    TokenKind::Session { user_id } => {
                        us.remove(session_key(user_id, k).as_str())
                            .map_err(unavailable)?;
                    }
                    _ => {}
                }
            }
            Ok(expired.len() as u64)
        })
        .await
    }

    async fn adopt_agent_credential(
        &self,
        agent_id: &str,
        credential: &TokenHash,
    ) -> StoreResult<()> {
        let (id, hash) = (agent_id.to_string(), *credential);
        self.write(move |tx| {
            if tx
                .open_table(AGENTS)
                .map_err(unavailable)?
                .get(id.as_str())
                .map_err(unavailable)?
                .is_none()
            {
                return Err(StoreError::NotFound);
            }
            let mut tokens = tx.open_table(TOKENS).map_err(unavailable)?;
            let rec: Option<TokenRecord> = match tokens.get(hash.as_slice()).map_err(unavailable)? {
                Some(v) => Some(from_json(v.value())?),
                None => None,
            };
            let mut rec = match rec {
                Some(r) if r.is_credential_of(&id) => r,
                _ => return Err(StoreError::NotFound),
            };
            rec.expires_at = None;
            tokens
                .insert(hash.as_slice(), to_json(&rec)?.as_slice())
                .map_err(unavailable)?;
            let old = tx
                .open_table(AGENT_CREDS)
                .map_err(unavailable)?
                .insert(id.as_str(), hash.as_slice())
                .map_err(unavailable)?
                .map(|v| v.value().to_vec());
            if let Some(old) = old.filter(|o| o.as_slice() != hash.as_slice()) {
                tokens.remove(old.as_slice()).map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait::async_trait]
impl LogStore for EmbeddedStore {
    async fn append_logs(
        &self,
        cluster_id: &str,
        agent_id: &str,
        node: &str,
        lines: &[ecp_protocol::LogLine],
        cap: u64,
    ) -> StoreResult<usize> {
        let (cid, agent, node, lines) = (
            cluster_id.to_string(),
            agent_id.to_string(),
            node.to_string(),
            lines.to_vec(),
        );
        self.write(move |tx| {
            let mut meta = tx.open_table(LOG_META).map_err(unavailable)?;
            let (mut next, mut count) = meta
                .get(cid.as_str())
                .map_err(unavailable)?
                .map(|v| v.value())
                .unwrap_or((1, 0));
            let mut marks = tx.open_table(LOG_MARKS).map_err(unavailable)?;
            let mut logs = tx.open_table(LOGS).map_err(unavailable)?;
            let mark_key = |file: u64| format!("{cid}/{agent}/{file}");
            // The batch's marks, read once; the plan says what is new.
            let mut read = Vec::new();
            for file in batch_files(&lines) {
                let found = marks.get(mark_key(file).as_str()).map_err(unavailable)?;
                read.push((file, found.map(|v| v.value())));
            }
            let plan = plan_append(&lines, |file| {
                read.iter().find(|(f, _)| *f == file).and_then(|(_, m)| *m)
            });
            for &i in &plan.keep {
                let Some(l) = lines.get(i) else { continue };
                let rec = StoredLog {
                    seq: next,
                    time_us: l.time_us,
                    level: l.level,
                    node: node.clone(),
                    message: l.message.clone(),
                    fields: l.fields.clone(),
                    raw: l.raw.clone(),
                };
                logs.insert((cid.as_str(), next), to_json(&rec)?.as_slice())
                    .map_err(unavailable)?;
                next += 1;
                count += 1;
            }
            let excess = lines_over_cap(count, cap);
            if excess > 0 {
                let mut old = Vec::new();
                for item in logs
                    .range((cid.as_str(), 0)..=(cid.as_str(), u64::MAX))
                    .map_err(unavailable)?
                    .take(excess as usize)
                {
                    let (k, _) = item.map_err(unavailable)?;
                    old.push(k.value().1);
                }
                for seq in old {
                    logs.remove((cid.as_str(), seq)).map_err(unavailable)?;
                    count -= 1;
                }
            }
            // Marks, most recently moved last; beyond the cap the least
            // recently moved go (a file that long untouched was reused).
            let mut order = tx.open_table(LOG_MARK_ORDER).map_err(unavailable)?;
            let mut touch = tx.open_table(LOG_MARK_TOUCH).map_err(unavailable)?;
            let newest = match order
                .range((cid.as_str(), 0)..=(cid.as_str(), u64::MAX))
                .map_err(unavailable)?
                .next_back()
            {
                Some(item) => Some(item.map_err(unavailable)?.0.value().1),
                None => None,
            };
            for (i, m) in plan.marks.iter().enumerate() {
                let key = mark_key(m.file);
                marks.insert(key.as_str(), m.now).map_err(unavailable)?;
                let t = mark_touch(newest, i);
                if let Some(old) = touch.insert(key.as_str(), t).map_err(unavailable)? {
                    order
                        .remove((cid.as_str(), old.value()))
                        .map_err(unavailable)?;
                }
                order
                    .insert((cid.as_str(), t), key.as_str())
                    .map_err(unavailable)?;
            }
            if plan.adds_marks() {
                let all: Vec<(u64, String)> = order
                    .range((cid.as_str(), 0)..=(cid.as_str(), u64::MAX))
                    .map_err(unavailable)?
                    .filter_map(|e| e.ok())
                    .map(|(k, v)| (k.value().1, v.value().to_string()))
                    .collect();
                let excess = marks_over_cap(all.len());
                for (t, key) in all.into_iter().take(excess) {
                    order.remove((cid.as_str(), t)).map_err(unavailable)?;
                    touch.remove(key.as_str()).map_err(unavailable)?;
                    marks.remove(key.as_str()).map_err(unavailable)?;
                }
            }
            meta.insert(cid.as_str(), (next, count))
                .map_err(unavailable)?;
            Ok(plan.keep.len())
        })
        .await
    }

    async fn logs(&self, cluster_id: &str, q: &LogQuery) -> StoreResult<LogPage> {
        let (cid, q) = (cluster_id.to_string(), q.clone());
        self.read(move |tx| {
            let t = tx.open_table(LOGS).map_err(unavailable)?;
            let decode = |item: Result<
                (
                    redb::AccessGuard<'_, (&str, u64)>,
                    redb::AccessGuard<'_, Json>,
                ),
                redb::StorageError,
            >| {
                item.ok()
                    .and_then(|(_, v)| from_json::<StoredLog>(v.value()).ok())
            };
            let page = if let Some(after) = q.after {
                let start = after.saturating_add(1);
                let it = t
                    .range((cid.as_str(), start)..=(cid.as_str(), u64::MAX))
                    .map_err(unavailable)?;
                page_logs(it.filter_map(decode), &q)
            } else {
                let end = q.before.unwrap_or(u64::MAX);
                let it = t
                    .range((cid.as_str(), 0)..(cid.as_str(), end))
                    .map_err(unavailable)?;
                page_logs(it.rev().filter_map(decode), &q)
            };
            Ok(page)
        })
        .await
    }
}

#[async_trait::async_trait]
impl AuditStore for EmbeddedStore {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        let r = record.clone();
        self.write(move |tx| {
            tx.open_table(AUDIT)
                .map_err(unavailable)?
                .insert(r.id, to_json(&r)?.as_slice())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn purge_audit(&self, before: Millis, max_records: u64) -> StoreResult<u64> {
        self.write(move |tx| {
            let mut t = tx.open_table(AUDIT).map_err(unavailable)?;
            let was = t.len().map_err(unavailable)?;
            // Ids are time-ordered: `at` * 1000 + a sequence below 1000.
            t.retain_in(..before.saturating_mul(1000), |_, _| false)
                .map_err(unavailable)?;
            let len = t.len().map_err(unavailable)?;
            if max_records > 0 && len > max_records {
                let mut oldest = Vec::new();
                for item in t
                    .iter()
                    .map_err(unavailable)?
                    .take((len - max_records) as usize)
                {
                    let (k, _) = item.map_err(unavailable)?;
                    oldest.push(k.value());
                }
                for k in oldest {
                    t.remove(k).map_err(unavailable)?;
                }
            }
            Ok(was - t.len().map_err(unavailable)?)
        })
        .await
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<(Vec<AuditRecord>, usize)> {
        let q = query.clone();
        self.read(move |tx| {
            let t = tx.open_table(AUDIT).map_err(unavailable)?;
            let mut all = Vec::new();
            for item in t.iter().map_err(unavailable)?.rev() {
                let (_, v) = item.map_err(unavailable)?;
                all.push(from_json::<AuditRecord>(v.value())?);
            }
            Ok(page_audit(all.into_iter(), &q))
        })
        .await
    }
}
