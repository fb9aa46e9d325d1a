//! Alert rule and notification channel bodies, read field by field so every
//! refusal names its field (`forSecs`, `webhook.url`, …): plain functions
//! over the JSON value, unit-tested below. What they cannot know (which
//! clusters and channels the project has, the stored secrets) the handlers
//! check with the store.

use ecp_actors::alerting::*;
use ecp_actors::model::ReasonCode;
use serde_json::{Map, Value};

/// A refused body: the code and a message that starts with the field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub code: &'static str,
    pub message: String,
}

type R<T> = Result<T, FieldError>;

fn invalid(field: &str, message: impl std::fmt::Display) -> FieldError {
    FieldError {
        code: "INVALID_INPUT",
        message: format!("{field} {message}"),
    }
}

pub const NAME_MAX: usize = 64;
pub const RULE_CLUSTERS_MAX: usize = 1000;
pub const RULE_CHANNELS_MAX: usize = 20;
pub const SECS_MAX: u64 = 86_400;
pub const PATTERN_MAX: usize = 255;
pub const MAX_PER_MINUTE: u32 = 1000;
pub const URL_MAX: usize = 2048;
pub const HEADERS_MAX: usize = 20;
pub const HEADER_NAME_MAX: usize = 128;
pub const HEADER_VALUE_MAX: usize = 4096;
pub const TEMPLATE_MAX: usize = 16 * 1024;
pub const SECRET_MIN: usize = 8;
pub const SECRET_MAX: usize = 256;
pub const RECIPIENTS_MAX: usize = 10;
pub const ADDRESS_MAX: usize = 320;
pub const HOST_MAX: usize = 253;
pub const CREDENTIAL_MAX: usize = 256;
/// Ids named in a body (clusters, channels) are at most this long.
pub const ID_MAX: usize = 64;

pub const RULE_FIELDS: &[&str] = &[
    "name",
    "kind",
    "clusterIds",
    "threshold",
    "unit",
    "reasonCode",
    "alarmPattern",
    "forSecs",
    "recoverSecs",
    "severity",
    "channelIds",
    "enabled",
];
pub const CHANNEL_FIELDS: &[&str] = &["name", "kind", "maxPerMinute", "webhook", "email"];
pub const WEBHOOK_FIELDS: &[&str] = &["url", "headers", "bodyTemplate", "secret"];
pub const EMAIL_FIELDS: &[&str] = &[
    "host", "port", "security", "username", "password", "from", "to",
];

/// Headers a channel may not set: the transport's own, and ours.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
];

/// The object's fields, refusing any not in `known`. `at` is the field the
/// object sits in ("" for the body).
fn object(v: Value, known: &[&str], at: &str) -> R<Map<String, Value>> {
    let Value::Object(map) = v else {
        return Err(invalid(
            if at.is_empty() { "the body" } else { at },
            "must be a JSON object",
        ));
    };
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        let shown: String = k.chars().take(64).collect();
        return Err(FieldError {
            code: "UNKNOWN_FIELD",
            message: format!(
                "unknown field {:?}{}; known fields: {}",
                shown,
                if at.is_empty() {
                    String::new()
                } else {
                    format!(" in {at}")
                },
                known.join(", ")
            ),
        });
    }
    Ok(map)
}

fn path(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// A field's value; JSON `null` counts as absent.
fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key).filter(|v| !v.is_null())
}

fn string(map: &mut Map<String, Value>, at: &str, key: &str) -> R<Option<String>> {
    match take(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(&path(at, key), "must be a string")),
    }
}

fn required_string(map: &mut Map<String, Value>, at: &str, key: &str) -> R<String> {
    string(map, at, key)?.ok_or_else(|| invalid(&path(at, key), "is required"))
}

fn integer(map: &mut Map<String, Value>, key: &str, min: u64, max: u64) -> R<Option<u64>> {
    match take(map, key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(invalid(
                key,
                format!("must be a whole number from {min} to {max}"),
            )),
        },
    }
}

fn ids(map: &mut Map<String, Value>, key: &str, max: usize) -> R<Vec<String>> {
    let Some(v) = take(map, key) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = v else {
        return Err(invalid(key, "must be an array of ids"));
    };
    if items.len() > max {
        return Err(invalid(key, format!("may name at most {max} ids")));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if !s.is_empty() && s.len() <= ID_MAX => {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            _ => return Err(invalid(key, "must hold ids (non-empty strings)")),
        }
    }
    Ok(out)
}

