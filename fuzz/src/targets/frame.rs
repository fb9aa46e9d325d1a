//! `ecp_protocol::decode`: what every agent WebSocket message goes through.

use crate::engine::{fnv, Outcome, Rng, Target};
use ecp_protocol::*;

pub const TARGET: Target = Target {
    name: "frame",
    about: "ecp_protocol::decode: no panic; memory within budget; what decodes re-encodes (no longer) and decodes the same",
    seeds,
    dict: DICT,
    structured: Some(structured),
    max_len: 4096,
    check,
};

/// Heap a decode may hold at its peak: the limit's worth of claimed
/// strings/bytes, serde's capped preallocation of up to 1 MiB for each of
/// the (at most two) sequences in a frame, and in-memory size per input
/// byte for elements really present (a minimal 7-byte `LogLine` is a
/// 104-byte struct, and a growing `Vec` holds twice that while it moves).
pub fn alloc_budget(input_len: usize) -> usize {
    3 * MAX_FRAME_BYTES + 64 * input_len
}

fn check(input: &[u8]) -> Outcome {
    let before = crate::ALLOC.current_usage();
    crate::ALLOC.reset_peak_usage();
    let decoded = decode(input);
    let peak = crate::ALLOC.peak_usage().saturating_sub(before);
    if peak > alloc_budget(input.len()) {
        return Err(format!(
            "decoding {} bytes took {peak} bytes of heap (budget {})",
            input.len(),
            alloc_budget(input.len())
        ));
    }
    match decoded {
        Ok(frame) => {
            let again =
                encode(&frame).map_err(|e| format!("decoded frame does not re-encode: {e}"))?;
            if again.len() > input.len() {
                return Err(format!(
                    "re-encoding takes {} bytes, the input was {}",
                    again.len(),
                    input.len()
                ));
            }
            let back =
                decode(&again).map_err(|e| format!("re-encoded frame does not decode: {e}"))?;
            // Compared as bytes: a metric value may be NaN, which is never
            // equal to itself, and bincode writes an f64's bits as they are.
            let back_bytes = encode(&back).map_err(|e| format!("does not re-encode: {e}"))?;
            if back_bytes != again {
                return Err(format!(
                    "round trip changed the frame: {frame:?} → {back:?}"
                ));
            }
            Ok(fnv(frame.kind().as_bytes()) ^ shape(&frame))
        }
        // The error's words without its numbers: one class per kind of failure.
        Err(e) => {
            let text = e.to_string();
            let words: String = text
                .chars()
                .filter(|c| c.is_ascii_alphabetic() || *c == ' ')
                .take(48)
                .collect();
            Ok(fnv(words.as_bytes()) | 1)
        }
    }
}

/// A few bits of a decoded frame's shape (how many items, which options).
fn shape(f: &Frame) -> u64 {
    let small = |n: usize| n.min(3) as u64;
    match f {
        Frame::Report(r) => {
            small(r.nodes.len())
                | u64::from(r.emqx.is_some()) << 2
                | u64::from(r.connections.is_some()) << 3
                | (health_index(&r.health) << 4)
        }
        Frame::TunnelOpen(t) => small(t.headers.len()) | small(t.body.len()) << 2,
        Frame::TunnelHead { headers, .. } => small(headers.len()),
        Frame::TunnelEnd { error, .. } => u64::from(error.is_some()),
        Frame::LogBatch(b) => small(b.lines.len()),
        Frame::Metrics(b) => small(b.samples.len()),
        Frame::Alarms(a) => small(a.active.len()) | small(a.deactivated.len()) << 2,
        _ => 0,
    }
}

fn health_index(h: &Health) -> u64 {
    match h {
        Health::Healthy => 0,
        Health::NodesStopped { .. } => 1,
        Health::EmqxUnreachable { .. } => 2,
        Health::EmqxAuthFailed { .. } => 3,
        Health::UnsupportedVersion { .. } => 4,
        Health::AgentError { .. } => 5,
    }
}

