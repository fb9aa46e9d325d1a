//! The Redis back end: every record as JSON under `ecp:*` keys; every
//! multi-key change is one Lua script (atomic on the server), so a failed
//! call leaves nothing half-written. Tokens are keys named by their hash,
//! expiring with Redis' own TTL.
//!
//! Lua only reads fields of the JSON it is given (`cjson.decode`); it never
//! re-encodes records (cjson would turn `[]` into `{}`).

mod alerting;

use super::TenancyStore;
use ecp_actors::model::*;
use ecp_actors::store::*;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{de::DeserializeOwned, Serialize};

const P: &str = "ecp:";

pub struct RedisStore {
    conn: ConnectionManager,
    caps: Caps,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Shared by the scripts that remove agents. `keep_ms` > 0 keeps the
/// credential until then (a deleted cluster's agents then get 410).
const REMOVE_AGENT_FN: &str = r#"
local function remove_agent(id, keep_ms)
  local cur = redis.call('GET', 'ecp:agent:'..id)
  if not cur then return end
  local a = cjson.decode(cur)
  redis.call('DEL', 'ecp:agent:'..id)
  local cred = redis.call('GET', 'ecp:agent_cred:'..id)
  redis.call('DEL', 'ecp:agent_cred:'..id)
  if cred then
    if keep_ms > 0 then redis.call('PEXPIRE', 'ecp:token:'..cred, keep_ms)
    else redis.call('DEL', 'ecp:token:'..cred) end
  end
  if redis.call('GET', 'ecp:node_key:'..a.nodeKey) == id then redis.call('DEL', 'ecp:node_key:'..a.nodeKey) end
  if redis.call('GET', 'ecp:node_id:'..a.nodeId) == id then redis.call('DEL', 'ecp:node_id:'..a.nodeId) end
  redis.call('SREM', 'ecp:cluster_agents:'..a.clusterId, id)
end
"#;

const CREATE_USER: &str = r#"
if redis.call('SET', 'ecp:user_name:'..ARGV[2], ARGV[1], 'NX') == false then return 'EXISTS' end
redis.call('SET', 'ecp:user:'..ARGV[1], ARGV[3])
redis.call('SADD', 'ecp:users', ARGV[1])
return 'OK'
"#;

const CREATE_CLUSTER: &str = r#"
local id, project, name = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', 'ecp:cluster:'..id) == 1 then return 'EXISTS' end
if redis.call('SET', 'ecp:cluster_name:'..project..':'..name, id, 'NX') == false then return 'NAME_TAKEN' end
redis.call('SET', 'ecp:cluster:'..id, ARGV[4])
redis.call('SET', 'ecp:cluster_rev:'..id, ARGV[5])
redis.call('SADD', 'ecp:clusters', id)
redis.call('SADD', 'ecp:project_clusters:'..project, id)
redis.call('RPUSH', 'ecp:events:'..id, ARGV[6])
redis.call('LTRIM', 'ecp:events:'..id, -1000, -1)
return 'OK'
"#;

const UPDATE_CLUSTER: &str = r#"
local id = ARGV[1]
local cur = redis.call('GET', 'ecp:cluster:'..id)
if not cur then return 'NOT_FOUND' end
local rev = redis.call('GET', 'ecp:cluster_rev:'..id) or '0'
if rev ~= ARGV[2] then return 'CONFLICT:'..rev end
local old = cjson.decode(cur)
local project, name = ARGV[5], ARGV[6]
if old.name ~= name or old.projectId ~= project then
  local nk = 'ecp:cluster_name:'..project..':'..name
  if redis.call('EXISTS', nk) == 1 then return 'NAME_TAKEN' end
  redis.call('DEL', 'ecp:cluster_name:'..old.projectId..':'..old.name)
  redis.call('SET', nk, id)
  if old.projectId ~= project then
    redis.call('SREM', 'ecp:project_clusters:'..old.projectId, id)
    redis.call('SADD', 'ecp:project_clusters:'..project, id)
  end
end
redis.call('SET', 'ecp:cluster:'..id, ARGV[3])
redis.call('SET', 'ecp:cluster_rev:'..id, ARGV[4])
for i = 7, #ARGV do redis.call('RPUSH', 'ecp:events:'..id, ARGV[i]) end
-- HISTORY_PER_CLUSTER newest entries.
redis.call('LTRIM', 'ecp:events:'..id, -1000, -1)
return 'OK'
"#;

/// ARGV: cluster, credential keep (ms), then the arguments of
/// `remove_cluster_alerting` (its firing alerts as read, resolved).
const REMOVE_CLUSTER_BODY: &str = r#"
local id, keep = ARGV[1], tonumber(ARGV[2])
-- Resolves the firing alerts (if still those read), drops series and alarms.
if not remove_cluster_alerting(id) then return 'RETRY' end
local cur = redis.call('GET', 'ecp:cluster:'..id)
if cur then
  local c = cjson.decode(cur)
  redis.call('DEL', 'ecp:cluster_name:'..c.projectId..':'..c.name)
  redis.call('SREM', 'ecp:project_clusters:'..c.projectId, id)
end
redis.call('DEL', 'ecp:cluster:'..id, 'ecp:cluster_rev:'..id)
redis.call('SREM', 'ecp:clusters', id)
for _, a in ipairs(redis.call('SMEMBERS', 'ecp:cluster_agents:'..id)) do remove_agent(a, keep) end
redis.call('DEL', 'ecp:cluster_agents:'..id)
redis.call('SET', 'ecp:tombstone:'..id, '1')
redis.call('DEL', 'ecp:logs:'..id, 'ecp:log_marks:'..id, 'ecp:log_seq:'..id, 'ecp:log_mark_order:'..id)
return 'OK'
"#;

/// Applies an append planned in Rust (`plan_append`), if the batch's marks
/// are still what Rust read (compare-and-set); otherwise -1.
/// KEYS: stream, marks hash, seq counter, marks order (a sorted set of
/// mark fields by when they last moved). ARGV: line cap, marks cap, number
/// of files n, then per file (mark field, mark read ('' for none), new
/// mark), then the records to store. Each mark written becomes the most
/// recently moved (stamped like `mark_touch`); beyond the marks cap the
/// least recently moved go. Returns how many records were stored.
const APPEND_LOGS: &str = r#"
local cap, markcap, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, 3 + 3 * n, 3 do
  if (redis.call('HGET', KEYS[2], ARGV[i]) or '') ~= ARGV[i+1] then return -1 end
end
for i = 4 + 3 * n, #ARGV do
  local seq = redis.call('INCR', KEYS[3])
  redis.call('XADD', KEYS[1], 'MAXLEN', cap, '0-'..seq, 'd', ARGV[i])
end
-- Recency as `mark_touch`: past the newest mark, in batch order.
local newest = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')[2]
local base = newest and tonumber(newest) + 1 or 0
for j = 1, n do
  local i = 1 + 3 * j
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+2])
  redis.call('ZADD', KEYS[4], base + j - 1, ARGV[i])
