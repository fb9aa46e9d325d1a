//! Example frames: every variant, as a real agent or server sends it.

use crate::*;

/// One frame of every variant (some twice), with the shapes agents and
/// servers really send. Tests and the fuzzer start from these.
pub fn every_frame() -> Vec<Frame> {
    vec![
        Frame::Hello {
            protocol: PROTOCOL_VERSION,
            agent: AgentHello {
                agent_id: "6f1c0d4e-agent".into(),
                agent_version: "0.1.0".into(),
                node_name: "emqx@node1.emqxcl".into(),
            },
        },
        Frame::Welcome {
            settings: Settings {
                cluster_id: "c-01".into(),
                heartbeat_interval_secs: 10,
                report_interval_secs: 10,
                ping_interval_secs: 15,
                metrics_interval_secs: 15,
            },
        },
        Frame::Heartbeat {
            seq: 1,
            at_ms: 1_700_000_000_000,
        },
        Frame::Report(Report {
            seq: 7,
            observed_at_ms: 1_700_000_000_000,
            health: Health::NodesStopped {
                nodes: vec!["emqx@10.0.0.2".into()],
            },
            emqx: Some(EmqxSummary {
                version: "5.6.0".into(),
                edition: "Enterprise".into(),
                cluster_name: "emqxcl".into(),
            }),
            nodes: vec![
                NodeStatus {
                    name: "emqx@10.0.0.1".into(),
                    running: true,
                    version: Some("5.6.0".into()),
                    role: Some("core".into()),
                    connections: Some(12),
                    uptime_secs: Some(5120),
                },
                NodeStatus {
                    name: "emqx@10.0.0.2".into(),
                    running: false,
                    version: None,
                    role: Some("core".into()),
                    connections: None,
                    uptime_secs: None,
                },
            ],
            connections: Some(Connections {
                current: 12,
                max: Some(10_000),
            }),
        }),
        Frame::Report(Report {
            seq: 1,
            observed_at_ms: 0,
            health: Health::AgentError {
                message: "unexpected EMQX response: /api/v5/nodes is empty".into(),
            },
            emqx: None,
            nodes: vec![],
            connections: None,
        }),
        Frame::Report(Report {
            seq: 2,
            observed_at_ms: 1,
            health: Health::UnsupportedVersion {
                found: "5.5.1".into(),
                required: "5.6.0 or later".into(),
            },
            emqx: None,
            nodes: vec![],
            connections: None,
        }),
        Frame::Reconnect {
            after_ms: 250,
            reason: "draining".into(),
        },
        Frame::Unregister {
            reason: "cluster was deleted".into(),
        },
        Frame::UnregisterAck,
        Frame::TunnelOpen(TunnelRequest {
            stream: 7,
            method: "GET".into(),
            path: "/api/v4/routes/a%2Fb?x=1".into(),
            headers: vec![("accept".into(), b"*/*".to_vec())],
            body: vec![],
            window: TUNNEL_WINDOW,
        }),
        Frame::TunnelHead {
            stream: 7,
            status: 200,
            headers: vec![("content-type".into(), b"text/html".to_vec())],
        },
        Frame::TunnelData {
            stream: 7,
            data: b"<html>".to_vec(),
        },
        Frame::TunnelEnd {
            stream: 7,
            error: Some("reset".into()),
        },
        Frame::TunnelCredit {
            stream: 7,
            frames: 4,
        },
        Frame::TunnelCancel { stream: 7 },
        Frame::LogBatch(LogBatch {
            batch: 3,
            node: "emqx@n1".into(),
            lines: vec![LogLine {
                file: 99,
                offset: 1024,
                time_us: 1_700_000_000_000_000,
                level: 3,
                message: "hello".into(),
                fields: r#"{"clientid":"c1"}"#.into(),
                raw: "2024-03-20T11:08:39.568980+01:00 [warning] msg: hello, clientid: c1".into(),
            }],
        }),
        Frame::LogAck { batch: 3 },
        Frame::Credential {
            token: "ecpa_3a9f".into(),
        },
        Frame::CredentialAck,
        Frame::Metrics(MetricsBatch {
            batch: 3,
            samples: vec![
                MetricSample {
                    at_ms: 1_700_000_000_000,
                    values: vec![
                        ("connections".into(), 1_000.0),
                        ("live_connections".into(), 990.0),
                        ("received_msg_rate".into(), 120.5),
                        ("sent_msg_rate".into(), 118.0),
                        ("dropped_msg_rate".into(), 0.0),
                        ("nodes_running".into(), 3.0),
                        ("nodes_total".into(), 3.0),
                    ],
                },
                MetricSample {
                    at_ms: 1_700_000_015_000,
                    values: vec![("connections".into(), 3_000.0)],
                },
            ],
        }),
        Frame::MetricsAck { batch: 3 },
        Frame::Alarms(AlarmSnapshot {
            observed_at_ms: 1_700_000_000_000,
            active: vec![EmqxAlarm {
                node: "emqx@10.0.0.1".into(),
                name: "high_cpu_usage".into(),
                message: "93.11%".into(),
                details: r#"{"high_watermark":80.0,"low_watermark":60.0,"usage":"93.11%"}"#.into(),
                activate_at_ms: 1_699_999_990_000,
                deactivate_at_ms: None,
            }],
            deactivated: vec![EmqxAlarm {
                node: "emqx@10.0.0.1".into(),
                name: "high_system_memory_usage".into(),
                message: "System memory usage is higher than 70%".into(),
                details: String::new(),
                activate_at_ms: 1_699_999_000_000,
                deactivate_at_ms: Some(1_699_999_500_000),
            }],
        }),
    ]
}