/// bincode 2 varint markers (251 = u16, 252 = u32, 253 = u64, 254 = u128
/// follow) with edge values, and variant indexes past the last one.
const DICT: &[&[u8]] = &[
    &[251, 0xff, 0xff],
    &[251, 0, 0],
    &[251, 250, 0],
    &[252, 0xff, 0xff, 0xff, 0xff],
    &[252, 0, 0, 0x10, 0],
    &[252, 1, 0, 0x10, 0],
    &[253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[253, 0, 0, 0, 0, 0, 0, 0, 0x80],
    &[
        254, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0,
    ],
    &[255],
    &[15],
    &[16],
    &[0],
    &[1],
    &[2],
];

pub fn seeds() -> Vec<Vec<u8>> {
    sample_frames()
        .iter()
        .filter_map(|f| encode(f).ok())
        .collect()
}

/// One frame of every variant, with the shapes agents really send.
pub fn sample_frames() -> Vec<Frame> {
    ecp_protocol::examples::every_frame()
}

/// A fresh random frame of any variant, encoded.
fn structured(rng: &mut Rng, _base: &[u8]) -> Option<Vec<u8>> {
    encode(&random_frame(rng)).ok()
}

/// The same, for other targets that take frames.
pub fn structured_frame(rng: &mut Rng, base: &[u8]) -> Option<Vec<u8>> {
    structured(rng, base)
}

fn num(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => *rng.pick(&[
            0,
            1,
            250,
            251,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::MAX,
        ]),
        1 => rng.next_u64(),
        _ => rng.skewed(20) as u64,
    }
}

fn text(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => String::new(),
        1 => "é𝄞\u{0}\u{fffd}".repeat(1 + rng.below(4)),
        2 => "x".repeat(rng.skewed(12)),
        _ => rng
            .pick(&[
                "emqx@node1",
                "5.6.0",
                "GET",
                "/api/v5/nodes",
                "core",
                "draining",
                "c1",
            ])
            .to_string(),
    }
}

fn bytes(rng: &mut Rng) -> Vec<u8> {
    (0..rng.skewed(8)).map(|_| rng.byte()).collect()
}

fn opt<T>(rng: &mut Rng, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
    if rng.one_in(2) {
        Some(f(rng))
    } else {
        None
    }
}

fn some<T>(rng: &mut Rng, mut f: impl FnMut(&mut Rng) -> T) -> Vec<T> {
    (0..rng.skewed(3)).map(|_| f(rng)).collect()
}

