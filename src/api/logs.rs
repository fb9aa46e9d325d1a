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
    /// Pass as `cursor` for older lines; null at the end.
    pub next: Option<String>,
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
fn parse_time(what: &'static str, s: &str) -> Result<u64, ApiError> {
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
    })
}

/// EMQX log lines of the cluster.
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
    let query = to_query(q.into_inner())?;
    let page = state.deps.store.logs(&id, &query).await?;
    Ok(HttpResponse::Ok().json(LogPageView {
        data: page.data.into_iter().map(view).collect(),
        next: page.next.map(|n| n.to_string()),
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

/// One cluster's lines in its own order, and whether the store has more.
pub struct Stream {
    pub cluster_id: String,
    pub lines: std::collections::VecDeque<StoredLog>,
    pub more: bool,
}

/// Merges the clusters' streams by time, always taking the head that comes
/// first (newest first, or oldest first for a tail), so each cluster gives a
/// prefix of its stream and a per-cluster position resumes without gaps.
/// Returns the lines, the last seq taken per cluster, and whether anything
/// is left.
pub fn merge(
    mut streams: Vec<Stream>,
    limit: usize,
    newest_first: bool,
) -> (Vec<(String, StoredLog)>, HashMap<String, u64>, bool) {
    let mut out = Vec::new();
    let mut last = HashMap::new();
    while out.len() < limit {
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
    let left = streams.iter().any(|s| s.more || !s.lines.is_empty());
    (out, last, left)
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
}

/// EMQX log lines of every cluster of the project, merged by time.
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
    let mut streams = Vec::new();
    let mut newest: HashMap<String, u64> = HashMap::new();
    for c in &clusters {
        let mut cq = base.clone();
        match &after {
            Some(a) => match a.get(&c.id) {
                Some(seq) => cq.after = Some(*seq),
                None => {
                    // A cluster new to this tail: start from its newest line.
                    let probe = LogQuery {
                        limit: 1,
                        ..Default::default()
                    };
                    let top = state.deps.store.logs(&c.id, &probe).await?;
                    newest.insert(c.id.clone(), top.data.first().map(|l| l.seq).unwrap_or(0));
                    continue;
                }
            },
            None => cq.before = before.as_ref().and_then(|b| b.get(&c.id).copied()),
        }
        if before.as_ref().is_some_and(|b| !b.contains_key(&c.id)) {
            continue; // ended (or new) since the first page
        }
        let page = state.deps.store.logs(&c.id, &cq).await?;
        if before.is_none() && after.is_none() {
            newest.insert(c.id.clone(), page.data.first().map(|l| l.seq).unwrap_or(0));
        }
        streams.push(Stream {
            cluster_id: c.id.clone(),
            more: page.next.is_some(),
            lines: page.data.into(),
        });
    }
    let tail = after.is_some();
    let (lines, last, left) = merge(streams, base.limit, !tail);
    let next = if tail || !left {
        None
    } else {
        let mut pos = before
            .clone()
            .unwrap_or_else(|| clusters.iter().map(|c| (c.id.clone(), u64::MAX)).collect());
        pos.extend(last.iter().map(|(k, v)| (k.clone(), *v)));
        Some(format_positions(&pos))
    };
    if let Some(a) = &after {
        for (k, v) in a {
            newest.entry(k.clone()).or_insert(*v);
        }
        newest.extend(last);
    }
    Ok(HttpResponse::Ok().json(ProjectLogPage {
        data: lines
            .into_iter()
            .map(|(cluster_id, l)| ProjectLogView {
                cluster_id,
                line: view(l),
            })
            .collect(),
        next,
        newest: format_positions(&newest),
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
            more: true,
        };
        let b = Stream {
            cluster_id: "b".into(),
            lines: vec![line(3, 80), line(2, 60)].into(),
            more: false,
        };
        let (out, last, left) = merge(vec![a, b], 3, true);
        let got: Vec<_> = out.iter().map(|(c, l)| format!("{c}{}", l.seq)).collect();
        // a9 (90) first, then a8 (95, a's next head) before b3 (80).
        assert_eq!(got, ["a9", "a8", "b3"]);
        assert_eq!(last.get("a"), Some(&8));
        assert_eq!(last.get("b"), Some(&3));
        assert!(left);
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