/// Names: trimmed, 1–64 characters, no control characters.
pub fn name(raw: &str, field: &str) -> R<String> {
    let n = raw.trim();
    let len = n.chars().count();
    if len == 0 {
        return Err(invalid(field, "is required"));
    }
    if len > NAME_MAX {
        return Err(invalid(
            field,
            format!("is {len} characters long; at most {NAME_MAX} are allowed"),
        ));
    }
    if n.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(n.to_string())
}

fn enum_of<T: Copy>(raw: &str, field: &str, table: &[(&str, T)]) -> R<T> {
    table
        .iter()
        .find(|(n, _)| *n == raw)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            invalid(field, format!("must be one of {}", names.join(", ")))
        })
}

pub const KINDS: [(&str, AlertKind); 8] = [
    ("cluster_abnormal", AlertKind::ClusterAbnormal),
    ("agent_offline", AlertKind::AgentOffline),
    ("nodes_stopped", AlertKind::NodesStopped),
    ("connections_over", AlertKind::ConnectionsOver),
    ("license_expiring", AlertKind::LicenseExpiring),
    ("emqx_alarm", AlertKind::EmqxAlarm),
    ("msg_dropped_rate_over", AlertKind::MsgDroppedRateOver),
    ("no_metrics", AlertKind::NoMetrics),
];
const SEVERITIES: [(&str, Severity); 3] = [
    ("info", Severity::Info),
    ("warning", Severity::Warning),
    ("critical", Severity::Critical),
];
const UNITS: [(&str, ThresholdUnit); 2] = [
    ("percent", ThresholdUnit::Percent),
    ("absolute", ThresholdUnit::Absolute),
];
pub const REASONS: [(&str, ReasonCode); 6] = [
    ("agent_offline", ReasonCode::AgentOffline),
    ("emqx_unreachable", ReasonCode::EmqxUnreachable),
    ("emqx_auth_failed", ReasonCode::EmqxAuthFailed),
    ("nodes_stopped", ReasonCode::NodesStopped),
    ("unsupported_version", ReasonCode::UnsupportedVersion),
    ("agent_error", ReasonCode::AgentError),
];
const CHANNEL_KINDS: [(&str, ChannelKind); 2] = [
    ("webhook", ChannelKind::Webhook),
    ("email", ChannelKind::Email),
];
const SECURITIES: [(&str, SmtpSecurity); 3] = [
    ("starttls", SmtpSecurity::Starttls),
    ("tls", SmtpSecurity::Tls),
    ("none", SmtpSecurity::None),
];

pub fn reason_name(r: ReasonCode) -> &'static str {
    REASONS
        .iter()
        .find(|(_, c)| *c == r)
        .map(|(n, _)| *n)
        .unwrap_or("agent_error")
}

pub fn unit_name(u: ThresholdUnit) -> &'static str {
    match u {
        ThresholdUnit::Percent => "percent",
        ThresholdUnit::Absolute => "absolute",
    }
}

pub fn security_name(s: SmtpSecurity) -> &'static str {
    match s {
        SmtpSecurity::Starttls => "starttls",
        SmtpSecurity::Tls => "tls",
        SmtpSecurity::None => "none",
    }
}

pub fn channel_kind_name(k: ChannelKind) -> &'static str {
    match k {
        ChannelKind::Webhook => "webhook",
        ChannelKind::Email => "email",
    }
}

/// An alert rule as asked for (a full replace on PUT).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub name: String,
    pub kind: AlertKind,
    pub cluster_ids: Vec<String>,
    pub threshold: Option<f64>,
    pub unit: ThresholdUnit,
    pub reason_code: Option<ReasonCode>,
    pub alarm_pattern: Option<String>,
    pub for_secs: u64,
    pub recover_secs: u64,
    pub severity: Severity,
    pub channel_ids: Vec<String>,
    pub enabled: bool,
}

