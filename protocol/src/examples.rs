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
    ]
}
