//! Alert rules, notification channels (with their Test button and delivery
//! log) and alerts of a project, under `/api/orgs/{orgId}/projects/{projectId}`.
//! Project viewers read; project admins write; other tenants get 404.
//! Bodies are read field by field (`input`), so a refusal names its field.
//! Channel secrets (a webhook's HMAC key, an SMTP password) are write-only:
//! no answer carries them, except a webhook secret the server made, once.
//! Rule changes are only stored: each cluster's actor re-reads its
//! project's rules at every evaluation.

pub mod input;

use crate::api::orgs::project_in_org;
use crate::api::views::rfc3339;
use crate::audit::{self, Object};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::policy::Need;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use ecp_actors::alerting::*;
use ecp_actors::model::now_ms;
use input::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

type ProjectPath = web::Path<(String, String)>;
type ItemPath = web::Path<(String, String, String)>;

/// Rules a project may hold.
pub const RULES_PER_PROJECT: usize = 500;
/// Channels a project may hold.
pub const CHANNELS_PER_PROJECT: usize = 100;
/// A made-up webhook secret starts with this.
pub const SECRET_PREFIX: &str = "ecpw_";

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::bad_request(e.code, e.message)
    }
}

// ---------------------------------------------------------------- schemas

/// A built-in alert kind.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AlertKindName {
    ClusterAbnormal,
    AgentOffline,
    NodesStopped,
    ConnectionsOver,
    LicenseExpiring,
    EmqxAlarm,
    MsgDroppedRateOver,
    NoMetrics,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SeverityName {
    Info,
    Warning,
    Critical,
}

/// How a `connections_over` threshold counts.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum UnitName {
    Percent,
    Absolute,
}

/// Why a cluster is abnormal.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ReasonCodeName {
    AgentOffline,
    EmqxUnreachable,
    EmqxAuthFailed,
    NodesStopped,
    UnsupportedVersion,
    AgentError,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ChannelKindName {
    Webhook,
    Email,
}

/// `starttls`: STARTTLS required; `tls`: TLS from the first byte; `none`:
/// plain (a local relay; no credentials allowed).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SmtpSecurityName {
    Starttls,
    Tls,
    None,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AlertStateName {
    Firing,
    Resolved,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum DeliveryKindName {
    Firing,
    Resolved,
    Summary,
    Test,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum DeliveryStateName {
    Pending,
    Delivered,
    Failed,
    Suppressed,
}

/// An alert rule (a full replace on PUT). Unknown fields are refused.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct RuleInput {
    /// Trimmed; 1–64 characters.
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    #[schema(inline)]
    kind: AlertKindName,
    /// Clusters of this project; empty or absent: all of them.
    #[schema(max_items = 1000)]
    cluster_ids: Option<Vec<String>>,
    /// Required exactly for `connections_over` (percent of the licence, or
    /// absolute), `license_expiring` (days) and `msg_dropped_rate_over`
    /// (messages/s); refused for other kinds.
    #[schema(minimum = 0)]
    threshold: Option<f64>,
    /// `connections_over` only; default `percent`.
    #[schema(inline)]
    unit: Option<UnitName>,
    /// `cluster_abnormal` only: just this reason (default: any).
    #[schema(inline)]
    reason_code: Option<ReasonCodeName>,
    /// `emqx_alarm` only: the alarm name, `*` matching any run of
    /// characters; default `*`.
    #[schema(min_length = 1, max_length = 255)]
    alarm_pattern: Option<String>,
    /// The condition holds this long before the alert fires; default 0.
    #[schema(minimum = 0, maximum = 86400)]
    for_secs: Option<u64>,
    /// The condition is gone this long before the alert resolves; default 0.
    #[schema(minimum = 0, maximum = 86400)]
    recover_secs: Option<u64>,
    /// Default `warning`.
    #[schema(inline)]
    severity: Option<SeverityName>,
    /// Channels of this project to notify.
    #[schema(max_items = 20)]
    channel_ids: Option<Vec<String>>,
    /// Default true.
    enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    pub id: String,
    pub name: String,
    #[schema(inline, value_type = AlertKindName)]
    pub kind: &'static str,
    pub cluster_ids: Vec<String>,
    pub threshold: Option<f64>,
    /// `connections_over` only (null otherwise).
    #[schema(inline, value_type = Option<UnitName>)]
    pub unit: Option<&'static str>,
    #[schema(inline, value_type = Option<ReasonCodeName>)]
    pub reason_code: Option<&'static str>,
    pub alarm_pattern: Option<String>,
    pub for_secs: u64,
    pub recover_secs: u64,
    #[schema(inline, value_type = SeverityName)]
    pub severity: &'static str,
    pub channel_ids: Vec<String>,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl RuleView {
    pub fn from_record(r: &AlertRule) -> RuleView {
        RuleView {
            id: r.id.clone(),
            name: r.name.clone(),
            kind: r.kind.as_str(),
            cluster_ids: r.cluster_ids.clone(),
            threshold: r.threshold,
            unit: (r.kind == AlertKind::ConnectionsOver).then(|| input::unit_name(r.unit)),
            reason_code: r.reason_code.map(input::reason_name),
            alarm_pattern: r.alarm_pattern.clone(),
            for_secs: r.for_secs,
            recover_secs: r.recover_secs,
            severity: r.severity.as_str(),
            channel_ids: r.channel_ids.clone(),
            enabled: r.enabled,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RuleList {
    pub data: Vec<RuleView>,
}

/// Header name → value, at most 20.
fn headers_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{schema::Type, ObjectBuilder};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Extra request headers, name → value: at most 20; names are HTTP tokens (≤ 128), \
             not Host, Content-Length, Content-Type, Transfer-Encoding, Connection, Keep-Alive, \
             Upgrade, TE, Trailer, Expect, Proxy-* or X-ECP-*; values ≤ 4096 bytes without \
             control characters.",
        ))
        .max_properties(Some(input::HEADERS_MAX))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(input::HEADER_VALUE_MAX)),
        ))
        .build()
}