pub fn rule_spec(body: Value) -> R<RuleSpec> {
    let mut m = object(body, RULE_FIELDS, "")?;
    let name = name(&required_string(&mut m, "", "name")?, "name")?;
    let kind = enum_of(&required_string(&mut m, "", "kind")?, "kind", &KINDS)?;
    let cluster_ids = ids(&mut m, "clusterIds", RULE_CLUSTERS_MAX)?;
    let channel_ids = ids(&mut m, "channelIds", RULE_CHANNELS_MAX)?;
    let threshold = match take(&mut m, "threshold") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(t) if t.is_finite() && t >= 0.0 => Some(t),
            _ => return Err(invalid("threshold", "must be a number ≥ 0")),
        },
    };
    match (kind.needs_threshold(), threshold) {
        (true, None) => {
            return Err(invalid(
                "threshold",
                format!("is required for kind {}", kind.as_str()),
            ))
        }
        (false, Some(_)) => {
            return Err(invalid(
                "threshold",
                format!("does not apply to kind {}", kind.as_str()),
            ))
        }
        _ => {}
    }
    let unit = match string(&mut m, "", "unit")? {
        None => ThresholdUnit::Percent,
        Some(_) if kind != AlertKind::ConnectionsOver => {
            return Err(invalid("unit", "applies to kind connections_over only"))
        }
        Some(u) => enum_of(&u, "unit", &UNITS)?,
    };
    let reason_code = match string(&mut m, "", "reasonCode")? {
        None => None,
        Some(_) if kind != AlertKind::ClusterAbnormal => {
            return Err(invalid(
                "reasonCode",
                "applies to kind cluster_abnormal only",
            ))
        }
        Some(r) => Some(enum_of(&r, "reasonCode", &REASONS)?),
    };
    let alarm_pattern = match string(&mut m, "", "alarmPattern")? {
        None if kind == AlertKind::EmqxAlarm => Some("*".to_string()),
        None => None,
        Some(_) if kind != AlertKind::EmqxAlarm => {
            return Err(invalid("alarmPattern", "applies to kind emqx_alarm only"))
        }
        Some(p) => {
            let n = p.chars().count();
            if n == 0 || n > PATTERN_MAX {
                return Err(invalid(
                    "alarmPattern",
                    format!("must be 1 to {PATTERN_MAX} characters"),
                ));
            }
            if p.chars().any(char::is_control) {
                return Err(invalid(
                    "alarmPattern",
                    "must not contain control characters",
                ));
            }
            Some(p)
        }
    };
    let for_secs = integer(&mut m, "forSecs", 0, SECS_MAX)?.unwrap_or(0);
    let recover_secs = integer(&mut m, "recoverSecs", 0, SECS_MAX)?.unwrap_or(0);
    let severity = match string(&mut m, "", "severity")? {
        None => Severity::Warning,
        Some(s) => enum_of(&s, "severity", &SEVERITIES)?,
    };
    let enabled = match take(&mut m, "enabled") {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(invalid("enabled", "must be true or false")),
    };
    Ok(RuleSpec {
        name,
        kind,
        cluster_ids,
        threshold,
        unit,
        reason_code,
        alarm_pattern,
        for_secs,
        recover_secs,
        severity,
        channel_ids,
        enabled,
    })
}

/// A notification channel as asked for. Secrets left out (`None`) keep
/// the stored ones on PUT.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSpec {
    pub name: String,
    pub kind: ChannelKind,
    pub max_per_minute: Option<u32>,
    pub webhook: Option<WebhookSpec>,
    pub email: Option<EmailSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body_template: Option<String>,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmailSpec {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
}

pub fn channel_spec(body: Value) -> R<ChannelSpec> {
    let mut m = object(body, CHANNEL_FIELDS, "")?;
    let name = name(&required_string(&mut m, "", "name")?, "name")?;
    let kind = enum_of(
        &required_string(&mut m, "", "kind")?,
        "kind",
        &CHANNEL_KINDS,
    )?;
    let max_per_minute =
        integer(&mut m, "maxPerMinute", 1, u64::from(MAX_PER_MINUTE))?.map(|n| n as u32);
    let webhook = take(&mut m, "webhook");
    let email = take(&mut m, "email");
    let (webhook, email) = match kind {
        ChannelKind::Webhook => {
            if email.is_some() {
                return Err(invalid("email", "does not apply to a webhook channel"));
            }
            let w = webhook.ok_or_else(|| invalid("webhook", "is required for kind webhook"))?;
            (Some(webhook_spec(w)?), None)
        }
        ChannelKind::Email => {
            if webhook.is_some() {
                return Err(invalid("webhook", "does not apply to an email channel"));
            }
            let e = email.ok_or_else(|| invalid("email", "is required for kind email"))?;
            (None, Some(email_spec(e)?))
        }
    };
    Ok(ChannelSpec {
        name,
        kind,
        max_per_minute,
        webhook,
        email,
    })
}