end
local excess = redis.call('ZCARD', KEYS[4]) - markcap
if excess > 0 then
  local gone = redis.call('ZPOPMIN', KEYS[4], excess)
  for j = 1, #gone, 2 do redis.call('HDEL', KEYS[2], gone[j]) end
end
return #ARGV - 3 - 3 * n
"#;

/// ARGV: hash, record, TTL ms (0: none), cluster (registration tokens),
/// user (sessions). A user's sessions are the set `ecp:user_sessions:{user}`,
/// which lives as long as its newest session; members whose token expired
/// are dropped whenever another is added.
const PUT_TOKEN: &str = r#"
if ARGV[3] == '0' then redis.call('SET', 'ecp:token:'..ARGV[1], ARGV[2])
else redis.call('SET', 'ecp:token:'..ARGV[1], ARGV[2], 'PX', ARGV[3]) end
if ARGV[4] ~= '' then
  redis.call('SADD', 'ecp:cluster_tokens:'..ARGV[4], ARGV[1])
  redis.call('PEXPIRE', 'ecp:cluster_tokens:'..ARGV[4], 8 * 24 * 3600 * 1000)
end
if ARGV[5] ~= '' then
  local set = 'ecp:user_sessions:'..ARGV[5]
  for _, h in ipairs(redis.call('SMEMBERS', set)) do
    if redis.call('EXISTS', 'ecp:token:'..h) == 0 then redis.call('SREM', set, h) end
  end
  redis.call('SADD', set, ARGV[1])
  -- PTTL -1: a new set (one member), or one kept by a session without expiry.
  local ttl = tonumber(ARGV[3])
  if ttl == 0 then redis.call('PERSIST', set)
  else
    local cur = redis.call('PTTL', set)
    if cur >= 0 and cur < ttl or cur == -1 and redis.call('SCARD', set) == 1 then
      redis.call('PEXPIRE', set, ttl)
    end
  end
end
return 'OK'
"#;

const DELETE_TOKEN: &str = r#"
local cur = redis.call('GET', 'ecp:token:'..ARGV[1])
redis.call('DEL', 'ecp:token:'..ARGV[1])
if cur then
  local t = cjson.decode(cur)
  if t.kind.kind == 'registration' then redis.call('SREM', 'ecp:cluster_tokens:'..t.kind.cluster_id, ARGV[1]) end
  if t.kind.kind == 'session' then redis.call('SREM', 'ecp:user_sessions:'..t.kind.user_id, ARGV[1]) end
end
return 'OK'
"#;

