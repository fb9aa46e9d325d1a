//! `GET /api/events`: server-sent events of cluster changes.
//!
//! A stream follows its user's current rights, not those it started with:
//! on a "user's access changed" notice (`crate::revoke`, also from other
//! nodes) and at every keep-alive (15 s, which catches plain expiry) it
//! re-reads its session and the user's memberships. A session that ended
//! (logout, logout everywhere, password change elsewhere, user deleted,
//! expired) ends the stream; changed memberships replace the filter in
//! place and send `resync`, so the console re-reads what it may see now.

use crate::api::views::ChangeView;
use crate::auth::{self, AuthUser};
use crate::error::ApiError;
use crate::policy::Access;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use ecp_actors::bus::BusEvent;
use ecp_actors::store::TokenHash;
use futures_util::stream;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Live cluster changes (SSE). Event `cluster` carries a change the caller
/// may see; event `resync` tells the client to re-read the list (it fell
/// behind, or the caller's memberships changed). The stream ends when the
/// session ends (logout, logout everywhere, password change, user deleted,
/// expiry; in Redis mode also when that happens on another node).
#[utoipa::path(get, path = "/api/events", tag = "clusters",
    responses(
        (status = 200, content_type = "text/event-stream", description = "SSE stream"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 429, description = "this user already holds `limits.event_streams_per_user` streams on this node", body = crate::error::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stream(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let session = auth::session_token(&req)
        .map(|(t, _)| auth::hash_secret(&t))
        .ok_or_else(|| ApiError::unauthorized("log in first: no access token"))?;
    let Some(slot) = state.event_streams.open(&user.user.id) else {
        tracing::info!(user_id = %user.user.id, "event stream refused: too many open");
        return Err(ApiError::too_many(
            format!(
                "too many open event streams for this user on this node (at most {}); close other console tabs",
                state.event_streams.limit
            ),
            5,
        ));
    };
    // Subscribed before answering: nothing after this is missed.
    let live = Live {
        bus: state.deps.bus.subscribe(),
        notices: state.revocations.subscribe(),
        closing: state.closing.subscribe(),
        tick: tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE),
        user_id: user.user.id.clone(),
        access: user.access,
        session,
        state,
        _slot: slot,
    };
    let hello = Bytes::from_static(b"retry: 2000\nevent: hello\ndata: {}\n\n");
    let changes = stream::unfold(live, |mut live| async move {
        let item = live.next_item().await?;
        Some((Ok::<_, actix_web::Error>(item), live))
    });
    let body = futures_util::StreamExt::chain(stream::once(async { Ok(hello) }), changes);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// One open stream.
struct Live {
    state: web::Data<AppState>,
    bus: tokio::sync::broadcast::Receiver<Arc<BusEvent>>,
    notices: crate::revoke::Subscription,
    closing: tokio::sync::watch::Receiver<bool>,
    tick: tokio::time::Interval,
    user_id: String,
    session: TokenHash,
    access: Access,
    _slot: Slot,
}

/// What a re-check found.
#[derive(Debug, PartialEq, Eq)]
enum Recheck {
    Same,
    /// Memberships (or the admin flag) changed: the filter was replaced.
    Changed,
    /// The session ended: the stream ends.
    Ended,
}

const RESYNC: &[u8] = b"event: resync\ndata: {}\n\n";

impl Live {
    /// The next block to send, or `None` when the stream ends.
    async fn next_item(&mut self) -> Option<Bytes> {
        if *self.closing.borrow() {
            return None;
        }
        loop {
            // Biased: a notice that arrived before a change is applied first,
            // so a change the user may no longer see is never sent.
            tokio::select! {
                biased;
                _ = self.closing.changed() => return None,
                n = self.notices.recv() => {
                    if !n.concerns(&self.user_id) {
                        continue;
                    }
                    match self.recheck().await {
                        Recheck::Ended => return None,
                        Recheck::Changed => return Some(Bytes::from_static(RESYNC)),
                        Recheck::Same => continue,
                    }
                }
                r = self.bus.recv() => match r {
                    Ok(ev) => {
                        let BusEvent::Change(change) = &*ev else {
                            return Some(Bytes::from_static(RESYNC));
                        };
                        let (org, project) = change.project();
                        if self.access.project_role(org, project).is_none() {
                            continue;
                        }
                        let view = ChangeView::from_change(change);
                        let json = serde_json::to_string(&view).unwrap_or_else(|_| "{}".into());
                        return Some(Bytes::from(format!("event: cluster\ndata: {json}\n\n")));
                    }
                    Err(RecvError::Lagged(n)) => {
                        return Some(Bytes::from(format!("event: resync\ndata: {{\"missed\":{n}}}\n\n")))
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.tick.tick() => {
                    // The periodic re-check catches expiry and lost notices.
                    return match self.recheck().await {
                        Recheck::Ended => None,
                        Recheck::Changed => Some(Bytes::from_static(RESYNC)),
                        Recheck::Same => Some(Bytes::from_static(b": keep-alive\n\n")),
                    };
                }
            }
        }
    }

    /// Re-reads the session and memberships.
    async fn recheck(&mut self) -> Recheck {
        match auth::user_of_session(&self.state, &self.session).await {
            Ok(now) => {
                let verdict = compare(&self.access, &now.access);
                self.access = now.access;
                if verdict == Recheck::Changed {
                    tracing::info!(user_id = %self.user_id, "event stream follows changed memberships");
                }
                verdict
            }
            Err(e) if e.status == actix_web::http::StatusCode::UNAUTHORIZED => {
                tracing::info!(user_id = %self.user_id, "event stream ends: the session ended");
                Recheck::Ended
            }
            Err(e) => {
                // The store is unreachable: keep the last known rights; the
                // next re-check tries again.
                tracing::warn!(user_id = %self.user_id, error = %e, "event stream re-check failed");
                Recheck::Same
            }
        }
    }
}

/// Whether what the user may see changed.
fn compare(before: &Access, now: &Access) -> Recheck {
    let key = |a: &Access| {
        let mut v: Vec<_> = a
            .memberships
            .iter()
            .map(|m| (m.org_id.clone(), m.project_id.clone(), m.role))
            .collect();
        v.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        (a.user.system_admin, v)
    };
    if key(before) == key(now) {
        Recheck::Same
    } else {
        Recheck::Changed
    }
}

/// Open streams per user on this node, at most `limit` each.
pub struct Slots {
    pub limit: u32,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

/// One open stream's place; freed when dropped (the stream ended).
pub struct Slot {
    user_id: String,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

impl Slots {
    pub fn new(limit: u32) -> Slots {
        Slots {
            limit,
            open: Arc::default(),
        }
    }

    /// Open streams of every user.
    pub fn total(&self) -> u32 {
        let m = self.open.lock().unwrap_or_else(|p| p.into_inner());
        m.values().sum()
    }

    /// A place for one more stream of `user_id`, if under the limit.
    pub fn open(&self, user_id: &str) -> Option<Slot> {
        let mut m = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(user_id.to_string()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            user_id: user_id.to_string(),
            open: self.open.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.user_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecp_actors::model::{Membership, Role, UserRecord};

    #[test]
    fn streams_per_user_are_limited_and_freed_when_they_end() {
        let s = Slots::new(2);
        let a1 = s.open("a").expect("first");
        let _a2 = s.open("a").expect("second");
        assert!(s.open("a").is_none(), "the third is refused");
        let _b = s.open("b").expect("another user is not affected");
        drop(a1);
        assert!(s.open("a").is_some(), "a closed stream frees its place");
    }

    #[test]
    fn only_a_change_of_memberships_or_admin_flag_counts() {
        let access = |admin: bool, ms: &[(&str, &str, Role)]| Access {
            user: UserRecord {
                id: "u".into(),
                username: "u".into(),
                password_hash: String::new(),
                system_admin: admin,
                created_at: 0,
            },
            memberships: ms
                .iter()
                .map(|(o, p, r)| Membership {
                    user_id: "u".into(),
                    org_id: o.to_string(),
                    project_id: p.to_string(),
                    role: *r,
                })
                .collect(),
        };
        let a = access(false, &[("o", "", Role::Viewer), ("o", "p", Role::Viewer)]);
        let reordered = access(false, &[("o", "p", Role::Viewer), ("o", "", Role::Viewer)]);
        assert_eq!(compare(&a, &reordered), Recheck::Same);
        assert_eq!(
            compare(&a, &access(false, &[("o", "", Role::Viewer)])),
            Recheck::Changed
        );
        assert_eq!(
            compare(
                &a,
                &access(false, &[("o", "", Role::Viewer), ("o", "p", Role::Admin)])
            ),
            Recheck::Changed
        );
        assert_eq!(
            compare(
                &a,
                &access(true, &[("o", "", Role::Viewer), ("o", "p", Role::Viewer)])
            ),
            Recheck::Changed
        );
    }
}
