//! A cluster's metric series (`…/clusters/{id}/metrics`), its EMQX alarms
//! (`…/clusters/{id}/alarms`) and the project's overview (`…/overview`).
//! The query rules are plain functions ([`plan_query`], [`overview_of`]).

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::policy::Need;
use crate::AppState;
use actix_web::{web, HttpResponse};
use ecp_actors::alerting::{AlertRecord, AlertState, Severity};
use ecp_actors::model::{now_ms, ClusterRecord, Millis, Status};
use ecp_actors::series::{self, Point, Tier};
use ecp_protocol::metrics::{metric_index, METRICS};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The longest range one request may ask for.
pub const MAX_RANGE_MS: Millis = 31 * 24 * 3_600_000;
/// The most points per series one request may ask for.
pub const MAX_POINTS: u64 = 11_000;
/// Points per series when no step is given and the range is too long to
/// answer each sample as collected.
pub const DEFAULT_POINTS: u64 = 300;
/// Ranges up to this long answer each raw sample as collected by default.
pub const AS_COLLECTED_MS: Millis = 6 * 3_600_000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MetricParams {
    /// Comma-separated metric names (default: all of them).
    pub names: Option<String>,
    /// RFC 3339 time or Unix milliseconds (default: an hour before `until`).
    pub since: Option<String>,
    /// RFC 3339 time or Unix milliseconds (default: now).
    pub until: Option<String>,
    /// Seconds per point, 1–2,678,400; each point is the mean of the
    /// samples in its step, stamped with the step's start. Default: each
    /// sample as collected (with its own time) for ranges up to 6 h of the
    /// last 24 h, else about 300 points.
    #[param(minimum = 1, maximum = 2678400)]
    pub step: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct SeriesView {
    pub name: String,
    pub unit: &'static str,
    /// `[unix ms, value]`, oldest first.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub points: Vec<(Millis, f64)>,
}

#[derive(Serialize, ToSchema)]
pub struct MetricsView {
    pub series: Vec<SeriesView>,
    /// Unix ms.
    pub since: Millis,
    /// Unix ms.
    pub until: Millis,
    /// Seconds per point; 0: each sample as collected.
    pub step: u64,
    /// `raw` (as collected, 24 h) or `rollup` (5-minute means, 30 days).
    #[schema(value_type = String, example = "raw")]
    pub tier: &'static str,
}

/// A metrics query, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricQuery {
    pub names: Vec<&'static str>,
    pub since: Millis,
    pub until: Millis,
    /// 0: as collected.
    pub step_ms: Millis,
    pub tier: Tier,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message.into())
}

/// RFC 3339 or Unix milliseconds, as the log routes take them → Unix ms.
fn parse_ms(what: &'static str, s: &str) -> Result<Millis, ApiError> {
    Ok(crate::api::logs::parse_time(what, s)? / 1000)
}

/// Checks a metrics query against the rules (known names, a sane range,
/// not too many points) and picks the tier that answers it.
pub fn plan_query(p: &MetricParams, now: Millis) -> Result<MetricQuery, ApiError> {
    let names: Vec<&'static str> = match p.names.as_deref().map(str::trim) {
        None | Some("") => METRICS.iter().map(|m| m.name).collect(),
        Some(list) => {
            let mut out: Vec<&'static str> = Vec::new();
            for n in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let Some(i) = metric_index(n) else {
                    let known: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
                    return Err(bad(
                        "INVALID_METRIC",
                        format!(
                            "names: {:?} is not a metric; known: {}",
                            n.chars().take(64).collect::<String>(),
                            known.join(", ")
                        ),
                    ));
                };
                if !out.contains(&METRICS[i].name) {
                    out.push(METRICS[i].name);
                }
            }
            out
        }
    };
    let until = match p.until.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => parse_ms("until", s)?,
        None => now,
    };
    let since = match p.since.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => parse_ms("since", s)?,
        None => until.saturating_sub(3_600_000),
    };
    if since > until {
        return Err(bad("INVALID_TIME", "since is after until"));
    }
    let range = until - since;
    if range > MAX_RANGE_MS {
        return Err(bad(
            "RANGE_TOO_LONG",
            "the range (until - since) is longer than 31 days",
        ));
    }
    let step_ms = match p.step {
        Some(0) => return Err(bad("INVALID_STEP", "step must be at least 1 second")),
        Some(s) if s > MAX_RANGE_MS / 1000 => {
            return Err(bad("INVALID_STEP", "step must be at most 2678400 seconds"))
        }
        Some(s) => s * 1000,
        // A minute of slack: "the last 6 h" from a client's clock.
        None if range <= AS_COLLECTED_MS + 60_000
            && since.saturating_add(series::RAW_RETENTION_MS) >= now =>
        {
            0
        }
        None => (range.div_ceil(DEFAULT_POINTS)).div_ceil(1000).max(1) * 1000,
    };
    if step_ms > 0 && range / step_ms > MAX_POINTS {
        return Err(bad(
            "TOO_MANY_POINTS",
            format!(
                "{} points per series asked for; at most {MAX_POINTS} (choose a larger step)",
                range / step_ms
            ),
        ));
    }
    Ok(MetricQuery {
        names,
        since,
        until,
        step_ms,
        tier: series::tier_for(since, step_ms, now),
    })
}