/// Deletes the sessions of user ARGV[1] except hash ARGV[2]; shared by the
/// scripts that end sessions.
const DELETE_SESSIONS_FN: &str = r#"
local function delete_sessions(user, except)
  local set = 'ecp:user_sessions:'..user
  local n = 0
  for _, h in ipairs(redis.call('SMEMBERS', set)) do
    if h ~= except then
      n = n + redis.call('DEL', 'ecp:token:'..h)
      redis.call('SREM', set, h)
    end
  end
  return n
end
"#;

const DELETE_SESSIONS_BODY: &str = r#"
return delete_sessions(ARGV[1], ARGV[2])
"#;

/// Compare-and-set of the user record (Rust read ARGV[2], writes ARGV[3]),
/// then the other sessions end.
const SET_PASSWORD_BODY: &str = r#"
local key = 'ecp:user:'..ARGV[1]
local cur = redis.call('GET', key)
if not cur then return 'NOT_FOUND' end
if cur ~= ARGV[2] then return 'RETRY' end
redis.call('SET', key, ARGV[3])
return 'OK:'..delete_sessions(ARGV[1], ARGV[4])
"#;

const DELETE_USER_BODY: &str = r#"
local id = ARGV[1]
local cur = redis.call('GET', 'ecp:user:'..id)
if not cur then return 'OK' end
local u = cjson.decode(cur)
redis.call('DEL', 'ecp:user:'..id, 'ecp:user_name:'..u.username, 'ecp:memberships:'..id)
redis.call('SREM', 'ecp:users', id)
delete_sessions(id, '')
redis.call('DEL', 'ecp:user_sessions:'..id)
return 'OK'
"#;

/// Removes membership (ARGV[2] org, ARGV[3] project) of user ARGV[1]; an
/// org membership takes the user's project memberships in that org along.
const REMOVE_MEMBERSHIP: &str = r#"
local key = 'ecp:memberships:'..ARGV[1]
local org, project = ARGV[2], ARGV[3]
if project ~= '' then return redis.call('HDEL', key, org..'/'..project) end
local prefix = org..'/'
local n = 0
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, #prefix) == prefix then n = n + redis.call('HDEL', key, f) end
end
return n
"#;

/// ARGV: project, its org ('' when the project is gone).
const DELETE_PROJECT_BODY: &str = r#"
redis.call('DEL', 'ecp:project:'..ARGV[1])
if ARGV[2] ~= '' then redis.call('SREM', 'ecp:org_projects:'..ARGV[2], ARGV[1]) end
delete_project_alerting(ARGV[1])
return 'OK'
"#;

const REVOKE_REGISTRATION: &str = r#"
local n = 0
for _, h in ipairs(redis.call('SMEMBERS', 'ecp:cluster_tokens:'..ARGV[1])) do
  n = n + redis.call('DEL', 'ecp:token:'..h)
end
redis.call('DEL', 'ecp:cluster_tokens:'..ARGV[1])
return n
"#;

/// Writes a registration if the node bindings are still what Rust read
/// (compare-and-set); otherwise 'RETRY'.
const REGISTER_COMMIT_BODY: &str = r#"
local key_now = redis.call('GET', 'ecp:node_key:'..ARGV[1]) or ''
local id_now = redis.call('GET', 'ecp:node_id:'..ARGV[2]) or ''
if key_now ~= ARGV[3] or id_now ~= ARGV[4] then return 'RETRY' end
local prev_cred = ''
if ARGV[5] ~= '' then
  prev_cred = redis.call('GET', 'ecp:agent_cred:'..ARGV[5]) or ''
  remove_agent(ARGV[5], 0)
end
if ARGV[6] ~= '' and ARGV[6] ~= ARGV[5] then remove_agent(ARGV[6], 0) end
local agent, cluster = ARGV[7], ARGV[9]
redis.call('SET', 'ecp:agent:'..agent, ARGV[8])
redis.call('SADD', 'ecp:cluster_agents:'..cluster, agent)
redis.call('SET', 'ecp:node_key:'..ARGV[1], agent)
redis.call('SET', 'ecp:node_id:'..ARGV[2], agent)
redis.call('SET', 'ecp:agent_cred:'..agent, ARGV[10])
redis.call('SET', 'ecp:token:'..ARGV[10], ARGV[11])
return 'OK:'..prev_cred
"#;

/// ARGV: agent, credential hash (hex), its record without expiry.
const ADOPT_CREDENTIAL: &str = r#"
if redis.call('EXISTS', 'ecp:agent:'..ARGV[1]) == 0 then return 'NOT_FOUND' end
if redis.call('EXISTS', 'ecp:token:'..ARGV[2]) == 0 then return 'NOT_FOUND' end
local old = redis.call('GET', 'ecp:agent_cred:'..ARGV[1])
if old and old ~= ARGV[2] then redis.call('DEL', 'ecp:token:'..old) end
redis.call('SET', 'ecp:token:'..ARGV[2], ARGV[3])
redis.call('SET', 'ecp:agent_cred:'..ARGV[1], ARGV[2])
return 'OK'
"#;

