//! Metric series, EMQX alarms, alert rules, channels, alerts and deliveries
//! in the Redis back end. Every change of several keys is one Lua script.
//!
//! Layout (`ecp:` keys):
//! - `metrics:{cluster}:raw`, `metrics:{cluster}:rollup`: one list per
//!   cluster and tier, oldest first, each entry the point's time (8 bytes,
//!   big-endian) and [`Point::pack`] (a list, not a sorted set: half the
//!   memory, and appends only ever add newer points). An append reads the
//!   newest raw point and the rest of its bucket (a read-only script),
//!   plans with [`series::plan_append`] in Rust, and a script applies the
//!   plan only while the newest raw point is still the one read (else Rust
//!   plans again): it pushes the raw points and closed buckets' roll-ups,
//!   pops what is past each tier's retention (relative to `now`) from the
//!   head, and trims to each tier's cap. A range is found by binary search.
//! - `alarms:{cluster}`: the [`AlarmSet`] (JSON).
//! - `alert_rule:{id}`, `channel:{id}`: JSON; `project_alert_rules:{project}`,
//!   `project_channels:{project}`: sets of ids.
//! - `alert:{id}`: JSON; `project_alerts_firing:{project}` and
//!   `project_alerts_resolved:{project}`: sorted sets of ids scored by
//!   `started_at`; `cluster_alerts_firing:{cluster}`: a set. Beyond
//!   `Caps::alerts_per_project` resolved alerts the oldest go; firing ones
//!   are never dropped.
//! - `delivery:{id}`: JSON; `deliveries_due`: the pending ones scored by
//!   `next_at` (a claim moves it, and the record's `nextAt`, to the lease's
//!   end in one script, so two nodes never claim the same one);
//!   `channel_deliveries:{channel}`: a channel's log scored by `created_at`,
//!   `channel_deliveries_done:{channel}`: its finished ones (beyond
//!   `Caps::deliveries_per_channel` the oldest go);
//!   `project_deliveries:{project}`: a set (for the project's deletion: a
//!   deleted channel's log stays until then).
//! - `notify:{channel}:{window}`: a counter per storm window (its start),
//!   expiring [`COUNT_TTL_MS`] after its last count (windows are a minute,
//!   shorter in tests).
//!
//! Lua reads the JSON records (`cjson.decode`) but never re-encodes them;
//! the one edit it makes in place is a claim's `"nextAt":<number>` (serde
//! writes field names unescaped, so the pattern cannot match inside a
//! string). Changes that rewrite records otherwise (a deleted channel's
//! pending deliveries fail, a deleted cluster's firing alerts resolve) are
//! made in Rust and applied by a script only while the records are still
//! what Rust read.

use super::{from_json, to_json, unavailable, RedisStore, P};
use async_trait::async_trait;
use ecp_actors::alerting::*;
use ecp_actors::model::Millis;
use ecp_actors::series::{self, Point, Tier};
use ecp_actors::store::*;
use redis::{AsyncCommands, Script};
use std::sync::LazyLock;

/// How long a channel's window count lives after its last count.
pub const COUNT_TTL_MS: Millis = 5 * 60_000;

/// Clusters asked per pipeline by `latest_points`.
const LATEST_CHUNK: usize = 500;

/// Rewrites (or creates) an alert with its indexes; trims the project's
/// resolved alerts to `cap`. `firing` is '1' or '0'.
pub(super) const RECORD_ALERT_FN: &str = r#"
local function record_alert(id, project, cluster, started, firing, json, cap)
  local cur = redis.call('GET', 'ecp:alert:'..id)
  if cur then
    local old = cjson.decode(cur)
    redis.call('ZREM', 'ecp:project_alerts_firing:'..old.projectId, id)
    redis.call('ZREM', 'ecp:project_alerts_resolved:'..old.projectId, id)
    redis.call('SREM', 'ecp:cluster_alerts_firing:'..old.clusterId, id)
  end
  redis.call('SET', 'ecp:alert:'..id, json)
  if firing == '1' then
    redis.call('ZADD', 'ecp:project_alerts_firing:'..project, started, id)
    redis.call('SADD', 'ecp:cluster_alerts_firing:'..cluster, id)
  else
    local idx = 'ecp:project_alerts_resolved:'..project
    redis.call('ZADD', idx, started, id)
    local excess = redis.call('ZCARD', idx) - cap
    if excess > 0 then
      for _, old in ipairs(redis.call('ZRANGE', idx, 0, excess - 1)) do
        redis.call('DEL', 'ecp:alert:'..old)
      end
      redis.call('ZREMRANGEBYRANK', idx, 0, excess - 1)
    end
  end
