//! Organizations and projects (read side; full tenancy comes later).

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpResponse};
use ecp_actors::model::ProjectRecord;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedView {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct NamedList {
    pub data: Vec<NamedView>,
    pub total: usize,
}

fn list(items: Vec<NamedView>) -> HttpResponse {
    let total = items.len();
    HttpResponse::Ok().json(NamedList { data: items, total })
}

/// Organizations the caller can see.
#[utoipa::path(get, path = "/api/orgs", tag = "orgs", responses((status = 200, body = NamedList)), security(("bearer" = [])))]
pub async fn list_orgs(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let mut orgs = state.store.orgs().await?;
    orgs.retain(|o| user.access.sees_org(&o.id));
    orgs.sort_by_key(|o| o.created_at);
    Ok(list(
        orgs.iter()
            .map(|o| NamedView {
                id: o.id.clone(),
                name: o.name.clone(),
                created_at: crate::api::views::rfc3339(o.created_at),
            })
            .collect(),
    ))
}

/// Projects of one organization.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects", tag = "orgs", params(("orgId" = String, Path)),
    responses((status = 200, body = NamedList), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn list_projects(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let org_id = path.into_inner();
    if state.store.org(&org_id).await?.is_none() || !user.access.sees_org(&org_id) {
        return Err(ApiError::not_found("organization"));
    }
    let mut projects = state.store.projects(&org_id).await?;
    projects.retain(|p| user.access.project_role(&p.org_id, &p.id).is_some());
    projects.sort_by_key(|p| p.created_at);
    Ok(list(
        projects
            .iter()
            .map(|p| NamedView {
                id: p.id.clone(),
                name: p.name.clone(),
                created_at: crate::api::views::rfc3339(p.created_at),
            })
            .collect(),
    ))
}

/// The project, if it exists inside the org and the caller may use it as
/// `need` says (404 when missing or not visible; 403 for a viewer writing).
pub async fn project_in_org(
    state: &AppState,
    user: &AuthUser,
    org_id: &str,
    project_id: &str,
    need: crate::policy::Need,
) -> Result<ProjectRecord, ApiError> {
    match state.store.project(project_id).await? {
        Some(p) if p.org_id == org_id => {
            user.access.require(&p, need)?;
            Ok(p)
        }
        _ => Err(ApiError::not_found("project")),
    }
}
