//! `ANY /api/emqxee/dashboard/{clusterId}/{path}`: EMQX's dashboard through
//! the agent's tunnel. The caller is authorised by the policy (viewers may
//! only GET/HEAD); the request goes to a session of one of the cluster's
//! agents — on this node, or forwarded to the node holding one — and the
//! agent replays it against its `dashboardUrl` with its own EMQX
//! credentials. The path bytes are kept exactly (`%2F` stays encoded), the
//! browser's credentials never leave ECP, and the response is streamed.

use crate::audit::{self, Object};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::peers::{PEER_HEADER, PEER_PATH};
use crate::policy::Need;
use crate::AppState;
use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ecp_actors::tunnel::{TunnelError, TunnelEvent, TunnelStream};
use futures_util::StreamExt;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub const PREFIX: &str = "/api/emqxee/dashboard/";
/// Largest request body carried to EMQX (it travels in one frame).
pub const MAX_BODY: usize = 512 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Request headers never passed on: hop-by-hop ones, and every credential
/// of the browser (EMQX gets the agent's instead).
fn drop_request_header(name: &str) -> bool {
    matches!(
        name,
        "authorization"
            | "cookie"
            | "host"
            | "connection"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "x-ecp-csrf"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-real-ip"
    ) || name == PEER_HEADER
}

/// Response headers not passed back.
fn drop_response_header(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "set-cookie"
    )
}

/// The part after `/api/emqxee/dashboard/{clusterId}`, raw, with the query.
pub fn tail_of(raw_path: &str, query: &str, prefix_len: usize) -> String {
    let mut tail = raw_path.get(prefix_len..).unwrap_or("").to_string();
    if !tail.starts_with('/') {
        tail.insert(0, '/');
    }
    if !query.is_empty() {
        tail.push('?');
        tail.push_str(query);
    }
    tail
}

fn request_headers(req: &HttpRequest) -> Vec<(String, Vec<u8>)> {
    req.headers()
        .iter()
        .filter(|(n, _)| !drop_request_header(n.as_str()))
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// The dashboard proxy route.
#[utoipa::path(get, path = "/api/emqxee/dashboard/{clusterId}/{path}", tag = "dashboard",
    params(("clusterId" = String, Path), ("path" = String, Path, description = "any path of the EMQX dashboard; any method")),
    request_body(content = String, content_type = "application/octet-stream", description = "passed to EMQX as is (at most 512 KiB)"),
    responses((status = 200, description = "EMQX's answer, streamed"), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 503, description = "no agent session, or the agent is busy", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn proxy(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let raw = req.uri().path();
    let rest = raw.get(PREFIX.len()..).unwrap_or("");
    let cluster_id = rest.split('/').next().unwrap_or("").to_string();
    let (user, via) = caller(&state, &req, &cluster_id).await?;
    let need = if req.method() == "GET" || req.method() == "HEAD" {
        Need::Read
    } else {
        Need::Write
    };
    let cluster = match state.deps.store.cluster(&cluster_id).await? {
        Some(c) => c,
        None => return Err(ApiError::not_found("cluster")),
    };
    let project = state
        .deps
        .store
        .project(&cluster.project_id)
        .await?
        .ok_or_else(|| ApiError::not_found("cluster"))?;
    user.access
        .require(&project, need)
        .map_err(|e| match e.status {
            StatusCode::NOT_FOUND => ApiError::not_found("cluster"),
            _ => ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "viewers may only read the dashboard (GET/HEAD)",
            ),
        })?;
    if via == Caller::ConsoleCookie && !state.config.server.dashboard_origin.is_empty() {
        // EMQX's pages run on the dashboard origin, never on the console's.
        if need == Need::Write {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "DASHBOARD_ORIGIN",
                "dashboards are served on server.dashboard_origin",
            ));
        }
        return open_on_dashboard_origin(&state, &req, &user, &cluster.id).await;
    }
    if !rest.contains('/') {
        // Relative asset URLs need the trailing slash.
        return Ok(HttpResponse::PermanentRedirect()
            .insert_header(("location", format!("{PREFIX}{cluster_id}/")))
            .finish());
    }
    let tail = tail_of(raw, req.query_string(), PREFIX.len() + cluster_id.len());
    if need == Need::Read && (tail == "/" || tail.starts_with("/?") || tail == "/index.html") {
        let object = Object::cluster(&cluster);
        audit::ok(&state, &req, &user.user, "dashboard.open", object, "").await;
    }
    let method = req.method().to_string();
    let headers = request_headers(&req);
    // A session on this node?
    let local = state.deps.dir.sessions_of(&cluster.id);
    if let Some((agent_id, entry)) = local.into_iter().next() {
        tracing::debug!(cluster_id = %cluster.id, %agent_id, path = %tail, "dashboard via local tunnel");
        let stream = entry
            .tunnel
            .open(method.clone(), tail, headers, body.to_vec())
            .map_err(tunnel_error)?;
        return respond(&state, stream, method == "HEAD").await;
    }
    forward(&state, &cluster.id, &method, &tail, headers, body).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An API client's `Authorization: Bearer ecps_…`.
    Bearer,
    /// The console's session cookie (on the console's origin).
    ConsoleCookie,
    /// The dashboard origin's per-cluster cookie.
    DashboardCookie,
}

