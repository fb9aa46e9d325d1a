//! Metric series, EMQX alarms, alert rules, channels, alerts and deliveries
//! in the embedded back end. Every call is one redb transaction.
//!
//! Layout (tables; keys → values):
//! - `metric_blocks`: (cluster, tier 0 raw | 1 roll-up, key time) → a
//!   block of points (see [`super::blocks`]: each a varint of the distance
//!   from the previous point's time, then [`Point::pack`]); a block holds
//!   the points from its key to the next block's key, and the newest one
//!   takes points until it holds [`blocks::BLOCK_BYTES`];
//!   `metric_block_counts`: cluster → (raw points, roll-ups) held, so the
//!   caps are checked without counting. An append reads the newest raw
//!   point and the open bucket's, plans with [`series::plan_append`],
//!   appends the raw points and closed buckets' roll-ups to the newest
//!   block of each tier (rewriting it) or new ones, and drops what is past
//!   each tier's retention (relative to `now`) and cap (the oldest): whole
//!   blocks, then the front of the oldest one kept, in one write
//!   transaction. (The per-point tables `metrics` and `metric_counts` of
//!   earlier builds are not read.)
//! - `alarms`: cluster → [`AlarmSet`] (JSON).
//! - `alert_rules`, `channels`: id → JSON; `project_alert_rules`,
//!   `project_channels`: "{project}/{id}" → ().
//! - `alerts`: id → JSON; `project_alerts_firing` and
//!   `project_alerts_resolved`: (project, started_at, id) → (), by state;
//!   `project_alerts_resolved_count`: project → how many resolved;
//!   `cluster_alerts_firing`: "{cluster}/{alert}" → (). Beyond
//!   `Caps::alerts_per_project` resolved alerts the oldest (by started_at)
//!   go; firing ones are never dropped.
//! - `deliveries`: id → JSON; `deliveries_due`: (next_at, id) → () for the
//!   pending ones (a claim moves `next_at` to the lease's end);
//!   `channel_deliveries`: (channel, created_at, id) → finished (a channel's
//!   log; beyond `Caps::deliveries_per_channel` finished ones the oldest
//!   go); `project_deliveries`: "{project}/{id}" → () (for the project's
//!   deletion: a deleted channel's log stays until then).
//! - `notification_counts`: (storm window's start, channel) → count;
//!   windows starting [`COUNT_WINDOWS_KEPT_MS`] before the one counted are
//!   pruned by every count.
//!
//! Deleting a cluster (`remove_cluster`) deletes its series and alarms and
//! resolves its firing alerts (they stay as history); deleting a project
//! deletes its rules, channels, alerts and deliveries.

use super::blocks::{self, Entry};
use super::{from_json, get_json, keys_with_prefix, to_json, unavailable, EmbeddedStore, Json};
use async_trait::async_trait;
use ecp_actors::alerting::*;
use ecp_actors::model::Millis;
use ecp_actors::series::{self, Point, Tier};
use ecp_actors::store::*;
use redb::{ReadableTable, TableDefinition};

/// (cluster, tier, key time) → a block of points.
type BlockTable = TableDefinition<'static, (&'static str, u8, u64), &'static [u8]>;
const METRICS: BlockTable = TableDefinition::new("metric_blocks");
const METRIC_COUNTS: TableDefinition<&str, (u64, u64)> =
    TableDefinition::new("metric_block_counts");
const ALARMS: TableDefinition<&str, Json> = TableDefinition::new("alarms");
const ALERT_RULES: TableDefinition<&str, Json> = TableDefinition::new("alert_rules");
const PROJECT_RULES: TableDefinition<&str, ()> = TableDefinition::new("project_alert_rules");
const CHANNELS: TableDefinition<&str, Json> = TableDefinition::new("channels");
const PROJECT_CHANNELS: TableDefinition<&str, ()> = TableDefinition::new("project_channels");
const ALERTS: TableDefinition<&str, Json> = TableDefinition::new("alerts");
type AlertIndex = TableDefinition<'static, (&'static str, u64, &'static str), ()>;
const PROJECT_FIRING: AlertIndex = TableDefinition::new("project_alerts_firing");
const PROJECT_RESOLVED: AlertIndex = TableDefinition::new("project_alerts_resolved");
const RESOLVED_COUNT: TableDefinition<&str, u64> =
    TableDefinition::new("project_alerts_resolved_count");
const CLUSTER_FIRING: TableDefinition<&str, ()> = TableDefinition::new("cluster_alerts_firing");
const DELIVERIES: TableDefinition<&str, Json> = TableDefinition::new("deliveries");
const DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("deliveries_due");
const CHANNEL_DELIVERIES: TableDefinition<(&str, u64, &str), bool> =
    TableDefinition::new("channel_deliveries");
const PROJECT_DELIVERIES: TableDefinition<&str, ()> = TableDefinition::new("project_deliveries");
/// (window, channel) → notifications counted.
const NOTIFY_COUNTS: TableDefinition<(u64, &str), u32> =
    TableDefinition::new("notification_counts");

/// How long a channel's window count is kept (then forgotten).
pub const COUNT_WINDOWS_KEPT_MS: Millis = 5 * 60_000;

