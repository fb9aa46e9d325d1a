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
    responses((status = 200, body = LoginResponse), (status = 401, body = crate::error::ErrorBody), (status = 429, description = "too many failures; see Retry-After", body = crate::error::ErrorBody)))]
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
    match state.logins.check(&username, ip).await {
        Verdict::Refuse(wait) => {
            tracing::warn!(username = %username, %ip, "login refused: too many failures");
            audit::record(
                &state,
                &req,
                Actor::Login {
                    username: &username,
                },
                "login",
                Object::none(),
                "denied",
                "too many failures",
            )
            .await;
            return Err(ApiError::too_many(
                "too many failed logins; try again later",
                wait,
            ));
        }
        Verdict::Proceed(delay) if !delay.is_zero() => tokio::time::sleep(delay).await,
        Verdict::Proceed(_) => {}
    }
    let user = state.deps.store.user_by_name(&username).await?;
    let ok = auth::verify_password(password, user.as_ref().map(|u| u.password_hash.clone())).await;
    let Some(user) = user.filter(|_| ok) else {
        state.logins.failed(&username, ip).await;
        tracing::info!(username = %username, %ip, "login refused");
        audit::record(
            &state,
            &req,
            Actor::Login {
                username: &username,
            },
            "login",
            Object::none(),
            "denied",
            "wrong username or password",
        )
        .await;
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

/// Revoke the access token used for this call.
#[utoipa::path(post, path = "/api/account/logout", tag = "account", responses((status = 204)), security(("bearer" = [])))]
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
    let mut gone = actix_web::cookie::Cookie::build(auth::SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// The logged-in user.
#[utoipa::path(get, path = "/api/account/profile", tag = "account", responses((status = 200, body = UserView)), security(("bearer" = [])))]
pub async fn profile(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(UserView::from_user(&user.user))
}