fn on_dashboard_origin(state: &AppState, req: &HttpRequest) -> bool {
    let want =
        crate::config::origin_host(&state.config.server.dashboard_origin).unwrap_or_default();
    !want.is_empty()
        && req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.eq_ignore_ascii_case(&want))
}

/// Who is calling: an API client's Bearer, the console's cookie, or (on the
/// dashboard origin) that origin's cookie for this very cluster. Cookie
/// requests that change something must be same-origin (EMQX's pages cannot
/// send our CSRF header).
async fn caller(
    state: &AppState,
    req: &HttpRequest,
    cluster_id: &str,
) -> Result<(AuthUser, Caller), ApiError> {
    if let Some(t) = crate::auth::bearer(req).filter(|t| t.starts_with(crate::auth::SESSION_PREFIX))
    {
        let user = crate::auth::user_of_session(state, &crate::auth::hash_secret(t)).await?;
        return Ok((user, Caller::Bearer));
    }
    let unsafe_method = !req.method().is_safe();
    if unsafe_method
        && req.headers().get(crate::auth::CSRF_HEADER).is_none()
        && !crate::auth::same_origin(req)
    {
        return Err(crate::auth::csrf_error());
    }
    if on_dashboard_origin(state, req) {
        let token = req
            .cookie(crate::auth::DASHBOARD_COOKIE)
            .map(|c| c.value().to_string())
            .filter(|v| v.starts_with(crate::auth::DASHBOARD_PREFIX) && v.len() <= 256)
            .ok_or_else(|| {
                ApiError::unauthorized("open the dashboard from the console (Enter Dashboard)")
            })?;
        let rec = state
            .deps
            .store
            .token(
                &crate::auth::hash_secret(&token),
                ecp_actors::model::now_ms(),
            )
            .await?;
        let Some(ecp_actors::model::TokenKind::DashboardSession {
            cluster_id: c,
            session,
            ..
        }) = rec.map(|r| r.kind)
        else {
            return Err(ApiError::unauthorized(
                "the dashboard session ended; open it again from the console",
            ));
        };
        let parent: ecp_actors::store::TokenHash = hex::decode(&session)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ApiError::unauthorized("the dashboard session ended"))?;
        if c != cluster_id {
            return Err(ApiError::not_found("cluster"));
        }
        // Valid only while the console session is (logout ends both).
        let user = crate::auth::user_of_session(state, &parent).await?;
        return Ok((user, Caller::DashboardCookie));
    }
    let (token, _) = crate::auth::session_token(req)
        .ok_or_else(|| ApiError::unauthorized("log in first: no access token"))?;
    let user = crate::auth::user_of_session(state, &crate::auth::hash_secret(&token)).await?;
    Ok((user, Caller::ConsoleCookie))
}

/// Enter Dashboard with `server.dashboard_origin` set: a one-time ticket
/// (60 s) carries the console session to the dashboard origin, which trades
/// it for its own cookie there.
async fn open_on_dashboard_origin(
    state: &AppState,
    req: &HttpRequest,
    user: &AuthUser,
    cluster_id: &str,
) -> Result<HttpResponse, ApiError> {
    use ecp_actors::model::{now_ms, TokenKind, TokenRecord};
    let (token, _) = crate::auth::session_token(req)
        .ok_or_else(|| ApiError::unauthorized("log in first: no access token"))?;
    let (ticket, hash) = crate::auth::new_secret(crate::auth::TICKET_PREFIX);
    let now = now_ms();
    state
        .deps
        .store
        .put_token(
            &hash,
            &TokenRecord {
                kind: TokenKind::DashboardTicket {
                    user_id: user.user.id.clone(),
                    cluster_id: cluster_id.to_string(),
                    session: hex::encode(crate::auth::hash_secret(&token)),
                },
                created_at: now,
                expires_at: Some(now + 60_000),
            },
        )
        .await?;
    let origin = state.config.server.dashboard_origin.trim_end_matches('/');
    Ok(HttpResponse::SeeOther()
        .insert_header((
            "location",
            format!("{origin}/api/emqxee/dashboard-login/{cluster_id}?ticket={ticket}"),
        ))
        .insert_header(("referrer-policy", "no-referrer"))
        .finish())
}

