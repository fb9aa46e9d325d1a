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
    state.store.user_count().await?;
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
    let h = &state.hashing;
    gauge(
        "ecp_password_checks_total",
        "Argon2 password hashes and verifications run.",
        "counter",
        h.done.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "ecp_password_checks_refused_total",
        "Password checks refused (429) because the Argon2 pool and its queue were full.",
        "counter",
        h.refused.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "ecp_password_checks_waiting",
        "Password checks waiting for a place in the Argon2 pool.",
        "gauge",
        h.waiting() as i64,
    );
    gauge(
        "ecp_event_streams",
        "Open console event streams (GET /api/events) on this node.",
        "gauge",
        i64::from(state.event_streams.total()),
    );
    // Counted in the background (`metrics.clusters_refresh_secs`), never per scrape.
    if let Some(counts) = state.cluster_gauges.get() {
        let _ = writeln!(
            out,
            "# HELP ecp_clusters Managed clusters by status.\n# TYPE ecp_clusters gauge"
        );
        for (s, n) in Status::ALL.iter().zip(counts) {
            let _ = writeln!(out, "ecp_clusters{{status=\"{}\"}} {n}", s.as_str());
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}

/// The clusters-by-status figures of `/metrics`, as last counted.
#[derive(Default)]
pub struct ClusterGauges {
    counts: std::sync::Mutex<Option<[u64; 5]>>,
}

impl ClusterGauges {
    pub fn get(&self) -> Option<[u64; 5]> {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, counts: [u64; 5]) {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = Some(counts);
    }
}

/// Clusters per status, in the order of `Status::ALL`.
pub fn count_by_status(clusters: &[ecp_actors::model::ClusterRecord]) -> [u64; 5] {
    Status::ALL.map(|s| clusters.iter().filter(|c| c.status == s).count() as u64)
}

/// Counts clusters by status every `metrics.clusters_refresh_secs`.
pub fn spawn_cluster_gauges(state: web::Data<AppState>) {
    let every = std::time::Duration::from_secs(u64::from(
        state.config.metrics.clusters_refresh_secs.max(1),
    ));
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match state.deps.store.all_clusters().await {
                Ok(all) => state.cluster_gauges.set(count_by_status(&all)),
                Err(e) => tracing::warn!(error = %e, "clusters not counted for /metrics"),
            }
        }
    });
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}
