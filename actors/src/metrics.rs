//! Counters behind `/metrics`. Plain atomics: cheap on hot paths.

use std::sync::atomic::{AtomicI64, AtomicU64};

#[derive(Default)]
pub struct Metrics {
    pub sessions: AtomicI64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bad_frames: AtomicU64,
    pub slow_disconnects: AtomicU64,
    pub registrations: AtomicU64,
    pub registration_failures: AtomicU64,
    /// Log lines stored (after de-duplication).
    pub log_lines: AtomicU64,
    /// Dashboard proxy requests served through a tunnel on this node.
    pub tunnel_requests: AtomicU64,
}
