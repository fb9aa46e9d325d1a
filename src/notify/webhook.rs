//! Webhook notifications: the body (the default JSON or the channel's
//! template), the HMAC-SHA256 signature, one POST without redirects, and
//! what its answer means.

use super::{Attempt, Outcome};
use crate::api::views::rfc3339;
use ecp_actors::alerting::{Delivery, Notice, NoticeKind, WebhookConfig};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

/// A rendered body larger than this is not sent (a template repeating a
/// long message could otherwise grow without bound).
pub const MAX_BODY: usize = 256 * 1024;
/// At most this much of a receiver's answer is read (then dropped).
const MAX_ANSWER: usize = 4 * 1024;

pub fn event_name(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Firing => "firing",
        NoticeKind::Resolved => "resolved",
        NoticeKind::Summary => "summary",
        NoticeKind::Test => "test",
    }
}

fn opt_id(s: &Option<String>) -> serde_json::Value {
    match s {
        Some(s) if !s.is_empty() => json!(s),
        _ => serde_json::Value::Null,
    }
}

/// The default body.
pub fn default_body(n: &Notice, delivery_id: &str) -> Vec<u8> {
    let cluster_id = (!n.cluster_id.is_empty()).then(|| n.cluster_id.clone());
    json!({
        "status": n.status,
        "severity": n.severity.as_str(),
        "cluster": n.cluster,
        "clusterId": opt_id(&cluster_id),
        "rule": n.rule,
        "message": n.message,
        "startedAt": rfc3339(n.started_at),
        "resolvedAt": n.resolved_at.map(rfc3339),
        "alertId": opt_id(&n.alert_id),
        "deliveryId": delivery_id,
    })
    .to_string()
    .into_bytes()
}

/// A value as the contents of a JSON string (no quotes around it).
fn json_contents(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// The channel's template with each `{{placeholder}}` replaced, in one
/// pass (a value holding `{{rule}}` stays as it is). Unknown placeholders
/// are left alone. `Err` when the result is larger than [`MAX_BODY`].
pub fn render(template: &str, n: &Notice) -> Result<Vec<u8>, String> {
    let value = |name: &str| -> Option<String> {
        Some(match name {
            "cluster" => json_contents(&n.cluster),
            "rule" => json_contents(&n.rule),
            "severity" => n.severity.as_str().to_string(),
            "status" => json_contents(&n.status),
            "message" => json_contents(&n.message),
            "startedAt" => rfc3339(n.started_at),
            _ => return None,
        })
    };
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) if value(&after[..close]).is_some() => {
                out.push_str(&value(&after[..close]).unwrap_or_default());
                rest = &after[close + 2..];
            }
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
        if out.len() > MAX_BODY {
            return Err(format!("the rendered body exceeds {MAX_BODY} bytes"));
        }
    }
    out.push_str(rest);
    if out.len() > MAX_BODY {
        return Err(format!("the rendered body exceeds {MAX_BODY} bytes"));
    }
    Ok(out.into_bytes())
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What an HTTP answer means: 2xx delivered; 408, 429 and 5xx retried;
/// anything else (other 4xx, a redirect, which is not followed) failed.
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry,
        _ => Outcome::Fail,
    }
}

/// The client every webhook goes through: no redirects, one deadline for
/// the whole exchange.
pub fn client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
        .user_agent(concat!("ecp/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "webhook client with settings failed; using the default");
            reqwest::Client::new()
        })
}

/// An error's text without the URL (it may carry a token), with its causes.
fn describe(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_builder() {
        "the request could not be built".to_string()
    } else {
        "request failed".to_string()
    };
    let e = e.without_url();
    let mut text = what;
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    super::bounded(&text)
}