fn webhook_spec(v: Value) -> R<WebhookSpec> {
    let mut m = object(v, WEBHOOK_FIELDS, "webhook")?;
    let url = required_string(&mut m, "webhook", "url")?;
    webhook_url(&url)?;
    let headers = match take(&mut m, "headers") {
        None => Vec::new(),
        Some(Value::Object(h)) => {
            if h.len() > HEADERS_MAX {
                return Err(invalid(
                    "webhook.headers",
                    format!("may hold at most {HEADERS_MAX} headers"),
                ));
            }
            let mut out: Vec<(String, String)> = Vec::with_capacity(h.len());
            for (k, v) in h {
                let Value::String(v) = v else {
                    return Err(invalid(
                        &format!("webhook.headers.{}", shown(&k)),
                        "must be a string",
                    ));
                };
                header(&k, &v)?;
                if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(&k)) {
                    return Err(invalid(
                        &format!("webhook.headers.{}", shown(&k)),
                        "is given twice",
                    ));
                }
                out.push((k, v));
            }
            out
        }
        Some(_) => {
            return Err(invalid(
                "webhook.headers",
                "must be an object of header names to values",
            ))
        }
    };
    let body_template = string(&mut m, "webhook", "bodyTemplate")?;
    if let Some(t) = &body_template {
        if t.len() > TEMPLATE_MAX {
            return Err(invalid(
                "webhook.bodyTemplate",
                format!("is {} bytes; at most {TEMPLATE_MAX} are allowed", t.len()),
            ));
        }
    }
    let secret = string(&mut m, "webhook", "secret")?;
    if let Some(s) = &secret {
        let n = s.chars().count();
        if !(SECRET_MIN..=SECRET_MAX).contains(&n) || s.chars().any(char::is_control) {
            return Err(invalid(
                "webhook.secret",
                format!(
                    "must be {SECRET_MIN} to {SECRET_MAX} characters without control characters"
                ),
            ));
        }
    }
    Ok(WebhookSpec {
        url,
        headers,
        body_template,
        secret,
    })
}

fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

