//! Creating orgs, projects and users, and setting memberships.

use crate::audit::{self, Object};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::{validate, AppState};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ecp_actors::model::*;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

fn forbidden(m: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", m)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    pub name: String,
}

/// Create an organization (system admins).
#[utoipa::path(post, path = "/api/orgs", tag = "orgs", request_body = NameBody,
    responses((status = 201), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn create_org(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<NameBody>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !user.user.system_admin {
        return Err(forbidden("only system admins create organizations"));
    }
    validate::org_or_project_name(&body.name)
        .map_err(|m| ApiError::bad_request("INVALID_NAME", m))?;
    let orgs = state.store.orgs().await?;
    if orgs.len() >= 100 {
        return Err(ApiError::unprocessable(
            "LIMIT",
            "at most 100 organizations",
        ));
    }
    if orgs.iter().any(|o| o.name == body.name) {
        return Err(ApiError::conflict(
            "NAME_TAKEN",
            format!("an organization named {:?} exists", body.name),
        ));
    }
    let org = OrgRecord {
        id: uuid::Uuid::new_v4().simple().to_string(),
        name: body.name.clone(),
        created_at: now_ms(),
    };
    state.store.put_org(&org).await?;
    let object = Object::org(&org);
    audit::ok(&state, &req, &user.user, "org.create", object, "").await;
    Ok(HttpResponse::Created().json(json!({"id": org.id, "name": org.name})))
}

/// Create a project in an organization (system or org admins).
#[utoipa::path(post, path = "/api/orgs/{orgId}/projects", tag = "orgs", params(("orgId" = String, Path)), request_body = NameBody,
    responses((status = 201), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn create_project(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Json<NameBody>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let org_id = path.into_inner();
    if state.store.org(&org_id).await?.is_none() || !user.access.sees_org(&org_id) {
        return Err(ApiError::not_found("organization"));
    }
    if !user.access.org_admin(&org_id) {
        return Err(forbidden("only org admins create projects"));
    }
    validate::org_or_project_name(&body.name)
        .map_err(|m| ApiError::bad_request("INVALID_NAME", m))?;
    let projects = state.store.projects(&org_id).await?;
    if projects.len() >= 100 {
        return Err(ApiError::unprocessable(
            "LIMIT",
            "at most 100 projects per organization",
        ));
    }
    if projects.iter().any(|p| p.name == body.name) {
        return Err(ApiError::conflict(
            "NAME_TAKEN",
            format!(
                "a project named {:?} exists in this organization",
                body.name
            ),
        ));
    }
    let p = ProjectRecord {
        id: uuid::Uuid::new_v4().simple().to_string(),
        org_id: org_id.clone(),
        name: body.name.clone(),
        created_at: now_ms(),
    };
    state.store.put_project(&p).await?;
    let object = Object::project(&p);
    audit::ok(&state, &req, &user.user, "project.create", object, "").await;
    Ok(HttpResponse::Created().json(json!({"id": p.id, "name": p.name, "orgId": org_id})))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub system_admin: bool,
}

/// Create a user (system admins).
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = CreateUser,
    responses((status = 201), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn create_user(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<CreateUser>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !user.user.system_admin {
        return Err(forbidden("only system admins create users"));
    }
    let b = body.into_inner();
    validate::username(&b.username).map_err(|m| ApiError::bad_request("INVALID_USERNAME", m))?;
    crate::login_guard::password_rules(&b.password)
        .map_err(|m| ApiError::bad_request("WEAK_PASSWORD", m))?;
    let hash = state.hashing.hash(b.password).await?;
    let u = UserRecord {
        id: uuid::Uuid::new_v4().simple().to_string(),
        username: b.username,
        password_hash: hash,
        system_admin: b.system_admin,
        created_at: now_ms(),
    };
    state.store.create_user(&u).await.map_err(|e| match e {
        ecp_actors::store::StoreError::Exists => {
            ApiError::conflict("EXISTS", format!("user {:?} exists", u.username))
        }
        other => other.into(),
    })?;
    let object = Object {
        kind: "user",
        id: &u.id,
        name: &u.username,
        org_id: "",
        project_id: "",
    };
    audit::ok(
        &state,
        &req,
        &user.user,
        "user.create",
        object,
        if u.system_admin { "systemAdmin" } else { "" },
    )
    .await;
    Ok(HttpResponse::Created()
        .json(json!({"id": u.id, "username": u.username, "systemAdmin": u.system_admin})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// `admin`, `viewer`, or null to remove the membership.
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
}

async fn set_membership(
    state: &AppState,
    actor: &AuthUser,
    req: &HttpRequest,
    m: Membership,
    remove: bool,
) -> Result<HttpResponse, ApiError> {
    if state.store.user(&m.user_id).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    if remove {
        state
            .store
            .remove_membership(&m.user_id, &m.org_id, &m.project_id)
            .await?;
    } else {
        state.store.put_membership(&m).await?;
    }
    // Open streams of that user follow the new rights (on every node).
    state.revocations.notify(&m.user_id).await;
    let object = Object {
        kind: "membership",
        id: &m.user_id,
        name: "",
        org_id: &m.org_id,
        project_id: &m.project_id,
    };
    let action = if remove {
        "membership.remove"
    } else {
        "membership.set"
    };
    let details = if remove {
        String::new()
    } else {
        format!("{:?}", m.role).to_lowercase()
    };
    audit::ok(state, req, &actor.user, action, object, &details).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Set or remove a user's org role (system or org admins). Removing it
/// also removes the user's project roles in that org, in the same step; the
/// user's requests and open event streams follow at once (on every node).
#[utoipa::path(put, path = "/api/orgs/{orgId}/members/{userId}", tag = "users", params(("orgId" = String, Path), ("userId" = String, Path)), request_body = RoleBody,
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn org_member(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<RoleBody>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org_id, user_id) = path.into_inner();
    if state.store.org(&org_id).await?.is_none() || !user.access.sees_org(&org_id) {
        return Err(ApiError::not_found("organization"));
    }
    if !user.access.org_admin(&org_id) {
        return Err(forbidden("only org admins manage org members"));
    }
    let role = body.role;
    let m = Membership {
        user_id,
        org_id,
        project_id: String::new(),
        role: role.unwrap_or(Role::Viewer),
    };
    set_membership(&state, &user, &req, m, role.is_none()).await
}

/// Set or remove a user's project role (system, org or project admins); the
/// user must belong to the org first.
#[utoipa::path(put, path = "/api/orgs/{orgId}/projects/{projectId}/members/{userId}", tag = "users",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("userId" = String, Path)), request_body = RoleBody,
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn project_member(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String, String)>,
    body: web::Json<RoleBody>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org_id, project_id, user_id) = path.into_inner();
    let project = crate::api::orgs::project_in_org(
        &state,
        &user,
        &org_id,
        &project_id,
        crate::policy::Need::Write,
    )
    .await?;
    if user.access.project_role(&org_id, &project.id) != Some(Role::Admin) {
        return Err(forbidden("only project admins manage project members"));
    }
    let role = body.role;
    if role.is_some() {
        let theirs = state.store.memberships(&user_id).await?;
        if !theirs
            .iter()
            .any(|m| m.org_id == org_id && m.project_id.is_empty())
        {
            return Err(ApiError::unprocessable(
                "NOT_ORG_MEMBER",
                "add the user to the organization first",
            ));
        }
    }
    let m = Membership {
        user_id,
        org_id,
        project_id,
        role: role.unwrap_or(Role::Viewer),
    };
    set_membership(&state, &user, &req, m, role.is_none()).await
}

/// Rename an organization (org admins).
#[utoipa::path(put, path = "/api/orgs/{orgId}", tag = "orgs", params(("orgId" = String, Path)), request_body = NameBody,
    responses((status = 200), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn update_org(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Json<NameBody>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let org_id = path.into_inner();
    let Some(mut org) = state
        .store
        .org(&org_id)
        .await?
        .filter(|_| user.access.sees_org(&org_id))
    else {
        return Err(ApiError::not_found("organization"));
    };
    if !user.access.org_admin(&org_id) {
        return Err(forbidden("only org admins edit the organization"));
    }
    validate::org_or_project_name(&body.name)
        .map_err(|m| ApiError::bad_request("INVALID_NAME", m))?;
    org.name = body.name.clone();
    state.store.put_org(&org).await?;
    let object = Object::org(&org);
    audit::ok(&state, &req, &user.user, "org.edit", object, "").await;
    Ok(HttpResponse::Ok().json(json!({"id": org.id, "name": org.name})))
}

/// Delete an organization (system admins), only once it has no projects.
#[utoipa::path(delete, path = "/api/orgs/{orgId}", tag = "orgs", params(("orgId" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn delete_org(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let org_id = path.into_inner();
    let Some(org) = state
        .store
        .org(&org_id)
        .await?
        .filter(|_| user.access.sees_org(&org_id))
    else {
        return Err(ApiError::not_found("organization"));
    };
    if !user.user.system_admin {
        return Err(forbidden("only system admins delete organizations"));
    }
    let n = state.store.projects(&org_id).await?.len();
    if n > 0 {
        return Err(ApiError::conflict(
            "NOT_EMPTY",
            format!("the organization still has {n} project(s); delete them first"),
        ));
    }
    state.store.delete_org(&org_id).await?;
    let object = Object::org(&org);
    audit::ok(&state, &req, &user.user, "org.delete", object, "").await;
    Ok(HttpResponse::NoContent().finish())
}

/// Rename a project (project admins).
#[utoipa::path(put, path = "/api/orgs/{orgId}/projects/{projectId}", tag = "orgs", params(("orgId" = String, Path), ("projectId" = String, Path)), request_body = NameBody,
    responses((status = 200), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn update_project(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<NameBody>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org_id, project_id) = path.into_inner();
    let mut p = crate::api::orgs::project_in_org(
        &state,
        &user,
        &org_id,
        &project_id,
        crate::policy::Need::Write,
    )
    .await?;
    if user.access.project_role(&org_id, &p.id) != Some(Role::Admin) {
        return Err(forbidden("only project admins edit the project"));
    }
    validate::org_or_project_name(&body.name)
        .map_err(|m| ApiError::bad_request("INVALID_NAME", m))?;
    p.name = body.name.clone();
    state.store.put_project(&p).await?;
    let object = Object::project(&p);
    audit::ok(&state, &req, &user.user, "project.edit", object, "").await;
    Ok(HttpResponse::Ok().json(json!({"id": p.id, "name": p.name, "orgId": org_id})))
}

/// Delete a project (org admins), only once it has no clusters.
#[utoipa::path(delete, path = "/api/orgs/{orgId}/projects/{projectId}", tag = "orgs", params(("orgId" = String, Path), ("projectId" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn delete_project(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org_id, project_id) = path.into_inner();
    let p = crate::api::orgs::project_in_org(
        &state,
        &user,
        &org_id,
        &project_id,
        crate::policy::Need::Write,
    )
    .await?;
    if !user.access.org_admin(&org_id) {
        return Err(forbidden("only org admins delete projects"));
    }
    let n = state.deps.store.clusters_in_project(&p.id).await?.len();
    if n > 0 {
        return Err(ApiError::conflict(
            "NOT_EMPTY",
            format!("the project still has {n} cluster(s); delete or transfer them first"),
        ));
    }
    state.store.delete_project(&p.id).await?;
    let object = Object::project(&p);
    audit::ok(&state, &req, &user.user, "project.delete", object, "").await;
    Ok(HttpResponse::NoContent().finish())
}

async fn user_view(state: &AppState, u: &UserRecord) -> Result<serde_json::Value, ApiError> {
    let mut ms = state.store.memberships(&u.id).await?;
    ms.sort_by(|a, b| (&a.org_id, &a.project_id).cmp(&(&b.org_id, &b.project_id)));
    let memberships: Vec<_> = ms
        .iter()
        .map(|m| {
            json!({
                "orgId": m.org_id,
                "projectId": if m.project_id.is_empty() { None } else { Some(&m.project_id) },
                "role": format!("{:?}", m.role).to_lowercase(),
            })
        })
        .collect();
    Ok(
        json!({"id": u.id, "username": u.username, "systemAdmin": u.system_admin, "memberships": memberships}),
    )
}

/// All users with their memberships (system admins).
#[utoipa::path(get, path = "/api/users", tag = "users", responses((status = 200), (status = 403, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn list_users(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    if !user.user.system_admin {
        return Err(forbidden("only system admins list users"));
    }
    let mut users = state.store.users().await?;
    users.sort_by_key(|u| u.created_at);
    let mut data = Vec::with_capacity(users.len());
    for u in &users {
        data.push(user_view(&state, u).await?);
    }
    Ok(HttpResponse::Ok().json(json!({"total": data.len(), "data": data})))
}