/// The cluster's metric series. Viewers may read.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/metrics", tag = "monitoring",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path), MetricParams),
    responses((status = 200, body = MetricsView),
        (status = 400, description = "An unknown metric name, a bad time, since after until, a range over 31 days, a step out of 1–2678400 s or over 11,000 points", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, description = "No such cluster in this project (or no access to it)", body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn metrics(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String, String)>,
    q: web::Query<MetricParams>,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    crate::api::clusters::cluster_in(&state, &user, Need::Read, &org, &project, &id).await?;
    let query = plan_query(&q, now_ms())?;
    let points = state
        .deps
        .store
        .metric_points(&id, query.tier, query.since, query.until)
        .await?;
    Ok(HttpResponse::Ok().json(metrics_view(&query, &points)))
}

/// The answer to a query from the stored points.
pub fn metrics_view(query: &MetricQuery, points: &[Point]) -> MetricsView {
    let series = series::downsample(points, &query.names, query.since, query.step_ms)
        .into_iter()
        .map(|s| SeriesView {
            unit: metric_index(&s.name).map(|i| METRICS[i].unit).unwrap_or(""),
            name: s.name,
            points: s.points,
        })
        .collect();
    MetricsView {
        series,
        since: query.since,
        until: query.until,
        step: query.step_ms / 1000,
        tier: match query.tier {
            Tier::Raw => "raw",
            Tier::Rollup => "rollup",
        },
    }
}

// ---------------------------------------------------------------- alarms

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlarmParams {
    /// `true` (default): the active alarms; `false`: the deactivated ones
    /// kept (the newest 200).
    pub activated: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmView {
    pub node: String,
    pub name: String,
    pub message: String,
    /// EMQX's details (an object; text EMQX sent that is not JSON is kept
    /// as a string).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub activate_at: String,
    pub deactivate_at: Option<String>,
    pub duration_ms: Millis,
}

#[derive(Serialize, ToSchema)]
pub struct AlarmList {
    pub data: Vec<AlarmView>,
}

fn alarm_view(a: ecp_protocol::EmqxAlarm, now: Millis) -> AlarmView {
    let details = if a.details.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(&a.details).unwrap_or(serde_json::Value::String(a.details))
    };
    AlarmView {
        duration_ms: a
            .deactivate_at_ms
            .unwrap_or(now)
            .saturating_sub(a.activate_at_ms),
        node: a.node,
        name: a.name,
        message: a.message,
        details,
        activate_at: crate::api::views::rfc3339(a.activate_at_ms),
        deactivate_at: a.deactivate_at_ms.map(crate::api::views::rfc3339),
    }
}

/// EMQX's alarms as the cluster's agent collected them. Viewers may read.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/clusters/{clusterId}/alarms", tag = "monitoring",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("clusterId" = String, Path), AlarmParams),
    responses((status = 200, body = AlarmList),
        (status = 400, description = "activated is not true or false", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn alarms(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String, String)>,
    q: web::Query<AlarmParams>,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    crate::api::clusters::cluster_in(&state, &user, Need::Read, &org, &project, &id).await?;
    let set = state.deps.store.alarms(&id).await?;
    let now = now_ms();
    let list = if q.activated.unwrap_or(true) {
        set.active
    } else {
        set.history
    };
    Ok(HttpResponse::Ok().json(AlarmList {
        data: list.into_iter().map(|a| alarm_view(a, now)).collect(),
    }))
}

// ---------------------------------------------------------------- overview

#[derive(Debug, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusCounts {
    pub created: u64,
    pub registering: u64,
    pub running: u64,
    pub abnormal: u64,
    pub deleting: u64,
}

#[derive(Debug, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTotals {
    pub total: u64,
    pub by_status: StatusCounts,
}

#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct ConnectionTotals {
    /// Sessions (EMQX `connections`).
    pub total: f64,
    pub live: f64,
}