/// An http or https URL with a host, at most 2048 characters.
pub fn webhook_url(url: &str) -> R<()> {
    const F: &str = "webhook.url";
    if url.len() > URL_MAX {
        return Err(invalid(F, format!("is longer than {URL_MAX} characters")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(F, "must not contain spaces or control characters"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(F, format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(F, "must be an http:// or https:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(F, "must name a host"));
    }
    Ok(())
}

/// A header a channel adds: an HTTP token name that is not reserved, and
/// a value of visible characters, spaces and tabs.
pub fn header(name: &str, value: &str) -> R<()> {
    let field = format!("webhook.headers.{}", shown(name));
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || name.len() > HEADER_NAME_MAX || !name.chars().all(token) {
        return Err(invalid(
            &field,
            format!("is not a valid header name (1 to {HEADER_NAME_MAX} token characters)"),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str())
        || lower.starts_with("x-ecp-")
        || lower.starts_with("proxy-")
    {
        return Err(invalid(&field, "is set by ECP and may not be given"));
    }
    if value.len() > HEADER_VALUE_MAX || value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(invalid(
            &field,
            format!("must be at most {HEADER_VALUE_MAX} bytes without control characters"),
        ));
    }
    Ok(())
}

fn email_spec(v: Value) -> R<EmailSpec> {
    let mut m = object(v, EMAIL_FIELDS, "email")?;
    let host = required_string(&mut m, "email", "host")?;
    smtp_host(&host)?;
    let security = match string(&mut m, "email", "security")? {
        None => SmtpSecurity::Starttls,
        Some(s) => enum_of(&s, "email.security", &SECURITIES)?,
    };
    let port = match take(&mut m, "port") {
        None => default_port(security),
        Some(v) => match v.as_u64() {
            Some(p) if (1..=65_535).contains(&p) => p as u16,
            _ => {
                return Err(invalid(
                    "email.port",
                    "must be a whole number from 1 to 65535",
                ))
            }
        },
    };
    let username = string(&mut m, "email", "username")?;
    let password = string(&mut m, "email", "password")?;
    for (f, v) in [("email.username", &username), ("email.password", &password)] {
        if let Some(v) = v {
            if v.is_empty() || v.len() > CREDENTIAL_MAX || v.chars().any(char::is_control) {
                return Err(invalid(
                    f,
                    format!("must be 1 to {CREDENTIAL_MAX} bytes without control characters"),
                ));
            }
        }
    }
    if username.is_none() && password.is_some() {
        return Err(invalid("email.password", "needs email.username"));
    }
    if security == SmtpSecurity::None && username.is_some() {
        return Err(invalid(
            "email.username",
            "needs security starttls or tls: credentials are never sent unencrypted",
        ));
    }
    let from = required_string(&mut m, "email", "from")?;
    address(&from, "email.from")?;
    let to = match take(&mut m, "to") {
        Some(Value::Array(items)) => {
            if items.is_empty() || items.len() > RECIPIENTS_MAX {
                return Err(invalid(
                    "email.to",
                    format!("must list 1 to {RECIPIENTS_MAX} addresses"),
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(a) = item else {
                    return Err(invalid("email.to", "must hold addresses (strings)"));
                };
                address(&a, "email.to")?;
                if !out.contains(&a) {
                    out.push(a);
                }
            }
            out
        }
        None => return Err(invalid("email.to", "is required")),
        Some(_) => return Err(invalid("email.to", "must be an array of addresses")),
    };
    Ok(EmailSpec {
        host,
        port,
        security,
        username,
        password,
        from,
        to,
    })
}

pub fn default_port(s: SmtpSecurity) -> u16 {
    match s {
        SmtpSecurity::Starttls => 587,
        SmtpSecurity::Tls => 465,
        SmtpSecurity::None => 25,
    }
}

/// A host name or IP address (no scheme, port or path).
pub fn smtp_host(h: &str) -> R<()> {
    let ok = !h.is_empty()
        && h.len() <= HOST_MAX
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "email.host",
            format!("must be a host name or IP address (at most {HOST_MAX} characters)"),
        ))
    }
}

/// An email address, or `Name <address>`.
pub fn address(a: &str, field: &str) -> R<()> {
    if a.len() > ADDRESS_MAX || a.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!(
                "holds an address longer than {ADDRESS_MAX} characters or with control characters"
            ),
        ));
    }
    a.parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|_| {
            invalid(
                field,
                format!("holds {:?}, which is not an email address", shown(a)),
            )
        })
}

/// The stored webhook settings from what was asked and what is stored: a
/// secret left out keeps the stored one, or (none stored) a new one is
/// made and returned, to be shown once.
pub fn webhook_config(
    spec: WebhookSpec,
    stored: Option<&WebhookConfig>,
    new_secret: impl FnOnce() -> String,
) -> (WebhookConfig, Option<String>) {
    let (secret, generated) = match (spec.secret, stored) {
        (Some(s), _) => (s, None),
        (None, Some(w)) if !w.secret.is_empty() => (w.secret.clone(), None),
        (None, _) => {
            let s = new_secret();
            (s.clone(), Some(s))
        }
    };
    (
        WebhookConfig {
            url: spec.url,
            headers: spec.headers,
            body_template: spec.body_template,
            secret,
        },
        generated,
    )
}

/// The stored email settings: a password left out keeps the stored one
/// only for the same user on the same server (host, port, security), so
/// whoever may edit a channel cannot send its password to a server of their
/// choosing; a user name without any password is refused.
pub fn email_config(spec: EmailSpec, stored: Option<&EmailConfig>) -> R<EmailConfig> {
    let same_server =
        |s: &EmailConfig| s.host == spec.host && s.port == spec.port && s.security == spec.security;
    let password = match (&spec.username, spec.password, stored) {
        (None, _, _) => None,
        (Some(_), Some(p), _) => Some(p),
        (Some(u), None, Some(s)) if s.username.as_deref() == Some(u.as_str()) && same_server(s) => {
            s.password.clone()
        }
        (Some(_), None, _) => None,
    };
    if spec.username.is_some() && password.is_none() {
        let changed = stored.is_some_and(|s| s.username == spec.username && !same_server(s));
        return Err(invalid(
            "email.password",
            if changed {
                "is required again when host, port or security change (the stored one is only sent to the server it was given for)"
            } else {
                "is required with email.username"
            },
        ));
    }
    Ok(EmailConfig {
        host: spec.host,
        port: spec.port,
        security: spec.security,
        username: spec.username,
        password,
        from: spec.from,
        to: spec.to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(extra: Value) -> R<RuleSpec> {
        let mut body = json!({"name": " offline ", "kind": "agent_offline"});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        rule_spec(body)
    }

    fn refused(r: R<impl std::fmt::Debug>, field: &str) {
        match r {
            Err(e) => assert!(
                e.message.starts_with(field) || e.message.contains(&format!("{field:?}")),
                "{field}: {e:?}"
            ),
            Ok(v) => panic!("{field}: accepted {v:?}"),
        }
    }

    #[test]
    fn rules_take_defaults_and_trim_the_name() {
        let r = rule(json!({})).expect("valid");
        assert_eq!(r.name, "offline");
        assert_eq!(
            (r.for_secs, r.recover_secs, r.severity, r.enabled),
            (0, 0, Severity::Warning, true)
        );
        assert!(r.cluster_ids.is_empty() && r.channel_ids.is_empty());
        let a = rule_spec(json!({"name": "a", "kind": "emqx_alarm"})).expect("valid");
        assert_eq!(a.alarm_pattern.as_deref(), Some("*"));
        let n = rule(json!({"threshold": null, "clusterIds": ["c", "c"]})).expect("null = absent");
        assert_eq!(n.cluster_ids, vec!["c".to_string()], "duplicates dropped");
    }

    #[test]
    fn rules_refuse_what_does_not_fit_naming_the_field() {
        refused(rule(json!({"name": "   "})), "name");
        refused(rule(json!({"name": "x".repeat(65)})), "name");
        refused(rule(json!({"name": "a\u{7}b"})), "name");
        refused(rule(json!({"kind": "cpu_high"})), "kind");
        refused(rule_spec(json!({"name": "n"})), "kind");
        refused(rule(json!({"forSecs": 86_401})), "forSecs");
        refused(rule(json!({"forSecs": -1})), "forSecs");
        refused(rule(json!({"recoverSecs": "5"})), "recoverSecs");
        refused(rule(json!({"severity": "fatal"})), "severity");
        refused(rule(json!({"enabled": "yes"})), "enabled");
        refused(rule(json!({"threshold": 5})), "threshold");
        refused(rule(json!({"unit": "absolute"})), "unit");
        refused(rule(json!({"reasonCode": "agent_offline"})), "reasonCode");
        refused(rule(json!({"alarmPattern": "x*"})), "alarmPattern");
        refused(rule(json!({"clusterIds": "c1"})), "clusterIds");
        refused(rule(json!({"clusterIds": [1]})), "clusterIds");
        let many: Vec<String> = (0..1001).map(|i| format!("c{i}")).collect();
        refused(rule(json!({ "clusterIds": many })), "clusterIds");
        let many: Vec<String> = (0..21).map(|i| format!("h{i}")).collect();
        refused(rule(json!({ "channelIds": many })), "channelIds");
        refused(rule(json!({"bogus": 1})), "bogus");
        refused(rule_spec(json!([1])), "the body");
        let conn = |extra: Value| {
            let mut b = json!({"name": "c", "kind": "connections_over"});
            for (k, v) in extra.as_object().expect("object") {
                b[k] = v.clone();
            }
            rule_spec(b)
        };
        refused(conn(json!({})), "threshold");
        refused(conn(json!({"threshold": -0.5})), "threshold");
        refused(conn(json!({"threshold": 80, "unit": "bytes"})), "unit");
        let ok = conn(json!({"threshold": 5000, "unit": "absolute"})).expect("valid");
        assert_eq!(
            (ok.threshold, ok.unit),
            (Some(5000.0), ThresholdUnit::Absolute)
        );
        let ab = rule_spec(
            json!({"name": "a", "kind": "cluster_abnormal", "reasonCode": "nodes_stopped"}),
        )
        .expect("valid");
        assert_eq!(ab.reason_code, Some(ReasonCode::NodesStopped));
        refused(
            rule_spec(json!({"name": "a", "kind": "cluster_abnormal", "reasonCode": "bad"})),
            "reasonCode",
        );
        refused(
            rule_spec(json!({"name": "a", "kind": "emqx_alarm", "alarmPattern": ""})),
            "alarmPattern",
        );
        refused(
            rule_spec(json!({"name": "a", "kind": "emqx_alarm", "alarmPattern": "x".repeat(256)})),
            "alarmPattern",
        );
    }

    fn hook(extra: Value) -> R<ChannelSpec> {
        let mut w = json!({"url": "https://hooks.example.com/x"});
        for (k, v) in extra.as_object().expect("object") {
            w[k] = v.clone();
        }
        channel_spec(json!({"name": "ops", "kind": "webhook", "webhook": w}))
    }

    fn mail(extra: Value) -> R<ChannelSpec> {
        let mut e = json!({"host": "smtp.example.com", "from": "ecp@example.com", "to": ["ops@example.com"]});
        for (k, v) in extra.as_object().expect("object") {
            e[k] = v.clone();
        }
        channel_spec(json!({"name": "mail", "kind": "email", "email": e}))
    }

    #[test]
    fn webhook_channels_need_only_a_url() {
        let c = hook(json!({})).expect("valid");
        let w = c.webhook.expect("webhook");
        assert_eq!(
            (w.secret, w.body_template, w.headers.len()),
            (None, None, 0)
        );
        assert_eq!(c.max_per_minute, None);
        let c = hook(json!({"headers": {"Authorization": "Bearer x", "X-Team": "a b"}, "secret": "12345678"}))
            .expect("valid");
        assert_eq!(c.webhook.expect("webhook").headers.len(), 2);
        refused(hook(json!({"url": "ftp://x/y"})), "webhook.url");
        refused(hook(json!({"url": "not a url"})), "webhook.url");
        refused(hook(json!({"url": "http://"})), "webhook.url");
        refused(
            hook(json!({"url": format!("https://x.example/{}", "a".repeat(2048))})),
            "webhook.url",
        );
        refused(hook(json!({"url": 5})), "webhook.url");
        refused(hook(json!({"secret": "short"})), "webhook.secret");
        refused(hook(json!({"secret": "x".repeat(257)})), "webhook.secret");
        refused(
            hook(json!({"bodyTemplate": "x".repeat(16 * 1024 + 1)})),
            "webhook.bodyTemplate",
        );
        refused(
            hook(json!({"headers": {"Host": "evil"}})),
            "webhook.headers.Host",
        );
        refused(
            hook(json!({"headers": {"content-length": "1"}})),
            "webhook.headers.content-length",
        );
        refused(
            hook(json!({"headers": {"X-ECP-Signature-256": "x"}})),
            "webhook.headers.X-ECP-Signature-256",
        );
        refused(
            hook(json!({"headers": {"Bad Name": "x"}})),
            "webhook.headers.Bad Name",
        );
        refused(
            hook(json!({"headers": {"Proxy-Authorization": "x"}})),
            "webhook.headers.Proxy-Authorization",
        );
        refused(
            hook(json!({"headers": {"X-A": "a\r\nInjected: 1"}})),
            "webhook.headers.X-A",
        );
        refused(hook(json!({"headers": {"X-A": 1}})), "webhook.headers.X-A");
        refused(hook(json!({"headers": ["X-A"]})), "webhook.headers");
        let many: Map<String, Value> = (0..21).map(|i| (format!("X-{i}"), json!("v"))).collect();
        refused(hook(json!({ "headers": many })), "webhook.headers");
        refused(hook(json!({"extra": 1})), "extra");
        refused(
            channel_spec(json!({"name": "x", "kind": "webhook"})),
            "webhook",
        );
        refused(
            channel_spec(
                json!({"name": "x", "kind": "webhook", "webhook": {"url": "https://a.b/"}, "email": {}}),
            ),
            "email",
        );
        refused(channel_spec(json!({"name": "x", "kind": "sms"})), "kind");
        refused(
            channel_spec(
                json!({"name": "x", "kind": "webhook", "maxPerMinute": 0, "webhook": {"url": "https://a.b/"}}),
            ),
            "maxPerMinute",
        );
        refused(
            channel_spec(
                json!({"name": "x", "kind": "webhook", "maxPerMinute": 1001, "webhook": {"url": "https://a.b/"}}),
            ),
            "maxPerMinute",
        );
    }

    #[test]
    fn email_channels_default_their_port_and_check_addresses() {
        let e = mail(json!({})).expect("valid").email.expect("email");
        assert_eq!((e.security, e.port), (SmtpSecurity::Starttls, 587));
        let e = mail(json!({"security": "tls"}))
            .expect("valid")
            .email
            .expect("email");
        assert_eq!(e.port, 465);
        let e = mail(json!({"security": "none", "port": 2525}))
            .expect("valid")
            .email
            .expect("email");
        assert_eq!((e.security, e.port), (SmtpSecurity::None, 2525));
        let e = mail(json!({"from": "ECP <ecp@example.com>"})).expect("display names are fine");
        assert!(e.email.is_some());
        refused(mail(json!({"host": ""})), "email.host");
        refused(mail(json!({"host": "smtp://x"})), "email.host");
        refused(mail(json!({"port": 0})), "email.port");
        refused(mail(json!({"security": "ssl"})), "email.security");
        refused(mail(json!({"from": "nobody"})), "email.from");
        refused(mail(json!({"to": []})), "email.to");
        refused(mail(json!({"to": "ops@example.com"})), "email.to");
        let eleven: Vec<String> = (0..11).map(|i| format!("o{i}@example.com")).collect();
        refused(mail(json!({ "to": eleven })), "email.to");
        refused(mail(json!({"to": ["ok@example.com", "bad"]})), "email.to");
        refused(mail(json!({"password": "p"})), "email.password");
        refused(
            mail(json!({"security": "none", "username": "u", "password": "p"})),
            "email.username",
        );
        refused(
            channel_spec(json!({"name": "x", "kind": "email", "webhook": {"url": "https://a.b/"}})),
            "webhook",
        );
    }

    #[test]
    fn secrets_left_out_keep_the_stored_ones_or_are_made() {
        let spec = hook(json!({})).expect("valid").webhook.expect("webhook");
        let (w, shown) = webhook_config(spec.clone(), None, || "made-one".into());
        assert_eq!(
            (w.secret.as_str(), shown.as_deref()),
            ("made-one", Some("made-one"))
        );
        let (w2, shown) = webhook_config(spec.clone(), Some(&w), || "other".into());
        assert_eq!((w2.secret.as_str(), shown), ("made-one", None));
        let mut given = spec;
        given.secret = Some("given-secret".into());
        let (w3, shown) = webhook_config(given, Some(&w), || "other".into());
        assert_eq!((w3.secret.as_str(), shown), ("given-secret", None));

        let first = mail(json!({"username": "u", "password": "p1"}))
            .expect("valid")
            .email
            .expect("email");
        let stored = email_config(first, None).expect("valid");
        let again = mail(json!({"username": "u"}))
            .expect("valid")
            .email
            .expect("email");
        assert_eq!(
            email_config(again, Some(&stored))
                .expect("kept")
                .password
                .as_deref(),
            Some("p1")
        );
        let renamed = mail(json!({"username": "v"}))
            .expect("valid")
            .email
            .expect("email");
        assert!(
            email_config(renamed, Some(&stored)).is_err(),
            "another user needs its password"
        );
        // Pointing the channel at another server (or port, or security)
        // without the password: refused, so the stored one never goes there.
        for moved in [
            json!({"username": "u", "host": "smtp.attacker.example"}),
            json!({"username": "u", "port": 2525}),
            json!({"username": "u", "security": "tls"}),
        ] {
            let spec = mail(moved.clone()).expect("valid").email.expect("email");
            let e = email_config(spec, Some(&stored)).expect_err("password required again");
            assert!(
                e.message.contains("host, port or security"),
                "{moved}: {}",
                e.message
            );
        }
        let none = mail(json!({})).expect("valid").email.expect("email");
        assert_eq!(
            email_config(none, Some(&stored)).expect("valid").password,
            None
        );
    }
}
