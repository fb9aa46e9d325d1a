//! EMQX dashboards through the agent's tunnel, and the trust boundary
//! around them.
//!
//! A dashboard page comes from a host ECP does not control: whatever it
//! serves must never act in ECP as the user, read the console's cookie or
//! storage, reach another cluster's dashboard, or take the browser
//! elsewhere (PRODUCT §7, SECURITY.md). So EMQX's pages are never served on
//! the console's origin:
//!
//! - The *dashboard site* serves `/d/{capability}/{path}` and nothing else:
//!   on the dashboard listener (`server.dashboard_listen`, an origin of its
//!   own by port) and, when `server.dashboard_origin` names a second host,
//!   on the main listener for that host only. The capability (`ecpd_…`) is
//!   minted by `POST P/clusters/{id}/dashboard-sessions`, which a foreign
//!   page cannot call (cookie requests need the console's CSRF header). It
//!   names one cluster and one console session, lapses unused after
//!   `tokens.dashboard_idle_secs`, ends with the session, and every request
//!   re-checks the user's current rights. No ambient cookie authenticates
//!   anything there; the browser's cookies never reach EMQX.
//! - `ANY /api/emqxee/dashboard/{clusterId}/{path}` on the console origin
//!   stays for API clients with a Bearer token (ECP-compatible). The
//!   console's cookie is refused there, and answers are sandboxed.
//!
//! Both share one proxy: the path is checked before anything routes on it
//! (dot segments refused, `ecp_protocol::path`), the request goes to a
//! session of one of the cluster's agents — on this node, or forwarded to
//! the node holding one — and the answer is streamed back with EMQX's
//! headers filtered (no cookies, no redirects outside the dashboard, no
//! service workers, no HSTS or Clear-Site-Data for ECP's host).

use crate::audit::{self, Object};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::peers::{PEER_AGENT_HEADER, PEER_HEADER, PEER_PATH, PEER_PATH_HEADER};
use crate::policy::Need;
use crate::AppState;
use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ecp_actors::model::{now_ms, ClusterRecord, TokenKind, TokenRecord};
use ecp_actors::tunnel::{TunnelError, TunnelEvent, TunnelStream};
use ecp_protocol::path::check_tail;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use utoipa::ToSchema;

/// The API path (console origin, Bearer only).
pub const PREFIX: &str = "/api/emqxee/dashboard/";
/// The dashboard site's only path.
pub const SITE_PREFIX: &str = "/d/";
/// Largest request body carried to EMQX (it travels in one frame).
pub const MAX_BODY: usize = 512 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Request headers never passed on: hop-by-hop ones, every credential of
/// the browser (EMQX gets the agent's instead), and what names the page.
pub fn drop_request_header(name: &str) -> bool {
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
            | "origin"
            | "referer"
            | "x-ecp-csrf"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-proto"
            | "x-real-ip"
            | "forwarded"
    ) || name.starts_with("x-ecp-")
}

/// Response headers of EMQX's that never reach the browser: hop-by-hop
/// ones, and every header that could act beyond this dashboard — cookies
/// (ECP's host), HSTS, Clear-Site-Data, service workers, CORS grants,
/// redirects (`Location` is rewritten separately, `Refresh` dropped),
/// alternative services, reporting endpoints, Basic-auth prompts, and the
/// isolation headers ECP sets itself.
pub fn drop_response_header(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "set-cookie"
            | "set-cookie2"
            | "location"
            | "refresh"
            | "content-location"
            | "link"
            | "alt-svc"
            | "strict-transport-security"
            | "clear-site-data"
            | "service-worker-allowed"
            | "public-key-pins"
            | "public-key-pins-report-only"
            | "report-to"
            | "reporting-endpoints"
            | "nel"
            | "www-authenticate"
            | "proxy-authenticate"
            | "referrer-policy"
            | "cross-origin-opener-policy"
            | "cross-origin-resource-policy"
            | "cross-origin-embedder-policy"
    ) || name.starts_with("access-control-")
        || name.starts_with("x-ecp-")
}

