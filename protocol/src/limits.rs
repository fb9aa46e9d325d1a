//! Bounds on what an agent may send, checked on every decoded frame before
//! the server acts on it. The frame size limit alone is not enough: a 1 MiB
//! frame can still hold 100,000 empty log lines, ten thousand headers or a
//! node list that costs far more to store and show than it took to send.
//! Anything over a bound ends that agent's session (the server says which
//! bound, audits it, and stores nothing of the frame); other sessions are
//! not affected.

use crate::metrics::*;
use crate::{AlarmSnapshot, EmqxAlarm, Frame, Health, LogBatch, MetricsBatch, Report};

/// Names: EMQX node names, agent ids, versions, header names.
pub const MAX_NAME_BYTES: usize = 255;
/// Short free texts: health messages, stream errors, close reasons.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;
/// EMQX nodes in one report (and stopped nodes named by its health).
pub const MAX_REPORT_NODES: usize = 1_000;
/// Log lines in one batch (the agent sends at most 2,000).
pub const MAX_LOG_LINES: usize = 4_000;
/// One log message, and one raw log line.
pub const MAX_LOG_MESSAGE_BYTES: usize = 64 * 1024;
/// The structured fields of one log line (JSON text).
pub const MAX_LOG_FIELDS_BYTES: usize = 16 * 1024;
/// Distinct log files (fingerprints) in one batch.
pub const MAX_LOG_FILES_PER_BATCH: usize = 8;
/// Headers of one dashboard response.
pub const MAX_TUNNEL_HEADERS: usize = 100;
/// One header value, and all of a response's headers together.
pub const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS_BYTES: usize = 64 * 1024;

/// Which bound a frame broke, for the close reason and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {found}, over the bound of {bound}")]
pub struct Violation {
    pub what: &'static str,
    pub found: usize,
    pub bound: usize,
}

fn at_most(what: &'static str, found: usize, bound: usize) -> Result<(), Violation> {
    if found > bound {
        return Err(Violation { what, found, bound });
    }
    Ok(())
}

/// Checks a frame received from an agent against every bound.
pub fn check_from_agent(frame: &Frame) -> Result<(), Violation> {
    match frame {
        Frame::Hello { agent, .. } => {
            at_most("Hello.agent_id bytes", agent.agent_id.len(), 128)?;
            at_most("Hello.agent_version bytes", agent.agent_version.len(), 64)?;
            at_most(
                "Hello.node_name bytes",
                agent.node_name.len(),
                MAX_NAME_BYTES,
            )
        }
        Frame::Report(r) => check_report(r),
        Frame::TunnelHead {
            status, headers, ..
        } => {
            if !(100..=999).contains(status) {
                return Err(Violation {
                    what: "TunnelHead.status",
                    found: usize::from(*status),
                    bound: 999,
                });
            }
            at_most("TunnelHead.headers", headers.len(), MAX_TUNNEL_HEADERS)?;
            let mut total = 0usize;
            for (name, value) in headers {
                at_most("TunnelHead header name bytes", name.len(), MAX_NAME_BYTES)?;
                at_most(
                    "TunnelHead header value bytes",
                    value.len(),
                    MAX_HEADER_VALUE_BYTES,
                )?;
                total += name.len() + value.len();
            }
            at_most("TunnelHead header bytes", total, MAX_HEADERS_BYTES)
        }
        Frame::TunnelData { data, .. } => {
            at_most("TunnelData bytes", data.len(), crate::TUNNEL_CHUNK)
        }
        Frame::TunnelEnd { error, .. } => at_most(
            "TunnelEnd.error bytes",
            error.as_ref().map_or(0, String::len),
            MAX_TEXT_BYTES,
        ),
        Frame::LogBatch(b) => check_logs(b),
        Frame::Metrics(b) => check_metrics(b),
        Frame::Alarms(a) => check_alarms(a),
        _ => Ok(()),
    }
}

fn check_report(r: &Report) -> Result<(), Violation> {
    at_most("Report.nodes", r.nodes.len(), MAX_REPORT_NODES)?;
    for n in &r.nodes {
        at_most("Report node name bytes", n.name.len(), MAX_NAME_BYTES)?;
        at_most(
            "Report node version bytes",
            n.version.as_ref().map_or(0, String::len),
            64,
        )?;
        at_most(
            "Report node role bytes",
            n.role.as_ref().map_or(0, String::len),
            32,
        )?;
    }
    if let Some(e) = &r.emqx {
        at_most("Report.emqx.version bytes", e.version.len(), 64)?;
        at_most("Report.emqx.edition bytes", e.edition.len(), 64)?;
        at_most(
            "Report.emqx.cluster_name bytes",
            e.cluster_name.len(),
            MAX_NAME_BYTES,
        )?;
    }
    match &r.health {
        Health::Healthy => Ok(()),
        Health::NodesStopped { nodes } => {
            at_most("Report stopped nodes", nodes.len(), MAX_REPORT_NODES)?;
            for n in nodes {
                at_most("Report stopped node name bytes", n.len(), MAX_NAME_BYTES)?;
            }
            Ok(())
        }
        Health::EmqxUnreachable { message }
        | Health::EmqxAuthFailed { message }
        | Health::AgentError { message } => {
            at_most("Report health message bytes", message.len(), MAX_TEXT_BYTES)
        }
        Health::UnsupportedVersion { found, required } => {
            at_most("Report found version bytes", found.len(), 64)?;
            at_most("Report required version bytes", required.len(), 64)
        }
    }
}

