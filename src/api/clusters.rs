//! Managed-cluster routes under `/api/orgs/{orgId}/projects/{projectId}/clusters`.

use crate::api::orgs::project_in_org;
use crate::api::views::{rfc3339, ClusterList, ClusterView, EventView};
use crate::audit::{self, Object};
use crate::auth::{self, AuthUser};
use crate::error::ApiError;
use crate::policy::Need;
use crate::{validate, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use ecp_actors::model::*;
use ecp_actors::msg::{ClusterError, ClusterInput, ClusterReply};
use ecp_actors::registry::Spawn;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

type ProjectPath = web::Path<(String, String)>;
type ClusterPath = web::Path<(String, String, String)>;

/// The cluster if it lives in that org/project (404 otherwise).
pub(crate) async fn cluster_in(
    state: &AppState,
    user: &AuthUser,
    need: Need,
    org: &str,
    project: &str,
    id: &str,
) -> Result<ClusterRecord, ApiError> {
    project_in_org(state, user, org, project, need).await?;
    match state.deps.store.cluster(id).await? {
        Some(c) if c.org_id == org && c.project_id == project => Ok(c),
        _ => Err(ApiError::not_found("cluster")),
    }
}

/// List the project's managed clusters.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/clusters", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path)),
    responses((status = 200, body = ClusterList), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ProjectPath,
) -> Result<HttpResponse, ApiError> {
    let (org, project) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Read).await?;
    let data: Vec<ClusterView> = state
        .deps
        .store
        .clusters_in_project(&project)
        .await?
        .iter()
        .map(ClusterView::from_record)
        .collect();
    Ok(HttpResponse::Ok().json(ClusterList {
        total: data.len(),
        data,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCluster {
    pub name: String,
    #[serde(default)]
    pub service_address: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Create a managed cluster (status `created`).
#[utoipa::path(post, path = "/api/orgs/{orgId}/projects/{projectId}/clusters", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path)), request_body = CreateCluster,
    responses((status = 201, body = ClusterView), (status = 400, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ProjectPath,
    body: web::Json<CreateCluster>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Write).await?;
    let body = body.into_inner();
    validate::cluster_name(&body.name).map_err(|m| ApiError::bad_request("INVALID_NAME", m))?;
    let service_address = body.service_address.unwrap_or_default().trim().to_string();
    validate::service_address(&service_address)
        .map_err(|m| ApiError::bad_request("INVALID_SERVICE_ADDRESS", m))?;
    let description = body.description.unwrap_or_default();
    validate::description(&description)
        .map_err(|m| ApiError::bad_request("INVALID_DESCRIPTION", m))?;
    let now = now_ms();
    let record = ClusterRecord {
        description,
        service_address,
        ..ClusterRecord::created(
            uuid::Uuid::new_v4().simple().to_string(),
            org,
            project,
            body.name,
            now,
        )
    };
    let event = ClusterEvent {
        cluster_id: record.id.clone(),
        revision: 1,
        at: now,
        from: Status::Created,
        to: Status::Created,
        reason: None,
        cause: "created".into(),
    };
    state.deps.store.create_cluster(&record, &event).await?;
    state.registry.send(Spawn(record.clone())).await?;
    // Every node's consoles hear of it, not only this one's.
    state.deps.announce(ClusterChange::Upserted {
        cluster: Box::new(record.clone()),
    });
    tracing::info!(cluster_id = %record.id, user_id = %user.user.id, "cluster created");
    audit::ok(
        &state,
        &req,
        &user.user,
        "cluster.create",
        Object::cluster(&record),
        "",
    )
    .await;
    Ok(HttpResponse::Created().json(ClusterView::from_record(&record)))
}

/// One managed cluster.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path)),
    responses((status = 200, body = ClusterView), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ClusterPath,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    let c = cluster_in(&state, &user, Need::Read, &org, &project, &id).await?;
    Ok(HttpResponse::Ok().json(ClusterView::from_record(&c)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditCluster {
    pub name: Option<String>,
    pub service_address: Option<String>,
    pub description: Option<String>,
}

/// Edit name, service address or description.
#[utoipa::path(put, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path)), request_body = EditCluster,
    responses((status = 200, body = ClusterView), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn edit(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ClusterPath,
    body: web::Json<EditCluster>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    cluster_in(&state, &user, Need::Write, &org, &project, &id).await?;
    let body = body.into_inner();
    if let Some(n) = &body.name {
        validate::cluster_name(n).map_err(|m| ApiError::bad_request("INVALID_NAME", m))?;
    }
    let service_address = body.service_address.map(|s| s.trim().to_string());
    if let Some(s) = &service_address {
        validate::service_address(s)
            .map_err(|m| ApiError::bad_request("INVALID_SERVICE_ADDRESS", m))?;
    }
    if let Some(d) = &body.description {
        validate::description(d).map_err(|m| ApiError::bad_request("INVALID_DESCRIPTION", m))?;
    }
    let (changed_name, changed_addr, changed_desc) = (
        body.name.is_some(),
        service_address.is_some(),
        body.description.is_some(),
    );
    let rec = state
        .deps
        .cluster(&id)
        .ask(ClusterInput::Edit {
            name: body.name,
            description: body.description,
            service_address,
            move_to: None,
        })
        .await?
        .record()?;
    let what: Vec<&str> = [
        ("name", changed_name),
        ("serviceAddress", changed_addr),
        ("description", changed_desc),
    ]
    .into_iter()
    .filter(|(_, c)| *c)
    .map(|(n, _)| n)
    .collect();
    audit::ok(
        &state,
        &req,
        &user.user,
        "cluster.edit",
        Object::cluster(&rec),
        &what.join(","),
    )
    .await;
    Ok(HttpResponse::Ok().json(ClusterView::from_record(&rec)))
}

/// Delete: answers 202 with status `deleting`; agents are told to
/// unregister; afterwards the cluster answers 404. EMQX itself is untouched.
#[utoipa::path(delete, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path)),
    responses((status = 202, body = ClusterView), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ClusterPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    let current = cluster_in(&state, &user, Need::Write, &org, &project, &id).await?;
    let rec = match state.deps.cluster(&id).ask(ClusterInput::Delete).await {
        Ok(reply) => reply.record()?,
        // Finished deleting between the read and the ask.
        Err(ClusterError::NotFound) => {
            let mut gone = current.clone();
            gone.status = Status::Deleting;
            gone
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(cluster_id = %id, user_id = %user.user.id, "cluster delete requested");
    audit::ok(
        &state,
        &req,
        &user.user,
        "cluster.delete",
        Object::cluster(&rec),
        "",
    )
    .await;
    Ok(HttpResponse::Accepted().json(ClusterView::from_record(&rec)))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssueToken {
    pub ttl_seconds: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    /// Shown once; only its SHA-256 is stored.
    pub token: String,
    pub expires_at: String,
}

/// Issue a registration token (multi-use until it expires or is revoked).
#[utoipa::path(post, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/registration-tokens", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path)), request_body = IssueToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn issue_token(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ClusterPath,
    body: Option<web::Json<IssueToken>>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    let c = cluster_in(&state, &user, Need::Write, &org, &project, &id).await?;
    if c.status == Status::Deleting {
        return Err(ApiError::gone("cluster was deleted"));
    }
    let t = &state.config.tokens;
    let ttl = body
        .and_then(|b| b.into_inner().ttl_seconds)
        .unwrap_or(t.registration_ttl_secs);
    if ttl == 0 || ttl > t.registration_max_ttl_secs {
        return Err(ApiError::bad_request(
            "INVALID_TTL",
            format!(
                "ttlSeconds must be between 1 and {}",
                t.registration_max_ttl_secs
            ),
        ));
    }
    let (token, hash) = auth::new_secret(auth::REGISTRATION_PREFIX);
    let now = now_ms();
    let expires_at = now + ttl * 1000;
    state
        .deps
        .store
        .put_token(
            &hash,
            &TokenRecord {
                kind: TokenKind::Registration {
                    cluster_id: id.clone(),
                },
                created_at: now,
                expires_at: Some(expires_at),
            },
        )
        .await?;
    tracing::info!(cluster_id = %id, user_id = %user.user.id, ttl_secs = ttl, "registration token issued");
    audit::ok(
        &state,
        &req,
        &user.user,
        "token.issue",
        Object::cluster(&c),
        &format!("ttlSeconds={ttl}"),
    )
    .await;
    Ok(HttpResponse::Created().json(IssuedToken {
        token,
        expires_at: rfc3339(expires_at),
    }))
}

/// Revoke all of the cluster's registration tokens.
#[utoipa::path(delete, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/registration-tokens", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path)),
    responses((status = 200, description = "{revoked: n}"), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_tokens(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ClusterPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    let c = cluster_in(&state, &user, Need::Write, &org, &project, &id).await?;
    let n = state.deps.store.revoke_registration_tokens(&id).await?;
    tracing::info!(cluster_id = %id, user_id = %user.user.id, revoked = n, "registration tokens revoked");
    audit::ok(
        &state,
        &req,
        &user.user,
        "token.revoke",
        Object::cluster(&c),
        &format!("revoked={n}"),
    )
    .await;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": n })))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct SetupQuery {
    /// `binary` (default) or `kubernetes`.
    pub platform: Option<String>,
    /// `amd64` (default), `arm` or `arm64`.
    pub arch: Option<String>,
    pub username: Option<String>,
    pub enable_log: Option<bool>,
    pub log_dir: Option<String>,
    pub dashboard_url: Option<String>,
    pub api_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetupInstructions {
    pub platform: String,
    pub arch: Option<String>,
    /// The address agents use (`cluster.agent.url`).
    pub agent_url: String,
    pub download_url: Option<String>,
    #[schema(value_type = Object)]
    pub defaults: serde_json::Value,
    pub steps: Vec<SetupStep>,
    /// Placeholders the console fills in on the page (never sent back).
    pub placeholders: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SetupStep {
    pub title: String,
    pub command: String,
}

pub const TOKEN_PLACEHOLDER: &str = "<REGISTRATION_TOKEN>";
pub const PASSWORD_PLACEHOLDER: &str = "<EMQX_DASHBOARD_PASSWORD>";

/// Shell-quote a value for the rendered commands.
fn sh(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=<>".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

/// The registration guide's commands with the node config filled in.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/setup-instructions", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path), SetupQuery),
    responses((status = 200, body = SetupInstructions), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn setup_instructions(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ClusterPath,
    q: web::Query<SetupQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    cluster_in(&state, &user, Need::Read, &org, &project, &id).await?;
    let q = q.into_inner();
    let platform = q.platform.unwrap_or_else(|| "binary".into());
    let agent_url = state.agent_url(&req);
    let username = q.username.unwrap_or_else(|| "admin".into());
    let dashboard_url = q
        .dashboard_url
        .unwrap_or_else(|| "http://127.0.0.1:18083".into());
    let api_url = q.api_url.unwrap_or_else(|| "http://127.0.0.1:18083".into());
    let enable_log = q.enable_log.unwrap_or(false);
    let log_dir = q.log_dir.unwrap_or_else(|| "/opt/emqx/log".into());
    for (what, v) in [
        ("username", &username),
        ("dashboardUrl", &dashboard_url),
        ("apiUrl", &api_url),
        ("logDir", &log_dir),
    ] {
        if v.len() > 500 || v.chars().any(|c| c.is_control()) {
            return Err(ApiError::bad_request(
                "INVALID_FIELD",
                format!("{what} is not valid"),
            ));
        }
    }
    let defaults = serde_json::json!({
        "username": "admin", "enableLog": false, "logDir": "/opt/emqx/log",
        "dashboardUrl": "http://127.0.0.1:18083", "apiUrl": "http://127.0.0.1:18083",
    });
    let mut register = format!(
        "sudo /usr/local/bin/emqxee-agent register --url {} --registration-token {TOKEN_PLACEHOLDER} --emqx-dashboard-username {} --emqx-dashboard-password {PASSWORD_PLACEHOLDER} --emqx-dashboard-url {} --emqx-api-url {}",
        sh(&format!("{agent_url}/api")), sh(&username), sh(&dashboard_url), sh(&api_url)
    );
    if enable_log {
        register.push_str(&format!(" --enable-log --log-dir {}", sh(&log_dir)));
    }
    let placeholders = vec![
        TOKEN_PLACEHOLDER.to_string(),
        PASSWORD_PLACEHOLDER.to_string(),
    ];
    let out = match platform.as_str() {
        "binary" => {
            let arch = q.arch.unwrap_or_else(|| "amd64".into());
            if !matches!(arch.as_str(), "amd64" | "arm" | "arm64") {
                return Err(ApiError::bad_request(
                    "INVALID_ARCH",
                    format!("arch {arch:?} is not offered; choose amd64, arm or arm64"),
                ));
            }
            let download = format!("{agent_url}/dl/emqx/agents/binaries/emqxee-agent-linux-{arch}");
            SetupInstructions {
                platform,
                arch: Some(arch),
                agent_url: agent_url.clone(),
                download_url: Some(download.clone()),
                defaults,
                steps: vec![
                    SetupStep {
                        title: "Download the agent".into(),
                        command: format!(
                            "sudo curl -L -f -k --output /usr/local/bin/emqxee-agent {}",
                            sh(&download)
                        ),
                    },
                    SetupStep {
                        title: "Make it executable".into(),
                        command: "sudo chmod +x /usr/local/bin/emqxee-agent".into(),
                    },
                    SetupStep {
                        title: "Start the agent".into(),
                        command: "sudo /usr/local/bin/emqxee-agent start".into(),
                    },
                    SetupStep {
                        title: "Register with ECP".into(),
                        command: register,
                    },
                ],
                placeholders,
            }
        }
        "kubernetes" => {
            let manifest = kubernetes_manifest(
                &agent_url,
                &username,
                &dashboard_url,
                &api_url,
                enable_log,
                &log_dir,
            );
            SetupInstructions {
                platform,
                arch: None,
                agent_url,
                download_url: None,
                defaults,
                steps: vec![SetupStep {
                    title: "Apply the manifest".into(),
                    command: format!("cat <<'EOF' | kubectl apply -f -\n{manifest}EOF"),
                }],
                placeholders,
            }
        }
        other => {
            return Err(ApiError::bad_request(
                "INVALID_PLATFORM",
                format!("platform {other:?} is not offered; choose binary or kubernetes"),
            ))
        }
    };
    Ok(HttpResponse::Ok().json(out))
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn kubernetes_manifest(
    agent_url: &str,
    username: &str,
    dashboard_url: &str,
    api_url: &str,
    enable_log: bool,
    log_dir: &str,
) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: emqxee-agent
type: Opaque
stringData:
  EMQXEE_AGENT_REGISTRATION_TOKEN: "{TOKEN_PLACEHOLDER}"
  EMQXEE_AGENT_EMQX_DASHBOARD_PASSWORD: "{PASSWORD_PLACEHOLDER}"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: emqxee-agent
spec:
  replicas: 1
  selector:
    matchLabels: {{app: emqxee-agent}}
  template:
    metadata:
      labels: {{app: emqxee-agent}}
    spec:
      containers:
        - name: agent
          image: emqxee-agent:latest
          args: ["run"]
          envFrom:
            - secretRef: {{name: emqxee-agent}}
          env:
            - {{name: EMQXEE_AGENT_URL, value: {url}}}
            - {{name: EMQXEE_AGENT_EMQX_DASHBOARD_USERNAME, value: {user}}}
            - {{name: EMQXEE_AGENT_EMQX_DASHBOARD_URL, value: {dash}}}
            - {{name: EMQXEE_AGENT_EMQX_API_URL, value: {api}}}
            - {{name: EMQXEE_AGENT_ENABLE_LOG, value: "{enable_log}"}}
            - {{name: EMQXEE_AGENT_LOG_DIR, value: {logdir}}}
"#,
        url = yaml_str(&format!("{agent_url}/api")),
        user = yaml_str(username),
        dash = yaml_str(dashboard_url),
        api = yaml_str(api_url),
        logdir = yaml_str(log_dir),
    )
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    pub agent_id: String,
    pub node_name: String,
    pub hostname: String,
    pub agent_version: String,
    pub connected: bool,
    pub last_seen: String,
    pub emqx_reachable: Option<bool>,
    #[schema(value_type = Object)]
    pub log_collection: LogCollection,
}

/// View nodes: the cluster's agents with their live state.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/agents", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path)),
    responses((status = 200, body = [AgentView]), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn agents(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ClusterPath,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    cluster_in(&state, &user, Need::Read, &org, &project, &id).await?;
    let live = match state.deps.cluster(&id).ask(ClusterInput::AgentsLive).await {
        Ok(ClusterReply::Live(l)) => l,
        // The records still answer; who is connected shows again shortly.
        _ => Default::default(),
    };
    let agents = state.deps.store.agents_of_cluster(&id).await?;
    let out: Vec<AgentView> = agents
        .into_iter()
        .map(|a| {
            let l = live.get(&a.id);
            let seen = state
                .deps
                .dir
                .session(&a.id)
                .map(|s| s.last_seen())
                .unwrap_or(a.last_seen);
            AgentView {
                connected: l.is_some_and(|l| l.connected),
                emqx_reachable: l.and_then(|l| l.emqx_reachable),
                last_seen: rfc3339(seen.max(a.last_seen)),
                agent_id: a.id,
                node_name: a.node_name,
                hostname: a.hostname,
                agent_version: a.agent_version,
                log_collection: a.log_collection,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

/// Revoke one agent: its credential stops working and its session closes.
#[utoipa::path(delete, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/agents/{agentId}", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path), ("agentId" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_agent(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String, String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id, agent_id) = path.into_inner();
    let c = cluster_in(&state, &user, Need::Write, &org, &project, &id).await?;
    let agent = match state.deps.store.agent(&agent_id).await? {
        Some(a) if a.cluster_id == id => a,
        _ => return Err(ApiError::not_found("agent")),
    };
    state.deps.store.remove_agent(&agent_id).await?;
    state
        .deps
        .cluster(&id)
        .ask(ClusterInput::AgentGone {
            agent_id: agent_id.clone(),
            removed: true,
        })
        .await?;
    tracing::info!(cluster_id = %id, agent_id = %agent_id, user_id = %user.user.id, "agent revoked");
    let object = Object {
        kind: "agent",
        id: &agent.id,
        name: &agent.node_name,
        org_id: &c.org_id,
        project_id: &c.project_id,
    };
    audit::ok(&state, &req, &user.user, "agent.revoke", object, "").await;
    Ok(HttpResponse::NoContent().finish())
}

/// The cluster's transition history, oldest first.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/events", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path)),
    responses((status = 200, body = [EventView]), (status = 404, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn events(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ClusterPath,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    cluster_in(&state, &user, Need::Read, &org, &project, &id).await?;
    let events: Vec<EventView> = state
        .deps
        .store
        .events(&id)
        .await?
        .iter()
        .map(EventView::from_event)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": events, "total": events.len() })))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferBody {
    pub project_id: String,
}

/// Move a cluster to another project the caller may write to.
#[utoipa::path(post, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/transfer", tag = "clusters",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path)), request_body = TransferBody,
    responses((status = 200, body = ClusterView), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn transfer(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ClusterPath,
    body: web::Json<TransferBody>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    let current = cluster_in(&state, &user, Need::Write, &org, &project, &id).await?;
    let target = match state.store.project(&body.project_id).await? {
        Some(p) => p,
        None => return Err(ApiError::not_found("target project")),
    };
    user.access.require(&target, Need::Write).map_err(|e| {
        if e.status.as_u16() == 404 {
            ApiError::not_found("target project")
        } else {
            e
        }
    })?;
    if target.id == current.project_id {
        return Ok(HttpResponse::Ok().json(ClusterView::from_record(&current)));
    }
    let move_to = Some((target.org_id.clone(), target.id.clone()));
    let rec = state
        .deps
        .cluster(&id)
        .ask(ClusterInput::Edit {
            name: None,
            description: None,
            service_address: None,
            move_to,
        })
        .await?
        .record()?;
    let details = format!(
        "from {}/{} to {}/{}",
        current.org_id, current.project_id, rec.org_id, rec.project_id
    );
    audit::ok(
        &state,
        &req,
        &user.user,
        "cluster.transfer",
        Object::cluster(&rec),
        &details,
    )
    .await;
    Ok(HttpResponse::Ok().json(ClusterView::from_record(&rec)))
}