/// Where a `Location` from EMQX may send the browser: only inside this
/// dashboard. A path (`/…`) is put under `base`; a relative reference
/// stays relative (it cannot climb: dot segments are refused); anything
/// with a scheme or a host is refused.
pub fn rewrite_location(value: &[u8], base: &str) -> Option<String> {
    let v = std::str::from_utf8(value).ok()?.trim();
    if v.is_empty() || v.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return None;
    }
    let (target, fragment) = match v.split_once('#') {
        Some((t, f)) => (t, Some(f)),
        None => (v, None),
    };
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    if target.starts_with('/') {
        check_tail(target).ok()?;
        return Some(format!("{base}{target}{fragment}"));
    }
    // A scheme ("http:", "javascript:") or a backslash: not a path.
    let first = target.split(['/', '?']).next().unwrap_or("");
    if first.contains(':') || target.contains('\\') {
        return None;
    }
    if target.is_empty() {
        return Some(fragment);
    }
    check_tail(&format!("/{target}")).ok()?;
    Some(format!("{target}{fragment}"))
}

/// The part after a cluster's prefix, raw, with the query.
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

/// A capability as it appears in a dashboard URL.
pub fn is_capability(s: &str) -> bool {
    s.strip_prefix(crate::auth::DASHBOARD_PREFIX)
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A cluster id as ECP makes them (32 hex digits); anything else is 404.
fn is_cluster_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The dashboard site's origin as a browser reaching the console at
/// `scheme://host` sees it: `server.dashboard_origin` if set, else the
/// same scheme and host name with the dashboard listener's port.
pub fn site_origin(
    configured: &str,
    scheme: &str,
    host: &str,
    port: Option<u16>,
) -> Option<String> {
    if !configured.is_empty() {
        return Some(configured.trim_end_matches('/').to_string());
    }
    let port = port?;
    // Drop the console's port: "[::1]:8080" → "[::1]", "ecp:8080" → "ecp".
    let name = if let Some(rest) = host.strip_prefix('[') {
        format!("[{}]", rest.split(']').next().unwrap_or(""))
    } else {
        host.split(':').next().unwrap_or("").to_string()
    };
    if name.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{name}:{port}"))
}

fn request_headers(req: &HttpRequest) -> Vec<(String, Vec<u8>)> {
    req.headers()
        .iter()
        .filter(|(n, _)| !drop_request_header(n.as_str()))
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Which side answers: the dashboard site, or the API path on the
/// console's origin (where answers are sandboxed: never a live page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Face {
    Site,
    Api,
}

fn bad_path(e: ecp_protocol::path::PathError) -> ApiError {
    ApiError::bad_request("BAD_PATH", format!("dashboard path refused: {e}"))
}

/// `ANY /d/{capability}/{path}`: the dashboard site.
pub async fn site(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let raw = req.uri().path();
    if !state.is_site(&req) || !raw.starts_with(SITE_PREFIX) {
        // Never on the console's origin, however the path was spelled.
        return Err(ApiError::not_found("route"));
    }
    let rest = raw.get(SITE_PREFIX.len()..).unwrap_or("");
    let cap = rest.split('/').next().unwrap_or("").to_string();
    if !is_capability(&cap) {
        return Err(ApiError::not_found("dashboard"));
    }
    if !rest[cap.len()..].starts_with('/') {
        // Relative asset URLs need the trailing slash.
        return Ok(HttpResponse::PermanentRedirect()
            .insert_header(("location", format!("{SITE_PREFIX}{cap}/")))
            .insert_header(("referrer-policy", "no-referrer"))
            .finish());
    }
    let tail = tail_of(raw, req.query_string(), SITE_PREFIX.len() + cap.len());
    check_tail(&tail).map_err(bad_path)?;
    if req.headers().contains_key("service-worker") {
        // A service worker could watch every page of this origin.
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "NO_SERVICE_WORKERS",
            "service workers are not allowed on the dashboard site",
        ));
    }
    let need = need_of(&req);
    let (cluster, holder) = spend_capability(&state, &cap, need).await?;
    let base = format!("{SITE_PREFIX}{cap}");
    proxy(
        &state,
        &req,
        body,
        &cluster,
        tail,
        Face::Site,
        &base,
        holder,
    )
    .await
}