/// One attempt: POST the body, signed, and read at most a little of the answer.
pub async fn send(http: &reqwest::Client, cfg: &WebhookConfig, d: &Delivery) -> Attempt {
    let body = match &cfg.body_template {
        Some(t) => match render(t, &d.notice) {
            Ok(b) => b,
            Err(e) => return Attempt::failed(None, e),
        },
        None => default_body(&d.notice, &d.id),
    };
    let mut req = http
        .post(&cfg.url)
        .header("content-type", "application/json")
        .header("x-ecp-event", event_name(d.notice.kind))
        .header("x-ecp-delivery", &d.id)
        .header("x-ecp-signature-256", signature(&cfg.secret, &body));
    for (k, v) in &cfg.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let mut res = match req.body(body).send().await {
        Ok(r) => r,
        // The request cannot be made as configured (a header value the
        // HTTP library refuses): trying again changes nothing.
        Err(e) if e.is_builder() => return Attempt::failed(None, describe(e)),
        Err(e) => return Attempt::retry(None, describe(e)),
    };
    let status = res.status();
    // Read a bounded part of the answer (never stored: a receiver's text is
    // not shown to the project), so a short answer completes the exchange.
    let mut read = 0;
    while read < MAX_ANSWER {
        match res.chunk().await {
            Ok(Some(c)) => read += c.len(),
            _ => break,
        }
    }
    let code = status.as_u16();
    match classify(code) {
        Outcome::Delivered => Attempt::delivered(Some(code)),
        outcome => {
            let mut error = format!("HTTP {status}");
            if status.is_redirection() {
                error.push_str(" (redirects are not followed)");
            }
            Attempt {
                outcome,
                status: Some(code),
                error: Some(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecp_actors::alerting::Severity;

    fn notice() -> Notice {
        Notice {
            kind: NoticeKind::Firing,
            alert_id: Some("a1".into()),
            cluster_id: "c1".into(),
            cluster: "prod \"eu\"".into(),
            rule: "{{message}}".into(),
            severity: Severity::Critical,
            status: "firing".into(),
            message: "line one\nline two {{rule}}".into(),
            started_at: 1_700_000_000_000,
            resolved_at: None,
        }
    }

    #[test]
    fn templates_stay_json_and_are_expanded_once() {
        let t = r#"{"text": "{{status}} {{severity}}: {{rule}} on {{cluster}} — {{message}} since {{startedAt}} {{unknown}} {{"}"#;
        let out = String::from_utf8(render(t, &notice()).expect("renders")).expect("utf8");
        let v: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(
            v["text"],
            "firing critical: {{message}} on prod \"eu\" — line one\nline two {{rule}} since 2023-11-14T22:13:20.000Z {{unknown}} {{"
        );
    }

    #[test]
    fn a_template_cannot_grow_without_bound() {
        let mut n = notice();
        n.message = "x".repeat(10_000);
        let t = "{{message}}".repeat(100);
        assert!(render(&t, &n).is_err());
        assert!(render("{{message}}", &n).is_ok());
    }

    #[test]
    fn the_default_body_has_every_field() {
        let v: serde_json::Value =
            serde_json::from_slice(&default_body(&notice(), "d1")).expect("json");
        for k in [
            "status",
            "severity",
            "cluster",
            "clusterId",
            "rule",
            "message",
            "startedAt",
            "resolvedAt",
            "alertId",
            "deliveryId",
        ] {
            assert!(v.get(k).is_some(), "{k} missing from {v}");
        }
        assert_eq!(
            (
                &v["deliveryId"],
                &v["alertId"],
                &v["resolvedAt"],
                &v["clusterId"]
            ),
            (
                &json!("d1"),
                &json!("a1"),
                &serde_json::Value::Null,
                &json!("c1")
            )
        );
        let mut test = notice();
        test.kind = NoticeKind::Test;
        test.alert_id = None;
        test.cluster_id = String::new();
        let v: serde_json::Value =
            serde_json::from_slice(&default_body(&test, "d2")).expect("json");
        assert!(v["alertId"].is_null() && v["clusterId"].is_null());
    }

    #[test]
    fn signatures_are_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn answers_decide_delivered_retried_or_failed() {
        assert_eq!(classify(200), Outcome::Delivered);
        assert_eq!(classify(204), Outcome::Delivered);
        for s in [408, 429, 500, 502, 503] {
            assert_eq!(classify(s), Outcome::Retry, "{s}");
        }
        for s in [301, 302, 400, 401, 403, 404, 410, 422] {
            assert_eq!(classify(s), Outcome::Fail, "{s}");
        }
    }
}