/// Why `delete_channel` fails a pending delivery.
pub(super) const CHANNEL_DELETED: &str = "the channel was deleted";

/// Why `remove_cluster` resolves a firing alert (appended to its message).
pub(super) const CLUSTER_DELETED: &str = " (the cluster was deleted)";

/// Creates the tables (at open).
pub(super) fn create_tables(tx: &redb::WriteTransaction) -> StoreResult<()> {
    tx.open_table(METRICS).map_err(unavailable)?;
    tx.open_table(METRIC_COUNTS).map_err(unavailable)?;
    tx.open_table(ALARMS).map_err(unavailable)?;
    tx.open_table(ALERT_RULES).map_err(unavailable)?;
    tx.open_table(PROJECT_RULES).map_err(unavailable)?;
    tx.open_table(CHANNELS).map_err(unavailable)?;
    tx.open_table(PROJECT_CHANNELS).map_err(unavailable)?;
    tx.open_table(ALERTS).map_err(unavailable)?;
    tx.open_table(PROJECT_FIRING).map_err(unavailable)?;
    tx.open_table(PROJECT_RESOLVED).map_err(unavailable)?;
    tx.open_table(RESOLVED_COUNT).map_err(unavailable)?;
    tx.open_table(CLUSTER_FIRING).map_err(unavailable)?;
    tx.open_table(DELIVERIES).map_err(unavailable)?;
    tx.open_table(DUE).map_err(unavailable)?;
    tx.open_table(CHANNEL_DELIVERIES).map_err(unavailable)?;
    tx.open_table(PROJECT_DELIVERIES).map_err(unavailable)?;
    tx.open_table(NOTIFY_COUNTS).map_err(unavailable)?;
    Ok(())
}

/// The smallest string after every string starting with `s` in a tuple
/// key's first place: `(s, ..)..(after(s), ..)` is all of `s`'s keys.
fn after(s: &str) -> String {
    format!("{s}\0")
}

fn tier_no(t: Tier) -> u8 {
    match t {
        Tier::Raw => 0,
        Tier::Rollup => 1,
    }
}

/// The first `n` keys of a range, collected (redb cannot remove while it
/// iterates).
fn first_keys<K: redb::Key + 'static, V: redb::Value + 'static, T>(
    range: redb::Range<'_, K, V>,
    n: usize,
    key: impl Fn(K::SelfType<'_>) -> T,
) -> StoreResult<Vec<T>> {
    let mut out = Vec::new();
    for item in range.take(n) {
        let (k, _) = item.map_err(unavailable)?;
        out.push(key(k.value()));
    }
    Ok(out)
}

fn corrupt(cid: &str, tier: u8, start: Millis) -> StoreError {
    StoreError::Corrupt(format!("metric block {cid}/{tier}/{start}"))
}

/// The entries of a block, or `Corrupt`.
fn entries_of<'a>(
    cid: &str,
    tier: u8,
    start: Millis,
    bytes: &'a [u8],
) -> StoreResult<Vec<Entry<'a>>> {
    blocks::entries(start, bytes).ok_or_else(|| corrupt(cid, tier, start))
}

fn point_of(cid: &str, tier: u8, e: &Entry<'_>) -> StoreResult<Point> {
    e.point()
        .ok_or_else(|| StoreError::Corrupt(format!("metric point {cid}/{tier}/{}", e.at)))
}

type Block = (Millis, Vec<u8>);