fn need_of(req: &HttpRequest) -> Need {
    if req.method() == "GET" || req.method() == "HEAD" {
        Need::Read
    } else {
        Need::Write
    }
}

fn viewer_refused(e: ApiError) -> ApiError {
    match e.status {
        StatusCode::NOT_FOUND => ApiError::not_found("cluster"),
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "viewers may only read the dashboard (GET/HEAD)",
        ),
    }
}

/// The cluster a capability opens, if it is alive and its user may still
/// do `need` there. Also slides the capability's idle expiry.
async fn spend_capability(
    state: &AppState,
    cap: &str,
    need: Need,
) -> Result<(ClusterRecord, Holder), ApiError> {
    let ended = || {
        ApiError::unauthorized(
            "this dashboard was closed or has lapsed; open it again from ECP's console (Enter Dashboard)",
        )
    };
    let store = &state.deps.store;
    let hash = crate::auth::hash_secret(cap);
    let now = now_ms();
    let rec = store.token(&hash, now).await?.ok_or_else(ended)?;
    let TokenKind::DashboardSession {
        user_id,
        cluster_id,
        session,
    } = &rec.kind
    else {
        return Err(ended());
    };
    let parent: ecp_actors::store::TokenHash = hex::decode(session)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(ended)?;
    // Valid only while the console session is, for that session's user.
    let user = crate::auth::user_of_session(state, &parent)
        .await
        .map_err(|_| ended())?;
    if &user.user.id != user_id {
        return Err(ended());
    }
    let cluster = cluster_for(state, &user, cluster_id, need).await?;
    let idle_ms = state.config.tokens.dashboard_idle_secs * 1000;
    if rec.expires_at.is_some_and(|e| e < now + idle_ms / 2) {
        let parent_expiry = store
            .token(&parent, now)
            .await?
            .and_then(|p| p.expires_at)
            .unwrap_or(now + idle_ms);
        let renewed = TokenRecord {
            expires_at: Some((now + idle_ms).min(parent_expiry)),
            ..rec.clone()
        };
        store.put_token(&hash, &renewed).await?;
    }
    let holder = Holder {
        user_id: user.user.id.clone(),
        session: parent,
        cluster_id: cluster.id.clone(),
        need,
    };
    Ok((cluster, holder))
}

/// Whose rights an answer streams under: it ends when they lapse (logout,
/// expiry, a membership removed) — also in the middle of a download.
#[derive(Clone)]
struct Holder {
    user_id: String,
    session: ecp_actors::store::TokenHash,
    cluster_id: String,
    need: Need,
}