#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct RateTotals {
    /// Messages per second.
    pub received: f64,
    pub sent: f64,
    pub dropped: f64,
}

#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct FiringCluster {
    pub id: String,
    pub name: String,
    /// Alerts firing for it.
    pub firing: u64,
    /// The most severe of them.
    #[schema(value_type = String, example = "critical")]
    pub severity: &'static str,
}

#[derive(Debug, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OverviewView {
    pub clusters: ClusterTotals,
    /// Sums over the clusters whose latest sample is recent (three
    /// collection intervals).
    pub connections: ConnectionTotals,
    pub rates: RateTotals,
    pub firing_alerts: u64,
    /// Most severe first, then most alerts.
    pub clusters_with_firing_alerts: Vec<FiringCluster>,
}

/// The overview of a project's clusters from their records, their latest
/// samples (same order; older than `stale_ms` ones are left out of the
/// sums) and the firing alerts.
pub fn overview_of(
    clusters: &[ClusterRecord],
    latest: &[Option<Point>],
    firing: &[AlertRecord],
    now: Millis,
    stale_ms: Millis,
) -> OverviewView {
    let count = |s: Status| clusters.iter().filter(|c| c.status == s).count() as u64;
    let mut conn = ConnectionTotals {
        total: 0.0,
        live: 0.0,
    };
    let mut rates = RateTotals {
        received: 0.0,
        sent: 0.0,
        dropped: 0.0,
    };
    for p in latest
        .iter()
        .flatten()
        .filter(|p| now.saturating_sub(p.at) <= stale_ms)
    {
        let v = |n: &str| p.get(n).unwrap_or(0.0);
        conn.total += v("connections");
        conn.live += v("live_connections");
        rates.received += v("received_msg_rate");
        rates.sent += v("sent_msg_rate");
        rates.dropped += v("dropped_msg_rate");
    }
    let mut by_cluster: Vec<(String, u64, Severity)> = Vec::new();
    let firing: Vec<&AlertRecord> = firing
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .collect();
    for a in &firing {
        match by_cluster.iter_mut().find(|(c, _, _)| c == &a.cluster_id) {
            Some((_, n, s)) => {
                *n += 1;
                *s = (*s).max(a.severity);
            }
            None => by_cluster.push((a.cluster_id.clone(), 1, a.severity)),
        }
    }
    by_cluster.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
    OverviewView {
        clusters: ClusterTotals {
            total: clusters.len() as u64,
            by_status: StatusCounts {
                created: count(Status::Created),
                registering: count(Status::Registering),
                running: count(Status::Running),
                abnormal: count(Status::Abnormal),
                deleting: count(Status::Deleting),
            },
        },
        connections: conn,
        rates,
        firing_alerts: firing.len() as u64,
        clusters_with_firing_alerts: by_cluster
            .into_iter()
            .map(|(id, n, s)| FiringCluster {
                name: clusters
                    .iter()
                    .find(|c| c.id == id)
                    .map(|c| c.name.clone())
                    .or_else(|| {
                        firing
                            .iter()
                            .find(|a| a.cluster_id == id)
                            .map(|a| a.cluster_name.clone())
                    })
                    .unwrap_or_default(),
                id,
                firing: n,
                severity: s.as_str(),
            })
            .collect(),
    }
}

/// Firing alerts one overview reads, at most.
const OVERVIEW_FIRING: usize = 10_000;

/// The project at a glance: clusters by status, connections and message
/// rates summed over its clusters, and the clusters with firing alerts.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/overview", tag = "monitoring",
    params(("orgId" = String, Path), ("projectId" = String, Path)),
    responses((status = 200, body = OverviewView),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn overview(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, project) = path.into_inner();
    crate::api::orgs::project_in_org(&state, &user, &org, &project, Need::Read).await?;
    let clusters = state.deps.store.clusters_in_project(&project).await?;
    let ids: Vec<String> = clusters.iter().map(|c| c.id.clone()).collect();
    let latest = state.deps.store.latest_points(&ids).await?;
    let firing = state
        .deps
        .store
        .alerts(&project, Some(AlertState::Firing), OVERVIEW_FIRING)
        .await?;
    Ok(HttpResponse::Ok().json(overview_of(
        &clusters,
        &latest,
        &firing,
        now_ms(),
        stale_ms(&state),
    )))
}

