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
    /// Lines after this `seq`, oldest first (live tail).
    pub after: Option<u64>,
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
        after: p.after,
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