/// A webhook channel's settings.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct WebhookInput {
    /// http:// or https://; at most 2048 characters. Redirects are not followed.
    #[schema(max_length = 2048)]
    url: String,
    /// Extra request headers, name → value: at most 20; names are HTTP
    /// tokens (≤ 128), not Host, Content-Length, Content-Type,
    /// Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer,
    /// Expect, Proxy-* or X-ECP-*; values ≤ 4096 bytes without control
    /// characters.
    #[schema(schema_with = headers_schema)]
    headers: Option<BTreeMap<String, String>>,
    /// Replaces the default JSON body; `{{cluster}}`, `{{rule}}`,
    /// `{{severity}}`, `{{status}}`, `{{message}}`, `{{startedAt}}` become
    /// the values escaped as JSON string contents. At most 16 KiB.
    #[schema(max_length = 16384)]
    body_template: Option<String>,
    /// HMAC-SHA256 key of `X-ECP-Signature-256` (write-only). Left out on
    /// PUT: the stored one stays; on POST: the server makes one and
    /// returns it once.
    #[schema(min_length = 8, max_length = 256, write_only)]
    secret: Option<String>,
}

/// An email channel's settings.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct EmailInput {
    /// SMTP server host name or IP address.
    #[schema(min_length = 1, max_length = 253)]
    host: String,
    /// Default 587 (starttls), 465 (tls), 25 (none).
    #[schema(minimum = 1, maximum = 65535)]
    port: Option<u16>,
    /// Default `starttls`.
    #[schema(inline)]
    security: Option<SmtpSecurityName>,
    /// Refused with security `none`.
    #[schema(min_length = 1, max_length = 256)]
    username: Option<String>,
    /// Write-only; needs `username`. Left out on PUT (same username): the
    /// stored one stays.
    #[schema(min_length = 1, max_length = 256, write_only)]
    password: Option<String>,
    /// An address, or `Name <address>`.
    #[schema(max_length = 320)]
    from: String,
    /// 1–10 addresses.
    #[schema(min_items = 1, max_items = 10)]
    to: Vec<String>,
}