/// The block of a tier holding time `at` (the one with the greatest key not
/// after it), copied out.
fn block_at(
    t: &impl ReadableTable<(&'static str, u8, u64), &'static [u8]>,
    cid: &str,
    tier: u8,
    at: Millis,
) -> StoreResult<Option<Block>> {
    match t
        .range((cid, tier, 0)..=(cid, tier, at))
        .map_err(unavailable)?
        .next_back()
    {
        Some(item) => {
            let (k, v) = item.map_err(unavailable)?;
            Ok(Some((k.value().2, v.value().to_vec())))
        }
        None => Ok(None),
    }
}

/// The oldest or newest block of a tier, copied out.
fn end_block(
    t: &impl ReadableTable<(&'static str, u8, u64), &'static [u8]>,
    cid: &str,
    tier: u8,
    newest: bool,
) -> StoreResult<Option<Block>> {
    let mut range = t
        .range((cid, tier, 0)..=(cid, tier, u64::MAX))
        .map_err(unavailable)?;
    let item = if newest {
        range.next_back()
    } else {
        range.next()
    };
    match item {
        Some(item) => {
            let (k, v) = item.map_err(unavailable)?;
            Ok(Some((k.value().2, v.value().to_vec())))
        }
        None => Ok(None),
    }
}

/// The points of a tier with `since <= at <= until`, oldest first.
fn read_points(
    t: &impl ReadableTable<(&'static str, u8, u64), &'static [u8]>,
    cid: &str,
    tier: u8,
    since: Millis,
    until: Millis,
) -> StoreResult<Vec<Point>> {
    let mut out = Vec::new();
    if since > until {
        return Ok(out);
    }
    // The block holding `since` may begin before it.
    let first = match t
        .range((cid, tier, 0)..=(cid, tier, since))
        .map_err(unavailable)?
        .next_back()
    {
        Some(item) => item.map_err(unavailable)?.0.value().2,
        None => since,
    };
    for item in t
        .range((cid, tier, first)..=(cid, tier, until))
        .map_err(unavailable)?
    {
        let (k, v) = item.map_err(unavailable)?;
        let start = k.value().2;
        for e in entries_of(cid, tier, start, v.value())? {
            if e.at >= since && e.at <= until {
                out.push(point_of(cid, tier, &e)?);
            }
        }
    }
    Ok(out)
}

/// The newest point of a tier.
fn newest_point(
    t: &impl ReadableTable<(&'static str, u8, u64), &'static [u8]>,
    cid: &str,
    tier: u8,
) -> StoreResult<Option<Point>> {
    let Some((start, bytes)) = end_block(t, cid, tier, true)? else {
        return Ok(None);
    };
    match entries_of(cid, tier, start, &bytes)?.last() {
        Some(e) => Ok(Some(point_of(cid, tier, e)?)),
        None => Ok(None),
    }
}

/// Writes points (in time order) to a tier, each into the block holding
/// its time; past the newest block's last point, the newest block takes
/// them until it holds [`blocks::BLOCK_BYTES`], then a new block begins.
/// Returns how many times are new (a point at a stored time replaces it).
fn write_points(
    t: &mut redb::Table<(&str, u8, u64), &[u8]>,
    cid: &str,
    tier: u8,
    points: &[Point],
) -> StoreResult<u64> {
    let packed: Vec<Vec<u8>> = points.iter().map(Point::pack).collect();
    let new: Vec<Entry> = points
        .iter()
        .zip(&packed)
        .map(|(p, b)| Entry {
            at: p.at,
            packed: b,
        })
        .collect();
    let mut added = 0u64;
    let mut rest = new.as_slice();
    while let Some(first) = rest.first() {
        let next_key = match t
            .range((cid, tier, first.at.saturating_add(1))..=(cid, tier, u64::MAX))
            .map_err(unavailable)?
            .next()
        {
            Some(item) => Some(item.map_err(unavailable)?.0.value().2),
            None => None,
        };
        let found = block_at(t, cid, tier, first.at)?;
        let (start, bytes) = found.unwrap_or((first.at, Vec::new()));
        let old = entries_of(cid, tier, start, &bytes)?;
        let last_old = old.last().map(|e| e.at);
        let newest = next_key.is_none();
        // A full newest block takes no later points: a new block begins.
        let (start, old) = if newest
            && bytes.len() >= blocks::BLOCK_BYTES
            && last_old.is_some_and(|l| first.at > l)
        {
            (first.at, Vec::new())
        } else {
            (start, old)
        };
        // What the block holds as points are appended (merged ones are
        // not counted: a replay of stored times is rare and bounded).
        let mut size = if old.is_empty() { 0 } else { bytes.len() };
        let mut prev = old.last().map_or(start, |e| e.at);
        let mut take = 0;
        for e in rest {
            if next_key.is_some_and(|n| e.at >= n) {
                break;
            }
            if newest && e.at > prev {
                if take > 0 && size >= blocks::BLOCK_BYTES {
                    break;
                }
                size += blocks::entry_len(prev, e);
                prev = e.at;
            }
            take += 1;
        }
        let (merged, n) = blocks::merge(&old, &rest[..take]);
        t.insert(
            (cid, tier, start),
            blocks::encode(start, &merged).as_slice(),
        )
        .map_err(unavailable)?;
        added += n as u64;
        rest = &rest[take..];
    }
    Ok(added)
}

/// Drops one tier's points of a cluster older than `keep_from`, then the
/// oldest beyond `cap`: whole blocks, then the front of the oldest one
/// kept. `held` is how many it held; returns how many now.
fn trim_tier(
    t: &mut redb::Table<(&str, u8, u64), &[u8]>,
    cid: &str,
    tier: u8,
    keep_from: Millis,
    cap: u64,
    mut held: u64,
) -> StoreResult<u64> {
    while let Some((start, bytes)) = end_block(t, cid, tier, false)? {
        let old = entries_of(cid, tier, start, &bytes)?;
        let expired = old.iter().take_while(|e| e.at < keep_from).count();
        let excess = usize::try_from(held.saturating_sub(cap.max(1))).unwrap_or(usize::MAX);
        let drop = expired.max(excess).min(old.len());
        if drop == old.len() {
            t.remove((cid, tier, start)).map_err(unavailable)?;
            held = held.saturating_sub(drop as u64);
            continue;
        }
        if drop > 0 {
            t.insert(
                (cid, tier, start),
                blocks::encode(start, &old[drop..]).as_slice(),
            )
            .map_err(unavailable)?;
            held = held.saturating_sub(drop as u64);
        }
        break;
    }
    Ok(held)
}

/// Appends samples (see [`MetricStore::append_metrics`]) inside `tx`.
fn append_metrics_in(
    tx: &redb::WriteTransaction,
    cid: &str,
    samples: &[ecp_protocol::MetricSample],
    min_spacing: Millis,
    now: Millis,
    caps: Caps,
) -> StoreResult<MetricsAppended> {
    let mut t = tx.open_table(METRICS).map_err(unavailable)?;
    let last = newest_point(&t, cid, 0)?.map(|p| p.at);
    let open = match last {
        Some(last) => read_points(&t, cid, 0, series::bucket_of(last), u64::MAX)?,
        None => Vec::new(),
    };
    let plan = series::plan_append(last, &open, samples, min_spacing, now);
    let mut counts = tx.open_table(METRIC_COUNTS).map_err(unavailable)?;
    let (mut raw, mut rollups) = counts
        .get(cid)
        .map_err(unavailable)?
        .map(|v| v.value())
        .unwrap_or((0, 0));
    raw += write_points(&mut t, cid, 0, &plan.raw)?;
    rollups += write_points(&mut t, cid, 1, &plan.rollups)?;
    // Kept while `at + retention > now`.
    let raw_from = now
        .saturating_add(1)
        .saturating_sub(series::RAW_RETENTION_MS);
    let rollup_from = now
        .saturating_add(1)
        .saturating_sub(series::ROLLUP_RETENTION_MS);
    let raw = trim_tier(&mut t, cid, 0, raw_from, caps.raw_points, raw)?;
    let rollups = trim_tier(&mut t, cid, 1, rollup_from, caps.rollup_points, rollups)?;
    if raw == 0 && rollups == 0 {
        counts.remove(cid).map_err(unavailable)?;
    } else {
        counts.insert(cid, (raw, rollups)).map_err(unavailable)?;
    }
    Ok(MetricsAppended {
        kept: plan.raw.len(),
        refused: plan.refused,
        rollups: plan.rollups.len(),
    })
}

/// Removes an alert's index entries (as stored: `old`).
fn unindex_alert(tx: &redb::WriteTransaction, old: &AlertRecord) -> StoreResult<()> {
    let key = (old.project_id.as_str(), old.started_at, old.id.as_str());
    match old.state {
        AlertState::Firing => {
            tx.open_table(PROJECT_FIRING)
                .map_err(unavailable)?
                .remove(key)
                .map_err(unavailable)?;
        }
        AlertState::Resolved => {
            let removed = tx
                .open_table(PROJECT_RESOLVED)
                .map_err(unavailable)?
                .remove(key)
                .map_err(unavailable)?
                .is_some();
            if removed {
                add_resolved(tx, &old.project_id, -1)?;
            }
        }
    }
    tx.open_table(CLUSTER_FIRING)
        .map_err(unavailable)?
        .remove(format!("{}/{}", old.cluster_id, old.id).as_str())
        .map_err(unavailable)?;
    Ok(())
}

/// Moves a project's resolved count by `by`; returns the new count.
fn add_resolved(tx: &redb::WriteTransaction, project: &str, by: i64) -> StoreResult<u64> {
    let mut t = tx.open_table(RESOLVED_COUNT).map_err(unavailable)?;
    let was = t.get(project).map_err(unavailable)?.map(|v| v.value());
    let now = was.unwrap_or(0).saturating_add_signed(by);
    if now == 0 {
        t.remove(project).map_err(unavailable)?;
    } else {
        t.insert(project, now).map_err(unavailable)?;
    }
    Ok(now)
}

/// Writes an alert with its indexes, trims the project's resolved alerts.
fn record_alert_in(
    tx: &redb::WriteTransaction,
    alert: &AlertRecord,
    caps: Caps,
) -> StoreResult<()> {
    let mut alerts = tx.open_table(ALERTS).map_err(unavailable)?;
    if let Some(old) = get_json::<AlertRecord>(&alerts, &alert.id)? {
        unindex_alert(tx, &old)?;
    }
    alerts
        .insert(alert.id.as_str(), to_json(alert)?.as_slice())
        .map_err(unavailable)?;
    let key = (
        alert.project_id.as_str(),
        alert.started_at,
        alert.id.as_str(),
    );
    match alert.state {
        AlertState::Firing => {
            tx.open_table(PROJECT_FIRING)
                .map_err(unavailable)?
                .insert(key, ())
                .map_err(unavailable)?;
            tx.open_table(CLUSTER_FIRING)
                .map_err(unavailable)?
                .insert(format!("{}/{}", alert.cluster_id, alert.id).as_str(), ())
                .map_err(unavailable)?;
        }
        AlertState::Resolved => {
            tx.open_table(PROJECT_RESOLVED)
                .map_err(unavailable)?
                .insert(key, ())
                .map_err(unavailable)?;
            let held = add_resolved(tx, &alert.project_id, 1)?;
            let excess = held.saturating_sub(caps.alerts_per_project.max(1) as u64);
            if excess > 0 {
                let p = alert.project_id.as_str();
                let mut idx = tx.open_table(PROJECT_RESOLVED).map_err(unavailable)?;
                let old = first_keys(
                    idx.range((p, 0, "")..(after(p).as_str(), 0, ""))
                        .map_err(unavailable)?,
                    excess as usize,
                    |k| (k.1, k.2.to_string()),
                )?;
                for (started, id) in &old {
                    idx.remove((p, *started, id.as_str()))
                        .map_err(unavailable)?;
                    alerts.remove(id.as_str()).map_err(unavailable)?;
                }
                drop(idx);
                add_resolved(tx, p, -(old.len() as i64))?;
            }
        }
    }
    Ok(())
}

/// Writes a delivery with its indexes (replacing what it was); a finished
/// one trims its channel's log.
fn write_delivery_in(tx: &redb::WriteTransaction, d: &Delivery, caps: Caps) -> StoreResult<()> {
    let mut t = tx.open_table(DELIVERIES).map_err(unavailable)?;
    let mut due = tx.open_table(DUE).map_err(unavailable)?;
    let mut log = tx.open_table(CHANNEL_DELIVERIES).map_err(unavailable)?;
    let mut projects = tx.open_table(PROJECT_DELIVERIES).map_err(unavailable)?;
    if let Some(old) = get_json::<Delivery>(&t, &d.id)? {
        due.remove((old.next_at, old.id.as_str()))
            .map_err(unavailable)?;
        log.remove((old.channel_id.as_str(), old.created_at, old.id.as_str()))
            .map_err(unavailable)?;
        projects
            .remove(format!("{}/{}", old.project_id, old.id).as_str())
            .map_err(unavailable)?;
    }
    t.insert(d.id.as_str(), to_json(d)?.as_slice())
        .map_err(unavailable)?;
    let finished = d.state != DeliveryState::Pending;
    if !finished {
        due.insert((d.next_at, d.id.as_str()), ())
            .map_err(unavailable)?;
    }
    log.insert(
        (d.channel_id.as_str(), d.created_at, d.id.as_str()),
        finished,
    )
    .map_err(unavailable)?;
    projects
        .insert(format!("{}/{}", d.project_id, d.id).as_str(), ())
        .map_err(unavailable)?;
    if finished {
        let ch = d.channel_id.as_str();
        let mut done = Vec::new();
        for item in log
            .range((ch, 0, "")..(after(ch).as_str(), 0, ""))
            .map_err(unavailable)?
        {
            let (k, v) = item.map_err(unavailable)?;
            if v.value() {
                let k = k.value();
                done.push((k.1, k.2.to_string()));
            }
        }
        let excess = done
            .len()
            .saturating_sub(caps.deliveries_per_channel.max(1));
        for (created, id) in done.into_iter().take(excess) {
            log.remove((ch, created, id.as_str()))
                .map_err(unavailable)?;
            if let Some(gone) = t.remove(id.as_str()).map_err(unavailable)? {
                let gone: Delivery = from_json(gone.value())?;
                projects
                    .remove(format!("{}/{}", gone.project_id, id).as_str())
                    .map_err(unavailable)?;
            }
        }
    }
    Ok(())
}

/// Deletes a project's rules, channels, alerts and deliveries inside `tx`
/// (part of `delete_project`).
pub(super) fn delete_project_in(tx: &redb::WriteTransaction, project: &str) -> StoreResult<()> {
    let prefix = format!("{project}/");
    for (index, records) in [(PROJECT_RULES, ALERT_RULES), (PROJECT_CHANNELS, CHANNELS)] {
        let mut idx = tx.open_table(index).map_err(unavailable)?;
        let mut t = tx.open_table(records).map_err(unavailable)?;
        for k in keys_with_prefix(&idx, &prefix)? {
            idx.remove(k.as_str()).map_err(unavailable)?;
            if let Some((_, id)) = k.split_once('/') {
                t.remove(id).map_err(unavailable)?;
            }
        }
    }
    let mut alerts = tx.open_table(ALERTS).map_err(unavailable)?;
    let mut cluster_firing = tx.open_table(CLUSTER_FIRING).map_err(unavailable)?;
    for index in [PROJECT_FIRING, PROJECT_RESOLVED] {
        let mut idx = tx.open_table(index).map_err(unavailable)?;
        let keys = first_keys(
            idx.range((project, 0, "")..(after(project).as_str(), 0, ""))
                .map_err(unavailable)?,
            usize::MAX,
            |k| (k.1, k.2.to_string()),
        )?;
        for (started, id) in keys {
            idx.remove((project, started, id.as_str()))
                .map_err(unavailable)?;
            if let Some(a) = alerts.remove(id.as_str()).map_err(unavailable)? {
                let a: AlertRecord = from_json(a.value())?;
                cluster_firing
                    .remove(format!("{}/{}", a.cluster_id, a.id).as_str())
                    .map_err(unavailable)?;
            }
        }
    }
    tx.open_table(RESOLVED_COUNT)
        .map_err(unavailable)?
        .remove(project)
        .map_err(unavailable)?;
    let mut idx = tx.open_table(PROJECT_DELIVERIES).map_err(unavailable)?;
    let mut t = tx.open_table(DELIVERIES).map_err(unavailable)?;
    let mut due = tx.open_table(DUE).map_err(unavailable)?;
    let mut log = tx.open_table(CHANNEL_DELIVERIES).map_err(unavailable)?;
    for k in keys_with_prefix(&idx, &prefix)? {
        idx.remove(k.as_str()).map_err(unavailable)?;
        let Some((_, id)) = k.split_once('/') else {
            continue;
        };
        if let Some(d) = t.remove(id).map_err(unavailable)? {
            let d: Delivery = from_json(d.value())?;
            due.remove((d.next_at, id)).map_err(unavailable)?;
            log.remove((d.channel_id.as_str(), d.created_at, id))
                .map_err(unavailable)?;
        }
    }
    Ok(())
}

/// Deletes a cluster's series and alarms and resolves its firing alerts
/// inside `tx` (part of `remove_cluster`).
pub(super) fn remove_cluster_in(
    tx: &redb::WriteTransaction,
    cid: &str,
    now: Millis,
    caps: Caps,
) -> StoreResult<()> {
    tx.open_table(METRICS)
        .map_err(unavailable)?
        .retain_in((cid, 0, 0)..=(cid, u8::MAX, u64::MAX), |_, _| false)
        .map_err(unavailable)?;
    tx.open_table(METRIC_COUNTS)
        .map_err(unavailable)?
        .remove(cid)
        .map_err(unavailable)?;
    tx.open_table(ALARMS)
        .map_err(unavailable)?
        .remove(cid)
        .map_err(unavailable)?;
    let firing = keys_with_prefix(
        &tx.open_table(CLUSTER_FIRING).map_err(unavailable)?,
        &format!("{cid}/"),
    )?;
    for k in firing {
        let Some((_, id)) = k.split_once('/') else {
            continue;
        };
        let alert = get_json::<AlertRecord>(&tx.open_table(ALERTS).map_err(unavailable)?, id)?;
        match alert {
            Some(mut a) if a.state == AlertState::Firing => {
                a.state = AlertState::Resolved;
                a.resolved_at = Some(now);
                a.message.push_str(CLUSTER_DELETED);
                record_alert_in(tx, &a, caps)?;
            }
            _ => {
                tx.open_table(CLUSTER_FIRING)
                    .map_err(unavailable)?
                    .remove(k.as_str())
                    .map_err(unavailable)?;
            }
        }
    }
    Ok(())
}

/// Records by id from a JSON table, skipping missing ones.
fn records<T: serde::de::DeserializeOwned>(
    t: &impl ReadableTable<&'static str, Json>,
    ids: impl IntoIterator<Item = String>,
) -> StoreResult<Vec<T>> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(r) = get_json(t, &id)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The ids under "{prefix}/" of an index.
fn ids_under(t: &impl ReadableTable<&'static str, ()>, owner: &str) -> StoreResult<Vec<String>> {
    let prefix = format!("{owner}/");
    Ok(keys_with_prefix(t, &prefix)?
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// The newest `limit` (started_at, id) of one state index of a project.
fn newest_alerts(
    t: &impl ReadableTable<(&'static str, u64, &'static str), ()>,
    project: &str,
    limit: usize,
) -> StoreResult<Vec<(Millis, String)>> {
    let mut out = Vec::new();
    for item in t
        .range((project, 0, "")..(after(project).as_str(), 0, ""))
        .map_err(unavailable)?
        .rev()
        .take(limit)
    {
        let (k, _) = item.map_err(unavailable)?;
        let k = k.value();
        out.push((k.1, k.2.to_string()));
    }
    Ok(out)
}

#[async_trait]
impl MetricStore for EmbeddedStore {
    async fn append_metrics(
        &self,
        cluster_id: &str,
        samples: &[ecp_protocol::MetricSample],
        min_spacing: Millis,
        now: Millis,
    ) -> StoreResult<MetricsAppended> {
        let (cid, samples, caps) = (cluster_id.to_string(), samples.to_vec(), self.caps);
        self.write(move |tx| append_metrics_in(tx, &cid, &samples, min_spacing, now, caps))
            .await
    }

    async fn metric_points(
        &self,
        cluster_id: &str,
        tier: Tier,
        since: Millis,
        until: Millis,
    ) -> StoreResult<Vec<Point>> {
        let (cid, tier) = (cluster_id.to_string(), tier_no(tier));
        self.read(move |tx| {
            let t = tx.open_table(METRICS).map_err(unavailable)?;
            read_points(&t, &cid, tier, since, until)
        })
        .await
    }

    async fn latest_points(&self, cluster_ids: &[String]) -> StoreResult<Vec<Option<Point>>> {
        let ids = cluster_ids.to_vec();
        self.read(move |tx| {
            let t = tx.open_table(METRICS).map_err(unavailable)?;
            ids.iter().map(|cid| newest_point(&t, cid, 0)).collect()
        })
        .await
    }

    async fn metrics_bytes(&self, cluster_id: &str) -> StoreResult<u64> {
        let cid = cluster_id.to_string();
        self.read(move |tx| {
            let t = tx.open_table(METRICS).map_err(unavailable)?;
            // Each block's key (cluster, tier, time) and points.
            let key = cid.len() as u64 + 1 + 8;
            let mut bytes = 0u64;
            for item in t
                .range((cid.as_str(), 0, 0)..=(cid.as_str(), u8::MAX, u64::MAX))
                .map_err(unavailable)?
            {
                let (_, v) = item.map_err(unavailable)?;
                bytes += key + v.value().len() as u64;
            }
            Ok(bytes)
        })
        .await
    }

    async fn alarms(&self, cluster_id: &str) -> StoreResult<AlarmSet> {
        Ok(self
            .get_one::<AlarmSet>(ALARMS, cluster_id)
            .await?
            .unwrap_or_default())
    }

    async fn put_alarms(&self, cluster_id: &str, alarms: &AlarmSet) -> StoreResult<()> {
        self.put_one(ALARMS, cluster_id, alarms).await
    }
}

#[async_trait]
impl AlertStore for EmbeddedStore {
    async fn alert_rules(&self, project_id: &str) -> StoreResult<Vec<AlertRule>> {
        let project = project_id.to_string();
        self.read(move |tx| {
            let ids = ids_under(
                &tx.open_table(PROJECT_RULES).map_err(unavailable)?,
                &project,
            )?;
            let mut v: Vec<AlertRule> =
                records(&tx.open_table(ALERT_RULES).map_err(unavailable)?, ids)?;
            v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            Ok(v)
        })
        .await
    }

    async fn alert_rule(&self, id: &str) -> StoreResult<Option<AlertRule>> {
        self.get_one(ALERT_RULES, id).await
    }

    async fn put_alert_rule(&self, rule: &AlertRule) -> StoreResult<()> {
        let rule = rule.clone();
        self.write(move |tx| {
            let mut t = tx.open_table(ALERT_RULES).map_err(unavailable)?;
            let mut idx = tx.open_table(PROJECT_RULES).map_err(unavailable)?;
            if let Some(old) = get_json::<AlertRule>(&t, &rule.id)? {
                idx.remove(format!("{}/{}", old.project_id, old.id).as_str())
                    .map_err(unavailable)?;
            }
            t.insert(rule.id.as_str(), to_json(&rule)?.as_slice())
                .map_err(unavailable)?;
            idx.insert(format!("{}/{}", rule.project_id, rule.id).as_str(), ())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn delete_alert_rule(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |tx| {
            let mut t = tx.open_table(ALERT_RULES).map_err(unavailable)?;
            let Some(old) = get_json::<AlertRule>(&t, &id)? else {
                return Err(StoreError::NotFound);
            };
            t.remove(id.as_str()).map_err(unavailable)?;
            tx.open_table(PROJECT_RULES)
                .map_err(unavailable)?
                .remove(format!("{}/{}", old.project_id, id).as_str())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn channels(&self, project_id: &str) -> StoreResult<Vec<ChannelRecord>> {
        let project = project_id.to_string();
        self.read(move |tx| {
            let ids = ids_under(
                &tx.open_table(PROJECT_CHANNELS).map_err(unavailable)?,
                &project,
            )?;
            let mut v: Vec<ChannelRecord> =
                records(&tx.open_table(CHANNELS).map_err(unavailable)?, ids)?;
            v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            Ok(v)
        })
        .await
    }

    async fn channel(&self, id: &str) -> StoreResult<Option<ChannelRecord>> {
        self.get_one(CHANNELS, id).await
    }

    async fn put_channel(&self, channel: &ChannelRecord) -> StoreResult<()> {
        let ch = channel.clone();
        self.write(move |tx| {
            let mut t = tx.open_table(CHANNELS).map_err(unavailable)?;
            let mut idx = tx.open_table(PROJECT_CHANNELS).map_err(unavailable)?;
            if let Some(old) = get_json::<ChannelRecord>(&t, &ch.id)? {
                idx.remove(format!("{}/{}", old.project_id, old.id).as_str())
                    .map_err(unavailable)?;
            }
            t.insert(ch.id.as_str(), to_json(&ch)?.as_slice())
                .map_err(unavailable)?;
            idx.insert(format!("{}/{}", ch.project_id, ch.id).as_str(), ())
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn delete_channel(&self, id: &str) -> StoreResult<()> {
        let (id, caps) = (id.to_string(), self.caps);
        self.write(move |tx| {
            let mut t = tx.open_table(CHANNELS).map_err(unavailable)?;
            let Some(old) = get_json::<ChannelRecord>(&t, &id)? else {
                return Err(StoreError::NotFound);
            };
            t.remove(id.as_str()).map_err(unavailable)?;
            drop(t);
            tx.open_table(PROJECT_CHANNELS)
                .map_err(unavailable)?
                .remove(format!("{}/{}", old.project_id, id).as_str())
                .map_err(unavailable)?;
            // Its pending deliveries fail (the log stays with the project).
            let pending = {
                let log = tx.open_table(CHANNEL_DELIVERIES).map_err(unavailable)?;
                let mut v = Vec::new();
                for item in log
                    .range((id.as_str(), 0, "")..(after(&id).as_str(), 0, ""))
                    .map_err(unavailable)?
                {
                    let (k, finished) = item.map_err(unavailable)?;
                    if !finished.value() {
                        v.push(k.value().2.to_string());
                    }
                }
                v
            };
            let now = ecp_actors::model::now_ms();
            for did in pending {
                let d =
                    get_json::<Delivery>(&tx.open_table(DELIVERIES).map_err(unavailable)?, &did)?;
                if let Some(mut d) = d {
                    d.state = DeliveryState::Failed;
                    d.finished_at = Some(now);
                    d.last_error = Some(CHANNEL_DELETED.to_string());
                    write_delivery_in(tx, &d, caps)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn record_alert(&self, alert: &AlertRecord, deliveries: &[Delivery]) -> StoreResult<()> {
        let (alert, deliveries, caps) = (alert.clone(), deliveries.to_vec(), self.caps);
        self.write(move |tx| {
            record_alert_in(tx, &alert, caps)?;
            for d in &deliveries {
                write_delivery_in(tx, d, caps)?;
            }
            Ok(())
        })
        .await
    }

    async fn alerts(
        &self,
        project_id: &str,
        state: Option<AlertState>,
        limit: usize,
    ) -> StoreResult<Vec<AlertRecord>> {
        let project = project_id.to_string();
        self.read(move |tx| {
            let mut keys = Vec::new();
            if state != Some(AlertState::Resolved) {
                let t = tx.open_table(PROJECT_FIRING).map_err(unavailable)?;
                keys.extend(newest_alerts(&t, &project, limit)?);
            }
            if state != Some(AlertState::Firing) {
                let t = tx.open_table(PROJECT_RESOLVED).map_err(unavailable)?;
                keys.extend(newest_alerts(&t, &project, limit)?);
            }
            keys.sort_by(|a, b| b.cmp(a));
            keys.truncate(limit);
            records(
                &tx.open_table(ALERTS).map_err(unavailable)?,
                keys.into_iter().map(|(_, id)| id),
            )
        })
        .await
    }

    async fn firing_alerts_of_cluster(&self, cluster_id: &str) -> StoreResult<Vec<AlertRecord>> {
        let cid = cluster_id.to_string();
        self.read(move |tx| {
            let ids = ids_under(&tx.open_table(CLUSTER_FIRING).map_err(unavailable)?, &cid)?;
            let mut v: Vec<AlertRecord> =
                records(&tx.open_table(ALERTS).map_err(unavailable)?, ids)?;
            v.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
            Ok(v)
        })
        .await
    }

    async fn queue_deliveries(&self, deliveries: &[Delivery]) -> StoreResult<()> {
        let (deliveries, caps) = (deliveries.to_vec(), self.caps);
        self.write(move |tx| {
            for d in &deliveries {
                write_delivery_in(tx, d, caps)?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        self.write(move |tx| {
            let mut due = tx.open_table(DUE).map_err(unavailable)?;
            let mut t = tx.open_table(DELIVERIES).map_err(unavailable)?;
            let claimed = first_keys(
                due.range(..(now.saturating_add(1), ""))
                    .map_err(unavailable)?,
                limit,
                |k| (k.0, k.1.to_string()),
            )?;
            let until = now.saturating_add(lease_ms);
            let mut out = Vec::with_capacity(claimed.len());
            for (at, id) in claimed {
                due.remove((at, id.as_str())).map_err(unavailable)?;
                let Some(mut d) = get_json::<Delivery>(&t, &id)? else {
                    continue;
                };
                d.next_at = until;
                t.insert(id.as_str(), to_json(&d)?.as_slice())
                    .map_err(unavailable)?;
                due.insert((until, id.as_str()), ()).map_err(unavailable)?;
                out.push(d);
            }
            Ok(out)
        })
        .await
    }

    async fn finish_delivery(&self, delivery: &Delivery) -> StoreResult<()> {
        let (d, caps) = (delivery.clone(), self.caps);
        self.write(move |tx| {
            // No resurrection: the project (or the trimming) may have
            // removed it meanwhile.
            if tx
                .open_table(DELIVERIES)
                .map_err(unavailable)?
                .get(d.id.as_str())
                .map_err(unavailable)?
                .is_none()
            {
                return Err(StoreError::NotFound);
            }
            write_delivery_in(tx, &d, caps)
        })
        .await
    }

    async fn deliveries(&self, channel_id: &str, limit: usize) -> StoreResult<Vec<Delivery>> {
        let ch = channel_id.to_string();
        self.read(move |tx| {
            let log = tx.open_table(CHANNEL_DELIVERIES).map_err(unavailable)?;
            let mut ids = Vec::new();
            for item in log
                .range((ch.as_str(), 0, "")..(after(&ch).as_str(), 0, ""))
                .map_err(unavailable)?
                .rev()
                .take(limit)
            {
                let (k, _) = item.map_err(unavailable)?;
                ids.push(k.value().2.to_string());
            }
            records(&tx.open_table(DELIVERIES).map_err(unavailable)?, ids)
        })
        .await
    }

    async fn count_notification(&self, channel_id: &str, window: Millis) -> StoreResult<u32> {
        let ch = channel_id.to_string();
        self.write(move |tx| {
            let mut t = tx.open_table(NOTIFY_COUNTS).map_err(unavailable)?;
            let n = t
                .get((window, ch.as_str()))
                .map_err(unavailable)?
                .map(|v| v.value())
                .unwrap_or(0)
                .saturating_add(1);
            t.insert((window, ch.as_str()), n).map_err(unavailable)?;
            // Windows are a minute (shorter in tests): older ones are over.
            let forget = window.saturating_sub(COUNT_WINDOWS_KEPT_MS);
            t.retain_in(..(forget, ""), |_, _| false)
                .map_err(unavailable)?;
            Ok(n)
        })
        .await
    }
}