const REMOVE_AGENT_BODY: &str = r#"
remove_agent(ARGV[1], 0)
return 'OK'
"#;

fn script(body: &str) -> Script {
    Script::new(body)
}

fn with_fn(body: &str) -> Script {
    Script::new(&format!("{REMOVE_AGENT_FN}\n{body}"))
}

fn with_sessions_fn(body: &str) -> Script {
    Script::new(&format!("{DELETE_SESSIONS_FN}\n{body}"))
}

impl RedisStore {
    pub async fn connect(url: &str) -> StoreResult<RedisStore> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad redis URL: {e}")))?;
        let conn = ConnectionManager::new(client).await.map_err(unavailable)?;
        Ok(RedisStore {
            conn,
            caps: Caps::default(),
        })
    }

    /// The same store keeping at most `caps` (tests: smaller than the
    /// defaults).
    pub fn with_caps(mut self, caps: Caps) -> RedisStore {
        self.caps = caps;
        self
    }

    fn c(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn get_json<T: DeserializeOwned>(&self, key: String) -> StoreResult<Option<T>> {
        let v: Option<String> = self.c().get(key).await.map_err(unavailable)?;
        v.map(|s| from_json(&s)).transpose()
    }

    async fn members_json<T: DeserializeOwned>(
        &self,
        set: String,
        prefix: &str,
    ) -> StoreResult<Vec<T>> {
        let ids: Vec<String> = self.c().smembers(set).await.map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|i| format!("{P}{prefix}:{i}")).collect();
        let vals: Vec<Option<String>> = self.c().mget(keys).await.map_err(unavailable)?;
        vals.into_iter().flatten().map(|s| from_json(&s)).collect()
    }
}

fn outcome(reply: &str, name: &str) -> StoreResult<()> {
    match reply {
        "OK" => Ok(()),
        "EXISTS" => Err(StoreError::Exists),
        "NAME_TAKEN" => Err(StoreError::NameTaken(name.to_string())),
        "NOT_FOUND" => Err(StoreError::NotFound),
        other => Err(StoreError::Unavailable(format!(
            "unexpected script reply {other}"
        ))),
    }
}