end
"#;

/// Writes a delivery with its indexes (replacing what it was); a finished
/// one trims its channel's log to `cap` finished ones.
const WRITE_DELIVERY_FN: &str = r#"
local function trim_channel(ch, cap)
  local done = 'ecp:channel_deliveries_done:'..ch
  local excess = redis.call('ZCARD', done) - cap
  if excess <= 0 then return end
  for _, id in ipairs(redis.call('ZRANGE', done, 0, excess - 1)) do
    local cur = redis.call('GET', 'ecp:delivery:'..id)
    if cur then
      redis.call('SREM', 'ecp:project_deliveries:'..cjson.decode(cur).projectId, id)
    end
    redis.call('DEL', 'ecp:delivery:'..id)
    redis.call('ZREM', 'ecp:channel_deliveries:'..ch, id)
  end
  redis.call('ZREMRANGEBYRANK', done, 0, excess - 1)
end
local function write_delivery(id, ch, project, created, next_at, pending, json, cap)
  local cur = redis.call('GET', 'ecp:delivery:'..id)
  if cur then
    local old = cjson.decode(cur)
    redis.call('ZREM', 'ecp:channel_deliveries:'..old.channelId, id)
    redis.call('ZREM', 'ecp:channel_deliveries_done:'..old.channelId, id)
    redis.call('SREM', 'ecp:project_deliveries:'..old.projectId, id)
  end
  redis.call('SET', 'ecp:delivery:'..id, json)
  redis.call('ZADD', 'ecp:channel_deliveries:'..ch, created, id)
  redis.call('SADD', 'ecp:project_deliveries:'..project, id)
  if pending == '1' then
    redis.call('ZADD', 'ecp:deliveries_due', next_at, id)
  else
    redis.call('ZREM', 'ecp:deliveries_due', id)
    redis.call('ZADD', 'ecp:channel_deliveries_done:'..ch, created, id)
    trim_channel(ch, cap)
  end
end
-- ARGV from index i on: 7 fields per delivery.
local function write_deliveries(i, cap)
  while i + 6 <= #ARGV do
    write_delivery(ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5], ARGV[i+6], cap)
    i = i + 7
  end
end
"#;

/// ARGV: alerts cap, deliveries cap, the alert (id, project, cluster,
/// started_at, firing, JSON), then the deliveries.
const RECORD_ALERT_BODY: &str = r#"
record_alert(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[1]))
write_deliveries(9, tonumber(ARGV[2]))
return 'OK'
"#;

/// ARGV: deliveries cap, then the deliveries.
const QUEUE_DELIVERIES_BODY: &str = r#"
write_deliveries(2, tonumber(ARGV[1]))
return 'OK'
"#;

/// ARGV: deliveries cap, then one delivery; only one that still exists.
const FINISH_DELIVERY_BODY: &str = r#"
if redis.call('EXISTS', 'ecp:delivery:'..ARGV[2]) == 0 then return 'NOT_FOUND' end
write_deliveries(2, tonumber(ARGV[1]))
return 'OK'
"#;

