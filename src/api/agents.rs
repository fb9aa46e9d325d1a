//! Agent endpoints: register (redeem a token), connect (WebSocket), unregister.

use crate::audit::{self, Actor, Object};
use crate::auth;
use crate::error::ApiError;
use crate::{validate, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use ecp_actors::model::*;
use ecp_actors::msg::{ClusterInput, Shutdown};
use ecp_actors::store::StoreError;
use ecp_protocol::register::{RegisterRequest, RegisterResponse};
use std::sync::atomic::Ordering;

fn field(what: &str, v: &str, max: usize, required: bool) -> Result<(), ApiError> {
    if required && v.trim().is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            format!("{what} is required"),
        ));
    }
    if v.len() > max || v.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            format!("{what} is not valid (at most {max} printable characters)"),
        ));
    }
    Ok(())
}

/// Every text of a register body: its length (the `maxLength` the OpenAPI
/// shows, from `ecp_protocol::register`), no control characters, and
/// required ones not blank.
fn check_fields(b: &RegisterRequest) -> Result<(), ApiError> {
    field("nodeId", &b.node_id, 128, true)?;
    field("agentVersion", &b.agent_version, 64, true)?;
    field("hostname", &b.hostname, 255, false)?;
    field("machineId", &b.machine_id, 128, false)?;
    field("emqx.localNode", &b.emqx.local_node, 255, true)?;
    field("emqx.version", &b.emqx.version, 64, true)?;
    field("emqx.edition", &b.emqx.edition, 64, false)?;
    field("emqx.clusterName", &b.emqx.cluster_name, 255, false)?;
    field("dashboardUrl", &b.dashboard_url, 500, true)?;
    field("apiUrl", &b.api_url, 500, false)?;
    field("logCollection.dir", &b.log_collection.dir, 500, false)
}

/// Redeem a registration token. Idempotent per `nodeId`.
#[utoipa::path(post, path = "/api/clusters/agents/emqxee/register", tag = "agents", request_body = RegisterRequest,
    responses((status = 200, body = RegisterResponse),
        (status = 401, description = "bad, expired or revoked token", body = crate::error::ErrorBody),
        (status = 409, description = "NODE_ALREADY_MANAGED: the EMQX node belongs to another cluster; AGENT_REGISTERED_ELSEWHERE: this agent instance (nodeId) is registered with another cluster (the other cluster is named only within the same project)", body = crate::error::ErrorBody),
        (status = 410, description = "cluster was deleted", body = crate::error::ErrorBody),
        (status = 422, description = "unsupported EMQX version", body = crate::error::ErrorBody),
        (status = 429, description = "admission limit; see Retry-After", body = crate::error::ErrorBody)))]
pub async fn register(
    state: web::Data<AppState>,
    body: web::Json<RegisterRequest>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if let Err(wait) = state.registrations.admit() {
        state
            .deps
            .metrics
            .registration_failures
            .fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::too_many(
            "too many registrations on this node; retry later",
            wait,
        ));
    }
    let res = do_register(&state, body.into_inner()).await;
    let m = &state.deps.metrics;
    match &res {
        Ok((_, reg)) => {
            m.registrations.fetch_add(1, Ordering::Relaxed);
            let c = state
                .deps
                .store
                .cluster(&reg.cluster_id)
                .await
                .ok()
                .flatten();
            let (name, org, project) = c
                .map(|c| (c.name, c.org_id, c.project_id))
                .unwrap_or_default();
            let object = Object {
                kind: "cluster",
                id: &reg.cluster_id,
                name: &name,
                org_id: &org,
                project_id: &project,
            };
            audit::record(
                &state,
                &req,
                Actor::Agent { id: &reg.agent_id },
                "agent.register",
                object,
                "ok",
                "",
            )
            .await;
        }
        Err(e) => {
            m.registration_failures.fetch_add(1, Ordering::Relaxed);
            let who = Actor::Login {
                username: "agent registration",
            };
            audit::record(
                &state,
                &req,
                who,
                "agent.register",
                Object::none(),
                "denied",
                &e.message,
            )
            .await;
        }
    }
    res.map(|(response, _)| response)
}

/// Who registered (for the audit log; never the credential).
struct RegisteredIds {
    cluster_id: String,
    agent_id: String,
}