#[async_trait::async_trait]
impl TenancyStore for RedisStore {
    async fn user_count(&self) -> StoreResult<u64> {
        self.c()
            .scard(format!("{P}users"))
            .await
            .map_err(unavailable)
    }

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        let r: String = script(CREATE_USER)
            .arg(&user.id)
            .arg(&user.username)
            .arg(to_json(user)?)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        outcome(&r, &user.username)
    }

    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        self.get_json(format!("{P}user:{id}")).await
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let id: Option<String> = self
            .c()
            .get(format!("{P}user_name:{username}"))
            .await
            .map_err(unavailable)?;
        match id {
            Some(id) => self.user(&id).await,
            None => Ok(None),
        }
    }

    async fn put_org(&self, org: &OrgRecord) -> StoreResult<()> {
        redis::pipe()
            .atomic()
            .set(format!("{P}org:{}", org.id), to_json(org)?)
            .sadd(format!("{P}orgs"), &org.id)
            .query_async::<()>(&mut self.c())
            .await
            .map_err(unavailable)
    }

    async fn org(&self, id: &str) -> StoreResult<Option<OrgRecord>> {
        self.get_json(format!("{P}org:{id}")).await
    }

    async fn orgs(&self) -> StoreResult<Vec<OrgRecord>> {
        self.members_json(format!("{P}orgs"), "org").await
    }

    async fn put_project(&self, p: &ProjectRecord) -> StoreResult<()> {
        redis::pipe()
            .atomic()
            .set(format!("{P}project:{}", p.id), to_json(p)?)
            .sadd(format!("{P}org_projects:{}", p.org_id), &p.id)
            .query_async::<()>(&mut self.c())
            .await
            .map_err(unavailable)
    }

    async fn project(&self, id: &str) -> StoreResult<Option<ProjectRecord>> {
        self.get_json(format!("{P}project:{id}")).await
    }

    async fn projects(&self, org_id: &str) -> StoreResult<Vec<ProjectRecord>> {
        self.members_json(format!("{P}org_projects:{org_id}"), "project")
            .await
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        except: Option<&TokenHash>,
    ) -> StoreResult<u64> {
        with_sessions_fn(DELETE_SESSIONS_BODY)
            .arg(user_id)
            .arg(except.map(hex::encode).unwrap_or_default())
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)
    }

    async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        keep_session: Option<&TokenHash>,
    ) -> StoreResult<u64> {
        // The record is JSON that Lua must not re-encode: read, change,
        // write if unchanged meanwhile.
        for _ in 0..8 {
            let key = format!("{P}user:{user_id}");
            let Some(cur): Option<String> = self.c().get(&key).await.map_err(unavailable)? else {
                return Err(StoreError::NotFound);
            };
            let mut user: UserRecord = from_json(&cur)?;
            user.password_hash = password_hash.to_string();
            let r: String = with_sessions_fn(SET_PASSWORD_BODY)
                .arg(user_id)
                .arg(&cur)
                .arg(to_json(&user)?)
                .arg(keep_session.map(hex::encode).unwrap_or_default())
                .invoke_async(&mut self.c())
                .await
                .map_err(unavailable)?;
            if r == "RETRY" {
                continue;
            }
            if let Some(n) = r.strip_prefix("OK:") {
                return Ok(n.parse().unwrap_or(0));
            }
            return outcome(&r, "").map(|_| 0);
        }
        Err(StoreError::Unavailable(
            "the user record kept changing; retry".into(),
        ))
    }

    async fn delete_org(&self, id: &str) -> StoreResult<()> {
        redis::pipe()
            .atomic()
            .del(format!("{P}org:{id}"))
            .srem(format!("{P}orgs"), id)
            .query_async::<()>(&mut self.c())
            .await
            .map_err(unavailable)
    }

    async fn delete_project(&self, id: &str) -> StoreResult<()> {
        let org = self.project(id).await?.map(|p| p.org_id);
        // Its rules, channels, alerts and deliveries go with it.
        let _: String = Script::new(&format!(
            "{}\n{DELETE_PROJECT_BODY}",
            alerting::DELETE_PROJECT_ALERTING
        ))
        .arg(id)
        .arg(org.unwrap_or_default())
        .invoke_async(&mut self.c())
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let r: String = with_sessions_fn(DELETE_USER_BODY)
            .arg(id)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        outcome(&r, "")
    }

    async fn users(&self) -> StoreResult<Vec<UserRecord>> {
        self.members_json(format!("{P}users"), "user").await
    }

    async fn put_membership(&self, m: &Membership) -> StoreResult<()> {
        self.c()
            .hset(
                format!("{P}memberships:{}", m.user_id),
                format!("{}/{}", m.org_id, m.project_id),
                to_json(m)?,
            )
            .await
            .map_err(unavailable)
    }

    async fn remove_membership(
        &self,
        user_id: &str,
        org_id: &str,
        project_id: &str,
    ) -> StoreResult<()> {
        let _: i64 = script(REMOVE_MEMBERSHIP)
            .arg(user_id)
            .arg(org_id)
            .arg(project_id)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>> {
        let v: Vec<String> = self
            .c()
            .hvals(format!("{P}memberships:{user_id}"))
            .await
            .map_err(unavailable)?;
        v.iter().map(|s| from_json(s)).collect()
    }
}

#[async_trait::async_trait]
impl ClusterStore for RedisStore {
    async fn create_cluster(&self, c: &ClusterRecord, event: &ClusterEvent) -> StoreResult<()> {
        let r: String = script(CREATE_CLUSTER)
            .arg(&c.id)
            .arg(&c.project_id)
            .arg(&c.name)
            .arg(to_json(c)?)
            .arg(c.revision.to_string())
            .arg(to_json(event)?)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        outcome(&r, &c.name)
    }

    async fn update_cluster(
        &self,
        c: &ClusterRecord,
        expected_revision: u64,
        events: &[ClusterEvent],
    ) -> StoreResult<()> {
        let s = script(UPDATE_CLUSTER);
        let mut inv = s.prepare_invoke();
        inv.arg(&c.id)
            .arg(expected_revision.to_string())
            .arg(to_json(c)?)
            .arg(c.revision.to_string())
            .arg(&c.project_id)
            .arg(&c.name);
        for e in events {
            inv.arg(to_json(e)?);
        }
        let r: String = inv.invoke_async(&mut self.c()).await.map_err(unavailable)?;
        if let Some(found) = r.strip_prefix("CONFLICT:") {
            return Err(StoreError::RevisionConflict {
                expected: expected_revision,
                found: found.parse().unwrap_or(0),
            });
        }
        outcome(&r, &c.name)
    }

    async fn cluster(&self, id: &str) -> StoreResult<Option<ClusterRecord>> {
        self.get_json(format!("{P}cluster:{id}")).await
    }

