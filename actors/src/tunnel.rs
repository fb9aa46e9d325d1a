//! The server end of an agent's dashboard tunnel: many HTTP exchanges
//! multiplexed over one agent session as numbered streams.
//!
//! HTTP handlers open streams directly (no mailbox round trip): the request
//! goes into the session's *bulk* queue, so control frames never wait behind
//! it, and a full queue answers "agent busy" instead of growing memory. Each
//! stream's response arrives on a channel sized to the flow-control window:
//! the agent may have at most `TUNNEL_WINDOW` data frames of a stream in
//! flight, and gets credit back only as the HTTP client consumes them, so a
//! slow browser slows the agent's reads of EMQX, never the server's memory.

use crate::session::Out;
use actix_web::web::Bytes;
use ecp_protocol::{Frame, TunnelRequest, TUNNEL_WINDOW};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What a stream delivers, in order: one `Head`, any `Data`, one `End`.
#[derive(Debug)]
pub enum TunnelEvent {
    Head {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
    },
    Data(Vec<u8>),
    End(Option<String>),
}

/// What became of a tunnel frame from the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Passed to its stream, within the stream's credit.
    Delivered,
    /// For no open stream (the client left, or the agent made it up):
    /// dropped, and counted against the session's frame budget.
    Unknown,
    /// More than the stream's credit allows: the session must close.
    Overrun,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TunnelError {
    #[error("the agent's session is closed")]
    Closed,
    #[error("the agent is busy: its queue is full")]
    Busy,
}

/// Streams one session carries at once: with the window this bounds what a
/// session can hold in memory (64 × 8 × 64 KiB = 32 MiB at the very worst).
pub const MAX_STREAMS: usize = 64;

pub struct Tunnel {
    bulk: mpsc::Sender<Out>,
    next: AtomicU32,
    streams: Mutex<HashMap<u32, Open>>,
    closed: AtomicBool,
}

struct Open {
    tx: mpsc::Sender<TunnelEvent>,
    /// Data frames the agent may still send before the next credit.
    credit: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tunnel {
    pub(crate) fn new(bulk: mpsc::Sender<Out>) -> Arc<Tunnel> {
        Arc::new(Tunnel {
            bulk,
            next: AtomicU32::new(1),
            streams: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// Streams open right now.
    pub fn open_streams(&self) -> usize {
        lock(&self.streams).len()
    }

    fn send(&self, frame: &Frame) -> Result<(), TunnelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TunnelError::Closed);
        }
        let bytes = ecp_protocol::encode(frame).map_err(|_| TunnelError::Busy)?;
        self.bulk
            .try_send(Out::Binary(Bytes::from(bytes)))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => TunnelError::Busy,
                mpsc::error::TrySendError::Closed(_) => TunnelError::Closed,
            })
    }

    /// Opens a stream for one HTTP exchange.
    pub fn open(
        self: &Arc<Self>,
        method: String,
        path: String,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    ) -> Result<TunnelStream, TunnelError> {
        if self.open_streams() >= MAX_STREAMS {
            return Err(TunnelError::Busy);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // Head + a full window + End always fit: the agent cannot overflow it
        // without breaking the protocol.
        let (tx, rx) = mpsc::channel(TUNNEL_WINDOW as usize + 2);
        lock(&self.streams).insert(
            id,
            Open {
                tx,
                credit: TUNNEL_WINDOW,
            },
        );
        let open = Frame::TunnelOpen(TunnelRequest {
            stream: id,
            method,
            path,
            headers,
            body,
            window: TUNNEL_WINDOW,
        });
        if let Err(e) = self.send(&open) {
            lock(&self.streams).remove(&id);
            return Err(e);
        }
        Ok(TunnelStream {
            id,
            rx,
            tunnel: self.clone(),
            consumed: 0,
            ended: false,
        })
    }

    /// A tunnel frame from the agent, and what became of it.
    pub(crate) fn on_frame(&self, frame: Frame) -> Delivery {
        let (stream, event) = match frame {
            Frame::TunnelHead {
                stream,
                status,
                headers,
            } => (stream, TunnelEvent::Head { status, headers }),
            Frame::TunnelData { stream, data } => (stream, TunnelEvent::Data(data)),
            Frame::TunnelEnd { stream, error } => (stream, TunnelEvent::End(error)),
            _ => return Delivery::Unknown,
        };
        let end = matches!(event, TunnelEvent::End(_));
        let mut map = lock(&self.streams);
        let Some(open) = map.get_mut(&stream) else {
            // The client left already (late frames), or no such stream.
            return Delivery::Unknown;
        };
        if matches!(event, TunnelEvent::Data(_)) {
            if open.credit == 0 {
                let _ = open.tx.try_send(TunnelEvent::End(Some(
                    "the agent overran the stream's window".to_string(),
                )));
                map.remove(&stream);
                return Delivery::Overrun;
            }
            open.credit -= 1;
        }
        let delivered = match open.tx.try_send(event) {
            Ok(()) => Delivery::Delivered,
            // The reader is gone: forget the stream.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                map.remove(&stream);
                return Delivery::Unknown;
            }
            // More than Head + a window + End: the agent broke the protocol.
            Err(mpsc::error::TrySendError::Full(_)) => Delivery::Overrun,
        };
        if end || delivered != Delivery::Delivered {
            map.remove(&stream);
        }
        delivered
    }

    /// The session ended: every open stream ends with an error.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for (_, open) in lock(&self.streams).drain() {
            let _ = open.tx.try_send(TunnelEvent::End(Some(
                "the agent's session closed".to_string(),
            )));
        }
    }
}