fn check_logs(b: &LogBatch) -> Result<(), Violation> {
    at_most("LogBatch.node bytes", b.node.len(), MAX_NAME_BYTES)?;
    at_most("LogBatch.lines", b.lines.len(), MAX_LOG_LINES)?;
    let mut files: Vec<u64> = Vec::new();
    for l in &b.lines {
        at_most("log message bytes", l.message.len(), MAX_LOG_MESSAGE_BYTES)?;
        at_most("log raw line bytes", l.raw.len(), MAX_LOG_MESSAGE_BYTES)?;
        at_most("log fields bytes", l.fields.len(), MAX_LOG_FIELDS_BYTES)?;
        at_most(
            "log level",
            usize::from(l.level),
            crate::LOG_LEVELS.len() - 1,
        )?;
        if !files.contains(&l.file) {
            files.push(l.file);
            at_most(
                "LogBatch distinct files",
                files.len(),
                MAX_LOG_FILES_PER_BATCH,
            )?;
        }
    }
    Ok(())
}

fn check_metrics(b: &MetricsBatch) -> Result<(), Violation> {
    at_most("Metrics.samples", b.samples.len(), MAX_SAMPLES_PER_BATCH)?;
    for s in &b.samples {
        at_most(
            "Metrics sample values",
            s.values.len(),
            MAX_VALUES_PER_SAMPLE,
        )?;
        for (name, _) in &s.values {
            at_most("metric name bytes", name.len(), MAX_METRIC_NAME_BYTES)?;
        }
    }
    Ok(())
}

fn check_alarms(a: &AlarmSnapshot) -> Result<(), Violation> {
    at_most("Alarms.active", a.active.len(), MAX_ACTIVE_ALARMS)?;
    at_most(
        "Alarms.deactivated",
        a.deactivated.len(),
        MAX_DEACTIVATED_ALARMS,
    )?;
    a.active
        .iter()
        .chain(&a.deactivated)
        .try_for_each(check_alarm)
}

