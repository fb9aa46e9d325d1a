//! Secrets and users: random bearer secrets stored only as SHA-256 hashes,
//! Argon2id password hashes computed off the async threads, and the
//! `AuthUser` extractor every console/API route uses.

use crate::error::ApiError;
use crate::AppState;
use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use ecp_actors::model::{now_ms, TokenKind, UserRecord};
use ecp_actors::store::TokenHash;
use std::future::Future;
use std::pin::Pin;

/// Prefixes make a leaked secret recognisable (and greppable in logs).
pub const REGISTRATION_PREFIX: &str = "ecpr_";
pub use ecp_actors::secret::AGENT_PREFIX;
pub const SESSION_PREFIX: &str = "ecps_";
pub const DASHBOARD_PREFIX: &str = "ecpd_";

pub use ecp_actors::secret::{hash_secret, new_secret};

pub const SESSION_COOKIE: &str = "ecp_session";
pub const CSRF_HEADER: &str = "x-ecp-csrf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Bearer,
    Cookie,
}

/// The session secret of a request: `Authorization: Bearer`, else the
/// console's cookie.
pub fn session_token(req: &HttpRequest) -> Option<(String, Via)> {
    // A Bearer that is not ours (e.g. the EMQX v5 dashboard's own token on
    // its API calls through the proxy) does not hide the console's cookie.
    if let Some(t) = bearer(req).filter(|t| t.starts_with(SESSION_PREFIX)) {
        return Some((t.to_string(), Via::Bearer));
    }
    req.cookie(SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .map(|v| (v, Via::Cookie))
}

/// How many `ecp_session` cookies a request carries. More than one means
/// someone set another next to ours — a page on another port of this host
/// can, since cookies ignore ports — and none of them can be trusted.
pub fn session_cookie_count(req: &HttpRequest) -> usize {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter(|pair| {
            pair.split_once('=')
                .is_some_and(|(name, _)| name.trim() == SESSION_COOKIE)
        })
        .count()
}

/// `Set-Cookie` values that remove an `ecp_session` cookie set for any
/// path on the way to `path`, host-only or for `host`'s name.
pub fn clearing_cookies(path: &str, host: &str) -> Vec<String> {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') {
            h
        } else {
            host
        }
    });
    let mut paths = vec!["/".to_string()];
    let mut at = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()).take(12) {
        at.push('/');
        at.push_str(seg);
        paths.push(at.clone());
        paths.push(format!("{at}/"));
    }
    let mut out = Vec::new();
    for p in &paths {
        if p.bytes().any(|b| !(0x21..=0x7e).contains(&b) || b == b';') {
            continue;
        }
        out.push(format!("{SESSION_COOKIE}=; Path={p}; Max-Age=0"));
        if !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        {
            out.push(format!(
                "{SESSION_COOKIE}=; Path={p}; Domain={name}; Max-Age=0"
            ));
        }
    }
    out
}

/// The bearer secret of a request, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty() && t.len() <= 256)
}

/// Argon2id hash of a password. Blocking (~19 MiB, tens of ms): call it on
/// the blocking pool, bounded by `hashing::HashPool` for requests.
pub fn hash_password_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

/// Hashes on the blocking pool, outside the request pool (bootstrap, CLI).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    web::block(move || hash_password_blocking(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// Verifies a password. Blocking like [`hash_password_blocking`]. `hash`
/// None still spends the time, so an unknown user answers as slowly as a
/// wrong password.
pub fn verify_password_blocking(password: &str, hash: Option<&str>) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Q3v2n6pD2u7sJOVrxk9Yw0fW1c0c3k0o5e2m8m6k0QI";
    let h = hash.unwrap_or(DUMMY);
    let ok = PasswordHash::new(h)
        .map(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    ok && hash.is_some()
}

/// A logged-in user (Bearer access token) with their memberships, read on
/// every request: a removed membership takes effect on the very next one.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: UserRecord,
    pub access: crate::policy::Access,
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = session_token(req).map(|(t, _)| hash_secret(&t));
        // A cookie rides along with any request the browser makes, also ones a
        // foreign page triggers: unsafe methods need the console's own header,
        // which a cross-site form or script cannot set without our consent.
        let csrf_refused = matches!(session_token(req), Some((_, Via::Cookie)))
            && !req.method().is_safe()
            && req.headers().get(CSRF_HEADER).is_none();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("no app state"))?;
            if csrf_refused {
                return Err(csrf_error());
            }
            let hash =
                token.ok_or_else(|| ApiError::unauthorized("log in first: no access token"))?;
            user_of_session(&state, &hash).await
        })
    }
}

pub fn csrf_error() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::FORBIDDEN,
        "CSRF",
        "cookie-authenticated changes need the X-ECP-CSRF header",
    )
}

/// The user behind a console/API session token (by its hash), with the
/// memberships as they are now.
pub async fn user_of_session(state: &AppState, hash: &TokenHash) -> Result<AuthUser, ApiError> {
    let rec = state.deps.store.token(hash, now_ms()).await?;
    let Some(TokenKind::Session { user_id }) = rec.map(|r| r.kind) else {
        return Err(ApiError::unauthorized(
            "access token is invalid or expired; log in again",
        ));
    };
    let user = state
        .store
        .user(&user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("user no longer exists"))?;
    let memberships = state.store.memberships(&user.id).await?;
    let access = crate::policy::Access {
        user: user.clone(),
        memberships,
    };
    Ok(AuthUser { user, access })
}

#[cfg(test)]
mod cookie_tests {
    use super::{clearing_cookies, session_cookie_count};
    use actix_web::test::TestRequest;

    #[test]
    fn a_planted_second_session_cookie_is_seen() {
        let one = TestRequest::default()
            .insert_header(("cookie", "ecp_session=a; other=1"))
            .to_http_request();
        assert_eq!(session_cookie_count(&one), 1);
        let two = TestRequest::default()
            .insert_header(("cookie", "ecp_session=evil; ecp_session=a"))
            .to_http_request();
        assert_eq!(session_cookie_count(&two), 2);
        let none = TestRequest::default()
            .insert_header(("cookie", "xecp_session=a"))
            .to_http_request();
        assert_eq!(session_cookie_count(&none), 0);
    }

    #[test]
    fn clearing_covers_every_path_on_the_way() {
        let c = clearing_cookies("/api/orgs/x", "ecp.example.com:8080");
        for want in [
            "ecp_session=; Path=/; Max-Age=0",
            "ecp_session=; Path=/api; Max-Age=0",
            "ecp_session=; Path=/api/; Max-Age=0",
            "ecp_session=; Path=/api/orgs/x; Max-Age=0",
            "ecp_session=; Path=/api/orgs; Domain=ecp.example.com; Max-Age=0",
        ] {
            assert!(c.iter().any(|x| x == want), "{want} in {c:?}");
        }
    }
}