impl Holder {
    async fn still_allowed(&self, state: &AppState) -> bool {
        match crate::auth::user_of_session(state, &self.session).await {
            Ok(user) => cluster_for(state, &user, &self.cluster_id, self.need)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// The cluster, if `user` may do `need` on it now: 404 when it is gone or
/// not theirs to see, 403 for a viewer's change.
async fn cluster_for(
    state: &AppState,
    user: &AuthUser,
    cluster_id: &str,
    need: Need,
) -> Result<ClusterRecord, ApiError> {
    let store = &state.store;
    let cluster = store
        .cluster(cluster_id)
        .await?
        .ok_or_else(|| ApiError::not_found("cluster"))?;
    let project = store
        .project(&cluster.project_id)
        .await?
        .ok_or_else(|| ApiError::not_found("cluster"))?;
    user.access
        .require(&project, need)
        .map_err(viewer_refused)?;
    Ok(cluster)
}

/// The body, cut off with an error as soon as its holder's rights end.
fn held<S>(
    body: S,
    state: web::Data<AppState>,
    holder: Holder,
) -> impl futures_util::Stream<Item = Result<web::Bytes, std::io::Error>>
where
    S: futures_util::Stream<Item = Result<web::Bytes, std::io::Error>> + 'static,
{
    let notices = state.revocations.subscribe();
    futures_util::stream::unfold(
        (Box::pin(body), notices, state, holder, false),
        |(mut body, mut notices, state, holder, ended)| async move {
            if ended {
                return None;
            }
            loop {
                tokio::select! {
                    biased;
                    n = notices.recv() => {
                        if n.concerns(&holder.user_id) && !holder.still_allowed(&state).await {
                            tracing::info!(user_id = %holder.user_id, cluster_id = %holder.cluster_id, "dashboard answer cut: access ended");
                            let e = std::io::Error::other("access to this dashboard ended");
                            return Some((Err(e), (body, notices, state, holder, true)));
                        }
                    }
                    item = body.next() => {
                        return item.map(|i| (i, (body, notices, state, holder, false)));
                    }
                }
            }
        },
    )
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardSession {
    /// Open this in a new browser window (`noopener`): the cluster's
    /// dashboard on the dashboard site, under a capability of its own.
    pub url: String,
    /// When it lapses unless used (it is renewed while in use, never
    /// beyond the login it was opened from).
    pub expires_at: u64,
}

/// Enter Dashboard: a capability URL for this cluster's dashboard on the
/// dashboard site. Viewers get one too (read-only there).
#[utoipa::path(post, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/dashboard-sessions", tag = "dashboard",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path)),
    responses((status = 201, body = DashboardSession),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "a cookie request without the X-ECP-CSRF header", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "the cluster is being deleted", body = crate::error::ErrorBody),
        (status = 503, description = "no dashboard listener and no dashboard origin are configured", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn open_session(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    let cluster =
        crate::api::clusters::cluster_in(&state, &user, Need::Read, &org, &project, &id).await?;
    if cluster.status == ecp_actors::model::Status::Deleting {
        return Err(ApiError::conflict(
            "CLUSTER_DELETING",
            "the cluster is being deleted",
        ));
    }
    let origin = {
        let info = req.connection_info();
        site_origin(
            &state.config.server.dashboard_origin,
            info.scheme(),
            info.host(),
            state.dashboard_port.get().copied(),
        )
    }
    .ok_or_else(|| {
        ApiError::unavailable(
            "dashboards are disabled: set server.dashboard_listen or server.dashboard_origin",
        )
    })?;
    let (token, _) = crate::auth::session_token(&req)
        .ok_or_else(|| ApiError::unauthorized("log in first: no access token"))?;
    let parent = crate::auth::hash_secret(&token);
    let now = now_ms();
    let parent_expiry = state
        .deps
        .store
        .token(&parent, now)
        .await?
        .and_then(|t| t.expires_at)
        .ok_or_else(|| {
            ApiError::unauthorized("access token is invalid or expired; log in again")
        })?;
    let expires_at = (now + state.config.tokens.dashboard_idle_secs * 1000).min(parent_expiry);
    let (cap, hash) = crate::auth::new_secret(crate::auth::DASHBOARD_PREFIX);
    state
        .deps
        .store
        .put_token(
            &hash,
            &TokenRecord {
                kind: TokenKind::DashboardSession {
                    user_id: user.user.id.clone(),
                    cluster_id: cluster.id.clone(),
                    session: hex::encode(parent),
                },
                created_at: now,
                expires_at: Some(expires_at),
            },
        )
        .await?;
    audit::ok(
        &state,
        &req,
        &user.user,
        "dashboard.open",
        Object::cluster(&cluster),
        "",
    )
    .await;
    tracing::info!(cluster_id = %cluster.id, user_id = %user.user.id, "dashboard session opened");
    Ok(HttpResponse::Created().json(DashboardSession {
        url: format!("{origin}{SITE_PREFIX}{cap}/"),
        expires_at,
    }))
}

/// The API path on the console's origin, for API clients (Bearer).
#[utoipa::path(get, path = "/api/emqxee/dashboard/{clusterId}/{path}", tag = "dashboard",
    params(("clusterId" = String, Path), ("path" = String, Path, description = "any path of the EMQX dashboard (no dot segments); any method")),
    request_body(content = String, content_type = "application/octet-stream", description = "passed to EMQX as is (at most 512 KiB)"),
    responses((status = 200, description = "EMQX's answer, streamed (sandboxed: never a live page on the console's origin)"),
        (status = 400, description = "a dot segment or another ambiguity in the path", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "a viewer's change, or the console's cookie (browsers use Enter Dashboard)", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody),
        (status = 502, description = "the agent could not reach EMQX, or EMQX redirected outside its dashboard", body = crate::error::ErrorBody),
        (status = 503, description = "no agent session, or the agent is busy", body = crate::error::ErrorBody),
        (status = 504, description = "the agent did not answer in time", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn proxy_api(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let raw = req.uri().path();
    let rest = raw.get(PREFIX.len()..).unwrap_or("");
    let cluster_id = rest.split('/').next().unwrap_or("").to_string();
    if !is_cluster_id(&cluster_id) {
        return Err(ApiError::not_found("cluster"));
    }
    let tail = tail_of(raw, req.query_string(), PREFIX.len() + cluster_id.len());
    check_tail(&tail).map_err(bad_path)?;
    let Some(token) =
        crate::auth::bearer(&req).filter(|t| t.starts_with(crate::auth::SESSION_PREFIX))
    else {
        if crate::auth::session_token(&req).is_some() {
            // EMQX's pages never run on the console's origin.
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "DASHBOARD_SITE",
                "dashboards open on their own site: use Enter Dashboard in the console",
            ));
        }
        return Err(ApiError::unauthorized("log in first: no access token"));
    };
    let session = crate::auth::hash_secret(token);
    let user = crate::auth::user_of_session(&state, &session).await?;
    let need = need_of(&req);
    let cluster = cluster_for(&state, &user, &cluster_id, need).await?;
    let holder = Holder {
        user_id: user.user.id.clone(),
        session,
        cluster_id: cluster.id.clone(),
        need,
    };
    if !rest[cluster_id.len()..].starts_with('/') {
        return Ok(HttpResponse::PermanentRedirect()
            .insert_header(("location", format!("{PREFIX}{cluster_id}/")))
            .finish());
    }
    let base = format!("{}{cluster_id}", PREFIX.trim_end_matches('/'));
    proxy(&state, &req, body, &cluster, tail, Face::Api, &base, holder).await
}

/// A tunnel stream opened on this node (the one holding the session).
fn count_stream(state: &AppState) {
    state
        .deps
        .metrics
        .tunnel_requests
        .fetch_add(1, Ordering::Relaxed);
}

fn tunnel_error(e: TunnelError) -> ApiError {
    ApiError::unavailable(format!("dashboard tunnel: {e}"))
}

/// An answer on its way back, before ECP dresses it.
struct Upstream<S> {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    length: Option<u64>,
    body: S,
}

/// Sends the request to a session of the cluster's agents: here, or on
/// the node that holds one.
#[allow(clippy::too_many_arguments)]
async fn proxy(
    state: &AppState,
    req: &HttpRequest,
    body: web::Bytes,
    cluster: &ClusterRecord,
    tail: String,
    face: Face,
    base: &str,
    holder: Holder,
) -> Result<HttpResponse, ApiError> {
    let data = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("no app state"))?;
    let method = req.method().to_string();
    let head_only = method == "HEAD";
    let headers = request_headers(req);
    let local = state.deps.dir.sessions_of(&cluster.id);
    if let Some((agent_id, entry)) = local.into_iter().next() {
        count_stream(state);
        tracing::debug!(cluster_id = %cluster.id, %agent_id, path = %tail, "dashboard via local tunnel");
        let stream = entry
            .tunnel
            .open(method, tail, headers, body.to_vec())
            .map_err(tunnel_error)?;
        let up = upstream_of(stream).await?;
        return Ok(dress(up.held(data, holder), face, base, head_only));
    }
    let up = forward(state, &cluster.id, &method, &tail, headers, body).await?;
    Ok(dress(up.held(data, holder), face, base, head_only))
}

impl<S> Upstream<S>
where
    S: futures_util::Stream<Item = Result<web::Bytes, std::io::Error>> + 'static,
{
    fn held(
        self,
        state: web::Data<AppState>,
        holder: Holder,
    ) -> Upstream<impl futures_util::Stream<Item = Result<web::Bytes, std::io::Error>>> {
        Upstream {
            status: self.status,
            headers: self.headers,
            length: self.length,
            body: held(self.body, state, holder),
        }
    }
}

/// Waits for the agent's answer head (at most 30 s).
async fn upstream_of(
    mut stream: TunnelStream,
) -> Result<Upstream<impl futures_util::Stream<Item = Result<web::Bytes, std::io::Error>>>, ApiError>
{
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
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        match s.next().await {
            Some(TunnelEvent::Data(d)) => Some((Ok::<_, std::io::Error>(web::Bytes::from(d)), s)),
            Some(TunnelEvent::End(Some(e))) => Some((Err(std::io::Error::other(e)), s)),
            _ => None,
        }
    });
    Ok(Upstream {
        status,
        headers,
        length,
        body,
    })
}

/// The answer as the browser gets it: EMQX's headers filtered, `Location`
/// kept inside the dashboard, ECP's isolation headers added, the body
/// streamed (sized when the length is known; none for HEAD).
fn dress<S>(up: Upstream<S>, face: Face, base: &str, head_only: bool) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<web::Bytes, std::io::Error>> + 'static,
{
    let status = StatusCode::from_u16(up.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let named = |want: &str| {
        up.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(want))
            .map(|(_, v)| v.as_slice())
    };
    let location = match named("location") {
        Some(v) => match rewrite_location(v, base) {
            Some(l) => Some(l),
            None => {
                tracing::warn!(
                    status = up.status,
                    "dashboard redirect outside the dashboard refused"
                );
                return ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "DASHBOARD_REDIRECT",
                    "the dashboard tried to redirect outside itself; ECP refused it",
                )
                .error_response_with_isolation();
            }
        },
        None => None,
    };
    let mut res = HttpResponse::build(status);
    if named("content-encoding").is_none() {
        // Bytes pass as they are: ECP's own compression stays out of it.
        res.insert_header(("content-encoding", "identity"));
    }
    for (name, value) in &up.headers {
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
    if let Some(l) = location {
        res.insert_header(("location", l));
    }
    isolation_headers(&mut res, face);
    match up.length {
        _ if head_only => res.finish(),
        Some(n) => res.body(SizedStream::new(n, up.body.boxed_local())),
        None => res.body(BodyStream::new(up.body)),
    }
}

/// What ECP adds to every dashboard answer.
fn isolation_headers(res: &mut actix_web::HttpResponseBuilder, face: Face) {
    res.insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("cross-origin-opener-policy", "same-origin"))
        .insert_header(("cross-origin-resource-policy", "same-origin"))
        .insert_header(("x-content-type-options", "nosniff"));
    match face {
        // Only pages of this very dashboard may frame it.
        Face::Site => res.append_header(("content-security-policy", "frame-ancestors 'self'")),
        // Never a live page on the console's origin: no script, no storage.
        Face::Api => {
            res.append_header(("content-security-policy", "sandbox; frame-ancestors 'none'"))
        }
    };
}

impl ApiError {
    /// An error answer on the dashboard site, with the isolation headers.
    fn error_response_with_isolation(&self) -> HttpResponse {
        let mut res = actix_web::ResponseError::error_response(self);
        let h = res.headers_mut();
        for (n, v) in [
            ("referrer-policy", "no-referrer"),
            ("cross-origin-opener-policy", "same-origin"),
            ("x-content-type-options", "nosniff"),
        ] {
            h.insert(
                actix_web::http::header::HeaderName::from_static(n),
                actix_web::http::header::HeaderValue::from_static(v),
            );
        }
        res
    }
}

/// No session here: forward to the node that holds one (Redis mode). The
/// agent id and the path travel in headers, so no URL parser on the way
/// can re-resolve them; redirects are never followed.
async fn forward(
    state: &AppState,
    cluster_id: &str,
    method: &str,
    tail: &str,
    headers: Vec<(String, Vec<u8>)>,
    body: web::Bytes,
) -> Result<Upstream<impl futures_util::Stream<Item = Result<web::Bytes, std::io::Error>>>, ApiError>
{
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
    let http_method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| ApiError::bad_request("BAD_METHOD", "unsupported method"))?;
    for (agent_id, p) in ids.iter().zip(presence) {
        let Some((node, _)) = p else { continue };
        if node == peers.node() {
            continue; // ours, but gone since the directory was read
        }
        let Some(url) = peers.url_of(&node).await else {
            continue;
        };
        tracing::debug!(cluster_id, agent_id = %agent_id, node = %node, "dashboard forwarded to peer");
        let mut rb = peers
            .http
            .request(http_method.clone(), format!("{url}{PEER_PATH}"))
            .header(PEER_HEADER, peers.secret())
            .header(PEER_AGENT_HEADER, agent_id.as_str())
            .header(PEER_PATH_HEADER, tail)
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
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        return Ok(Upstream {
            status: resp.status().as_u16(),
            headers,
            length: resp.content_length(),
            body: resp
                .bytes_stream()
                .map(|r| r.map_err(std::io::Error::other))
                .boxed(),
        });
    }
    Err(no_agent())
}