/// ARGV: now, the lease's end, limit. Moves the due ones' `next_at` (index
/// and record) to the lease's end; returns their records.
const CLAIM_DELIVERIES: &str = r#"
local till = ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', 'ecp:deliveries_due', '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local cur = redis.call('GET', 'ecp:delivery:'..id)
  if cur then
    local claimed = string.gsub(cur, '"nextAt":%d+', '"nextAt":'..till, 1)
    redis.call('SET', 'ecp:delivery:'..id, claimed)
    redis.call('ZADD', 'ecp:deliveries_due', till, id)
    out[#out + 1] = claimed
  else
    redis.call('ZREM', 'ecp:deliveries_due', id)
  end
end
return out
"#;

/// ARGV: record prefix (`alert_rule`, `channel`), index prefix, id,
/// project, JSON. Inserts or replaces; a moved record leaves its old
/// project's index.
const PUT_INDEXED: &str = r#"
local rec, id = 'ecp:'..ARGV[1]..':'..ARGV[3], ARGV[3]
local cur = redis.call('GET', rec)
if cur then redis.call('SREM', 'ecp:'..ARGV[2]..':'..cjson.decode(cur).projectId, id) end
redis.call('SET', rec, ARGV[5])
redis.call('SADD', 'ecp:'..ARGV[2]..':'..ARGV[4], id)
return 'OK'
"#;

/// ARGV: record prefix, index prefix, id.
const DELETE_INDEXED: &str = r#"
local rec, id = 'ecp:'..ARGV[1]..':'..ARGV[3], ARGV[3]
local cur = redis.call('GET', rec)
if not cur then return 'NOT_FOUND' end
redis.call('SREM', 'ecp:'..ARGV[2]..':'..cjson.decode(cur).projectId, id)
redis.call('DEL', rec)
return 'OK'
"#;

/// ARGV: channel id, deliveries cap, n, then per pending delivery (id,
/// record read, failed record, ...the 7 fields of write_delivery but the
/// JSON). Deletes the channel and fails its pending deliveries, if they
/// are still the ones read; else 'RETRY'.
const DELETE_CHANNEL_BODY: &str = r#"
local id, cap, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rec = 'ecp:channel:'..id
local cur = redis.call('GET', rec)
if not cur then return 'NOT_FOUND' end
local pending = 0
for _, d in ipairs(redis.call('ZRANGE', 'ecp:channel_deliveries:'..id, 0, -1)) do
  if redis.call('ZSCORE', 'ecp:deliveries_due', d) then pending = pending + 1 end
end
if pending ~= n then return 'RETRY' end
for i = 4, 3 + 8 * n, 8 do
  if (redis.call('GET', 'ecp:delivery:'..ARGV[i]) or '') ~= ARGV[i+1] then return 'RETRY' end
end
redis.call('SREM', 'ecp:project_channels:'..cjson.decode(cur).projectId, id)
redis.call('DEL', rec)
for i = 4, 3 + 8 * n, 8 do
  write_delivery(ARGV[i], ARGV[i+3], ARGV[i+4], ARGV[i+5], ARGV[i+6], ARGV[i+7], ARGV[i+2], cap)
end
return 'OK'
"#;

/// Deletes project ARGV[1]'s rules, channels, alerts and deliveries
/// (part of `delete_project`).
pub(super) const DELETE_PROJECT_ALERTING: &str = r#"
local function delete_project_alerting(p)
  for _, kind in ipairs({{'project_alert_rules', 'alert_rule'}, {'project_channels', 'channel'}}) do
    local set = 'ecp:'..kind[1]..':'..p
    for _, id in ipairs(redis.call('SMEMBERS', set)) do redis.call('DEL', 'ecp:'..kind[2]..':'..id) end
    redis.call('DEL', set)
  end
  for _, state in ipairs({'firing', 'resolved'}) do
    local idx = 'ecp:project_alerts_'..state..':'..p
    for _, id in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
      local cur = redis.call('GET', 'ecp:alert:'..id)
      if cur then redis.call('SREM', 'ecp:cluster_alerts_firing:'..cjson.decode(cur).clusterId, id) end
      redis.call('DEL', 'ecp:alert:'..id)
    end
    redis.call('DEL', idx)
  end
  local set = 'ecp:project_deliveries:'..p
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    local cur = redis.call('GET', 'ecp:delivery:'..id)
    if cur then
      local ch = cjson.decode(cur).channelId
      redis.call('ZREM', 'ecp:channel_deliveries:'..ch, id)
      redis.call('ZREM', 'ecp:channel_deliveries_done:'..ch, id)
    end
    redis.call('ZREM', 'ecp:deliveries_due', id)
    redis.call('DEL', 'ecp:delivery:'..id)
  end
  redis.call('DEL', set)
end
"#;

/// Part of `remove_cluster` (cluster ARGV[1]): ARGV[3] the alerts cap,
/// ARGV[4] n, then per firing alert (id, record read, resolved record,
/// project, started_at). Returns 'RETRY' (before any change) unless the
/// cluster's firing alerts are still those read; else resolves them and
/// deletes the cluster's series and alarms.
pub(super) const REMOVE_CLUSTER_ALERTING: &str = r#"
local function remove_cluster_alerting(id)
  local cap, n = tonumber(ARGV[3]), tonumber(ARGV[4])
  local firing = 'ecp:cluster_alerts_firing:'..id
  if redis.call('SCARD', firing) ~= n then return false end
  for i = 5, 4 + 5 * n, 5 do
    if redis.call('SISMEMBER', firing, ARGV[i]) == 0 then return false end
    if (redis.call('GET', 'ecp:alert:'..ARGV[i]) or '') ~= ARGV[i+1] then return false end
  end
  for i = 5, 4 + 5 * n, 5 do
    if ARGV[i+2] ~= '' then record_alert(ARGV[i], ARGV[i+3], id, ARGV[i+4], '0', ARGV[i+2], cap) end
  end
  redis.call('DEL', firing, 'ecp:metrics:'..id..':raw', 'ecp:metrics:'..id..':rollup', 'ecp:alarms:'..id)
  return true
end
"#;

/// The time of a stored point (its first 8 bytes, big-endian; exact in a
/// Lua number below 2^53 ms).
const AT_FN: &str = r#"
local function at(m)
  local a, b, c, d, e, f, g, h = string.byte(m, 1, 8)
  return ((((((a * 256 + b) * 256 + c) * 256 + d) * 256 + e) * 256 + f) * 256 + g) * 256 + h
end
"#;

/// KEYS: raw, roll-ups. ARGV: the newest raw point read ('' for none),
/// raw and roll-up keep-from times (older go), raw and roll-up caps, n,
/// then n raw points, then the roll-ups (all in time order). -1 if the
/// newest raw point changed since it was read. A roll-up not after the
/// newest stored one replaces it (never two for one bucket).
const APPEND_METRICS_BODY: &str = r#"
if (redis.call('LINDEX', KEYS[1], -1) or '') ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[6])
for i = 7, 6 + n do redis.call('RPUSH', KEYS[1], ARGV[i]) end
for i = 7 + n, #ARGV do
  local last = redis.call('LINDEX', KEYS[2], -1)
  if last and at(last) >= at(ARGV[i]) then redis.call('LSET', KEYS[2], -1, ARGV[i])
  else redis.call('RPUSH', KEYS[2], ARGV[i]) end
