//! The agent end of the dashboard tunnel: each `TunnelOpen` is replayed
//! against `dashboardUrl` by a task of its own; the answer goes back as
//! `TunnelHead`, `TunnelData`… and `TunnelEnd` on the bulk queue, never more
//! data frames in flight than the server granted (`TunnelCredit`).

use ecp_protocol::{Frame, TunnelRequest, TUNNEL_CHUNK};
use futures_util::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

/// Request headers the agent never replays (it sets its own).
fn skip_header(name: &str) -> bool {
    matches!(
        name,
        "authorization" | "cookie" | "host" | "connection" | "content-length" | "transfer-encoding"
    )
}

pub struct Tunnels {
    http: reqwest::Client,
    base: String,
    auth: watch::Receiver<Option<String>>,
    out: mpsc::Sender<Frame>,
    open: HashMap<u32, (JoinHandle<()>, Arc<Semaphore>)>,
}

impl Tunnels {
    pub fn new(
        http: reqwest::Client,
        dashboard_url: &str,
        auth: watch::Receiver<Option<String>>,
        out: mpsc::Sender<Frame>,
    ) -> Tunnels {
        Tunnels {
            http,
            base: dashboard_url.trim_end_matches('/').to_string(),
            auth,
            out,
            open: HashMap::new(),
        }
    }

    pub fn on_frame(&mut self, frame: Frame) {
        self.open.retain(|_, (h, _)| !h.is_finished());
        match frame {
            Frame::TunnelOpen(req) => {
                let credit = Arc::new(Semaphore::new(req.window as usize));
                let id = req.stream;
                let task = tokio::spawn(replay(
                    self.http.clone(),
                    format!("{}{}", self.base, req.path),
                    self.auth.borrow().clone(),
                    req,
                    credit.clone(),
                    self.out.clone(),
                ));
                self.open.insert(id, (task, credit));
            }
            Frame::TunnelCredit { stream, frames } => {
                if let Some((_, c)) = self.open.get(&stream) {
                    c.add_permits(frames as usize);
                }
            }
            Frame::TunnelCancel { stream } => {
                if let Some((h, _)) = self.open.remove(&stream) {
                    h.abort();
                }
            }
            _ => {}
        }
    }
}

impl Drop for Tunnels {
    fn drop(&mut self) {
        for (_, (h, _)) in self.open.drain() {
            h.abort();
        }
    }
}

async fn replay(
    http: reqwest::Client,
    url: String,
    auth: Option<String>,
    req: TunnelRequest,
    credit: Arc<Semaphore>,
    out: mpsc::Sender<Frame>,
) {
    let stream = req.stream;
    let end = |error: Option<String>| Frame::TunnelEnd { stream, error };
    let method = match reqwest::Method::from_bytes(req.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            let _ = out.send(end(Some("bad method".into()))).await;
            return;
        }
    };
    // The URL is used as given: reqwest keeps percent-escapes such as %2F.
    let mut rb = http.request(method, &url);
    for (n, v) in &req.headers {
        if !skip_header(&n.to_ascii_lowercase()) {
            rb = rb.header(n.as_str(), v.as_slice());
        }
    }
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    if !req.body.is_empty() {
        rb = rb.body(req.body);
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(stream, error = %e, "dashboard request failed");
            let _ = out
                .send(end(Some(format!("EMQX dashboard unreachable: {e}"))))
                .await;
            return;
        }
    };
    let head = Frame::TunnelHead {
        stream,
        status: resp.status().as_u16(),
        headers: resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
    };
    if out.send(head).await.is_err() {
        return;
    }
    let mut body = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    loop {
        // Wait for some bytes, then take whatever else is ready at once, so
        // frames are full when EMQX is fast and prompt when it trickles.
        let mut finished = false;
        let mut next = body.next().await;
        loop {
            match next {
                Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
                Some(Err(e)) => {
                    let _ = out.send(end(Some(format!("EMQX dashboard: {e}")))).await;
                    return;
                }
                None => finished = true,
            }
            if finished || pending.len() >= TUNNEL_CHUNK {
                break;
            }
            match body.next().now_or_never() {
                Some(n) => next = n,
                None => break,
            }
        }
        while !pending.is_empty() {
            let take = pending.len().min(TUNNEL_CHUNK);
            let data: Vec<u8> = pending.drain(..take).collect();
            match credit.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => return,
            }
            if out.send(Frame::TunnelData { stream, data }).await.is_err() {
                return;
            }
        }
        if finished {
            let _ = out.send(end(None)).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_credentials_are_not_replayed() {
        for h in ["authorization", "cookie", "host"] {
            assert!(skip_header(h));
        }
        assert!(!skip_header("accept"));
    }
}
