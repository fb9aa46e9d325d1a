//! `GET /api/events`: server-sent events of cluster changes.

use crate::api::views::ChangeView;
use crate::auth::AuthUser;
use crate::AppState;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use futures_util::stream;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Live cluster changes (SSE). Event `cluster` carries a change; event
/// `resync` tells a client that fell behind to re-read the list.
#[utoipa::path(get, path = "/api/events", tag = "clusters", responses((status = 200, content_type = "text/event-stream", description = "SSE stream")), security(("bearer" = [])))]
pub async fn stream(state: web::Data<AppState>, user: AuthUser) -> HttpResponse {
    // Only changes of projects the caller may see.
    let access = std::sync::Arc::new(user.access);
    let rx = state.deps.bus.subscribe();
    let closing = state.closing.subscribe();
    let hello = Bytes::from_static(b"retry: 2000\nevent: hello\ndata: {}\n\n");
    let changes = stream::unfold(
        (rx, closing, access),
        |(mut rx, mut closing, access)| async move {
            if *closing.borrow() {
                return None;
            }
            let item = loop {
                let item = tokio::select! {
                    _ = closing.changed() => return None,
                    r = rx.recv() => match r {
                        Ok(ev) => {
                            let ecp_actors::bus::BusEvent::Change(change) = &*ev else {
                                return Some((Ok(Bytes::from_static(b"event: resync\ndata: {}\n\n")), (rx, closing, access)));
                            };
                            let (org, project) = change.project();
                            if access.project_role(org, project).is_none() {
                                continue;
                            }
                            let view = ChangeView::from_change(change);
                            let json = serde_json::to_string(&view).unwrap_or_else(|_| "{}".into());
                            format!("event: cluster\ndata: {json}\n\n")
                        }
                        Err(RecvError::Lagged(n)) => format!("event: resync\ndata: {{\"missed\":{n}}}\n\n"),
                        Err(RecvError::Closed) => return None,
                    },
                    _ = tokio::time::sleep(Duration::from_secs(15)) => ": keep-alive\n\n".to_string(),
                };
                break item;
            };
            Some((
                Ok::<_, actix_web::Error>(Bytes::from(item)),
                (rx, closing, access),
            ))
        },
    );
    let body = futures_util::StreamExt::chain(stream::once(async { Ok(hello) }), changes);
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}