fn random_frame(rng: &mut Rng) -> Frame {
    let n32 = |rng: &mut Rng| num(rng) as u32;
    match rng.below(20) {
        0 => Frame::Hello {
            protocol: num(rng) as u16,
            agent: AgentHello {
                agent_id: text(rng),
                agent_version: text(rng),
                node_name: text(rng),
            },
        },
        1 => Frame::Welcome {
            settings: Settings {
                cluster_id: text(rng),
                heartbeat_interval_secs: n32(rng),
                report_interval_secs: n32(rng),
                ping_interval_secs: n32(rng),
                metrics_interval_secs: n32(rng),
            },
        },
        2 => Frame::Heartbeat {
            seq: num(rng),
            at_ms: num(rng),
        },
        3 => Frame::Report(Report {
            seq: num(rng),
            observed_at_ms: num(rng),
            health: match rng.below(6) {
                0 => Health::Healthy,
                1 => Health::NodesStopped {
                    nodes: some(rng, text),
                },
                2 => Health::EmqxUnreachable { message: text(rng) },
                3 => Health::EmqxAuthFailed { message: text(rng) },
                4 => Health::UnsupportedVersion {
                    found: text(rng),
                    required: text(rng),
                },
                _ => Health::AgentError { message: text(rng) },
            },
            emqx: opt(rng, |rng| EmqxSummary {
                version: text(rng),
                edition: text(rng),
                cluster_name: text(rng),
            }),
            nodes: some(rng, |rng| NodeStatus {
                name: text(rng),
                running: rng.one_in(2),
                version: opt(rng, text),
                role: opt(rng, text),
                connections: opt(rng, num),
                uptime_secs: opt(rng, num),
            }),
            connections: opt(rng, |rng| Connections {
                current: num(rng),
                max: opt(rng, num),
            }),
        }),
        4 => Frame::Reconnect {
            after_ms: num(rng),
            reason: text(rng),
        },
        5 => Frame::Unregister { reason: text(rng) },
        6 => Frame::UnregisterAck,
        7 => Frame::TunnelOpen(TunnelRequest {
            stream: n32(rng),
            method: text(rng),
            path: text(rng),
            headers: some(rng, |rng| (text(rng), bytes(rng))),
            body: bytes(rng),
            window: n32(rng),
        }),
        8 => Frame::TunnelHead {
            stream: n32(rng),
            status: num(rng) as u16,
            headers: some(rng, |rng| (text(rng), bytes(rng))),
        },
        9 => Frame::TunnelData {
            stream: n32(rng),
            data: bytes(rng),
        },
        10 => Frame::TunnelEnd {
            stream: n32(rng),
            error: opt(rng, text),
        },
        11 => Frame::TunnelCredit {
            stream: n32(rng),
            frames: n32(rng),
        },
        12 => Frame::TunnelCancel { stream: n32(rng) },
        13 => Frame::LogBatch(LogBatch {
            batch: num(rng),
            node: text(rng),
            lines: some(rng, |rng| LogLine {
                file: num(rng),
                offset: num(rng),
                time_us: num(rng),
                level: num(rng) as u8,
                message: text(rng),
                fields: text(rng),
                raw: text(rng),
            }),
        }),
        14 => Frame::LogAck { batch: num(rng) },
        15 => Frame::Credential { token: text(rng) },
        16 => Frame::CredentialAck,
        17 => Frame::Metrics(MetricsBatch {
            batch: num(rng),
            samples: some(rng, |rng| MetricSample {
                at_ms: num(rng),
                values: some(rng, |rng| (text(rng), f64::from_bits(num(rng)))),
            }),
        }),
        18 => Frame::MetricsAck { batch: num(rng) },
        _ => {
            let alarm = |rng: &mut Rng| EmqxAlarm {
                node: text(rng),
                name: text(rng),
                message: text(rng),
                details: text(rng),
                activate_at_ms: num(rng),
                deactivate_at_ms: opt(rng, num),
            };
            Frame::Alarms(AlarmSnapshot {
                observed_at_ms: num(rng),
                active: some(rng, alarm),
                deactivated: some(rng, alarm),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exhaustive on purpose: a new `Frame` variant stops this compiling
    /// until it has a seed here and a case in `random_frame`.
    fn index(f: &Frame) -> usize {
        match f {
            Frame::Hello { .. } => 0,
            Frame::Welcome { .. } => 1,
            Frame::Heartbeat { .. } => 2,
            Frame::Report(_) => 3,
            Frame::Reconnect { .. } => 4,
            Frame::Unregister { .. } => 5,
            Frame::UnregisterAck => 6,
            Frame::TunnelOpen(_) => 7,
            Frame::TunnelHead { .. } => 8,
            Frame::TunnelData { .. } => 9,
            Frame::TunnelEnd { .. } => 10,
            Frame::TunnelCredit { .. } => 11,
            Frame::TunnelCancel { .. } => 12,
            Frame::LogBatch(_) => 13,
            Frame::LogAck { .. } => 14,
            Frame::Credential { .. } => 15,
            Frame::CredentialAck => 16,
            Frame::Metrics(_) => 17,
            Frame::MetricsAck { .. } => 18,
            Frame::Alarms(_) => 19,
        }
    }
    const VARIANTS: usize = 20;

    #[test]
    fn every_variant_has_a_seed_and_is_generated() {
        let mut seeded = [false; VARIANTS];
        for f in sample_frames() {
            seeded[index(&f)] = true;
        }
        assert!(seeded.iter().all(|s| *s), "{seeded:?}");
        let mut generated = [false; VARIANTS];
        let mut rng = Rng::new(1);
        for _ in 0..2000 {
            generated[index(&random_frame(&mut rng))] = true;
        }
        assert!(generated.iter().all(|s| *s), "{generated:?}");
        assert_eq!(seeds().len(), sample_frames().len(), "every seed encodes");
    }
}