fn check_alarm(a: &EmqxAlarm) -> Result<(), Violation> {
    at_most("alarm node bytes", a.node.len(), MAX_NAME_BYTES)?;
    at_most("alarm name bytes", a.name.len(), MAX_NAME_BYTES)?;
    at_most("alarm message bytes", a.message.len(), MAX_ALARM_TEXT_BYTES)?;
    at_most("alarm details bytes", a.details.len(), MAX_ALARM_TEXT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn line(file: u64, message: &str) -> LogLine {
        LogLine {
            file,
            offset: 0,
            time_us: 1,
            level: 3,
            message: message.into(),
            fields: String::new(),
            raw: message.into(),
        }
    }

    fn batch(lines: Vec<LogLine>) -> Frame {
        Frame::LogBatch(LogBatch {
            batch: 1,
            node: "emqx@n1".into(),
            lines,
        })
    }

    #[test]
    fn what_a_real_agent_sends_passes() {
        let lines = (0..2_000).map(|i| line(i % 4, "hello")).collect();
        assert_eq!(check_from_agent(&batch(lines)), Ok(()));
        let head = Frame::TunnelHead {
            stream: 1,
            status: 200,
            headers: vec![("content-type".into(), b"text/html".to_vec())],
        };
        assert_eq!(check_from_agent(&head), Ok(()));
        assert_eq!(
            check_from_agent(&Frame::Heartbeat { seq: 1, at_ms: 1 }),
            Ok(())
        );
    }

    #[test]
    fn each_log_bound_is_named() {
        let v = check_from_agent(&batch(vec![line(1, ""); MAX_LOG_LINES + 1])).expect_err("lines");
        assert_eq!((v.what, v.found), ("LogBatch.lines", MAX_LOG_LINES + 1));
        let big = "x".repeat(MAX_LOG_MESSAGE_BYTES + 1);
        let v = check_from_agent(&batch(vec![line(1, &big)])).expect_err("message");
        assert_eq!(v.what, "log message bytes");
        let mut l = line(1, "m");
        l.fields = "f".repeat(MAX_LOG_FIELDS_BYTES + 1);
        assert_eq!(
            check_from_agent(&batch(vec![l])).expect_err("fields").what,
            "log fields bytes"
        );
        let mut l = line(1, "m");
        l.level = 8;
        assert_eq!(
            check_from_agent(&batch(vec![l])).expect_err("level").what,
            "log level"
        );
        let files = (0..=MAX_LOG_FILES_PER_BATCH as u64)
            .map(|f| line(f, "m"))
            .collect();
        assert_eq!(
            check_from_agent(&batch(files)).expect_err("files").what,
            "LogBatch distinct files"
        );
        let f = Frame::LogBatch(LogBatch {
            batch: 1,
            node: "n".repeat(MAX_NAME_BYTES + 1),
            lines: vec![],
        });
        assert_eq!(
            check_from_agent(&f).expect_err("node").what,
            "LogBatch.node bytes"
        );
    }

    #[test]
    fn metrics_and_alarms_are_bounded() {
        let sample = MetricSample {
            at_ms: 1,
            values: vec![("connections".into(), 1.0); MAX_VALUES_PER_SAMPLE],
        };
        let ok = Frame::Metrics(MetricsBatch {
            batch: 1,
            samples: vec![sample.clone(); 240],
        });
        assert_eq!(check_from_agent(&ok), Ok(()));
        let many = Frame::Metrics(MetricsBatch {
            batch: 1,
            samples: vec![sample.clone(); MAX_SAMPLES_PER_BATCH + 1],
        });
        assert_eq!(
            check_from_agent(&many).expect_err("samples").what,
            "Metrics.samples"
        );
        let mut wide = sample.clone();
        wide.values.push(("x".into(), 0.0));
        let wide = Frame::Metrics(MetricsBatch {
            batch: 1,
            samples: vec![wide],
        });
        assert_eq!(
            check_from_agent(&wide).expect_err("values").what,
            "Metrics sample values"
        );
        let long = Frame::Metrics(MetricsBatch {
            batch: 1,
            samples: vec![MetricSample {
                at_ms: 1,
                values: vec![("n".repeat(MAX_METRIC_NAME_BYTES + 1), 1.0)],
            }],
        });
        assert_eq!(
            check_from_agent(&long).expect_err("name").what,
            "metric name bytes"
        );
        let alarm = EmqxAlarm {
            node: "emqx@n1".into(),
            name: "high_cpu_usage".into(),
            message: "cpu 95%".into(),
            details: "{}".into(),
            activate_at_ms: 1,
            deactivate_at_ms: None,
        };
        let snap = |active: Vec<EmqxAlarm>, deactivated: Vec<EmqxAlarm>| {
            Frame::Alarms(AlarmSnapshot {
                observed_at_ms: 1,
                active,
                deactivated,
            })
        };
        assert_eq!(
            check_from_agent(&snap(vec![alarm.clone(); 10], vec![])),
            Ok(())
        );
        let v = check_from_agent(&snap(vec![alarm.clone(); MAX_ACTIVE_ALARMS + 1], vec![]));
        assert_eq!(v.expect_err("active").what, "Alarms.active");
        let v = check_from_agent(&snap(
            vec![],
            vec![alarm.clone(); MAX_DEACTIVATED_ALARMS + 1],
        ));
        assert_eq!(v.expect_err("deactivated").what, "Alarms.deactivated");
        let mut big = alarm.clone();
        big.details = "d".repeat(MAX_ALARM_TEXT_BYTES + 1);
        let v = check_from_agent(&snap(vec![], vec![big]));
        assert_eq!(v.expect_err("details").what, "alarm details bytes");
    }

    #[test]
    fn tunnel_heads_and_reports_are_bounded() {
        let many = Frame::TunnelHead {
            stream: 1,
            status: 200,
            headers: vec![("x".into(), vec![]); MAX_TUNNEL_HEADERS + 1],
        };
        assert_eq!(
            check_from_agent(&many).expect_err("count").what,
            "TunnelHead.headers"
        );
        let heavy = Frame::TunnelHead {
            stream: 1,
            status: 200,
            headers: vec![("x".into(), vec![b'v'; MAX_HEADER_VALUE_BYTES]); 5],
        };
        assert_eq!(
            check_from_agent(&heavy).expect_err("total").what,
            "TunnelHead header bytes"
        );
        let odd = Frame::TunnelHead {
            stream: 1,
            status: 42,
            headers: vec![],
        };
        assert!(check_from_agent(&odd).is_err());
        let node = NodeStatus {
            name: "emqx@h".into(),
            running: true,
            version: None,
            role: None,
            connections: None,
            uptime_secs: None,
        };
        let report = Frame::Report(Report {
            seq: 1,
            observed_at_ms: 1,
            health: Health::Healthy,
            emqx: None,
            nodes: vec![node; MAX_REPORT_NODES + 1],
            connections: None,
        });
        assert_eq!(
            check_from_agent(&report).expect_err("nodes").what,
            "Report.nodes"
        );
        let hello = Frame::Hello {
            protocol: 1,
            agent: AgentHello {
                agent_id: "a".repeat(129),
                agent_version: "1".into(),
                node_name: String::new(),
            },
        };
        assert!(check_from_agent(&hello).is_err());
    }
}
