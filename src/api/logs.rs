//! `GET …/clusters/{clusterId}/logs`: the EMQX log lines agents collected,
//! newest first and paged, or (with `after`) the lines newer than a seq,
//! oldest first, for a live tail.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::policy::Need;
use crate::AppState;
use actix_web::{web, HttpResponse};
use ecp_actors::model::{LogQuery, StoredLog};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

use ecp_protocol::{log_level, LOG_LEVELS as LEVELS};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// This level or more severe: debug, info, notice, warning, error, critical, alert, emergency.
    pub level: Option<String>,
    /// Exactly this EMQX node.
    pub node: Option<String>,
    /// RFC 3339 time or Unix milliseconds, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Case-insensitive text anywhere in the line.
    pub q: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<usize>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
    /// Lines after this position, oldest first (live tail): a `seq` for a
    /// cluster, the `newest` of an earlier answer for a project.
    pub after: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogView {
    pub seq: u64,
    pub time: Option<String>,
    pub level: &'static str,
    pub node: String,
    pub message: String,
    pub fields: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct LogPageView {
    pub data: Vec<LogView>,
    /// Pass as `cursor` for older lines (with `after`: as `after` for newer
    /// ones); null at the end.
    pub next: Option<String>,
    /// The scan budget (`logs.scan_lines_per_request` stored lines per
    /// request) ran out before `limit` matches or the end were reached:
    /// `next` continues from where the scan stopped, also when `data` is
    /// empty.
    pub partial: bool,
    /// Stored lines read for this answer.
    pub scanned: u64,
}

fn view(l: StoredLog) -> LogView {
    LogView {
        seq: l.seq,
        time: (l.time_us > 0).then(|| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(l.time_us);
            humantime::format_rfc3339_micros(t).to_string()
        }),
        level: LEVELS.get(l.level as usize).copied().unwrap_or("info"),
        node: l.node,
        message: l.message,
        fields: if l.fields.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_str(&l.fields).unwrap_or(serde_json::json!({}))
        },
    }
}

/// RFC 3339 or Unix milliseconds → Unix microseconds.
pub(crate) fn parse_time(what: &'static str, s: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = s.trim().parse::<u64>() {
        return Ok(ms.saturating_mul(1000));
    }
    humantime::parse_rfc3339_weak(s.trim())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_micros() as u64)
        .ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_TIME",
                format!("{what}: {s:?} is neither an RFC 3339 time (2024-03-20T11:08:39Z) nor Unix milliseconds"),
            )
        })
}

/// Parses the query into a store query; every problem is named.
pub fn to_query(p: LogParams) -> Result<LogQuery, ApiError> {
    let min_level = match p.level.as_deref().filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => Some(log_level(l).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_LEVEL",
                format!("level {l:?} is not one of {}", LEVELS.join(", ")),
            )
        })?),
    };
    let since_us = p
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_time("since", s))
        .transpose()?;
    let until_us = p
        .until
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_time("until", s))
        .transpose()?;
    if let (Some(a), Some(b)) = (since_us, until_us) {
        if a > b {
            return Err(ApiError::bad_request(
                "INVALID_TIME",
                "since is after until",
            ));
        }
    }
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "INVALID_LIMIT",
            "limit must be 1 to 1000",
        ));
    }
    let before = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| {
            ApiError::bad_request("INVALID_CURSOR", "cursor is not one this server gave out")
        })?),
    };
    Ok(LogQuery {
        min_level,
        node: p.node.filter(|n| !n.is_empty()),
        since_us,
        until_us,
        text: p.q.filter(|q| !q.is_empty()),
        before,
        after: p
            .after
            .as_deref()
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(
                        "INVALID_CURSOR",
                        "after is not a seq this server gave out",
                    )
                })
            })
            .transpose()?,
        limit,
        scan_budget: None,
    })
}

/// Stored lines one request may read.
fn scan_budget(state: &AppState) -> usize {
    usize::try_from(state.config.logs.scan_lines_per_request)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The seq of a cluster's newest stored line (0: none); reads one line.
async fn newest_seq(state: &AppState, cluster_id: &str) -> Result<u64, ApiError> {
    let probe = LogQuery {
        limit: 1,
        scan_budget: Some(1),
        ..Default::default()
    };
    let top = state.deps.store.logs(cluster_id, &probe).await?;
    Ok(top.data.first().map(|l| l.seq).unwrap_or(0))
}

/// Each cluster's share of a project request's budget.
pub fn share(budget: usize, clusters: usize) -> usize {
    (budget / clusters.max(1)).max(budget.min(1000))
}

/// EMQX log lines of the cluster. A search reads at most
/// `logs.scan_lines_per_request` stored lines; when it stops there the
/// answer says `partial` and `next` continues the search.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/logs", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path), LogParams),
    responses((status = 200, body = LogPageView), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn logs(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String, String)>,
    q: web::Query<LogParams>,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    crate::api::clusters::cluster_in(&state, &user, Need::Read, &org, &project, &id).await?;
    let mut query = to_query(q.into_inner())?;
    query.scan_budget = Some(scan_budget(&state));
    let page = state.deps.store.logs(&id, &query).await?;
    Ok(HttpResponse::Ok().json(LogPageView {
        data: page.data.into_iter().map(view).collect(),
        next: page.next.map(|n| n.to_string()),
        partial: page.partial,
        scanned: page.scanned,
    }))
}

// ------------------------------------------------------------------ project

/// A per-cluster position: "clusterId:seq,clusterId:seq".
pub fn parse_positions(s: &str) -> Result<HashMap<String, u64>, ApiError> {
    let bad = || ApiError::bad_request("INVALID_CURSOR", "cursor is not one this server gave out");
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (c, n) = p.split_once(':').ok_or_else(bad)?;
            let n = n.parse::<u64>().map_err(|_| bad())?;
            if c.is_empty() || c.len() > 64 {
                return Err(bad());
            }
            Ok((c.to_string(), n))
        })
        .collect()
}