#[derive(serde::Deserialize)]
pub struct TicketQuery {
    ticket: String,
}

/// `GET /api/emqxee/dashboard-login/{clusterId}?ticket=…` on the dashboard
/// origin: spends the ticket, sets this origin's cookie for the cluster's
/// path, and goes to the dashboard.
pub async fn dashboard_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<TicketQuery>,
) -> Result<HttpResponse, ApiError> {
    use ecp_actors::model::{now_ms, TokenKind, TokenRecord};
    let cluster_id = path.into_inner();
    if !on_dashboard_origin(&state, &req) {
        return Err(ApiError::not_found("route"));
    }
    let hash = crate::auth::hash_secret(&q.ticket);
    let rec = state.deps.store.token(&hash, now_ms()).await?;
    // One use only.
    state.deps.store.delete_token(&hash).await?;
    let Some(TokenKind::DashboardTicket {
        user_id,
        cluster_id: c,
        session,
    }) = rec.map(|r| r.kind)
    else {
        return Err(ApiError::unauthorized(
            "this dashboard link was used or has expired; open it again from the console",
        ));
    };
    if c != cluster_id {
        return Err(ApiError::unauthorized(
            "this dashboard link is for another cluster",
        ));
    }
    let (token, th) = crate::auth::new_secret(crate::auth::DASHBOARD_PREFIX);
    let ttl = state.config.tokens.session_ttl_secs;
    let now = now_ms();
    state
        .deps
        .store
        .put_token(
            &th,
            &TokenRecord {
                kind: TokenKind::DashboardSession {
                    user_id,
                    cluster_id: cluster_id.clone(),
                    session,
                },
                created_at: now,
                expires_at: Some(now + ttl * 1000),
            },
        )
        .await?;
    let home = format!("{PREFIX}{cluster_id}/");
    // Lax: the first load arrives by a cross-site redirect from the console.
    let cookie = actix_web::cookie::Cookie::build(crate::auth::DASHBOARD_COOKIE, token)
        .path(home.clone())
        .http_only(true)
        .same_site(actix_web::cookie::SameSite::Lax)
        .secure(state.config.server.dashboard_origin.starts_with("https://"))
        .max_age(actix_web::cookie::time::Duration::seconds(ttl as i64))
        .finish();
    Ok(HttpResponse::SeeOther()
        .cookie(cookie)
        .insert_header(("location", home))
        .finish())
}

fn tunnel_error(e: TunnelError) -> ApiError {
    ApiError::unavailable(format!("dashboard tunnel: {e}"))
}

/// Streams a tunnel stream back as the HTTP response.
async fn respond(
    state: &AppState,
    mut stream: TunnelStream,
    head_only: bool,
) -> Result<HttpResponse, ApiError> {
    state
        .deps
        .metrics
        .tunnel_requests
        .fetch_add(1, Ordering::Relaxed);
    let first = tokio::time::timeout(HEAD_TIMEOUT, stream.next())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "DASHBOARD_TIMEOUT",
                "the agent did not answer within 30 s",
            )
        })?;
    let (status, headers) = match first {
        Some(TunnelEvent::Head { status, headers }) => (status, headers),
        Some(TunnelEvent::End(Some(e))) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "DASHBOARD_UNREACHABLE",
                e,
            ))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "DASHBOARD_UNREACHABLE",
                "the agent ended the stream without an answer",
            ))
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut res = HttpResponse::build(status);
    let named = |want: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(want))
            .map(|(_, v)| v.as_slice())
    };
    let length = named("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if named("content-encoding").is_none() {
        // Bytes pass as they are: ECP's own compression stays out of it.
        res.insert_header(("content-encoding", "identity"));
    }
    pass_response_headers(
        &mut res,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
    );
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        match s.next().await {
            Some(TunnelEvent::Data(d)) => Some((Ok::<_, std::io::Error>(web::Bytes::from(d)), s)),
            Some(TunnelEvent::End(Some(e))) => Some((Err(std::io::Error::other(e)), s)),
            _ => None,
        }
    });
    Ok(streamed(res, length, head_only, body))
}