end
for k = 1, 2 do
  local from = tonumber(ARGV[1 + k])
  while true do
    local first = redis.call('LINDEX', KEYS[k], 0)
    if not first or at(first) >= from then break end
    redis.call('LPOP', KEYS[k])
  end
  redis.call('LTRIM', KEYS[k], -tonumber(ARGV[3 + k]), -1)
end
return 0
"#;

/// KEYS: one tier. ARGV: since, until. The points with since <= at <=
/// until (binary search on the time-ordered list).
const POINTS_BODY: &str = r#"
local function first_at_or_after(t)
  local lo, hi = 0, redis.call('LLEN', KEYS[1])
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if at(redis.call('LINDEX', KEYS[1], mid)) < t then lo = mid + 1 else hi = mid end
  end
  return lo
end
local from = first_at_or_after(tonumber(ARGV[1]))
local to = first_at_or_after(tonumber(ARGV[2]) + 1)
if to <= from then return {} end
return redis.call('LRANGE', KEYS[1], from, to - 1)
"#;

/// KEYS: raw. ARGV: the bucket (ms). The newest point and every point of
/// its bucket, oldest first: what `plan_append` reads.
const OPEN_BUCKET_BODY: &str = r#"
local newest = redis.call('LINDEX', KEYS[1], -1)
if not newest then return {} end
local t = at(newest)
local start = t - t % tonumber(ARGV[1])
local out, i = {}, -1
while true do
  local m = redis.call('LINDEX', KEYS[1], i)
  if not m or at(m) < start then break end
  table.insert(out, 1, m)
  i = i - 1
