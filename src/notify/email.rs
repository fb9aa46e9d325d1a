//! Email notifications over SMTP (lettre): STARTTLS required for
//! `starttls`, TLS from the first byte for `tls`, plain only for a channel
//! set to `none`; at most [`crate::api::alerting::input::RECIPIENTS_MAX`]
//! recipients; one session per notification.

use super::{Attempt, Outcome};
use crate::api::views::rfc3339;
use ecp_actors::alerting::{Delivery, EmailConfig, Notice, NoticeKind, SmtpSecurity};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Control characters out, length bounded: for a header line.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

/// "[ECP] <STATUS> <severity> <rule> on <cluster>" (tests and summaries,
/// which have no rule or cluster, say what they are instead).
pub fn subject(n: &Notice) -> String {
    let s = match n.kind {
        NoticeKind::Firing | NoticeKind::Resolved => format!(
            "[ECP] {} {} {} on {}",
            n.status.to_uppercase(),
            n.severity.as_str(),
            n.rule,
            n.cluster
        ),
        NoticeKind::Test => "[ECP] TEST notification".to_string(),
        NoticeKind::Summary => format!("[ECP] SUMMARY {}", n.message),
    };
    clean(&s, 250)
}

/// The plain-text body: the same fields as a webhook's default body.
pub fn body(n: &Notice, delivery_id: &str) -> String {
    let mut b = String::new();
    let mut line = |k: &str, v: &str| {
        if !v.is_empty() {
            b.push_str(&format!("{k}: {v}\n"));
        }
    };
    line("Status", &n.status.to_uppercase());
    line("Severity", n.severity.as_str());
    line("Rule", &n.rule);
    let cluster = if n.cluster_id.is_empty() {
        n.cluster.clone()
    } else {
        format!("{} ({})", n.cluster, n.cluster_id)
    };
    line("Cluster", &cluster);
    line("Message", &n.message);
    line("Started at", &rfc3339(n.started_at));
    line(
        "Resolved at",
        &n.resolved_at.map(rfc3339).unwrap_or_default(),
    );
    line("Alert", n.alert_id.as_deref().unwrap_or_default());
    line("Delivery", delivery_id);
    b.push_str("\n-- \nSent by ECP, the control plane for EMQX clusters.\n");
    b
}

fn message(cfg: &EmailConfig, d: &Delivery) -> Result<Message, String> {
    let from: Mailbox = cfg.from.parse().map_err(|e| format!("from address: {e}"))?;
    let mut m = Message::builder()
        .from(from)
        .subject(subject(&d.notice))
        .header(ContentType::TEXT_PLAIN)
        .date_now();
    for to in cfg
        .to
        .iter()
        .take(crate::api::alerting::input::RECIPIENTS_MAX)
    {
        let to: Mailbox = to.parse().map_err(|e| format!("to address: {e}"))?;
        m = m.to(to);
    }
    m.body(body(&d.notice, &d.id))
        .map_err(|e| format!("message: {e}"))
}

fn transport(
    cfg: &EmailConfig,
    timeout: std::time::Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let builder = match cfg.security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
            .map_err(|e| format!("TLS setup: {e}"))?,
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)
            .map_err(|e| format!("TLS setup: {e}"))?,
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
    };
    let mut builder = builder.port(cfg.port).timeout(Some(timeout));
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
    }
    Ok(builder.build())
}

/// One attempt: one SMTP session within `timeout`. A permanent (5xx)
/// refusal fails; anything else is retried.
pub async fn send(cfg: &EmailConfig, d: &Delivery, timeout: std::time::Duration) -> Attempt {
    let msg = match message(cfg, d) {
        Ok(m) => m,
        Err(e) => return Attempt::failed(None, e),
    };
    let mailer = match transport(cfg, timeout) {
        Ok(t) => t,
        Err(e) => return Attempt::failed(None, e),
    };
    match tokio::time::timeout(timeout, mailer.send(msg)).await {
        Err(_) => Attempt::retry(None, format!("SMTP timed out after {timeout:?}")),
        Ok(Ok(reply)) => Attempt::delivered(Some(u16::from(reply.code()))),
        Ok(Err(e)) => {
            let status = e.status().map(u16::from);
            let outcome = if e.is_permanent() {
                Outcome::Fail
            } else {
                Outcome::Retry
            };
            Attempt {
                outcome,
                status,
                error: Some(super::bounded(&format!("SMTP: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecp_actors::alerting::Severity;

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            kind,
            alert_id: Some("a1".into()),
            cluster_id: "c1".into(),
            cluster: "prod".into(),
            rule: "agents gone".into(),
            severity: Severity::Critical,
            status: super::super::webhook::event_name(kind).into(),
            message: "no agent session\r\nBcc: evil@example.com".into(),
            started_at: 1_700_000_000_000,
            resolved_at: Some(1_700_000_060_000),
        }
    }

    #[test]
    fn subjects_follow_the_contract_and_stay_one_line() {
        assert_eq!(
            subject(&notice(NoticeKind::Resolved)),
            "[ECP] RESOLVED critical agents gone on prod"
        );
        let s = subject(&notice(NoticeKind::Summary));
        assert!(s.starts_with("[ECP] SUMMARY") && !s.contains('\n') && !s.contains('\r'));
        assert_eq!(
            subject(&notice(NoticeKind::Test)),
            "[ECP] TEST notification"
        );
    }

    #[test]
    fn the_body_lists_the_fields() {
        let b = body(&notice(NoticeKind::Resolved), "d9");
        for want in [
            "Status: RESOLVED",
            "Severity: critical",
            "Rule: agents gone",
            "Cluster: prod (c1)",
            "Started at: 2023-11-14T22:13:20.000Z",
            "Resolved at: 2023-11-14T22:14:20.000Z",
            "Alert: a1",
            "Delivery: d9",
        ] {
            assert!(b.contains(want), "{want} not in {b}");
        }
    }

    #[test]
    fn messages_build_with_every_recipient() {
        let cfg = EmailConfig {
            host: "localhost".into(),
            port: 25,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "ECP <ecp@example.com>".into(),
            to: vec!["a@example.com".into(), "b@example.com".into()],
        };
        let d = Delivery {
            id: "d1".into(),
            channel_id: "ch".into(),
            project_id: "p".into(),
            notice: notice(NoticeKind::Firing),
            state: ecp_actors::alerting::DeliveryState::Pending,
            attempts: 0,
            next_at: 0,
            created_at: 0,
            finished_at: None,
            last_status: None,
            last_error: None,
        };
        let m = message(&cfg, &d).expect("builds");
        assert_eq!(m.envelope().to().len(), 2);
        let text = String::from_utf8(m.formatted()).expect("utf8");
        let headers = text.split("\r\n\r\n").next().unwrap_or_default();
        assert!(headers.contains("Subject: [ECP] FIRING critical agents gone on prod"));
        assert!(!headers.contains("Bcc:"), "no header injection: {headers}");
    }
}