/// Copies the response headers that may pass (see `drop_response_header`).
fn pass_response_headers<'a>(
    res: &mut actix_web::HttpResponseBuilder,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) {
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if drop_response_header(&lower) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            actix_web::http::header::HeaderName::from_bytes(lower.as_bytes()),
            actix_web::http::header::HeaderValue::from_bytes(value),
        ) {
            res.append_header((n, v));
        }
    }
}

/// The body streamed, sized when the length is known; none for HEAD.
fn streamed<S>(
    mut res: actix_web::HttpResponseBuilder,
    length: Option<u64>,
    head_only: bool,
    body: S,
) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<web::Bytes, std::io::Error>> + 'static,
{
    match length {
        _ if head_only => res.finish(),
        Some(n) => res.body(SizedStream::new(n, body.boxed_local())),
        None => res.body(BodyStream::new(body)),
    }
}

/// No session here: forward to the node that holds one (Redis mode).
async fn forward(
    state: &AppState,
    cluster_id: &str,
    method: &str,
    tail: &str,
    headers: Vec<(String, Vec<u8>)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let no_agent = || {
        ApiError::unavailable(
            "no agent of this cluster is connected, so its dashboard cannot be reached",
        )
    };
    let Some(peers) = state.peers.as_ref() else {
        return Err(no_agent());
    };
    let agents = state.deps.store.agents_of_cluster(cluster_id).await?;
    let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
    let presence = state.deps.coord.presence(&ids).await?;
    for (agent_id, p) in ids.iter().zip(presence) {
        let Some((node, _)) = p else { continue };
        if node == peers.node() {
            continue; // ours, but gone since the directory was read
        }
        let Some(url) = peers.url_of(&node).await else {
            continue;
        };
        let target = format!("{url}{PEER_PATH}/{agent_id}{tail}");
        tracing::debug!(cluster_id, agent_id = %agent_id, node = %node, "dashboard forwarded to peer");
        let mut rb = peers
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes())
                    .map_err(|_| ApiError::bad_request("BAD_METHOD", "unsupported method"))?,
                &target,
            )
            .header(PEER_HEADER, peers.secret())
            .body(body.clone());
        for (n, v) in &headers {
            rb = rb.header(n.as_str(), v.as_slice());
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "peer unreachable for dashboard forwarding");
                continue;
            }
        };
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut res = HttpResponse::build(status);
        pass_response_headers(
            &mut res,
            resp.headers()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        let length = resp.content_length();
        let stream = resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other));
        return Ok(streamed(res, length, method == "HEAD", stream));
    }
    Err(no_agent())
}

/// `ANY /internal/peer/tunnel/{agentId}/{path}`: a peer forwards a request
/// it already authorised; only the shared secret is checked here.
pub async fn peer_tunnel(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(peers) = state.peers.as_ref() else {
        return Err(ApiError::not_found("route"));
    };
    if !peers.authentic(req.headers().get(PEER_HEADER).map(|v| v.as_bytes())) {
        return Err(ApiError::not_found("route"));
    }
    let raw = req.uri().path();
    let rest = raw.get(PEER_PATH.len() + 1..).unwrap_or("");
    let agent_id = rest.split('/').next().unwrap_or("").to_string();
    let tail = tail_of(
        raw,
        req.query_string(),
        PEER_PATH.len() + 1 + agent_id.len(),
    );
    let entry = state
        .deps
        .dir
        .session(&agent_id)
        .ok_or_else(|| ApiError::unavailable("the agent's session left this node"))?;
    let method = req.method().to_string();
    let stream = entry
        .tunnel
        .open(method.clone(), tail, request_headers(&req), body.to_vec())
        .map_err(tunnel_error)?;
    respond(&state, stream, method == "HEAD").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_bytes_and_the_query() {
        let p = "/api/emqxee/dashboard/c1/api/v4/routes/a%2Fb";
        assert_eq!(tail_of(p, "", PREFIX.len() + 2), "/api/v4/routes/a%2Fb");
        assert_eq!(
            tail_of("/api/emqxee/dashboard/c1/", "x=%2F&y", PREFIX.len() + 2),
            "/?x=%2F&y"
        );
        assert_eq!(
            tail_of("/api/emqxee/dashboard/c1", "", PREFIX.len() + 2),
            "/"
        );
    }

    #[test]
    fn browser_credentials_never_pass() {
        for h in ["authorization", "cookie", "x-ecp-csrf", PEER_HEADER, "host"] {
            assert!(drop_request_header(h), "{h}");
        }
        for h in ["accept", "content-type", "accept-encoding", "if-none-match"] {
            assert!(!drop_request_header(h), "{h}");
        }
        assert!(drop_response_header("set-cookie"));
        assert!(!drop_response_header("content-type"));
    }
}
