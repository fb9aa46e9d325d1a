//! The agent end of the dashboard tunnel: each `TunnelOpen` is replayed
//! against `dashboardUrl` by a task of its own; the answer goes back as
//! `TunnelHead`, `TunnelData`… and `TunnelEnd` on the bulk queue, never more
//! data frames in flight than the server granted (`TunnelCredit`).

use ecp_protocol::{Frame, TunnelRequest, TUNNEL_CHUNK};
use futures_util::{FutureExt, StreamExt};
use reqwest::Url;
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

/// Streams one agent replays at once (the server opens at most 64).
const MAX_OPEN: usize = 64;

/// The URL a tunnel path is replayed at: `dashboardUrl` followed by the
/// path, which must be a clean dashboard path (no dot segments, see
/// `ecp_protocol::path`) and must stay on `dashboardUrl`'s scheme, host and
/// port. What the server sends is checked too.
pub fn target_url(base: &Url, path: &str) -> Result<Url, String> {
    ecp_protocol::path::check_tail(path).map_err(|e| e.to_string())?;
    let root = base.as_str().trim_end_matches('/');
    let url = Url::parse(&format!("{root}{path}")).map_err(|e| e.to_string())?;
    let same = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username() == base.username()
        && url.path().starts_with(base.path().trim_end_matches('/'));
    if !same {
        return Err("the path leaves the dashboard's address".into());
    }
    Ok(url)
}

/// A `Location` that names the dashboard's own address becomes a path
/// under the dashboard root (what the server accepts); others pass as they
/// are and the server decides.
pub fn local_location(base: &Url, value: &[u8]) -> Vec<u8> {
    let Some(abs) = std::str::from_utf8(value)
        .ok()
        .and_then(|v| Url::parse(v).ok())
    else {
        return value.to_vec();
    };
    let root = base.path().trim_end_matches('/');
    let same = abs.scheme() == base.scheme()
        && abs.host_str() == base.host_str()
        && abs.port_or_known_default() == base.port_or_known_default();
    match abs.path().strip_prefix(root) {
        Some(rest) if same && rest.starts_with('/') => {
            let mut out = rest.to_string();
            if let Some(q) = abs.query() {
                out.push('?');
                out.push_str(q);
            }
            if let Some(f) = abs.fragment() {
                out.push('#');
                out.push_str(f);
            }
            out.into_bytes()
        }
        _ => value.to_vec(),
    }
}

/// EMQX's dashboard login (v4 `POST /api/v4/auth`, v5 `POST /api/v5/login`)
/// checks the credentials in its body: the agent puts its own there, so
/// EMQX passwords never need to reach a browser.
fn is_login(method: &str, path: &str) -> bool {
    let p = path.split('?').next().unwrap_or(path);
    method == "POST" && (p == "/api/v4/auth" || p == "/api/v5/login")
}

pub struct Tunnels {
    http: reqwest::Client,
    base: Option<Url>,
    auth: watch::Receiver<Option<String>>,
    /// The login body with the agent's EMQX credentials.
    login: Vec<u8>,
    out: mpsc::Sender<Frame>,
    open: HashMap<u32, (JoinHandle<()>, Arc<Semaphore>)>,
}

impl Tunnels {
    pub fn new(
        http: reqwest::Client,
        dashboard_url: &str,
        credentials: (&str, &str),
        auth: watch::Receiver<Option<String>>,
        out: mpsc::Sender<Frame>,
    ) -> Tunnels {
        let login = serde_json::json!({"username": credentials.0, "password": credentials.1})
            .to_string()
            .into_bytes();
        Tunnels {
            http,
            base: Url::parse(dashboard_url).ok(),
            auth,
            login,
            out,
            open: HashMap::new(),
        }
    }

