//! `GET /api/audit/operations`.

use crate::api::views::rfc3339;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpResponse};
use ecp_actors::model::AuditQuery;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct AuditParams {
    /// Unix ms, inclusive.
    pub since: Option<u64>,
    pub until: Option<u64>,
    /// e.g. `login`, `cluster` (all cluster actions) or `cluster.delete`.
    pub action: Option<String>,
    /// Part of the operator's name.
    pub operator: Option<String>,
    pub object_id: Option<String>,
    pub size: Option<usize>,
    pub offset: Option<usize>,
}

/// Audit records, newest first.
#[utoipa::path(get, path = "/api/audit/operations", tag = "audit", params(AuditParams),
    responses((status = 200, description = "{data, total}"), (status = 403, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn operations(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    if !user.user.system_admin {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "only system admins read the audit log",
        ));
    }
    let q = q.into_inner();
    let query = AuditQuery {
        since: q.since,
        until: q.until,
        action: q.action.unwrap_or_default(),
        actor: q.operator.unwrap_or_default(),
        object_id: q.object_id.unwrap_or_default(),
        offset: q.offset.unwrap_or(0),
        size: q.size.unwrap_or(50).clamp(1, 1000),
    };
    let (data, total) = state.deps.store.audit(&query).await?;
    let data: Vec<serde_json::Value> = data
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["time"] = serde_json::Value::String(rfc3339(r.at));
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data, "total": total })))
}