pub fn format_positions(p: &HashMap<String, u64>) -> String {
    let mut v: Vec<_> = p.iter().collect();
    v.sort();
    v.iter()
        .map(|(c, n)| format!("{c}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One cluster's lines in its own order, and where its store read stopped
/// (`next`: more may follow; with `partial`, unread lines may hold matches).
pub struct Stream {
    pub cluster_id: String,
    pub lines: std::collections::VecDeque<StoredLog>,
    pub next: Option<u64>,
}

/// Merges the clusters' streams by time, always taking the head that comes
/// first (newest first, or oldest first for a tail), so each cluster gives a
/// prefix of its stream and a per-cluster position resumes without gaps.
/// A stream whose read lines ran out while its store has more (its scan
/// budget ended) cannot be ordered against the others: the merge stops
/// there. Returns the lines, the new position per cluster moved (the last
/// line taken, or where the read stopped once all of its lines were taken),
/// whether anything is left, and whether the merge stopped early.
pub fn merge(mut streams: Vec<Stream>, limit: usize, newest_first: bool) -> Merged {
    let mut out = Vec::new();
    let mut last = HashMap::new();
    let mut stalled = false;
    while out.len() < limit {
        if streams
            .iter()
            .any(|s| s.lines.is_empty() && s.next.is_some())
        {
            stalled = true;
            break;
        }
        let pick = streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.lines.front().map(|l| (i, l.time_us)))
            .reduce(|a, b| {
                let b_first = if newest_first { b.1 > a.1 } else { b.1 < a.1 };
                if b_first {
                    b
                } else {
                    a
                }
            });
        let Some((i, _)) = pick else { break };
        let s = &mut streams[i];
        if let Some(l) = s.lines.pop_front() {
            last.insert(s.cluster_id.clone(), l.seq);
            out.push((s.cluster_id.clone(), l));
        }
    }
    for s in &streams {
        if let (true, Some(n)) = (s.lines.is_empty(), s.next) {
            last.insert(s.cluster_id.clone(), n);
        }
    }
    let left = streams
        .iter()
        .any(|s| s.next.is_some() || !s.lines.is_empty());
    Merged {
        lines: out,
        positions: last,
        left,
        stalled,
    }
}

pub struct Merged {
    pub lines: Vec<(String, StoredLog)>,
    pub positions: HashMap<String, u64>,
    pub left: bool,
    /// Fewer than `limit` lines because a scan budget ran out.
    pub stalled: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectLogView {
    pub cluster_id: String,
    #[serde(flatten)]
    pub line: LogView,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectLogPage {
    pub data: Vec<ProjectLogView>,
    /// Pass as `cursor` for older lines; null at the end.
    pub next: Option<String>,
    /// Pass as `after` to get what arrives later (live tail).
    pub newest: String,
    /// The scan budget (`logs.scan_lines_per_request` stored lines per
    /// request, shared by the project's clusters) ran out before `limit`
    /// lines were found: `next` (or, for a tail, `newest`) continues from
    /// where the scan stopped, also when `data` is empty.
    pub partial: bool,
    /// Stored lines read for this answer.
    pub scanned: u64,
}

/// EMQX log lines of every cluster of the project, merged by time. A
/// search reads at most `logs.scan_lines_per_request` stored lines, shared
/// by the clusters; when it stops there the answer says `partial` and
/// `next` (or `newest` for a tail) continues it.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/logs", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), LogParams),
    responses((status = 200, body = ProjectLogPage), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn project_logs(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    q: web::Query<LogParams>,
) -> Result<HttpResponse, ApiError> {
    let (org, project) = path.into_inner();
    crate::api::orgs::project_in_org(&state, &user, &org, &project, Need::Read).await?;
    let p = q.into_inner();
    let before = p.cursor.as_deref().map(parse_positions).transpose()?;
    let after = p.after.as_deref().map(parse_positions).transpose()?;
    let base = to_query(LogParams {
        cursor: None,
        after: None,
        ..p
    })?;
    let mut clusters = state.deps.store.clusters_in_project(&project).await?;
    clusters.sort_by(|a, b| a.id.cmp(&b.id));
    let mut base = base;
    base.scan_budget = Some(share(scan_budget(&state), clusters.len()));
    let mut streams = Vec::new();
    let mut newest: HashMap<String, u64> = HashMap::new();
    let mut scanned = 0;
    for c in &clusters {
        let mut cq = base.clone();
        match &after {
            Some(a) => match a.get(&c.id) {
                Some(seq) => cq.after = Some(*seq),
                None => {
                    // A cluster new to this tail: start from its newest line.
                    newest.insert(c.id.clone(), newest_seq(&state, &c.id).await?);
                    continue;
                }
            },
            None => cq.before = before.as_ref().and_then(|b| b.get(&c.id).copied()),
        }
        if before.as_ref().is_some_and(|b| !b.contains_key(&c.id)) {
            continue; // ended (or new) since the first page
        }
        let page = state.deps.store.logs(&c.id, &cq).await?;
        scanned += page.scanned;
        if before.is_none() && after.is_none() {
            // A tail starts after the newest line there is, whatever
            // matched (a search may have stopped short of any match).
            newest.insert(c.id.clone(), newest_seq(&state, &c.id).await?);
        }
        streams.push(Stream {
            cluster_id: c.id.clone(),
            next: page.next,
            lines: page.data.into(),
        });
    }
    let tail = after.is_some();
    let merged = merge(streams, base.limit, !tail);
    let next = if tail || !merged.left {
        None
    } else {
        let mut pos = before
            .clone()
            .unwrap_or_else(|| clusters.iter().map(|c| (c.id.clone(), u64::MAX)).collect());
        pos.extend(merged.positions.iter().map(|(k, v)| (k.clone(), *v)));
        Some(format_positions(&pos))
    };
    if let Some(a) = &after {
        for (k, v) in a {
            newest.entry(k.clone()).or_insert(*v);
        }
        newest.extend(merged.positions);
    }
    Ok(HttpResponse::Ok().json(ProjectLogPage {
        data: merged
            .lines
            .into_iter()
            .map(|(cluster_id, l)| ProjectLogView {
                cluster_id,
                line: view(l),
            })
            .collect(),
        next,
        newest: format_positions(&newest),
        partial: merged.stalled,
        scanned,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, time_us: u64) -> StoredLog {
        StoredLog {
            seq,
            time_us,
            level: 1,
            node: "n".into(),
            message: format!("{seq}"),
            fields: String::new(),
            raw: String::new(),
        }
    }

    #[test]
    fn merging_takes_heads_by_time_and_resumes_without_gaps() {
        // Cluster a's stream is not strictly time-ordered (two nodes).
        let a = Stream {
            cluster_id: "a".into(),
            lines: vec![line(9, 90), line(8, 95), line(7, 50)].into(),
            next: Some(7),
        };
        let b = Stream {
            cluster_id: "b".into(),
            lines: vec![line(3, 80), line(2, 60)].into(),
            next: None,
        };
        let m = merge(vec![a, b], 3, true);
        let got: Vec<_> = m
            .lines
            .iter()
            .map(|(c, l)| format!("{c}{}", l.seq))
            .collect();
        // a9 (90) first, then a8 (95, a's next head) before b3 (80).
        assert_eq!(got, ["a9", "a8", "b3"]);
        assert_eq!(m.positions.get("a"), Some(&8));
        assert_eq!(m.positions.get("b"), Some(&3));
        assert!(m.left && !m.stalled);
    }

    #[test]
    fn a_stream_whose_budget_ran_out_stops_the_merge_and_resumes_where_its_scan_stopped() {
        // a's search read up to seq 40 and found one line; b found plenty.
        let a = Stream {
            cluster_id: "a".into(),
            lines: vec![line(70, 75)].into(),
            next: Some(40),
        };
        let b = Stream {
            cluster_id: "b".into(),
            lines: vec![line(5, 90), line(4, 70), line(3, 10)].into(),
            next: None,
        };
        let m = merge(vec![a, b], 10, true);
        let got: Vec<_> = m
            .lines
            .iter()
            .map(|(c, l)| format!("{c}{}", l.seq))
            .collect();
        // b4 (70) may not pass a's unread older lines: the merge stops.
        assert_eq!(got, ["b5", "a70"]);
        assert!(m.stalled && m.left);
        assert_eq!(m.positions.get("a"), Some(&40), "a resumes below its scan");
        assert_eq!(m.positions.get("b"), Some(&5));
        // Nothing found within the budget: no line, but the position moves.
        let empty = Stream {
            cluster_id: "a".into(),
            lines: Default::default(),
            next: Some(12),
        };
        let m = merge(vec![empty], 10, true);
        assert!(m.lines.is_empty() && m.stalled && m.left);
        assert_eq!(m.positions.get("a"), Some(&12));
    }

    #[test]
    fn positions_round_trip_and_garbage_is_refused() {
        let p = parse_positions("b:7,a:12").expect("parse");
        assert_eq!(format_positions(&p), "a:12,b:7");
        for bad in ["a", "a:x", ":5", "a:-1"] {
            assert!(parse_positions(bad).is_err(), "{bad}");
        }
    }
}