/// A notification channel (a full replace on PUT). Unknown fields are refused.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ChannelInput {
    /// Trimmed; 1–64 characters.
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    #[schema(inline)]
    kind: ChannelKindName,
    /// Storm control: notifications per window (a minute), then one
    /// summary. Default `alerts.max_notifications_per_minute`.
    #[schema(minimum = 1, maximum = 1000)]
    max_per_minute: Option<u32>,
    /// Required for kind `webhook`, refused for `email`.
    webhook: Option<WebhookInput>,
    /// Required for kind `email`, refused for `webhook`.
    email: Option<EmailInput>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body_template: Option<String>,
    pub has_secret: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailView {
    pub host: String,
    pub port: u16,
    #[schema(inline, value_type = SmtpSecurityName)]
    pub security: &'static str,
    pub username: Option<String>,
    pub has_password: bool,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    pub id: String,
    pub name: String,
    #[schema(inline, value_type = ChannelKindName)]
    pub kind: &'static str,
    pub max_per_minute: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailView>,
    /// Only in the answer that made it: the webhook secret the server
    /// generated. Never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl ChannelView {
    pub fn from_record(c: &ChannelRecord, secret: Option<String>) -> ChannelView {
        ChannelView {
            id: c.id.clone(),
            name: c.name.clone(),
            kind: input::channel_kind_name(c.kind),
            max_per_minute: c.max_per_minute,
            webhook: c.webhook.as_ref().map(|w| WebhookView {
                url: w.url.clone(),
                headers: w.headers.iter().cloned().collect(),
                body_template: w.body_template.clone(),
                has_secret: !w.secret.is_empty(),
            }),
            email: c.email.as_ref().map(|e| EmailView {
                host: e.host.clone(),
                port: e.port,
                security: input::security_name(e.security),
                username: e.username.clone(),
                has_password: e.password.as_deref().is_some_and(|p| !p.is_empty()),
                from: e.from.clone(),
                to: e.to.clone(),
            }),
            secret,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChannelList {
    pub data: Vec<ChannelView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: String,
    #[schema(inline, value_type = DeliveryKindName)]
    pub kind: &'static str,
    #[schema(inline, value_type = DeliveryStateName)]
    pub state: &'static str,
    pub attempts: u32,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// The receiver's HTTP status or SMTP reply code of the last attempt.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub alert_id: Option<String>,
    pub cluster_id: Option<String>,
    pub message: String,
}

fn delivery_state(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Pending => "pending",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Failed => "failed",
        DeliveryState::Suppressed => "suppressed",
    }
}

impl DeliveryView {
    pub fn from_record(d: &Delivery) -> DeliveryView {
        DeliveryView {
            id: d.id.clone(),
            kind: crate::notify::webhook::event_name(d.notice.kind),
            state: delivery_state(d.state),
            attempts: d.attempts,
            created_at: rfc3339(d.created_at),
            finished_at: d.finished_at.map(rfc3339),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            alert_id: d.notice.alert_id.clone(),
            cluster_id: (!d.notice.cluster_id.is_empty()).then(|| d.notice.cluster_id.clone()),
            message: d.notice.message.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub data: Vec<DeliveryView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestQueued {
    /// The queued `test` delivery: see the channel's deliveries.
    pub delivery_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    pub id: String,
    pub rule_id: String,
    pub rule_name: String,
    #[schema(inline, value_type = AlertKindName)]
    pub kind: &'static str,
    pub cluster_id: String,
    pub cluster_name: String,
    /// What inside the cluster ("" for the cluster itself; `node/alarm`).
    pub subject: String,
    #[schema(inline, value_type = SeverityName)]
    pub severity: &'static str,
    #[schema(inline, value_type = AlertStateName)]
    pub state: &'static str,
    pub started_at: String,
    pub resolved_at: Option<String>,
    pub message: String,
}

impl AlertView {
    pub fn from_record(a: &AlertRecord) -> AlertView {
        AlertView {
            id: a.id.clone(),
            rule_id: a.rule_id.clone(),
            rule_name: a.rule_name.clone(),
            kind: a.kind.as_str(),
            cluster_id: a.cluster_id.clone(),
            cluster_name: a.cluster_name.clone(),
            subject: a.subject.clone(),
            severity: a.severity.as_str(),
            state: a.state.as_str(),
            started_at: rfc3339(a.started_at),
            resolved_at: a.resolved_at.map(rfc3339),
            message: a.message.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    pub data: Vec<AlertView>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// `firing` or `resolved`; default both.
    #[param(inline, value_type = Option<AlertStateName>)]
    pub state: Option<String>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
}

// ---------------------------------------------------------------- helpers

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The rule if it belongs to the project (404 otherwise).
async fn rule_in(state: &AppState, project: &str, id: &str) -> Result<AlertRule, ApiError> {
    match state.deps.store.alert_rule(id).await? {
        Some(r) if r.project_id == project => Ok(r),
        _ => Err(ApiError::not_found("alert rule")),
    }
}

/// The channel if it belongs to the project (404 otherwise).
async fn channel_in(state: &AppState, project: &str, id: &str) -> Result<ChannelRecord, ApiError> {
    match state.deps.store.channel(id).await? {
        Some(c) if c.project_id == project => Ok(c),
        _ => Err(ApiError::not_found("notification channel")),
    }
}

/// Every named cluster and channel is one of this project's.
async fn check_refs(
    state: &AppState,
    project: &str,
    spec: &input::RuleSpec,
) -> Result<(), ApiError> {
    if !spec.cluster_ids.is_empty() {
        let clusters = state.deps.store.clusters_in_project(project).await?;
        if let Some(bad) = spec
            .cluster_ids
            .iter()
            .find(|id| !clusters.iter().any(|c| &c.id == *id))
        {
            return Err(ApiError::bad_request(
                "UNKNOWN_CLUSTER",
                format!("clusterIds names {bad:?}, which is no cluster of this project"),
            ));
        }
    }
    if !spec.channel_ids.is_empty() {
        let channels = state.deps.store.channels(project).await?;
        if let Some(bad) = spec
            .channel_ids
            .iter()
            .find(|id| !channels.iter().any(|c| &c.id == *id))
        {
            return Err(ApiError::bad_request(
                "UNKNOWN_CHANNEL",
                format!(
                    "channelIds names {bad:?}, which is no notification channel of this project"
                ),
            ));
        }
    }
    Ok(())
}

fn rule_object(r: &AlertRule) -> Object<'_> {
    Object {
        kind: "alert_rule",
        id: &r.id,
        name: &r.name,
        org_id: &r.org_id,
        project_id: &r.project_id,
    }
}

fn channel_object(c: &ChannelRecord) -> Object<'_> {
    Object {
        kind: "notification_channel",
        id: &c.id,
        name: &c.name,
        org_id: &c.org_id,
        project_id: &c.project_id,
    }
}

fn limit_of(raw: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    let limit = raw.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            "INVALID_INPUT",
            format!("limit must be 1 to {max}"),
        ))
    }
}

fn rule_record(
    spec: input::RuleSpec,
    id: String,
    org: &str,
    project: &str,
    created_at: u64,
    now: u64,
) -> AlertRule {
    AlertRule {
        id,
        org_id: org.to_string(),
        project_id: project.to_string(),
        name: spec.name,
        kind: spec.kind,
        cluster_ids: spec.cluster_ids,
        threshold: spec.threshold,
        unit: spec.unit,
        reason_code: spec.reason_code,
        alarm_pattern: spec.alarm_pattern,
        for_secs: spec.for_secs,
        recover_secs: spec.recover_secs,
        severity: spec.severity,
        channel_ids: spec.channel_ids,
        enabled: spec.enabled,
        created_at,
        updated_at: now,
    }
}

// ---------------------------------------------------------------- rules

/// The project's alert rules.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/alert-rules", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path)),
    responses((status = 200, body = RuleList), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_rules(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ProjectPath,
) -> Result<HttpResponse, ApiError> {
    let (org, project) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Read).await?;
    let mut rules = state.deps.store.alert_rules(&project).await?;
    rules.retain(|r| r.project_id == project);
    rules.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(HttpResponse::Ok().json(RuleList {
        data: rules.iter().map(RuleView::from_record).collect(),
    }))
}

/// Create an alert rule.
#[utoipa::path(post, path = "/api/orgs/{orgId}/projects/{projectId}/alert-rules", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path)), request_body = RuleInput,
    responses((status = 201, body = RuleView),
        (status = 400, description = "a field is missing, unknown or out of range; a cluster or channel is not of this project", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, description = "viewers are read-only", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, description = "the project has 500 rules", body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_rule(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ProjectPath,
    body: web::Json<Value>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Write).await?;
    let spec = input::rule_spec(body.into_inner())?;
    check_refs(&state, &project, &spec).await?;
    if state.deps.store.alert_rules(&project).await?.len() >= RULES_PER_PROJECT {
        return Err(ApiError::conflict(
            "LIMIT_REACHED",
            format!("a project holds at most {RULES_PER_PROJECT} alert rules"),
        ));
    }
    let now = now_ms();
    let rule = rule_record(spec, new_id(), &org, &project, now, now);
    state.deps.store.put_alert_rule(&rule).await?;
    tracing::info!(rule_id = %rule.id, project_id = %project, user_id = %user.user.id, kind = rule.kind.as_str(), "alert rule created");
    audit::ok(
        &state,
        &req,
        &user.user,
        "alert_rule.create",
        rule_object(&rule),
        &format!("kind={}", rule.kind.as_str()),
    )
    .await;
    Ok(HttpResponse::Created().json(RuleView::from_record(&rule)))
}

/// Replace an alert rule (every field; left out: the default).
#[utoipa::path(put, path = "/api/orgs/{orgId}/projects/{projectId}/alert-rules/{ruleId}", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("ruleId" = String, Path)), request_body = RuleInput,
    responses((status = 200, body = RuleView),
        (status = 400, description = "a field is missing, unknown or out of range; a cluster or channel is not of this project", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, description = "viewers are read-only", body = crate::error::ErrorBody),
        (status = 404, description = "no such rule in this project", body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_rule(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ItemPath,
    body: web::Json<Value>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Write).await?;
    let old = rule_in(&state, &project, &id).await?;
    let spec = input::rule_spec(body.into_inner())?;
    check_refs(&state, &project, &spec).await?;
    let rule = rule_record(spec, old.id, &org, &project, old.created_at, now_ms());
    state.deps.store.put_alert_rule(&rule).await?;
    tracing::info!(rule_id = %rule.id, project_id = %project, user_id = %user.user.id, "alert rule replaced");
    audit::ok(
        &state,
        &req,
        &user.user,
        "alert_rule.edit",
        rule_object(&rule),
        &format!("kind={} enabled={}", rule.kind.as_str(), rule.enabled),
    )
    .await;
    Ok(HttpResponse::Ok().json(RuleView::from_record(&rule)))
}

/// Delete an alert rule; its firing alerts resolve at the next evaluation.
#[utoipa::path(delete, path = "/api/orgs/{orgId}/projects/{projectId}/alert-rules/{ruleId}", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("ruleId" = String, Path)),
    responses((status = 204, description = "deleted"),
        (status = 401, body = crate::error::ErrorBody), (status = 403, description = "viewers are read-only", body = crate::error::ErrorBody),
        (status = 404, description = "no such rule in this project", body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_rule(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ItemPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Write).await?;
    let rule = rule_in(&state, &project, &id).await?;
    match state.deps.store.delete_alert_rule(&id).await {
        Ok(()) | Err(ecp_actors::store::StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(rule_id = %id, project_id = %project, user_id = %user.user.id, "alert rule deleted");
    audit::ok(
        &state,
        &req,
        &user.user,
        "alert_rule.delete",
        rule_object(&rule),
        "",
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

// ---------------------------------------------------------------- channels

/// The project's notification channels (secrets and passwords never shown).
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/notification-channels", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path)),
    responses((status = 200, body = ChannelList), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_channels(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ProjectPath,
) -> Result<HttpResponse, ApiError> {
    let (org, project) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Read).await?;
    let mut channels = state.deps.store.channels(&project).await?;
    channels.retain(|c| c.project_id == project);
    channels.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(HttpResponse::Ok().json(ChannelList {
        data: channels
            .iter()
            .map(|c| ChannelView::from_record(c, None))
            .collect(),
    }))
}

/// The stored channel from what was asked and what is stored; the secret
/// the server made, if it made one.
fn channel_record(
    spec: input::ChannelSpec,
    stored: Option<&ChannelRecord>,
    default_max: u32,
) -> Result<(ChannelRecord, Option<String>), ApiError> {
    let now = now_ms();
    let (webhook, generated) = match spec.webhook {
        Some(w) => {
            let (cfg, generated) =
                input::webhook_config(w, stored.and_then(|s| s.webhook.as_ref()), || {
                    crate::auth::new_secret(SECRET_PREFIX).0
                });
            (Some(cfg), generated)
        }
        None => (None, None),
    };
    let email = match spec.email {
        Some(e) => Some(input::email_config(
            e,
            stored.and_then(|s| s.email.as_ref()),
        )?),
        None => None,
    };
    Ok((
        ChannelRecord {
            id: stored.map(|s| s.id.clone()).unwrap_or_else(new_id),
            org_id: String::new(),
            project_id: String::new(),
            name: spec.name,
            kind: spec.kind,
            webhook,
            email,
            max_per_minute: spec
                .max_per_minute
                .unwrap_or(default_max)
                .clamp(1, input::MAX_PER_MINUTE),
            created_at: stored.map(|s| s.created_at).unwrap_or(now),
            updated_at: now,
        },
        generated,
    ))
}

/// What an audit record says of a channel change (never a secret).
fn channel_details(c: &ChannelRecord, secret_given: bool, password_given: bool) -> String {
    let mut d = format!(
        "kind={} maxPerMinute={}",
        input::channel_kind_name(c.kind),
        c.max_per_minute
    );
    if secret_given {
        d.push_str(" secret=set");
    }
    if password_given {
        d.push_str(" password=set");
    }
    d
}

/// Create a notification channel. A webhook without a `secret` gets one
/// made by the server, returned once in this answer.
#[utoipa::path(post, path = "/api/orgs/{orgId}/projects/{projectId}/notification-channels", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path)), request_body = ChannelInput,
    responses((status = 201, body = ChannelView),
        (status = 400, description = "a field is missing, unknown or out of range", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, description = "viewers are read-only", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, description = "the project has 100 channels", body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_channel(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ProjectPath,
    body: web::Json<Value>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Write).await?;
    let spec = input::channel_spec(body.into_inner())?;
    let given = (
        spec.webhook.as_ref().is_some_and(|w| w.secret.is_some()),
        spec.email.as_ref().is_some_and(|e| e.password.is_some()),
    );
    if state.deps.store.channels(&project).await?.len() >= CHANNELS_PER_PROJECT {
        return Err(ApiError::conflict(
            "LIMIT_REACHED",
            format!("a project holds at most {CHANNELS_PER_PROJECT} notification channels"),
        ));
    }
    let (mut c, generated) =
        channel_record(spec, None, state.config.alerts.max_notifications_per_minute)?;
    c.org_id = org;
    c.project_id = project;
    state.deps.store.put_channel(&c).await?;
    tracing::info!(channel_id = %c.id, project_id = %c.project_id, user_id = %user.user.id, kind = input::channel_kind_name(c.kind), "notification channel created");
    audit::ok(
        &state,
        &req,
        &user.user,
        "channel.create",
        channel_object(&c),
        &channel_details(&c, given.0 || generated.is_some(), given.1),
    )
    .await;
    Ok(HttpResponse::Created().json(ChannelView::from_record(&c, generated)))
}

/// Replace a notification channel. A secret or password left out keeps
/// the stored one.
#[utoipa::path(put, path = "/api/orgs/{orgId}/projects/{projectId}/notification-channels/{channelId}", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("channelId" = String, Path)), request_body = ChannelInput,
    responses((status = 200, body = ChannelView),
        (status = 400, description = "a field is missing, unknown or out of range", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, description = "viewers are read-only", body = crate::error::ErrorBody),
        (status = 404, description = "no such channel in this project", body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_channel(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ItemPath,
    body: web::Json<Value>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Write).await?;
    let old = channel_in(&state, &project, &id).await?;
    let spec = input::channel_spec(body.into_inner())?;
    let given = (
        spec.webhook.as_ref().is_some_and(|w| w.secret.is_some()),
        spec.email.as_ref().is_some_and(|e| e.password.is_some()),
    );
    let (mut c, generated) = channel_record(
        spec,
        Some(&old),
        state.config.alerts.max_notifications_per_minute,
    )?;
    c.org_id = old.org_id.clone();
    c.project_id = old.project_id.clone();
    state.deps.store.put_channel(&c).await?;
    tracing::info!(channel_id = %c.id, project_id = %c.project_id, user_id = %user.user.id, "notification channel replaced");
    audit::ok(
        &state,
        &req,
        &user.user,
        "channel.edit",
        channel_object(&c),
        &channel_details(&c, given.0 || generated.is_some(), given.1),
    )
    .await;
    Ok(HttpResponse::Ok().json(ChannelView::from_record(&c, generated)))
}

/// Delete a notification channel: its pending deliveries fail, and the
/// project's rules stop naming it.
#[utoipa::path(delete, path = "/api/orgs/{orgId}/projects/{projectId}/notification-channels/{channelId}", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("channelId" = String, Path)),
    responses((status = 204, description = "deleted"),
        (status = 401, body = crate::error::ErrorBody), (status = 403, description = "viewers are read-only", body = crate::error::ErrorBody),
        (status = 404, description = "no such channel in this project", body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_channel(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ItemPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Write).await?;
    let c = channel_in(&state, &project, &id).await?;
    match state.deps.store.delete_channel(&id).await {
        Ok(()) | Err(ecp_actors::store::StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    // Rules naming it stop doing so (a rule written meanwhile may still
    // name it: its notices to a missing channel fail at once).
    let now = now_ms();
    for mut r in state.deps.store.alert_rules(&project).await? {
        if r.channel_ids.iter().any(|c| c == &id) {
            r.channel_ids.retain(|c| c != &id);
            r.updated_at = now;
            state.deps.store.put_alert_rule(&r).await?;
        }
    }
    tracing::info!(channel_id = %id, project_id = %project, user_id = %user.user.id, "notification channel deleted");
    audit::ok(
        &state,
        &req,
        &user.user,
        "channel.delete",
        channel_object(&c),
        "",
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// Send a `test` notification through the channel (queued; see its deliveries).
#[utoipa::path(post, path = "/api/orgs/{orgId}/projects/{projectId}/notification-channels/{channelId}/test", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("channelId" = String, Path)),
    responses((status = 202, body = TestQueued),
        (status = 401, body = crate::error::ErrorBody), (status = 403, description = "viewers are read-only", body = crate::error::ErrorBody),
        (status = 404, description = "no such channel in this project", body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn test_channel(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ItemPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Write).await?;
    let c = channel_in(&state, &project, &id).await?;
    let now = now_ms();
    let d = crate::notify::queued(&c, crate::notify::test_notice(&c, now), now);
    state
        .deps
        .store
        .queue_deliveries(std::slice::from_ref(&d))
        .await?;
    state.deps.wake_deliveries.notify_one();
    tracing::info!(channel_id = %id, delivery_id = %d.id, user_id = %user.user.id, "test notification queued");
    audit::ok(
        &state,
        &req,
        &user.user,
        "channel.test",
        channel_object(&c),
        &format!("delivery={}", d.id),
    )
    .await;
    Ok(HttpResponse::Accepted().json(TestQueued { delivery_id: d.id }))
}

/// A channel's delivery log, newest first.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/notification-channels/{channelId}/deliveries", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path), ("channelId" = String, Path), DeliveriesQuery),
    responses((status = 200, body = DeliveryList),
        (status = 400, description = "limit out of range, or an unknown parameter", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, description = "no such channel in this project", body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn deliveries(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ItemPath,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let (org, project, id) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Read).await?;
    let limit = limit_of(query.limit, 50, 200)?;
    channel_in(&state, &project, &id).await?;
    let list = state.deps.store.deliveries(&id, limit).await?;
    Ok(HttpResponse::Ok().json(DeliveryList {
        data: list
            .iter()
            .filter(|d| d.project_id == project)
            .map(DeliveryView::from_record)
            .collect(),
    }))
}

// ---------------------------------------------------------------- alerts

/// The project's alerts, newest first.
#[utoipa::path(get, path = "/api/orgs/{orgId}/projects/{projectId}/alerts", tag = "alerting",
    params(("orgId" = String, Path), ("projectId" = String, Path), AlertsQuery),
    responses((status = 200, body = AlertList),
        (status = 400, description = "state or limit out of range, or an unknown parameter", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn alerts(
    state: web::Data<AppState>,
    user: AuthUser,
    path: ProjectPath,
    query: web::Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (org, project) = path.into_inner();
    project_in_org(&state, &user, &org, &project, Need::Read).await?;
    let q = query.into_inner();
    let wanted = match q.state.as_deref() {
        None | Some("") => None,
        Some("firing") => Some(AlertState::Firing),
        Some("resolved") => Some(AlertState::Resolved),
        Some(_) => {
            return Err(ApiError::bad_request(
                "INVALID_INPUT",
                "state must be firing or resolved",
            ))
        }
    };
    let limit = limit_of(q.limit, 100, 1000)?;
    let list = state.deps.store.alerts(&project, wanted, limit).await?;
    Ok(HttpResponse::Ok().json(AlertList {
        data: list
            .iter()
            .filter(|a| a.project_id == project)
            .map(AlertView::from_record)
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi;

    /// The documented bodies list exactly the fields the parsers take.
    #[test]
    fn documented_inputs_match_the_parsers() {
        let doc = serde_json::to_value(crate::api::ApiDoc::openapi()).expect("json");
        let props = |name: &str| -> Vec<String> {
            let mut v: Vec<String> = doc["components"]["schemas"][name]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{name} documented"))
                .keys()
                .cloned()
                .collect();
            v.sort();
            v
        };
        let sorted = |f: &[&str]| {
            let mut v: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(props("RuleInput"), sorted(input::RULE_FIELDS));
        assert_eq!(props("ChannelInput"), sorted(input::CHANNEL_FIELDS));
        assert_eq!(props("WebhookInput"), sorted(input::WEBHOOK_FIELDS));
        assert_eq!(props("EmailInput"), sorted(input::EMAIL_FIELDS));
    }

    #[test]
    fn views_never_carry_secrets() {
        let c = ChannelRecord {
            id: "c".into(),
            org_id: "o".into(),
            project_id: "p".into(),
            name: "n".into(),
            kind: ChannelKind::Webhook,
            webhook: Some(WebhookConfig {
                url: "https://x.example/h".into(),
                headers: vec![],
                body_template: None,
                secret: "hush-hush-secret".into(),
            }),
            email: Some(EmailConfig {
                host: "smtp.example".into(),
                port: 587,
                security: SmtpSecurity::Starttls,
                username: Some("u".into()),
                password: Some("pass-word-secret".into()),
                from: "a@example.com".into(),
                to: vec!["b@example.com".into()],
            }),
            max_per_minute: 10,
            created_at: 0,
            updated_at: 0,
        };
        let text = serde_json::to_string(&ChannelView::from_record(&c, None)).expect("json");
        assert!(!text.contains("hush-hush-secret") && !text.contains("pass-word-secret"));
        assert!(text.contains("\"hasSecret\":true") && text.contains("\"hasPassword\":true"));
    }
}