/// The HTTP side of one stream. Dropping it before the end cancels the
/// stream at the agent.
pub struct TunnelStream {
    id: u32,
    rx: mpsc::Receiver<TunnelEvent>,
    tunnel: Arc<Tunnel>,
    consumed: u32,
    ended: bool,
}

impl TunnelStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next event; `None` when the stream vanished without an `End`.
    pub async fn next(&mut self) -> Option<TunnelEvent> {
        if self.ended {
            return None;
        }
        let ev = self.rx.recv().await;
        match &ev {
            Some(TunnelEvent::Data(_)) => {
                // Credit back half a window at a time.
                self.consumed += 1;
                if self.consumed >= TUNNEL_WINDOW / 2 {
                    let frames = std::mem::take(&mut self.consumed);
                    if let Some(open) = lock(&self.tunnel.streams).get_mut(&self.id) {
                        open.credit += frames;
                    }
                    let credit = Frame::TunnelCredit {
                        stream: self.id,
                        frames,
                    };
                    if self.tunnel.send(&credit).is_err() {
                        // Could not hand out credit: the agent would stall.
                        self.ended = true;
                        return Some(TunnelEvent::End(Some(
                            "the agent's queue is full".to_string(),
                        )));
                    }
                }
            }
            Some(TunnelEvent::End(_)) | None => self.ended = true,
            Some(TunnelEvent::Head { .. }) => {}
        }
        ev
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        lock(&self.tunnel.streams).remove(&self.id);
        if !self.ended {
            let _ = self.tunnel.send(&Frame::TunnelCancel { stream: self.id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(out: Out) -> Frame {
        match out {
            Out::Binary(b) => ecp_protocol::decode(&b).expect("frame"),
            _ => panic!("not a frame"),
        }
    }

    #[tokio::test]
    async fn a_stream_flows_with_credit_and_cancels_when_dropped() {
        let (tx, mut rx) = mpsc::channel(64);
        let t = Tunnel::new(tx);
        let mut s = t
            .open("GET".into(), "/a%2Fb".into(), vec![], vec![])
            .expect("open");
        let Frame::TunnelOpen(req) = decode(rx.recv().await.expect("open frame")) else {
            panic!("expected TunnelOpen")
        };
        assert_eq!((req.path.as_str(), req.window), ("/a%2Fb", TUNNEL_WINDOW));
        let id = req.stream;
        assert_eq!(
            t.on_frame(Frame::TunnelHead {
                stream: id,
                status: 200,
                headers: vec![]
            }),
            Delivery::Delivered
        );
        for i in 0..TUNNEL_WINDOW {
            assert_eq!(
                t.on_frame(Frame::TunnelData {
                    stream: id,
                    data: vec![i as u8]
                }),
                Delivery::Delivered
            );
        }
        // One more than the window breaks the contract.
        assert_eq!(
            t.on_frame(Frame::TunnelData {
                stream: id,
                data: vec![0]
            }),
            Delivery::Overrun
        );
        // A stream nobody opened is no stream.
        assert_eq!(
            t.on_frame(Frame::TunnelData {
                stream: 999,
                data: vec![0]
            }),
            Delivery::Unknown
        );
        assert!(matches!(
            s.next().await,
            Some(TunnelEvent::Head { status: 200, .. })
        ));
        for _ in 0..TUNNEL_WINDOW / 2 {
            assert!(matches!(s.next().await, Some(TunnelEvent::Data(_))));
        }
        assert_eq!(
            decode(rx.recv().await.expect("credit")),
            Frame::TunnelCredit {
                stream: id,
                frames: TUNNEL_WINDOW / 2
            }
        );
        drop(s);
        assert_eq!(
            decode(rx.recv().await.expect("cancel")),
            Frame::TunnelCancel { stream: id }
        );
        assert_eq!(t.open_streams(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_and_a_closed_session_ends_streams() {
        let (tx, _rx) = mpsc::channel(1);
        let t = Tunnel::new(tx);
        let mut s = t
            .open("GET".into(), "/".into(), vec![], vec![])
            .expect("first fits");
        assert_eq!(
            t.open("GET".into(), "/".into(), vec![], vec![]).err(),
            Some(TunnelError::Busy)
        );
        t.close();
        assert!(matches!(s.next().await, Some(TunnelEvent::End(Some(_)))));
        assert_eq!(
            t.open("GET".into(), "/".into(), vec![], vec![]).err(),
            Some(TunnelError::Closed)
        );
    }
}