end
return out
"#;

static RECORD_ALERT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{RECORD_ALERT_FN}\n{WRITE_DELIVERY_FN}\n{RECORD_ALERT_BODY}"
    ))
});
static QUEUE_DELIVERIES: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{WRITE_DELIVERY_FN}\n{QUEUE_DELIVERIES_BODY}")));
static FINISH_DELIVERY: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{WRITE_DELIVERY_FN}\n{FINISH_DELIVERY_BODY}")));
static DELETE_CHANNEL: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{WRITE_DELIVERY_FN}\n{DELETE_CHANNEL_BODY}")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_DELIVERIES));
static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_INDEXED));
static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE_INDEXED));
static APPEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{AT_FN}\n{APPEND_METRICS_BODY}")));
static POINTS: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{AT_FN}\n{POINTS_BODY}")));
static OPEN_BUCKET: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{AT_FN}\n{OPEN_BUCKET_BODY}")));

/// The 7 script arguments of a delivery (see `write_delivery`).
fn delivery_args(inv: &mut redis::ScriptInvocation<'_>, d: &Delivery) -> StoreResult<()> {
    inv.arg(&d.id)
        .arg(&d.channel_id)
        .arg(&d.project_id)
        .arg(d.created_at)
        .arg(d.next_at)
        .arg(if d.state == DeliveryState::Pending {
            "1"
        } else {
            "0"
        })
        .arg(to_json(d)?);
    Ok(())
}

fn script_outcome(reply: &str) -> StoreResult<()> {
    match reply {
        "OK" => Ok(()),
        "NOT_FOUND" => Err(StoreError::NotFound),
        other => Err(StoreError::Unavailable(format!(
            "unexpected script reply {other}"
        ))),
    }
}

fn series_key(cid: &str, tier: Tier) -> String {
    match tier {
        Tier::Raw => format!("{P}metrics:{cid}:raw"),
        Tier::Rollup => format!("{P}metrics:{cid}:rollup"),
    }
}

/// A stored member: the time (8 bytes, big-endian) and the packed values.
fn member(p: &Point) -> Vec<u8> {
    let mut m = p.at.to_be_bytes().to_vec();
    m.extend_from_slice(&p.pack());
    m
}

fn unmember(m: &[u8]) -> StoreResult<Point> {
    let corrupt = || StoreError::Corrupt("metric point".into());
    let (at, packed) = m.split_first_chunk::<8>().ok_or_else(corrupt)?;
    Point::unpack(u64::from_be_bytes(*at), packed).ok_or_else(corrupt)
}

/// A firing alert as `remove_cluster` resolves it.
pub(super) fn resolved_by_removal(mut a: AlertRecord, now: Millis) -> AlertRecord {
    a.state = AlertState::Resolved;
    a.resolved_at = Some(now);
    a.message.push_str(" (the cluster was deleted)");
    a
}

impl RedisStore {
    async fn mget_json<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        ids: &[String],
    ) -> StoreResult<Vec<T>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|i| format!("{P}{prefix}:{i}")).collect();
        let vals: Vec<Option<String>> = self.c().mget(keys).await.map_err(unavailable)?;
        vals.into_iter().flatten().map(|s| from_json(&s)).collect()
    }

    /// Newest first: at most `limit` ids with their scores from a sorted set.
    async fn newest(&self, key: String, limit: usize) -> StoreResult<Vec<(String, f64)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let stop = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        self.c()
            .zrevrange_withscores(key, 0, stop)
            .await
            .map_err(unavailable)
    }

    /// The cluster's firing alerts as stored: (id, JSON) pairs; the
    /// arguments `remove_cluster` gives its script.
    pub(super) async fn firing_for_removal(
        &self,
        cluster_id: &str,
        now: Millis,
    ) -> StoreResult<Vec<String>> {
        let ids: Vec<String> = self
            .c()
            .smembers(format!("{P}cluster_alerts_firing:{cluster_id}"))
            .await
            .map_err(unavailable)?;
        let mut args = Vec::with_capacity(2 + 5 * ids.len());
        args.push(self.caps.alerts_per_project.max(1).to_string());
        args.push(ids.len().to_string());
        if ids.is_empty() {
            return Ok(args);
        }
        let keys: Vec<String> = ids.iter().map(|i| format!("{P}alert:{i}")).collect();
        let vals: Vec<Option<String>> = self.c().mget(keys).await.map_err(unavailable)?;
        for (id, raw) in ids.into_iter().zip(vals) {
            let raw = raw.unwrap_or_default();
            let (resolved, project, started) = if raw.is_empty() {
                (String::new(), String::new(), String::new())
            } else {
                let a = resolved_by_removal(from_json::<AlertRecord>(&raw)?, now);
                (to_json(&a)?, a.project_id.clone(), a.started_at.to_string())
            };
            args.extend([id, raw, resolved, project, started]);
        }
        Ok(args)
    }
}