/// One user with their memberships (system admins, or the user).
#[utoipa::path(get, path = "/api/users/{userId}", tag = "users", params(("userId" = String, Path)),
    responses((status = 200), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get_user(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if !user.user.system_admin && id != user.user.id {
        return Err(ApiError::not_found("user"));
    }
    let Some(target) = state.store.user(&id).await? else {
        return Err(ApiError::not_found("user"));
    };
    Ok(HttpResponse::Ok().json(user_view(&state, &target).await?))
}

/// Delete a user (system admins; not oneself). Their sessions stop working.
#[utoipa::path(delete, path = "/api/users/{userId}", tag = "users", params(("userId" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn delete_user(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !user.user.system_admin {
        return Err(forbidden("only system admins delete users"));
    }
    let id = path.into_inner();
    if id == user.user.id {
        return Err(ApiError::unprocessable(
            "SELF",
            "you cannot delete yourself",
        ));
    }
    let Some(target) = state.store.user(&id).await? else {
        return Err(ApiError::not_found("user"));
    };
    state.store.delete_user(&id).await?;
    state.revocations.notify(&id).await;
    let object = Object {
        kind: "user",
        id: &target.id,
        name: &target.username,
        org_id: "",
        project_id: "",
    };
    audit::ok(&state, &req, &user.user, "user.delete", object, "").await;
    Ok(HttpResponse::NoContent().finish())
}