    async fn clusters_in_project(&self, project_id: &str) -> StoreResult<Vec<ClusterRecord>> {
        let mut v: Vec<ClusterRecord> = self
            .members_json(format!("{P}project_clusters:{project_id}"), "cluster")
            .await?;
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    async fn all_clusters(&self) -> StoreResult<Vec<ClusterRecord>> {
        self.members_json(format!("{P}clusters"), "cluster").await
    }

    async fn remove_cluster(&self, id: &str) -> StoreResult<()> {
        let script = Script::new(&format!(
            "{REMOVE_AGENT_FN}\n{}\n{}\n{REMOVE_CLUSTER_BODY}",
            alerting::RECORD_ALERT_FN,
            alerting::REMOVE_CLUSTER_ALERTING
        ));
        // Its firing alerts resolve: Rust rewrites them, the script applies
        // that only while they are still what was read.
        for _ in 0..8 {
            let alerting = self.firing_for_removal(id, now_ms()).await?;
            let r: String = script
                .arg(id)
                .arg((7u64 * 24 * 3600 * 1000).to_string())
                .arg(alerting)
                .invoke_async(&mut self.c())
                .await
                .map_err(unavailable)?;
            if r != "RETRY" {
                return outcome(&r, "");
            }
        }
        Err(StoreError::Unavailable(
            "the cluster's alerts kept changing; retry".into(),
        ))
    }

    async fn cluster_deleted(&self, id: &str) -> StoreResult<bool> {
        self.c()
            .exists(format!("{P}tombstone:{id}"))
            .await
            .map_err(unavailable)
    }

    async fn events(&self, cluster_id: &str) -> StoreResult<Vec<ClusterEvent>> {
        let v: Vec<String> = self
            .c()
            .lrange(format!("{P}events:{cluster_id}"), 0, -1)
            .await
            .map_err(unavailable)?;
        v.iter().map(|s| from_json(s)).collect()
    }

    async fn register_agent(
        &self,
        agent: &AgentRecord,
        credential: &TokenHash,
        cred: &TokenRecord,
    ) -> StoreResult<Registered> {
        for _ in 0..8 {
            let by_key_id: Option<String> = self
                .c()
                .get(format!("{P}node_key:{}", agent.node_key))
                .await
                .map_err(unavailable)?;
            let by_node_id: Option<String> = self
                .c()
                .get(format!("{P}node_id:{}", agent.node_id))
                .await
                .map_err(unavailable)?;
            let by_key: Option<AgentRecord> = match &by_key_id {
                Some(id) => self.agent(id).await?,
                None => None,
            };
            let by_instance: Option<AgentRecord> = match &by_node_id {
                Some(id) => self.agent(id).await?,
                None => None,
            };
            let previous =
                plan_registration(&agent.cluster_id, by_key.as_ref(), by_instance.as_ref())?;
            let mut a = agent.clone();
            if let Some(prev) = &previous {
                a.id = prev.id.clone();
                a.created_at = prev.created_at;
            }
            let mut c = cred.clone();
            if let TokenKind::Agent { agent_id, .. } = &mut c.kind {
                agent_id.clone_from(&a.id);
            }
            let stale = by_node_id.clone().unwrap_or_default();
            let r: String = with_fn(REGISTER_COMMIT_BODY)
                .arg(&a.node_key)
                .arg(&a.node_id)
                .arg(by_key_id.clone().unwrap_or_default())
                .arg(by_node_id.clone().unwrap_or_default())
                .arg(previous.as_ref().map(|p| p.id.clone()).unwrap_or_default())
                .arg(stale)
                .arg(&a.id)
                .arg(to_json(&a)?)
                .arg(&a.cluster_id)
                .arg(hex::encode(credential))
                .arg(to_json(&c)?)
                .invoke_async(&mut self.c())
                .await
                .map_err(unavailable)?;
            if r == "RETRY" {
                continue;
            }
            let prev_cred = r.strip_prefix("OK:").unwrap_or_default();
            let revoked = hex::decode(prev_cred)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            return Ok(Registered {
                agent: a,
                reused: previous.is_some(),
                revoked_credential: revoked,
            });
        }
        Err(StoreError::Unavailable(
            "registration kept racing; retry".into(),
        ))
    }

    async fn agent(&self, id: &str) -> StoreResult<Option<AgentRecord>> {
        self.get_json(format!("{P}agent:{id}")).await
    }

    async fn agents_of_cluster(&self, cluster_id: &str) -> StoreResult<Vec<AgentRecord>> {
        let mut v: Vec<AgentRecord> = self
            .members_json(format!("{P}cluster_agents:{cluster_id}"), "agent")
            .await?;
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    async fn update_agent(&self, agent: &AgentRecord) -> StoreResult<()> {
        // Only an agent that still exists (no resurrection).
        let done: Option<String> = redis::cmd("SET")
            .arg(format!("{P}agent:{}", agent.id))
            .arg(to_json(agent)?)
            .arg("XX")
            .query_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        if done.is_some() {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn remove_agent(&self, id: &str) -> StoreResult<()> {
        let _: String = with_fn(REMOVE_AGENT_BODY)
            .arg(id)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl TokenStore for RedisStore {
    async fn put_token(&self, hash: &TokenHash, token: &TokenRecord) -> StoreResult<()> {
        let ttl = token
            .expires_at
            .map(|t| t.saturating_sub(now_ms()).max(1))
            .unwrap_or(0);
        let cluster = match &token.kind {
            TokenKind::Registration { cluster_id } => cluster_id.clone(),
            _ => String::new(),
        };
        let user = match &token.kind {
            TokenKind::Session { user_id } => user_id.clone(),
            _ => String::new(),
        };
        let _: String = script(PUT_TOKEN)
            .arg(hex::encode(hash))
            .arg(to_json(token)?)
            .arg(ttl.to_string())
            .arg(cluster)
            .arg(user)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn token(&self, hash: &TokenHash, now: Millis) -> StoreResult<Option<TokenRecord>> {
        let t: Option<TokenRecord> = self
            .get_json(format!("{P}token:{}", hex::encode(hash)))
            .await?;
        Ok(t.filter(|t| !t.expired(now)))
    }

    async fn delete_token(&self, hash: &TokenHash) -> StoreResult<()> {
        let _: String = script(DELETE_TOKEN)
            .arg(hex::encode(hash))
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn revoke_registration_tokens(&self, cluster_id: &str) -> StoreResult<u64> {
        script(REVOKE_REGISTRATION)
            .arg(cluster_id)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)
    }

    async fn purge_expired_tokens(&self, _now: Millis) -> StoreResult<u64> {
        Ok(0) // Redis expires token keys by itself
    }

    async fn adopt_agent_credential(
        &self,
        agent_id: &str,
        credential: &TokenHash,
    ) -> StoreResult<()> {
        let key = format!("{P}token:{}", hex::encode(credential));
        let cur: Option<String> = self.c().get(&key).await.map_err(unavailable)?;
        // The token must be this agent's (a hash never changes owner, so
        // reading before the script is safe); the script checks it exists.
        let mut rec = match cur.map(|c| from_json::<TokenRecord>(&c)).transpose()? {
            Some(r) if r.is_credential_of(agent_id) => r,
            _ => return Err(StoreError::NotFound),
        };
        rec.expires_at = None;
        let r: String = script(ADOPT_CREDENTIAL)
            .arg(agent_id)
            .arg(hex::encode(credential))
            .arg(to_json(&rec)?)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        match r.as_str() {
            "OK" => Ok(()),
            _ => Err(StoreError::NotFound),
        }
    }
}

#[async_trait::async_trait]
impl LogStore for RedisStore {
    async fn append_logs(
        &self,
        cluster_id: &str,
        agent_id: &str,
        node: &str,
        lines: &[ecp_protocol::LogLine],
        cap: u64,
    ) -> StoreResult<usize> {
        if lines.is_empty() {
            return Ok(0);
        }
        let marks_key = format!("{P}log_marks:{cluster_id}");
        let files = batch_files(lines);
        let fields: Vec<String> = files.iter().map(|f| format!("{agent_id}/{f}")).collect();
        let script = Script::new(APPEND_LOGS);
        // Read the marks, plan in Rust, apply if the marks did not move
        // meanwhile (another writer: a reconnected agent's new session).
        for _ in 0..8 {
            let read: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&marks_key)
                .arg(&fields)
                .query_async(&mut self.c())
                .await
                .map_err(unavailable)?;
            let mut marks = Vec::with_capacity(files.len());
            for (file, raw) in files.iter().zip(&read) {
                let mark = raw
                    .as_deref()
                    .map(|r| {
                        r.parse::<u64>()
                            .map_err(|_| StoreError::Corrupt(format!("log mark {r:?}")))
                    })
                    .transpose()?;
                marks.push((*file, mark));
            }
            let plan = plan_append(lines, |file| {
                marks.iter().find(|(f, _)| *f == file).and_then(|(_, m)| *m)
            });
            let mut inv = script.prepare_invoke();
            inv.key(format!("{P}logs:{cluster_id}"))
                .key(&marks_key)
                .key(format!("{P}log_seq:{cluster_id}"))
                .key(format!("{P}log_mark_order:{cluster_id}"))
                .arg(line_cap(cap))
                .arg(LOG_MARKS_PER_CLUSTER)
                .arg(plan.marks.len());
            for m in &plan.marks {
                let at = files.iter().position(|f| *f == m.file);
                let raw = at.and_then(|at| read.get(at)).cloned().flatten();
                inv.arg(format!("{agent_id}/{}", m.file))
                    .arg(raw.unwrap_or_default())
                    .arg(m.now.to_string());
            }
            for l in plan.keep.iter().filter_map(|&i| lines.get(i)) {
                let rec = StoredLog {
                    seq: 0, // the stream entry's id
                    time_us: l.time_us,
                    level: l.level,
                    node: node.to_string(),
                    message: l.message.clone(),
                    fields: l.fields.clone(),
                    raw: l.raw.clone(),
                };
                inv.arg(to_json(&rec)?);
            }
            let n: i64 = inv.invoke_async(&mut self.c()).await.map_err(unavailable)?;
            if let Ok(n) = usize::try_from(n) {
                return Ok(n);
            }
        }
        Err(StoreError::Unavailable(
            "log marks kept changing; retry".into(),
        ))
    }

    async fn logs(&self, cluster_id: &str, q: &LogQuery) -> StoreResult<LogPage> {
        let key = format!("{P}logs:{cluster_id}");
        let mut scan = LogScan::new(q);
        // Read in chunks until the page is complete, the budget is spent or
        // the stream ends.
        let mut bound = match q.after {
            Some(a) => format!("(0-{a}"),
            None => q
                .before
                .map(|b| format!("(0-{b}"))
                .unwrap_or_else(|| "+".into()),
        };
        'read: loop {
            let count = scan.room().min(512);
            if count == 0 {
                break;
            }
            let cmd = if q.after.is_some() {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&bound)
                    .arg("+")
                    .arg("COUNT")
                    .arg(count)
                    .clone()
            } else {
                redis::cmd("XREVRANGE")
                    .arg(&key)
                    .arg(&bound)
                    .arg("-")
                    .arg("COUNT")
                    .arg(count)
                    .clone()
            };
            let chunk: Vec<(String, Vec<String>)> =
                cmd.query_async(&mut self.c()).await.map_err(unavailable)?;
            let done = chunk.len() < count;
            for (id, fields) in chunk {
                let seq: u64 = id
                    .split_once('-')
                    .and_then(|(_, s)| s.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("log entry id {id}")))?;
                bound = format!("(0-{seq}");
                let Some(json) = fields.get(1) else { continue };
                let mut rec: StoredLog = from_json(json)?;
                rec.seq = seq;
                if !scan.push(rec) {
                    break 'read;
                }
            }
            if done {
                break;
            }
        }
        Ok(scan.finish())
    }
}

#[async_trait::async_trait]
impl AuditStore for RedisStore {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        // Newest at the head; the log keeps the last AUDIT_CAP records.
        redis::pipe()
            .atomic()
            .lpush(format!("{P}audit"), to_json(record)?)
            .ltrim(format!("{P}audit"), 0, AUDIT_CAP - 1)
            .query_async::<()>(&mut self.c())
            .await
            .map_err(unavailable)
    }

    async fn purge_audit(&self, before: Millis, max_records: u64) -> StoreResult<u64> {
        let mut total = 0;
        loop {
            let (trimmed, popped): (u64, u64) = Script::new(PURGE_AUDIT)
                .key(format!("{P}audit"))
                .arg(before)
                .arg(max_records)
                .arg(AUDIT_PURGE_BATCH)
                .invoke_async(&mut self.c())
                .await
                .map_err(unavailable)?;
            total += trimmed + popped;
            if popped < AUDIT_PURGE_BATCH {
                return Ok(total);
            }
        }
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<(Vec<AuditRecord>, usize)> {
        let all: Vec<String> = self
            .c()
            .lrange(format!("{P}audit"), 0, -1)
            .await
            .map_err(unavailable)?;
        let records: Vec<AuditRecord> = all
            .iter()
            .map(|s| from_json(s))
            .collect::<StoreResult<_>>()?;
        Ok(page_audit(records.into_iter(), query))
    }
}

const AUDIT_CAP: isize = 100_000;

/// Records popped per script run (the list is trimmed in runs so Redis is
/// never blocked for long).
const AUDIT_PURGE_BATCH: u64 = 5_000;

/// KEYS: the audit list (newest at the head). ARGV: before (ms), max
/// records (0: none), batch. Trims to the newest max, then pops records
/// older than `before` from the tail, at most `batch`. Returns {trimmed, popped}.
const PURGE_AUDIT: &str = r#"
local key, before, max, batch = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local trimmed = 0
if max > 0 then
  local len = redis.call('LLEN', key)
  if len > max then
    redis.call('LTRIM', key, 0, max - 1)
    trimmed = len - max
  end
end
local popped = 0
while popped < batch do
  local v = redis.call('LINDEX', key, -1)
  if not v then break end
  if cjson.decode(v).at >= before then break end
  redis.call('RPOP', key)
  popped = popped + 1
end
return {trimmed, popped}
"#;

#[cfg(test)]
mod history_tests {
    #[test]
    fn the_scripts_keep_history_per_cluster_entries() {
        let keep = format!("-{}, -1)", ecp_actors::store::HISTORY_PER_CLUSTER);
        assert!(super::CREATE_CLUSTER.contains(&keep));
        assert!(super::UPDATE_CLUSTER.contains(&keep));
    }
}