#[async_trait]
impl MetricStore for RedisStore {
    async fn append_metrics(
        &self,
        cluster_id: &str,
        samples: &[ecp_protocol::MetricSample],
        min_spacing: Millis,
        now: Millis,
    ) -> StoreResult<MetricsAppended> {
        let raw_key = series_key(cluster_id, Tier::Raw);
        let rollup_key = series_key(cluster_id, Tier::Rollup);
        // Kept while `at + retention > now`.
        let raw_from = now
            .saturating_add(1)
            .saturating_sub(series::RAW_RETENTION_MS);
        let rollup_from = now
            .saturating_add(1)
            .saturating_sub(series::ROLLUP_RETENTION_MS);
        // The owner's actor is the only writer; should another race it,
        // the script refuses a plan made from a stale read and we plan again.
        for _ in 0..8 {
            let open: Vec<Vec<u8>> = OPEN_BUCKET
                .key(&raw_key)
                .arg(series::BUCKET_MS)
                .invoke_async(&mut self.c())
                .await
                .map_err(unavailable)?;
            let open_points: Vec<Point> = open
                .iter()
                .map(|m| unmember(m))
                .collect::<StoreResult<_>>()?;
            let last = open_points.last().map(|p| p.at);
            let plan = series::plan_append(last, &open_points, samples, min_spacing, now);
            let mut inv = APPEND.prepare_invoke();
            inv.key(&raw_key)
                .key(&rollup_key)
                .arg(open.last().cloned().unwrap_or_default())
                .arg(raw_from)
                .arg(rollup_from)
                .arg(self.caps.raw_points.max(1))
                .arg(self.caps.rollup_points.max(1))
                .arg(plan.raw.len());
            for p in plan.raw.iter().chain(&plan.rollups) {
                inv.arg(member(p));
            }
            let r: i64 = inv.invoke_async(&mut self.c()).await.map_err(unavailable)?;
            if r == 0 {
                return Ok(MetricsAppended {
                    kept: plan.raw.len(),
                    refused: plan.refused,
                    rollups: plan.rollups.len(),
                });
            }
        }
        Err(StoreError::Unavailable(
            "metric series kept changing; retry".into(),
        ))
    }

    async fn metric_points(
        &self,
        cluster_id: &str,
        tier: Tier,
        since: Millis,
        until: Millis,
    ) -> StoreResult<Vec<Point>> {
        if since > until {
            return Ok(Vec::new());
        }
        let ms: Vec<Vec<u8>> = POINTS
            .key(series_key(cluster_id, tier))
            .arg(since)
            .arg(until)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        ms.iter().map(|m| unmember(m)).collect()
    }

    async fn latest_points(&self, cluster_ids: &[String]) -> StoreResult<Vec<Option<Point>>> {
        let mut out = Vec::with_capacity(cluster_ids.len());
        for chunk in cluster_ids.chunks(LATEST_CHUNK) {
            let mut pipe = redis::pipe();
            for cid in chunk {
                pipe.lindex(series_key(cid, Tier::Raw), -1);
            }
            let newest: Vec<Option<Vec<u8>>> =
                pipe.query_async(&mut self.c()).await.map_err(unavailable)?;
            for m in newest {
                out.push(m.map(|m| unmember(&m)).transpose()?);
            }
        }
        Ok(out)
    }

