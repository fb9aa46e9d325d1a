//! The frame codec: bincode 2 (serde mode) with a hard size limit.
//!
//! Kept in this one module so the encoding can be swapped without touching
//! the rest of the code base.

use crate::Frame;

/// Largest encoded frame either side accepts (1 MiB).
pub const MAX_FRAME_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("empty frame")]
    Empty,
    #[error("malformed frame: {0}")]
    Malformed(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// Encodes a frame; fails if the result would exceed [`MAX_FRAME_BYTES`].
pub fn encode(frame: &Frame) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(frame, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: MAX_FRAME_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes one frame. The length is checked before decoding starts; bytes
/// after the frame are ignored (fields appended by a newer peer).
pub fn decode(bytes: &[u8]) -> Result<Frame, CodecError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: MAX_FRAME_BYTES,
        });
    }
    if bytes.is_empty() {
        return Err(CodecError::Empty);
    }
    bincode::serde::decode_from_slice::<Frame, _>(bytes, config())
        .map(|(frame, _read)| frame)
        .map_err(|e| CodecError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn report() -> Frame {
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
            nodes: vec![NodeStatus {
                name: "emqx@10.0.0.1".into(),
                running: true,
                version: Some("5.6.0".into()),
                role: Some("core".into()),
                connections: Some(12),
                uptime_secs: Some(5120),
            }],
            connections: Some(Connections {
                current: 12,
                max: Some(10_000),
            }),
        })
    }

    #[test]
    fn every_frame_round_trips() {
        let frames = vec![
            Frame::Hello {
                protocol: PROTOCOL_VERSION,
                agent: AgentHello {
                    agent_id: "a1".into(),
                    agent_version: "0.1.0".into(),
                    node_name: "emqx@h".into(),
                },
            },
            Frame::Welcome {
                settings: Settings {
                    cluster_id: "c1".into(),
                    heartbeat_interval_secs: 10,
                    report_interval_secs: 10,
                    ping_interval_secs: 15,
                },
            },
            Frame::Heartbeat { seq: 1, at_ms: 2 },
            report(),
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
                data: vec![0, 1, 255],
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
                    raw: "2024-… [warning] msg: hello".into(),
                }],
            }),
            Frame::LogAck { batch: 3 },
            Frame::Credential {
                token: "ecpa_x".into(),
            },
            Frame::CredentialAck,
        ];
        for f in frames {
            let bytes = encode(&f).expect("encode");
            assert_eq!(decode(&bytes).expect("decode"), f);
        }
    }

    #[test]
    fn a_full_data_chunk_fits_a_frame_and_is_bulk() {
        let f = Frame::TunnelData {
            stream: u32::MAX,
            data: vec![7; TUNNEL_CHUNK],
        };
        let bytes = encode(&f).expect("encode");
        assert!(bytes.len() < TUNNEL_CHUNK + 16, "bytes are not inflated");
        assert!(f.is_bulk() && !Frame::Heartbeat { seq: 1, at_ms: 1 }.is_bulk());
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert_eq!(
            decode(&big),
            Err(CodecError::TooLarge {
                size: MAX_FRAME_BYTES + 1,
                limit: MAX_FRAME_BYTES
            })
        );
    }

    #[test]
    fn oversized_frame_is_refused_when_encoding() {
        let f = Frame::Unregister {
            reason: "x".repeat(MAX_FRAME_BYTES + 10),
        };
        assert!(matches!(encode(&f), Err(CodecError::TooLarge { .. })));
    }

    #[test]
    fn garbage_and_empty_are_errors_not_panics() {
        assert_eq!(decode(&[]), Err(CodecError::Empty));
        assert!(matches!(decode(&[0xff; 16]), Err(CodecError::Malformed(_))));
        // A length prefix that claims more than the limit must not allocate it.
        let mut lie = vec![3u8]; // Report variant
        lie.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode(&lie).is_err());
    }

    #[test]
    fn trailing_bytes_from_a_newer_peer_are_ignored() {
        let mut bytes = encode(&Frame::Heartbeat { seq: 3, at_ms: 4 }).expect("encode");
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            decode(&bytes).expect("decode"),
            Frame::Heartbeat { seq: 3, at_ms: 4 }
        );
    }

    #[test]
    fn version_rule() {
        assert!(server_accepts(PROTOCOL_VERSION));
        assert!(server_accepts(MIN_PROTOCOL_VERSION));
        assert!(server_accepts(1), "agents of protocol 1 are still served");
        assert!(!server_accepts(PROTOCOL_VERSION + 1));
        assert!(!server_accepts(0));
    }

    #[test]
    fn a_protocol_1_decoder_fails_cleanly_on_a_new_variant() {
        // What an agent of protocol 1 does with a Credential frame: its
        // decoder knows no variant 15 and reports an error (it logs it and
        // goes on); the server sends it only to protocol >= 2 anyway.
        let bytes = encode(&Frame::Credential { token: "t".into() }).expect("encode");
        assert_eq!(bytes[0], 15, "appended after LogAck (14)");
    }
}