/// `ANY /internal/peer/tunnel` (headers: secret, agent, path): a peer
/// forwards a request it already authorised. The answer goes back with the
/// agent's headers as they are (the forwarding node dresses them).
pub async fn peer_tunnel(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(peers) = state.peers.as_ref() else {
        return Err(ApiError::not_found("route"));
    };
    let header = |n: &str| req.headers().get(n).map(|v| v.as_bytes());
    if !peers.authentic(header(PEER_HEADER)).await {
        return Err(ApiError::not_found("route"));
    }
    let text = |n: &str| {
        header(n)
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("")
            .to_string()
    };
    let (agent_id, tail) = (text(PEER_AGENT_HEADER), text(PEER_PATH_HEADER));
    check_tail(&tail).map_err(bad_path)?;
    let entry = state
        .deps
        .dir
        .session(&agent_id)
        .ok_or_else(|| ApiError::unavailable("the agent's session left this node"))?;
    let method = req.method().to_string();
    let head_only = method == "HEAD";
    count_stream(&state);
    let stream = entry
        .tunnel
        .open(method, tail, request_headers(&req), body.to_vec())
        .map_err(tunnel_error)?;
    let up = upstream_of(stream).await?;
    let mut res =
        HttpResponse::build(StatusCode::from_u16(up.status).unwrap_or(StatusCode::BAD_GATEWAY));
    if !up
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-encoding"))
    {
        res.insert_header(("content-encoding", "identity"));
    }
    for (name, value) in &up.headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "connection"
                | "keep-alive"
                | "transfer-encoding"
                | "trailer"
                | "upgrade"
                | "content-length"
        ) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            actix_web::http::header::HeaderName::from_bytes(lower.as_bytes()),
            actix_web::http::header::HeaderValue::from_bytes(value),
        ) {
            res.append_header((n, v));
        }
    }
    Ok(match up.length {
        _ if head_only => res.finish(),
        Some(n) => res.body(SizedStream::new(n, up.body.boxed_local())),
        None => res.body(BodyStream::new(up.body)),
    })
}

