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

    #[test]
    fn every_frame_round_trips() {
        let frames = crate::examples::every_frame();
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
