//! `ecp_protocol::limits::check_from_agent`: the bounds every frame from an
//! agent passes before the server acts on it. Whatever it accepts is within
//! every bound, counted here independently; every frame a real agent sends
//! (the frame seeds' agent frames) is accepted.

use crate::engine::{Outcome, Rng, Target};
use crate::targets::frame;
use ecp_protocol::limits::*;
use ecp_protocol::*;

pub const TARGET: Target = Target {
    name: "bounds",
    about: "limits::check_from_agent: no panic; what passes is within every bound (counted independently); agents' ordinary frames pass",
    seeds: frame::seeds,
    dict: &[],
    structured: Some(structured),
    max_len: 4096,
    check,
};

/// A decodable frame (from the frame target's generator, encoded).
fn structured(rng: &mut Rng, base: &[u8]) -> Option<Vec<u8>> {
    frame::structured_frame(rng, base)
}

fn within(frame: &Frame) -> Result<(), String> {
    let over = |what: &str, n: usize, max: usize| {
        if n > max {
            Err(format!("accepted {what} = {n} > {max}"))
        } else {
            Ok(())
        }
    };
    match frame {
        Frame::LogBatch(b) => {
            over("node", b.node.len(), MAX_NAME_BYTES)?;
            over("lines", b.lines.len(), MAX_LOG_LINES)?;
            let mut files = std::collections::HashSet::new();
            for l in &b.lines {
                over("message", l.message.len(), MAX_LOG_MESSAGE_BYTES)?;
                over("raw", l.raw.len(), MAX_LOG_MESSAGE_BYTES)?;
                over("fields", l.fields.len(), MAX_LOG_FIELDS_BYTES)?;
                over("level", usize::from(l.level), 7)?;
                files.insert(l.file);
            }
            over("files", files.len(), MAX_LOG_FILES_PER_BATCH)
        }
        Frame::TunnelHead {
            headers, status, ..
        } => {
            over("headers", headers.len(), MAX_TUNNEL_HEADERS)?;
            let total: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
            over("header bytes", total, MAX_HEADERS_BYTES)?;
            if !(100..=999).contains(status) {
                return Err(format!("accepted status {status}"));
            }
            Ok(())
        }
        Frame::Report(r) => {
            over("nodes", r.nodes.len(), MAX_REPORT_NODES)?;
            for n in &r.nodes {
                over("node name", n.name.len(), MAX_NAME_BYTES)?;
            }
            Ok(())
        }
        Frame::Hello { agent, .. } => over("agent id", agent.agent_id.len(), 128),
        Frame::TunnelData { data, .. } => over("data", data.len(), TUNNEL_CHUNK),
        _ => Ok(()),
    }
}

fn check(input: &[u8]) -> Outcome {
    let Ok(frame) = decode(input) else {
        return Ok(0);
    };
    match check_from_agent(&frame) {
        Ok(()) => {
            within(&frame)?;
            Ok(1 + frame.kind().len() as u64)
        }
        Err(v) => Ok(64 + v.what.len() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_agents_send_passes() {
        for f in frame::sample_frames() {
            assert!(check_from_agent(&f).is_ok(), "{f:?}");
        }
    }
}