/// A sample older than three collection intervals is stale.
pub fn stale_ms(state: &AppState) -> Millis {
    3 * u64::from(state.config.metrics.collect_interval_secs.max(1)) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(
        names: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
        step: Option<u64>,
    ) -> MetricParams {
        MetricParams {
            names: names.map(str::to_string),
            since: since.map(str::to_string),
            until: until.map(str::to_string),
            step,
        }
    }

    const NOW: Millis = 1_700_000_000_000;

    #[test]
    fn defaults_are_the_last_hour_of_every_metric_as_collected() {
        let q = plan_query(&params(None, None, None, None), NOW).expect("valid");
        assert_eq!(q.names.len(), METRICS.len());
        assert_eq!((q.since, q.until, q.step_ms), (NOW - 3_600_000, NOW, 0));
        assert_eq!(q.tier, Tier::Raw);
    }

    #[test]
    fn a_week_is_answered_from_the_rollups_in_about_300_points() {
        let week = 7 * 24 * 3_600_000;
        let since = (NOW - week).to_string();
        let q =
            plan_query(&params(Some("connections"), Some(&since), None, None), NOW).expect("valid");
        assert_eq!(q.tier, Tier::Rollup);
        assert_eq!(q.step_ms, 2_016_000);
        assert!(week / q.step_ms <= DEFAULT_POINTS);
    }

    #[test]
    fn bad_queries_are_named() {
        let cases = [
            (
                params(Some("connections,bogus"), None, None, None),
                "INVALID_METRIC",
            ),
            (params(None, Some("yesterday"), None, None), "INVALID_TIME"),
            (
                params(None, Some("2000"), Some("1000"), None),
                "INVALID_TIME",
            ),
            (
                params(None, Some("0"), Some(&NOW.to_string()), None),
                "RANGE_TOO_LONG",
            ),
            (params(None, None, None, Some(0)), "INVALID_STEP"),
            (
                params(None, Some(&(NOW - 86_400_000).to_string()), None, Some(1)),
                "TOO_MANY_POINTS",
            ),
        ];
        for (p, code) in cases {
            let e = plan_query(&p, NOW).expect_err(code);
            assert_eq!(e.code, code, "{}", e.message);
        }
        let q = plan_query(
            &params(
                None,
                Some("2023-11-10T11:08:39Z"),
                Some("2023-11-10T12:08:39Z"),
                Some(60),
            ),
            NOW,
        )
        .expect("RFC 3339 times");
        assert_eq!(q.until - q.since, 3_600_000);
        assert_eq!(q.tier, Tier::Rollup, "older than a day");
    }

    fn point(at: Millis, values: &[(&str, f64)]) -> Point {
        Point::from_sample(&ecp_protocol::MetricSample {
            at_ms: at,
            values: values.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        })
        .expect("known metrics")
    }

    #[test]
    fn the_overview_sums_fresh_samples_and_ranks_firing_clusters() {
        let cluster = |id: &str, status| ClusterRecord {
            status,
            ..ClusterRecord::created(id.into(), "o".into(), "p".into(), format!("name-{id}"), 1)
        };
        let clusters = vec![
            cluster("a", Status::Running),
            cluster("b", Status::Abnormal),
            cluster("c", Status::Created),
        ];
        let latest = vec![
            Some(point(
                NOW - 1_000,
                &[("connections", 10.0), ("received_msg_rate", 2.5)],
            )),
            Some(point(NOW - 100_000, &[("connections", 1_000.0)])), // stale
            None,
        ];
        let alert = |cluster: &str, severity| AlertRecord {
            id: "x".into(),
            org_id: "o".into(),
            project_id: "p".into(),
            rule_id: "r".into(),
            rule_name: "r".into(),
            kind: ecp_actors::alerting::AlertKind::AgentOffline,
            cluster_id: cluster.into(),
            cluster_name: String::new(),
            subject: String::new(),
            severity,
            state: AlertState::Firing,
            started_at: 0,
            resolved_at: None,
            message: String::new(),
        };
        let firing = vec![
            alert("a", Severity::Warning),
            alert("a", Severity::Info),
            alert("b", Severity::Critical),
        ];
        let o = overview_of(&clusters, &latest, &firing, NOW, 45_000);
        assert_eq!(o.clusters.total, 3);
        assert_eq!(o.clusters.by_status.abnormal, 1);
        assert_eq!(o.connections.total, 10.0);
        assert_eq!(o.rates.received, 2.5);
        assert_eq!(o.firing_alerts, 3);
        let ranked: Vec<(&str, u64, &str)> = o
            .clusters_with_firing_alerts
            .iter()
            .map(|c| (c.id.as_str(), c.firing, c.severity))
            .collect();
        assert_eq!(ranked, vec![("b", 1, "critical"), ("a", 2, "warning")]);
        assert_eq!(o.clusters_with_firing_alerts[0].name, "name-b");
    }
}