    pub fn on_frame(&mut self, frame: Frame) {
        self.open.retain(|_, (h, _)| !h.is_finished());
        match frame {
            Frame::TunnelOpen(mut req) => {
                let id = req.stream;
                let target = match &self.base {
                    Some(base) => target_url(base, &req.path),
                    None => Err("dashboardUrl is not a valid URL".into()),
                };
                let refused = match target {
                    Err(e) => Some(format!("refused by the agent: {e}")),
                    Ok(_) if self.open.len() >= MAX_OPEN || self.open.contains_key(&id) => {
                        Some("refused by the agent: too many streams".into())
                    }
                    Ok(url) => {
                        if is_login(&req.method, &req.path) {
                            req.body = self.login.clone();
                            req.headers
                                .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
                            req.headers
                                .push(("content-type".into(), b"application/json".to_vec()));
                        }
                        let credit = Arc::new(Semaphore::new(req.window.min(64) as usize));
                        let task = tokio::spawn(replay(
                            self.http.clone(),
                            url,
                            self.base.clone(),
                            self.auth.borrow().clone(),
                            req,
                            credit.clone(),
                            self.out.clone(),
                        ));
                        self.open.insert(id, (task, credit));
                        None
                    }
                };
                if let Some(error) = refused {
                    tracing::warn!(stream = id, reason = %error, "tunnel stream refused");
                    let _ = self.out.try_send(Frame::TunnelEnd {
                        stream: id,
                        error: Some(error),
                    });
                }
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

#[allow(clippy::too_many_arguments)]
async fn replay(
    http: reqwest::Client,
    url: Url,
    base: Option<Url>,
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
    // The URL is used as given: percent-escapes such as %2F stay.
    let mut rb = http.request(method, url);
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
            .map(|(n, v)| {
                let v = match &base {
                    Some(b) if n == reqwest::header::LOCATION => local_location(b, v.as_bytes()),
                    _ => v.as_bytes().to_vec(),
                };
                (n.as_str().to_string(), v)
            })
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
    fn paths_stay_on_the_dashboard_address() {
        let base = Url::parse("http://127.0.0.1:18083").expect("url");
        let ok = target_url(&base, "/api/v4/routes/a%2Fb?x=1").expect("ok");
        assert_eq!(
            ok.as_str(),
            "http://127.0.0.1:18083/api/v4/routes/a%2Fb?x=1"
        );
        for bad in [
            "@evil.example/x",
            "evil.example",
            "//evil.example/x",
            "/../x",
            "/%2e%2e/x",
            "/a\\b",
            "",
        ] {
            assert!(target_url(&base, bad).is_err(), "{bad}");
        }
        let sub = Url::parse("http://h:8080/emqx/").expect("url");
        assert_eq!(
            target_url(&sub, "/api/v4/nodes").expect("ok").as_str(),
            "http://h:8080/emqx/api/v4/nodes"
        );
    }

    #[test]
    fn absolute_redirects_to_the_dashboard_become_paths() {
        let base = Url::parse("http://127.0.0.1:18083/").expect("url");
        assert_eq!(
            local_location(&base, b"http://127.0.0.1:18083/#/login"),
            b"/#/login".to_vec()
        );
        assert_eq!(
            local_location(&base, b"http://evil.example/x"),
            b"http://evil.example/x".to_vec()
        );
        assert_eq!(local_location(&base, b"/x"), b"/x".to_vec());
        let sub = Url::parse("http://h/emqx/").expect("url");
        assert_eq!(
            local_location(&sub, b"http://h/emqx/a?b=1"),
            b"/a?b=1".to_vec()
        );
    }

    #[test]
    fn only_emqx_logins_get_the_agents_credentials() {
        assert!(is_login("POST", "/api/v4/auth"));
        assert!(is_login("POST", "/api/v5/login?x=1"));
        assert!(!is_login("GET", "/api/v4/auth"));
        assert!(!is_login("POST", "/api/v4/users"));
    }

    #[test]
    fn browser_credentials_are_not_replayed() {
        for h in ["authorization", "cookie", "host"] {
            assert!(skip_header(h));
        }
        assert!(!skip_header("accept"));
    }
}