/// Anything else on the dashboard site.
pub async fn site_not_found() -> HttpResponse {
    ApiError::not_found("page").error_response_with_isolation()
}

/// The dashboard site's routes: `/d/{capability}/…` and nothing else.
pub fn site_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/d/{cap}", "/d/{cap}/{tail:.*}"])
            .app_data(web::PayloadConfig::default().limit(MAX_BODY))
            .route(web::route().to(site)),
    );
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
    fn browser_credentials_and_page_names_never_pass() {
        for h in [
            "authorization",
            "cookie",
            "x-ecp-csrf",
            PEER_HEADER,
            PEER_PATH_HEADER,
            "host",
            "referer",
            "origin",
        ] {
            assert!(drop_request_header(h), "{h}");
        }
        for h in ["accept", "content-type", "accept-encoding", "if-none-match"] {
            assert!(!drop_request_header(h), "{h}");
        }
    }

    #[test]
    fn emqx_cannot_set_what_acts_beyond_its_dashboard() {
        for h in [
            "set-cookie",
            "strict-transport-security",
            "clear-site-data",
            "service-worker-allowed",
            "refresh",
            "location",
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "alt-svc",
            "www-authenticate",
            "referrer-policy",
            "link",
        ] {
            assert!(drop_response_header(h), "{h}");
        }
        for h in [
            "content-type",
            "cache-control",
            "etag",
            "content-disposition",
        ] {
            assert!(!drop_response_header(h), "{h}");
        }
    }

    #[test]
    fn redirects_stay_inside_the_dashboard() {
        let base = "/d/ecpd_x";
        let r = |v: &str| rewrite_location(v.as_bytes(), base);
        assert_eq!(r("/"), Some("/d/ecpd_x/".into()));
        assert_eq!(r("/#/login"), Some("/d/ecpd_x/#/login".into()));
        assert_eq!(
            r("/api/v4/routes/a%2Fb?x=1"),
            Some("/d/ecpd_x/api/v4/routes/a%2Fb?x=1".into())
        );
        assert_eq!(r("index.html"), Some("index.html".into()));
        assert_eq!(r("?page=2"), Some("?page=2".into()));
        assert_eq!(r("#/overview"), Some("#/overview".into()));
        for out in [
            "http://evil.example/",
            "https://evil.example/x",
            "//evil.example/x",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,x",
            "../other",
            "/../../api/orgs",
            "/%2e%2e/x",
            "a/../../x",
            "",
            "/a b",
        ] {
            assert_eq!(r(out), None, "{out}");
        }
    }

    #[test]
    fn capabilities_and_ids_have_one_shape() {
        let (cap, _) = crate::auth::new_secret(crate::auth::DASHBOARD_PREFIX);
        assert!(is_capability(&cap));
        assert!(!is_capability("ecpd_"));
        assert!(!is_capability(&cap.replace("ecpd_", "ecps_")));
        assert!(!is_capability(&format!("{cap}0")));
        assert!(is_cluster_id("3f2a9c0d1b4e4f5a8c7d6e5f4a3b2c1d"));
        assert!(!is_cluster_id(".."));
        assert!(!is_cluster_id("a%2f"));
        assert!(!is_cluster_id(""));
    }

    #[test]
    fn the_site_is_the_console_host_on_another_port_unless_configured() {
        assert_eq!(
            site_origin("", "http", "127.0.0.1:8080", Some(8081)),
            Some("http://127.0.0.1:8081".into())
        );
        assert_eq!(
            site_origin("", "https", "ecp.example.com", Some(8443)),
            Some("https://ecp.example.com:8443".into())
        );
        assert_eq!(
            site_origin("", "http", "[::1]:8080", Some(9)),
            Some("http://[::1]:9".into())
        );
        assert_eq!(
            site_origin("https://dash.example.com/", "http", "x", None),
            Some("https://dash.example.com".into())
        );
        assert_eq!(site_origin("", "http", "x:1", None), None);
    }
}