    async fn metrics_bytes(&self, cluster_id: &str) -> StoreResult<u64> {
        let mut pipe = redis::pipe();
        for tier in [Tier::Raw, Tier::Rollup] {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(series_key(cluster_id, tier))
                .arg("SAMPLES")
                .arg(0);
        }
        let used: Vec<Option<u64>> = pipe.query_async(&mut self.c()).await.map_err(unavailable)?;
        Ok(used.into_iter().flatten().sum())
    }

    async fn alarms(&self, cluster_id: &str) -> StoreResult<AlarmSet> {
        Ok(self
            .get_json(format!("{P}alarms:{cluster_id}"))
            .await?
            .unwrap_or_default())
    }

    async fn put_alarms(&self, cluster_id: &str, alarms: &AlarmSet) -> StoreResult<()> {
        self.c()
            .set(format!("{P}alarms:{cluster_id}"), to_json(alarms)?)
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl AlertStore for RedisStore {
    async fn alert_rules(&self, project_id: &str) -> StoreResult<Vec<AlertRule>> {
        let mut v: Vec<AlertRule> = self
            .members_json(format!("{P}project_alert_rules:{project_id}"), "alert_rule")
            .await?;
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    async fn alert_rule(&self, id: &str) -> StoreResult<Option<AlertRule>> {
        self.get_json(format!("{P}alert_rule:{id}")).await
    }

    async fn put_alert_rule(&self, rule: &AlertRule) -> StoreResult<()> {
        let r: String = PUT
            .arg("alert_rule")
            .arg("project_alert_rules")
            .arg(&rule.id)
            .arg(&rule.project_id)
            .arg(to_json(rule)?)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        script_outcome(&r)
    }

    async fn delete_alert_rule(&self, id: &str) -> StoreResult<()> {
        let r: String = DELETE
            .arg("alert_rule")
            .arg("project_alert_rules")
            .arg(id)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        script_outcome(&r)
    }

    async fn channels(&self, project_id: &str) -> StoreResult<Vec<ChannelRecord>> {
        let mut v: Vec<ChannelRecord> = self
            .members_json(format!("{P}project_channels:{project_id}"), "channel")
            .await?;
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    async fn channel(&self, id: &str) -> StoreResult<Option<ChannelRecord>> {
        self.get_json(format!("{P}channel:{id}")).await
    }

    async fn put_channel(&self, channel: &ChannelRecord) -> StoreResult<()> {
        let r: String = PUT
            .arg("channel")
            .arg("project_channels")
            .arg(&channel.id)
            .arg(&channel.project_id)
            .arg(to_json(channel)?)
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        script_outcome(&r)
    }

    async fn delete_channel(&self, id: &str) -> StoreResult<()> {
        // Rust fails the pending deliveries; the script applies that only
        // while they are still the ones read.
        for _ in 0..8 {
            let ids: Vec<String> = self
                .c()
                .zrange(format!("{P}channel_deliveries:{id}"), 0, -1)
                .await
                .map_err(unavailable)?;
            let mut pending = Vec::new();
            if !ids.is_empty() {
                let keys: Vec<String> = ids.iter().map(|i| format!("{P}delivery:{i}")).collect();
                let vals: Vec<Option<String>> = self.c().mget(keys).await.map_err(unavailable)?;
                for raw in vals.into_iter().flatten() {
                    let d: Delivery = from_json(&raw)?;
                    if d.state == DeliveryState::Pending {
                        pending.push((raw, d));
                    }
                }
            }
            let now = ecp_actors::model::now_ms();
            let mut inv = DELETE_CHANNEL.prepare_invoke();
            inv.arg(id)
                .arg(self.caps.deliveries_per_channel.max(1))
                .arg(pending.len());
            for (raw, mut d) in pending {
                d.state = DeliveryState::Failed;
                d.finished_at = Some(now);
                d.last_error = Some("the channel was deleted".into());
                inv.arg(&d.id).arg(raw).arg(to_json(&d)?);
                inv.arg(&d.channel_id)
                    .arg(&d.project_id)
                    .arg(d.created_at)
                    .arg(d.next_at)
                    .arg("0");
            }
            let r: String = inv.invoke_async(&mut self.c()).await.map_err(unavailable)?;
            if r != "RETRY" {
                return script_outcome(&r);
            }
        }
        Err(StoreError::Unavailable(
            "the channel's deliveries kept changing; retry".into(),
        ))
    }

    async fn record_alert(&self, alert: &AlertRecord, deliveries: &[Delivery]) -> StoreResult<()> {
        let mut inv = RECORD_ALERT.prepare_invoke();
        inv.arg(self.caps.alerts_per_project.max(1))
            .arg(self.caps.deliveries_per_channel.max(1))
            .arg(&alert.id)
            .arg(&alert.project_id)
            .arg(&alert.cluster_id)
            .arg(alert.started_at)
            .arg(if alert.state == AlertState::Firing {
                "1"
            } else {
                "0"
            })
            .arg(to_json(alert)?);
        for d in deliveries {
            delivery_args(&mut inv, d)?;
        }
        let r: String = inv.invoke_async(&mut self.c()).await.map_err(unavailable)?;
        script_outcome(&r)
    }

    async fn alerts(
        &self,
        project_id: &str,
        state: Option<AlertState>,
        limit: usize,
    ) -> StoreResult<Vec<AlertRecord>> {
        let mut keys: Vec<(u64, String)> = Vec::new();
        for (s, name) in [
            (AlertState::Firing, "firing"),
            (AlertState::Resolved, "resolved"),
        ] {
            if state.is_none_or(|want| want == s) {
                let key = format!("{P}project_alerts_{name}:{project_id}");
                keys.extend(
                    self.newest(key, limit)
                        .await?
                        .into_iter()
                        .map(|(id, score)| (score as u64, id)),
                );
            }
        }
        keys.sort_by(|a, b| b.cmp(a));
        keys.truncate(limit);
        let ids: Vec<String> = keys.into_iter().map(|(_, id)| id).collect();
        self.mget_json("alert", &ids).await
    }

    async fn firing_alerts_of_cluster(&self, cluster_id: &str) -> StoreResult<Vec<AlertRecord>> {
        let mut v: Vec<AlertRecord> = self
            .members_json(format!("{P}cluster_alerts_firing:{cluster_id}"), "alert")
            .await?;
        v.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    async fn queue_deliveries(&self, deliveries: &[Delivery]) -> StoreResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut inv = QUEUE_DELIVERIES.prepare_invoke();
        inv.arg(self.caps.deliveries_per_channel.max(1));
        for d in deliveries {
            delivery_args(&mut inv, d)?;
        }
        let r: String = inv.invoke_async(&mut self.c()).await.map_err(unavailable)?;
        script_outcome(&r)
    }

    async fn claim_deliveries(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let claimed: Vec<String> = CLAIM
            .arg(now)
            .arg(now.saturating_add(lease_ms))
            .arg(limit.min(i64::MAX as usize))
            .invoke_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        claimed.iter().map(|s| from_json(s)).collect()
    }

    async fn finish_delivery(&self, delivery: &Delivery) -> StoreResult<()> {
        let mut inv = FINISH_DELIVERY.prepare_invoke();
        inv.arg(self.caps.deliveries_per_channel.max(1));
        delivery_args(&mut inv, delivery)?;
        let r: String = inv.invoke_async(&mut self.c()).await.map_err(unavailable)?;
        script_outcome(&r)
    }

    async fn deliveries(&self, channel_id: &str, limit: usize) -> StoreResult<Vec<Delivery>> {
        let ids: Vec<String> = self
            .newest(format!("{P}channel_deliveries:{channel_id}"), limit)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        self.mget_json("delivery", &ids).await
    }

    async fn count_notification(&self, channel_id: &str, window: Millis) -> StoreResult<u32> {
        let key = format!("{P}notify:{channel_id}:{window}");
        let (n, _): (u32, i64) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .pexpire(&key, COUNT_TTL_MS as i64)
            .query_async(&mut self.c())
            .await
            .map_err(unavailable)?;
        Ok(n)
    }
}
