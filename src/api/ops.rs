//! Operations endpoints: health, readiness, version, metrics, OpenAPI.

use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use ecp_actors::model::Status;
use serde_json::json;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use utoipa::OpenApi;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the registry has loaded, the store answers, not draining.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, description = "not ready", body = crate::error::ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::unavailable("draining"));
    }
    state.deps.store.user_count().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

/// Server and protocol versions.
#[utoipa::path(get, path = "/api/version", tag = "operations", responses((status = 200, description = "versions")))]
pub async fn version() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": ecp_protocol::PROTOCOL_VERSION,
        "minProtocol": ecp_protocol::MIN_PROTOCOL_VERSION,
    }))
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::api::ApiDoc::openapi())
}

/// Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let m = &state.deps.metrics;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, v: i64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    gauge(
        "ecp_agent_sessions",
        "Open agent WebSocket sessions on this node.",
        "gauge",
        m.sessions.load(Ordering::Relaxed),
    );
    gauge(
        "ecp_frames_received_total",
        "Frames received from agents.",
        "counter",
        m.frames_in.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "ecp_frames_sent_total",
        "Frames sent to agents.",
        "counter",
        m.frames_out.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "ecp_bad_frames_total",
        "Sessions closed for a bad frame.",
        "counter",
        m.bad_frames.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "ecp_slow_agent_disconnects_total",
        "Sessions closed because the agent did not read.",
        "counter",
        m.slow_disconnects.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "ecp_registrations_total",
        "Successful agent registrations.",
        "counter",
        m.registrations.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "ecp_registration_failures_total",
        "Refused agent registrations.",
        "counter",
        m.registration_failures.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "ecp_tunnel_requests_total",
        "Dashboard requests carried by a tunnel stream of a session on this node.",
        "counter",
        m.tunnel_requests.load(Ordering::Relaxed) as i64,
    );
    let clusters = state.deps.store.all_clusters().await?;
    let _ = writeln!(
        out,
        "# HELP ecp_clusters Managed clusters by status.\n# TYPE ecp_clusters gauge"
    );
    for s in Status::ALL {
        let n = clusters.iter().filter(|c| c.status == s).count();
        let _ = writeln!(out, "ecp_clusters{{status=\"{}\"}} {n}", s.as_str());
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}
