//! Login, logout, profile.

use crate::audit::{self, Actor, Object};
use crate::auth::{self, AuthUser};
use crate::error::ApiError;
use crate::login_guard::Verdict;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use ecp_actors::model::{now_ms, TokenKind, TokenRecord, UserRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub system_admin: bool,
}

impl UserView {
    pub fn from_user(u: &UserRecord) -> Self {
        UserView {
            id: u.id.clone(),
            username: u.username.clone(),
            system_admin: u.system_admin,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    pub token_type: &'static str,
    pub access_token: String,
    pub expires_in: u64,
    pub user: UserView,
}

/// Log in with a username and password; answers a Bearer access token.
#[utoipa::path(post, path = "/api/account/login", tag = "account", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 400, description = "malformed body", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 413, description = "body larger than `server.max_body_bytes`", body = crate::error::ErrorBody),
        (status = 429, description = "too many failures, or the server is busy checking passwords; see Retry-After", body = crate::error::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::error::ErrorBody)))]
pub async fn login(
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.into_inner();
    if username.len() > 100 || password.len() > 1024 {
        return Err(ApiError::unauthorized("wrong username or password"));
    }
    let ip = crate::client_ip::of_request(&req, &state.trusted_proxies);
    // The attempt is counted before the password is checked.
    reserve_attempt(&state, &req, &username, ip).await?;
    let user = match state.store.user_by_name(&username).await {
        Ok(u) => u,
        Err(e) => {
            state.logins.release(&username, ip).await;
            return Err(e.into());
        }
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = match state.hashing.verify(password, hash).await {
        Ok(ok) => ok,
        Err(e) => {
            // Never checked (the pool is full): not a failure of this user.
            state.logins.release(&username, ip).await;
            refused(&state, &req, &username, "server busy").await;
            return Err(e);
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(username = %username, %ip, "login refused");
        refused(&state, &req, &username, "wrong username or password").await;
        return Err(ApiError::unauthorized("wrong username or password"));
    };
    state.logins.succeeded(&username, ip).await;
    let ttl = state.config.tokens.session_ttl_secs;
    let (token, hash) = auth::new_secret(auth::SESSION_PREFIX);
    let now = now_ms();
    state
        .deps
        .store
        .put_token(
            &hash,
            &TokenRecord {
                kind: TokenKind::Session {
                    user_id: user.id.clone(),
                },
                created_at: now,
                expires_at: Some(now + ttl * 1000),
            },
        )
        .await?;
    tracing::info!(user_id = %user.id, "login");
    audit::ok(&state, &req, &user, "login", Object::none(), "").await;
    // The console uses the HttpOnly cookie (script never holds the secret);
    // API clients use the Bearer token from the body.
    let cookie = actix_web::cookie::Cookie::build(auth::SESSION_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(actix_web::cookie::SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .max_age(actix_web::cookie::time::Duration::seconds(ttl as i64))
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginResponse {
        token_type: "Bearer",
        access_token: token,
        expires_in: ttl,
        user: UserView::from_user(&user),
    }))
}

/// Audits a refused login attempt.
async fn refused(state: &AppState, req: &HttpRequest, username: &str, why: &str) {
    audit::record(
        state,
        req,
        Actor::Login { username },
        "login",
        Object::none(),
        "denied",
        why,
    )
    .await;
}

/// Counts a password attempt for (`username`, `ip`) before it is checked
/// (see `login_guard`): 429 when refused, else after the slow-down delay.
async fn reserve_attempt(
    state: &AppState,
    req: &HttpRequest,
    username: &str,
    ip: std::net::IpAddr,
) -> Result<(), ApiError> {
    match state.logins.reserve(username, ip).await {
        Verdict::Refuse(wait) => {
            tracing::warn!(username = %username, %ip, "login refused: too many failures");
            refused(state, req, username, "too many failures").await;
            Err(ApiError::too_many(
                "too many failed logins; try again later",
                wait,
            ))
        }
        Verdict::Proceed(delay) => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(())
        }
    }
}

/// Revoke the access token used for this call.
#[utoipa::path(post, path = "/api/account/logout", tag = "account",
    responses((status = 204), (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "a cookie-authenticated call without the X-ECP-CSRF header", body = crate::error::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn logout(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if let Some((t, _)) = auth::session_token(&req) {
        state
            .deps
            .store
            .delete_token(&auth::hash_secret(&t))
            .await?;
    }
    // Open streams of this session end (here and on other nodes).
    state.revocations.notify(&user.user.id).await;
    audit::ok(&state, &req, &user.user, "logout", Object::none(), "").await;
    Ok(HttpResponse::NoContent().cookie(removal_cookie()).finish())
}

/// Tells the browser to drop the console's session cookie.
fn removal_cookie() -> actix_web::cookie::Cookie<'static> {
    let mut gone = actix_web::cookie::Cookie::build(auth::SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .finish();
    gone.make_removal();
    gone
}

fn user_object(u: &UserRecord) -> Object<'_> {
    Object {
        kind: "user",
        id: &u.id,
        name: &u.username,
        org_id: "",
        project_id: "",
    }
}

/// End every session of the caller, this one included (here and on every
/// node; open event streams end).
#[utoipa::path(post, path = "/api/account/logout-all", tag = "account",
    responses((status = 204, description = "every session of the caller ended"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "a cookie-authenticated call without the X-ECP-CSRF header", body = crate::error::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn logout_all(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let ended = state
        .store
        .delete_user_sessions(&user.user.id, None)
        .await?;
    state.revocations.notify(&user.user.id).await;
    tracing::info!(user_id = %user.user.id, ended, "logged out everywhere");
    let object = user_object(&user.user);
    let details = format!("{ended} session(s) ended");
    audit::ok(&state, &req, &user.user, "logout.all", object, &details).await;
    Ok(HttpResponse::NoContent().cookie(removal_cookie()).finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// 8–128 characters with at least one letter, one digit and one other character.
    pub new_password: String,
}

/// Change one's own password. Every other session of the caller ends (here
/// and on every node); the session making this call stays valid.
#[utoipa::path(post, path = "/api/account/password", tag = "account", request_body = PasswordChange,
    responses((status = 204, description = "changed; the caller's other sessions ended"),
        (status = 400, description = "`WEAK_PASSWORD`: the new password breaks the rules; or a malformed body", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "`WRONG_PASSWORD`: the current password is wrong; `CSRF`: a cookie-authenticated call without the X-ECP-CSRF header", body = crate::error::ErrorBody),
        (status = 413, description = "body larger than `server.max_body_bytes`", body = crate::error::ErrorBody),
        (status = 429, description = "too many wrong passwords (counted like logins), or the server is busy checking passwords; see Retry-After", body = crate::error::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn change_password(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<PasswordChange>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let PasswordChange {
        current_password,
        new_password,
    } = body.into_inner();
    crate::login_guard::password_rules(&new_password)
        .map_err(|m| ApiError::bad_request("WEAK_PASSWORD", m))?;
    let wrong = || {
        ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "WRONG_PASSWORD",
            "the current password is wrong",
        )
    };
    if current_password.len() > 1024 {
        return Err(wrong());
    }
    // Guesses of the current password count like failed logins.
    let username = user.user.username.clone();
    let ip = crate::client_ip::of_request(&req, &state.trusted_proxies);
    reserve_attempt(&state, &req, &username, ip).await?;
    let stored = Some(user.user.password_hash.clone());
    let ok = match state.hashing.verify(current_password, stored).await {
        Ok(ok) => ok,
        Err(e) => {
            state.logins.release(&username, ip).await;
            return Err(e);
        }
    };
    let object = user_object(&user.user);
    if !ok {
        tracing::info!(user_id = %user.user.id, "password change refused: wrong current password");
        let actor = Actor::User(&user.user);
        let why = "wrong current password";
        audit::record(
            &state,
            &req,
            actor,
            "password.change",
            object,
            "denied",
            why,
        )
        .await;
        return Err(wrong());
    }
    state.logins.succeeded(&username, ip).await;
    let hash = state.hashing.hash(new_password).await?;
    let keep = auth::session_token(&req).map(|(t, _)| auth::hash_secret(&t));
    let ended = state
        .store
        .set_password(&user.user.id, &hash, keep.as_ref())
        .await?;
    state.revocations.notify(&user.user.id).await;
    tracing::info!(user_id = %user.user.id, ended, "password changed");
    let details = format!("{ended} other session(s) ended");
    audit::ok(
        &state,
        &req,
        &user.user,
        "password.change",
        object,
        &details,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// The logged-in user.
#[utoipa::path(get, path = "/api/account/profile", tag = "account", responses((status = 200, body = UserView)), security(("bearer" = [])))]
pub async fn profile(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(UserView::from_user(&user.user))
}