async fn do_register(
    state: &AppState,
    b: RegisterRequest,
) -> Result<(HttpResponse, RegisteredIds), ApiError> {
    let store = &state.deps.store;
    let now = now_ms();
    let invalid_token =
        || ApiError::unauthorized("registration token is invalid, expired or revoked");
    if b.registration_token.len() > 256 {
        return Err(invalid_token());
    }
    let cluster_id = match store
        .token(&auth::hash_secret(&b.registration_token), now)
        .await?
    {
        Some(TokenRecord {
            kind: TokenKind::Registration { cluster_id },
            ..
        }) => cluster_id,
        _ => return Err(invalid_token()),
    };
    let cluster = match store.cluster(&cluster_id).await? {
        Some(c) if c.status != Status::Deleting => c,
        _ => return Err(ApiError::gone("cluster was deleted")),
    };
    check_fields(&b)?;
    validate::emqx_version(&b.emqx.version)
        .map_err(|m| ApiError::unprocessable("UNSUPPORTED_VERSION", m))?;

    // Identity of an EMQX node: node name + machine id (binary) or API URL (Kubernetes).
    let place = if !b.machine_id.is_empty() {
        b.machine_id.clone()
    } else if !b.api_url.is_empty() {
        b.api_url.clone()
    } else {
        b.dashboard_url.clone()
    };
    let agent = AgentRecord {
        id: uuid::Uuid::new_v4().simple().to_string(),
        cluster_id: cluster_id.clone(),
        node_id: b.node_id,
        node_key: format!("{}|{}", b.emqx.local_node, place),
        node_name: b.emqx.local_node,
        hostname: b.hostname,
        machine_id: b.machine_id,
        agent_version: b.agent_version,
        dashboard_url: b.dashboard_url,
        log_collection: LogCollection {
            enabled: b.log_collection.enabled,
            dir: b.log_collection.dir,
        },
        emqx_reachable: true,
        created_at: now,
        last_seen: now,
    };
    let (credential, hash) = auth::new_secret(auth::AGENT_PREFIX);
    let cred = TokenRecord {
        kind: TokenKind::Agent {
            cluster_id: cluster_id.clone(),
            agent_id: agent.id.clone(),
        },
        created_at: now,
        expires_at: None,
    };
    let registered = match store.register_agent(&agent, &hash, &cred).await {
        Ok(r) => r,
        Err(StoreError::NodeTaken { cluster_id: other }) => {
            let at = elsewhere(state, &cluster, &other).await?;
            return Err(ApiError::conflict(
                "NODE_ALREADY_MANAGED",
                format!(
                    "EMQX node {} is already managed by {at}; unregister it there first",
                    agent.node_name
                ),
            ));
        }
        Err(StoreError::InstanceTaken { cluster_id: other }) => {
            let at = elsewhere(state, &cluster, &other).await?;
            return Err(ApiError::conflict(
                "AGENT_REGISTERED_ELSEWHERE",
                format!("this agent is registered with {at}; run `emqxee-agent unregister` first"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    state
        .deps
        .cluster(&cluster_id)
        .ask(ClusterInput::AgentRegistered {
            agent_id: registered.agent.id.clone(),
            new: !registered.reused,
        })
        .await?;
    // A retry's old credential no longer works; close a session that used it.
    if registered.reused {
        if let Some(s) = state.deps.dir.session(&registered.agent.id) {
            let _ = s.shutdown.try_send(Shutdown {
                code: ecp_protocol::CloseCode::Reregistered,
                reason: "credential replaced by a new registration".into(),
            });
        }
    }
    tracing::info!(cluster_id = %cluster_id, agent_id = %registered.agent.id, node = %registered.agent.node_name, reused = registered.reused, "agent registered");
    let s = &state.deps.session;
    let ids = RegisteredIds {
        cluster_id: cluster.id.clone(),
        agent_id: registered.agent.id.clone(),
    };
    let response = HttpResponse::Ok().json(RegisterResponse {
        token: credential,
        cluster_id: cluster.id,
        agent_id: registered.agent.id,
        heartbeat_interval_secs: s.heartbeat_interval_secs,
        report_interval_secs: s.report_interval_secs,
    });
    Ok((response, ids))
}

/// Names the other cluster a refusal is about only to a caller of the same
/// project; anyone else learns just that it is another cluster.
async fn elsewhere(
    state: &AppState,
    mine: &ClusterRecord,
    other: &str,
) -> Result<String, ApiError> {
    Ok(match state.deps.store.cluster(other).await? {
        Some(c) if c.project_id == mine.project_id => format!("cluster \"{}\" ({other})", c.name),
        _ => "another cluster".to_string(),
    })
}

/// The agent behind a credential, or the right refusal (401, or 410 for a deleted cluster).
async fn agent_of(state: &AppState, req: &HttpRequest) -> Result<AgentRecord, ApiError> {
    let invalid =
        || ApiError::unauthorized("agent credential is invalid or revoked; register again");
    let hash = auth::bearer(req)
        .map(auth::hash_secret)
        .ok_or_else(invalid)?;
    let store = &state.deps.store;
    let Some(TokenRecord {
        kind: TokenKind::Agent {
            cluster_id,
            agent_id,
        },
        ..
    }) = store.token(&hash, now_ms()).await?
    else {
        return Err(invalid());
    };
    match store.cluster(&cluster_id).await? {
        Some(c) if c.status != Status::Deleting => {}
        _ => return Err(ApiError::gone("cluster was deleted")),
    }
    store.agent(&agent_id).await?.ok_or_else(invalid)
}

/// The agent's WebSocket (binary frames of the wire protocol).
#[utoipa::path(get, path = "/api/clusters/agents/emqxee/connect", tag = "agents",
    responses((status = 101, description = "WebSocket upgrade"), (status = 401, body = crate::error::ErrorBody), (status = 410, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::unavailable("this node is draining; connect to another").into());
    }
    if let Err(wait) = state.upgrades.admit() {
        return Err(ApiError::too_many(
            "too many agent connections opening on this node; retry later",
            wait,
        )
        .into());
    }
    let agent = agent_of(&state, &req).await?;
    let peer = crate::client_ip::of_request(&req, &state.trusted_proxies).to_string();
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    ecp_actors::session::start_session(
        state.deps.clone(),
        state.registry.clone(),
        (agent.id, agent.cluster_id, peer),
        ws,
        stream,
    );
    Ok(response)
}

/// Unregister this agent: its credential stops working.
#[utoipa::path(post, path = "/api/clusters/agents/emqxee/unregister", tag = "agents",
    responses((status = 204), (status = 401, body = crate::error::ErrorBody), (status = 410, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn unregister(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let agent = agent_of(&state, &req).await?;
    state.deps.store.remove_agent(&agent.id).await?;
    state
        .deps
        .cluster(&agent.cluster_id)
        .ask(ClusterInput::AgentGone {
            agent_id: agent.id.clone(),
            removed: true,
        })
        .await?;
    tracing::info!(cluster_id = %agent.cluster_id, agent_id = %agent.id, "agent unregistered");
    let object = Object {
        kind: "agent",
        id: &agent.id,
        name: &agent.node_name,
        org_id: "",
        project_id: "",
    };
    audit::record(
        &state,
        &req,
        Actor::Agent { id: &agent.id },
        "agent.unregister",
        object,
        "ok",
        "",
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecp_protocol::register::{RegisterEmqx, RegisterLogCollection};
    use utoipa::OpenApi;

    fn body() -> RegisterRequest {
        RegisterRequest {
            registration_token: "ecpr_x".into(),
            node_id: "inst-1".into(),
            agent_version: "0.1.0".into(),
            hostname: "h".into(),
            machine_id: "m".into(),
            emqx: RegisterEmqx {
                version: "5.6.0".into(),
                edition: "Enterprise".into(),
                cluster_name: "c".into(),
                nodes: vec!["emqx@a".into()],
                local_node: "emqx@a".into(),
            },
            dashboard_url: "http://127.0.0.1:18083".into(),
            api_url: String::new(),
            log_collection: RegisterLogCollection::default(),
        }
    }

    type Field = fn(&mut RegisterRequest) -> &mut String;

    #[test]
    fn the_openapi_shows_the_bounds_the_server_checks() {
        let doc = serde_json::to_value(crate::api::ApiDoc::openapi()).expect("json");
        let schemas = &doc["components"]["schemas"];
        let fields: [(&str, &str, Field); 11] = [
            ("RegisterRequest", "nodeId", |b| &mut b.node_id),
            ("RegisterRequest", "agentVersion", |b| &mut b.agent_version),
            ("RegisterRequest", "hostname", |b| &mut b.hostname),
            ("RegisterRequest", "machineId", |b| &mut b.machine_id),
            ("RegisterRequest", "dashboardUrl", |b| &mut b.dashboard_url),
            ("RegisterRequest", "apiUrl", |b| &mut b.api_url),
            ("RegisterEmqx", "localNode", |b| &mut b.emqx.local_node),
            ("RegisterEmqx", "version", |b| &mut b.emqx.version),
            ("RegisterEmqx", "edition", |b| &mut b.emqx.edition),
            ("RegisterEmqx", "clusterName", |b| &mut b.emqx.cluster_name),
            ("RegisterLogCollection", "dir", |b| {
                &mut b.log_collection.dir
            }),
        ];
        assert!(check_fields(&body()).is_ok());
        for (schema, name, field) in fields {
            let shown = &schemas[schema]["properties"][name];
            let max = shown["maxLength"]
                .as_u64()
                .unwrap_or_else(|| panic!("{schema}.{name} has no maxLength: {shown}"))
                as usize;
            let mut b = body();
            *field(&mut b) = "x".repeat(max);
            assert!(check_fields(&b).is_ok(), "{name} at its maxLength");
            *field(&mut b) = "x".repeat(max + 1);
            assert!(check_fields(&b).is_err(), "{name} over its maxLength");
            *field(&mut b) = " ".into();
            let required = shown["minLength"] == 1;
            assert_eq!(check_fields(&b).is_err(), required, "{name} blank");
        }
    }
}
