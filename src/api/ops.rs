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
pub async fn metrics(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
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
    // Every managed cluster's latest EMQX figures (rendered in the
    // background), for the scraper holding the scrape token only: they name
    // every tenant.
    if fleet_allowed(&state.config.metrics.scrape_token, &req) {
        out.push_str(&state.cluster_gauges.fleet());
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}

/// The clusters-by-status figures of `/metrics`, as last counted, and the
/// fleet's EMQX metrics as last rendered.
#[derive(Default)]
pub struct ClusterGauges {
    counts: std::sync::Mutex<Option<[u64; 5]>>,
    fleet: std::sync::Mutex<std::sync::Arc<String>>,
}

impl ClusterGauges {
    pub fn fleet(&self) -> std::sync::Arc<String> {
        self.fleet.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_fleet(&self, text: String) {
        *self.fleet.lock().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(text);
    }

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
                Ok(all) => {
                    state.cluster_gauges.set(count_by_status(&all));
                    match fleet_rows(&state, all).await {
                        Ok(rows) => state.cluster_gauges.set_fleet(render_fleet(
                            &rows,
                            ecp_actors::model::now_ms(),
                            crate::api::monitoring::stale_ms(&state),
                        )),
                        Err(e) => tracing::warn!(error = %e, "fleet metrics not read for /metrics"),
                    }
                }
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

/// Whether a scrape presents the configured scrape token (compared as
/// SHA-256 digests, so the time taken says nothing about the token).
pub fn fleet_allowed(token: &str, req: &HttpRequest) -> bool {
    use sha2::{Digest, Sha256};
    if token.is_empty() {
        return false;
    }
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    Sha256::digest(presented.as_bytes()) == Sha256::digest(token.as_bytes())
}

/// One managed cluster as `/metrics` labels it, with its latest sample.
pub struct FleetRow {
    pub org: String,
    pub project: String,
    pub cluster: String,
    pub cluster_id: String,
    pub status: Status,
    pub latest: Option<ecp_actors::series::Point>,
}

async fn fleet_rows(
    state: &AppState,
    clusters: Vec<ecp_actors::model::ClusterRecord>,
) -> Result<Vec<FleetRow>, ecp_actors::store::StoreError> {
    let mut orgs = std::collections::HashMap::new();
    let mut projects = std::collections::HashMap::new();
    for o in state.store.orgs().await? {
        for p in state.store.projects(&o.id).await? {
            projects.insert(p.id.clone(), p.name);
        }
        orgs.insert(o.id.clone(), o.name);
    }
    let ids: Vec<String> = clusters.iter().map(|c| c.id.clone()).collect();
    let mut latest = Vec::with_capacity(ids.len());
    // Bounded reads, however large the fleet.
    for chunk in ids.chunks(500) {
        latest.extend(state.deps.store.latest_points(chunk).await?);
    }
    Ok(clusters
        .into_iter()
        .zip(latest)
        .map(|(c, latest)| FleetRow {
            org: orgs
                .get(&c.org_id)
                .cloned()
                .unwrap_or_else(|| c.org_id.clone()),
            project: projects
                .get(&c.project_id)
                .cloned()
                .unwrap_or_else(|| c.project_id.clone()),
            cluster: c.name,
            cluster_id: c.id,
            status: c.status,
            latest,
        })
        .collect())
}

/// A label value in the Prometheus text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The fleet's figures in the Prometheus text format: each managed
/// cluster's status and, when its latest sample is recent (`stale_ms`),
/// its EMQX metrics as `ecp_emqx_<name>{org, project, cluster, cluster_id}`.
pub fn render_fleet(rows: &[FleetRow], now: ecp_actors::model::Millis, stale_ms: u64) -> String {
    let mut out = String::new();
    let labels: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "org=\"{}\",project=\"{}\",cluster=\"{}\",cluster_id=\"{}\"",
                label(&r.org),
                label(&r.project),
                label(&r.cluster),
                label(&r.cluster_id)
            )
        })
        .collect();
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "# HELP ecp_cluster_status A managed cluster's status (1 for the status it is in).\n# TYPE ecp_cluster_status gauge"
        );
        for (r, l) in rows.iter().zip(&labels) {
            let _ = writeln!(
                out,
                "ecp_cluster_status{{{l},status=\"{}\"}} 1",
                r.status.as_str()
            );
        }
    }
    let fresh: Vec<(&ecp_actors::series::Point, &String)> = rows
        .iter()
        .zip(&labels)
        .filter_map(|(r, l)| r.latest.as_ref().map(|p| (p, l)))
        .filter(|(p, _)| now.saturating_sub(p.at) <= stale_ms)
        .collect();
    if fresh.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "# HELP ecp_emqx_sample_age_seconds How old a managed cluster's latest EMQX sample is.\n# TYPE ecp_emqx_sample_age_seconds gauge"
    );
    for (p, l) in &fresh {
        let _ = writeln!(
            out,
            "ecp_emqx_sample_age_seconds{{{l}}} {}",
            now.saturating_sub(p.at) as f64 / 1000.0
        );
    }
    for m in ecp_protocol::metrics::METRICS {
        let values: Vec<(f64, &String)> = fresh
            .iter()
            .filter_map(|(p, l)| p.get(m.name).map(|v| (v, *l)))
            .collect();
        if values.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "# HELP ecp_emqx_{0} EMQX {1} ({2}), as the cluster's agent last collected it.\n# TYPE ecp_emqx_{0} gauge",
            m.name, m.help.replace('\n', " "), m.unit
        );
        for (v, l) in values {
            let _ = writeln!(out, "ecp_emqx_{}{{{l}}} {v}", m.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_is_labelled_and_stale_samples_left_out() {
        let point = |at, v| {
            ecp_actors::series::Point::from_sample(&ecp_protocol::MetricSample {
                at_ms: at,
                values: vec![("connections".into(), v), ("live_connections".into(), 7.0)],
            })
        };
        let row = |name: &str, latest| FleetRow {
            org: "Acme \"EU\"".into(),
            project: "prod".into(),
            cluster: name.into(),
            cluster_id: format!("id-{name}"),
            status: Status::Running,
            latest,
        };
        let rows = vec![
            row("a", point(95_000, 3000.0)),
            row("b", point(1_000, 5.0)),
            row("c", None),
        ];
        let text = render_fleet(&rows, 100_000, 45_000);
        assert!(text.contains(
            "ecp_emqx_connections{org=\"Acme \\\"EU\\\"\",project=\"prod\",cluster=\"a\",cluster_id=\"id-a\"} 3000\n"
        ), "{text}");
        assert!(
            !text.contains("cluster=\"b\"} 5"),
            "b's sample is stale: {text}"
        );
        assert!(text.contains("ecp_cluster_status{org=\"Acme \\\"EU\\\"\",project=\"prod\",cluster=\"c\",cluster_id=\"id-c\",status=\"running\"} 1"), "{text}");
        assert_eq!(text.matches("# TYPE ecp_emqx_connections gauge").count(), 1);
        assert!(
            !text.contains("ecp_emqx_topics"),
            "no cluster sent topics: {text}"
        );
    }

    /// The shipped Grafana dashboard asks only for series `/metrics` has.
    #[test]
    fn the_grafana_dashboard_uses_exported_series() {
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../../docker/grafana/ecp-fleet.json"))
                .expect("the dashboard is JSON");
        let mut exported: Vec<String> = ecp_protocol::metrics::METRICS
            .iter()
            .map(|m| format!("ecp_emqx_{}", m.name))
            .collect();
        exported.push("ecp_emqx_sample_age_seconds".into());
        exported.push("ecp_cluster_status".into());
        let text = dash.to_string();
        let mut used = 0;
        for (i, _) in text.match_indices("ecp_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = name.starts_with("ecp_emqx_") || name.starts_with("ecp_cluster");
            if family && !name.ends_with('_') {
                assert!(
                    exported.contains(&name),
                    "the dashboard uses {name}, which /metrics does not export"
                );
                used += 1;
            }
        }
        assert!(used >= 10, "the dashboard's queries were not found");
    }
}
