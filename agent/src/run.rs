//! The run loop: wait for a credential, keep a session, poll EMQX, report.

use crate::emqx::{Emqx, Observation};
use crate::home::{Credential, Home, Settings, Status};
use crate::tls;
use crate::tunnel::Tunnels;
use ecp_protocol::{AfterClose, AgentHello, CloseCode, Frame, Report};
use emqxee_agent::metrics::{Link, Metrics};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

pub struct RunOptions {
    /// Exit non-zero after this long without a session (a supervisor restarts us).
    pub watchdog: Duration,
}

enum SessionEnd {
    /// Reconnect after a delay chosen by backoff.
    Lost(String),
    /// The server asked us to move (draining): reconnect after this long.
    Moved(Duration),
    /// The cluster was deleted or the agent revoked: credential dropped.
    Dropped(String),
    Terminate,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Full-jitter exponential backoff, capped at 60 s.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 60_000u64;
    let ceiling = (500u64 << attempt.min(10)).min(cap);
    Duration::from_millis(rand::random_range(0..=ceiling))
}

pub async fn run(home: Home, opts: RunOptions) -> Result<(), String> {
    home.ensure()?;
    let pid = std::process::id();
    crate::home::write_private(&home.pid_path(), pid.to_string().as_bytes())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let result = tokio::select! {
        r = main_loop(&home, &opts, pid) => r,
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    };
    let _ = std::fs::remove_file(home.pid_path());
    tracing::info!("agent stopped");
    result
}

/// The metrics collector for these settings: it reads EMQX on its own,
/// session or not.
fn start_metrics(home: &Home, s: &Settings) -> Result<Metrics, String> {
    let tls = tls::client_config(s.insecure, s.ca_file.as_deref())?;
    let http = tls::http_client(&tls, Duration::from_secs(10))?;
    Ok(Metrics::spawn(Emqx::new(
        http,
        &s.api_url,
        &s.dashboard_username,
        &s.dashboard_password,
        home.seen_nodes(),
    )))
}

async fn main_loop(home: &Home, opts: &RunOptions, pid: u32) -> Result<(), String> {
    let mut attempt = 0u32;
    let mut offline_since = Instant::now();
    let mut last_state = String::new();
    // Outlives sessions (it keeps collecting while ECP is out of reach);
    // started again when the settings change, stopped with the credential.
    let mut metrics: Option<(Settings, Metrics)> = None;
    loop {
        let (Some(settings), Some(cred)) = (home.settings()?, home.credential()?) else {
            if last_state != "idle" {
                tracing::info!("not registered; idling until `emqxee-agent register` runs");
                home.save_status(&Status {
                    pid,
                    state: "idle".into(),
                    since_ms: now_ms(),
                    ..Default::default()
                });
                last_state = "idle".into();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            offline_since = Instant::now();
            continue;
        };
        last_state = "connecting".into();
        home.save_status(&Status {
            pid,
            state: "connecting".into(),
            since_ms: now_ms(),
            ..Default::default()
        });
        if metrics.as_ref().is_none_or(|(was, _)| *was != settings) {
            metrics = match start_metrics(home, &settings) {
                Ok(m) => Some((settings.clone(), m)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start collecting EMQX metrics");
                    None
                }
            };
        }
        let collector = metrics.as_ref().map(|(_, m)| m);
        let end = session(home, &settings, &cred, pid, &mut attempt, collector).await;
        match end {
            SessionEnd::Terminate => return Ok(()),
            SessionEnd::Dropped(why) => {
                tracing::warn!(reason = %why, "credential dropped; idling");
                metrics = None;
                home.drop_credential()?;
                attempt = 0;
            }
            SessionEnd::Moved(after) => {
                attempt = 0;
                offline_since = Instant::now();
                tokio::time::sleep(after).await;
            }
            SessionEnd::Lost(why) => {
                if attempt == 0 {
                    offline_since = Instant::now();
                }
                if offline_since.elapsed() > opts.watchdog {
                    return Err(format!("no session with ECP for {:?} ({why}); exiting so the supervisor restarts the agent", opts.watchdog));
                }
                let wait = backoff(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(reason = %why, retry_in = ?wait, "session lost");
                home.save_status(&Status {
                    pid,
                    state: "connecting".into(),
                    since_ms: now_ms(),
                    last_error: Some(why),
                    ..Default::default()
                });
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn session(
    home: &Home,
    s: &Settings,
    cred: &Credential,
    pid: u32,
    attempt: &mut u32,
    metrics: Option<&Metrics>,
) -> SessionEnd {
    let tls = match tls::client_config(s.insecure, s.ca_file.as_deref()) {
        Ok(t) => t,
        Err(e) => return SessionEnd::Lost(e),
    };
    let http = match tls::http_client(&tls, Duration::from_secs(10)) {
        Ok(h) => h,
        Err(e) => return SessionEnd::Lost(e),
    };
    // Dashboard downloads may take long: no overall timeout there. EMQX's
    // redirects go back to the browser (rewritten), never followed here.
    let tunnel_http = match tls::tunnel_client(&tls) {
        Ok(h) => h,
        Err(e) => return SessionEnd::Lost(e),
    };
    let ws_url = format!(
        "{}/api/clusters/agents/emqxee/connect",
        s.url.replacen("http", "ws", 1)
    );
    let mut req = match ws_url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return SessionEnd::Lost(e.to_string()),
    };
    if let Ok(v) = format!("Bearer {}", cred.token).parse() {
        req.headers_mut().insert("authorization", v);
    }
    // The URL is resolved again on every attempt.
    let connector = tokio_tungstenite::Connector::Rustls(Arc::clone(&tls));
    let ws = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(connector)),
    )
    .await;
    let mut ws = match ws {
        Err(_) => return SessionEnd::Lost("connect timed out".into()),
        Ok(Err(tungstenite::Error::Http(r))) => {
            return match r.status().as_u16() {
                401 => SessionEnd::Dropped(
                    "ECP no longer accepts this agent's credential (revoked)".into(),
                ),
                410 => SessionEnd::Dropped("the cluster was deleted in ECP".into()),
                code => SessionEnd::Lost(format!("ECP answered {code}")),
            }
        }
        Ok(Err(e)) => return SessionEnd::Lost(format!("cannot connect to ECP: {e}")),
        Ok(Ok((ws, _))) => ws,
    };
    let hello = Frame::Hello {
        protocol: ecp_protocol::PROTOCOL_VERSION,
        agent: AgentHello {
            agent_id: cred.agent_id.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            node_name: String::new(),
        },
    };
    match ecp_protocol::encode(&hello) {
        Ok(b) => {
            if let Err(e) = ws.send(Message::Binary(b.into())).await {
                return SessionEnd::Lost(format!("send failed: {e}"));
            }
        }
        Err(e) => return SessionEnd::Lost(e.to_string()),
    }
    let settings = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Binary(b)))) => match decode_welcome(&b) {
            Ok(Frame::Welcome { settings }) => settings,
            Ok(other) => {
                return SessionEnd::Lost(format!("expected Welcome, got {}", other.kind()))
            }
            Err(e) => return SessionEnd::Lost(e.to_string()),
        },
        Ok(Some(Ok(Message::Close(f)))) => return on_close(f),
        Ok(other) => return SessionEnd::Lost(format!("no Welcome: {other:?}")),
        Err(_) => return SessionEnd::Lost("no Welcome within 10 s".into()),
    };
    *attempt = 0;
    tracing::info!(cluster_id = %settings.cluster_id, "session up");
    // From here on one writer task owns the socket: control frames first,
    // bulk frames (dashboard bytes, log batches) when no control is waiting.
    let (sink, mut stream) = ws.split();
    let (control, control_rx) = mpsc::channel::<Message>(32);
    let (bulk, bulk_rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(write_loop(sink, control_rx, bulk_rx));
    let end = connected(
        home,
        s,
        (pid, cred),
        &settings,
        (http, tunnel_http),
        &control,
        bulk,
        &mut stream,
        metrics,
    )
    .await;
    if let Some(m) = metrics {
        m.down();
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), control.send(Message::Close(None))).await;
    drop(control);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    end
}

type WsStream = futures_util::stream::SplitStream<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
>;
type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

async fn write_loop(
    mut sink: WsSink,
    mut control: mpsc::Receiver<Message>,
    mut bulk: mpsc::Receiver<Frame>,
) {
    loop {
        let msg = tokio::select! {
            biased;
            c = control.recv() => match c {
                Some(m) => m,
                None => return,
            },
            Some(f) = bulk.recv() => match ecp_protocol::encode(&f) {
                Ok(b) => Message::Binary(b.into()),
                Err(e) => {
                    tracing::error!(error = %e, kind = f.kind(), "cannot encode frame");
                    continue;
                }
            },
        };
        let close = matches!(msg, Message::Close(_));
        if sink.send(msg).await.is_err() || close {
            return;
        }
    }
}

/// Sends a control frame (waits while the control queue is full).
async fn send(control: &mpsc::Sender<Message>, frame: &Frame) -> Result<(), String> {
    let bytes = ecp_protocol::encode(frame).map_err(|e| e.to_string())?;
    control
        .send(Message::Binary(bytes.into()))
        .await
        .map_err(|_| "send failed: connection closed".to_string())
}

#[allow(clippy::too_many_arguments)]
async fn connected(
    home: &Home,
    s: &Settings,
    (pid, cred): (u32, &Credential),
    settings: &ecp_protocol::Settings,
    (http, tunnel_http): (reqwest::Client, reqwest::Client),
    control: &mpsc::Sender<Message>,
    bulk: mpsc::Sender<Frame>,
    stream: &mut WsStream,
    metrics: Option<&Metrics>,
) -> SessionEnd {
    // The collector sends samples and alarm snapshots on the bulk queue.
    if let Some(m) = metrics {
        m.up(Link {
            bulk: bulk.clone(),
            alarms: bulk.clone(),
            interval_secs: settings.metrics_interval_secs,
        })
        .await;
    }
    let (auth_tx, auth_rx) = watch::channel(None);
    let mut tunnels = Tunnels::new(
        tunnel_http,
        &s.dashboard_url,
        (&s.dashboard_username, &s.dashboard_password),
        auth_rx,
        bulk.clone(),
    );
    let mut logs = crate::logship::start(home, s, bulk.clone());
    let mut emqx = Emqx::new(
        http,
        &s.api_url,
        &s.dashboard_username,
        &s.dashboard_password,
        home.seen_nodes(),
    );
    let report_every = Duration::from_secs(u64::from(settings.report_interval_secs.max(1)));
    let heartbeat_every = Duration::from_secs(u64::from(settings.heartbeat_interval_secs.max(1)));
    let ping_every = Duration::from_secs(u64::from(settings.ping_interval_secs.max(1)));
    let mut poll = tokio::time::interval(report_every);
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut last_sent: Option<Observation> = None;
    let mut last_heard = Instant::now();
    let mut seq = 0u64;
    let mut term = match signal(SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => return SessionEnd::Lost(e.to_string()),
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                return SessionEnd::Terminate;
            }
            _ = poll.tick() => {
                let obs = emqx.observe().await;
                auth_tx.send_replace(emqx.dashboard_auth());
                // v5 names the node that answered; for v4 it is the node
                // named after this host, else the first one (as at registration).
                let local = obs.local_node.clone().or_else(|| obs.nodes.first().map(|n| n.name.clone()));
                if let (Some(l), Some(node)) = (logs.as_mut(), local) {
                    l.set_node(node);
                }
                if !obs.nodes.is_empty() {
                    let names: Vec<String> = emqx.seen.iter().cloned().collect();
                    if names != home.seen_nodes() {
                        home.save_seen_nodes(&names);
                    }
                }
                // Report only what changed (or the first time in a session).
                let changed = last_sent.as_ref().map(|l| !same(l, &obs)).unwrap_or(true);
                if changed {
                    seq += 1;
                    let frame = Frame::Report(Report {
                        seq,
                        observed_at_ms: now_ms(),
                        health: obs.health.clone(),
                        emqx: obs.emqx.clone(),
                        nodes: obs.nodes.clone(),
                        connections: obs.connections,
                    });
                    if let Err(e) = send(control, &frame).await {
                        return SessionEnd::Lost(e);
                    }
                    tracing::info!(health = ?obs.health, "report sent");
                    home.save_status(&Status { pid, state: "connected".into(), since_ms: now_ms(), last_error: None,
                        emqx: Some(format!("{:?}", obs.health)) });
                    last_sent = Some(obs);
                }
            }
            _ = heartbeat.tick() => {
                seq += 1;
                if let Err(e) = send(control, &Frame::Heartbeat { seq, at_ms: now_ms() }).await {
                    return SessionEnd::Lost(e);
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 3 {
                    return SessionEnd::Lost("no traffic from ECP: timed out".into());
                }
                if control.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return SessionEnd::Lost("ping failed".into());
                }
            }
            msg = stream.next() => {
                last_heard = Instant::now();
                match msg {
                    None => return SessionEnd::Lost("ECP closed the connection".into()),
                    Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                    Some(Ok(Message::Binary(b))) => match ecp_protocol::decode(&b) {
                        Ok(Frame::Reconnect { after_ms, reason }) => {
                            tracing::info!(reason = %reason, "asked to reconnect");
                            let jitter = rand::random_range(0..=after_ms.max(1));
                            return SessionEnd::Moved(Duration::from_millis(after_ms + jitter));
                        }
                        Ok(Frame::Unregister { reason }) => {
                            let _ = home.drop_credential();
                            let _ = send(control, &Frame::UnregisterAck).await;
                            return SessionEnd::Dropped(reason);
                        }
                        Ok(Frame::Credential { token }) => {
                            // Stored durably before the acknowledgement: after
                            // it, only the new credential works.
                            let fresh = Credential { token, ..cred.clone() };
                            match home.save_credential(&fresh) {
                                Ok(()) => {
                                    if let Err(e) = send(control, &Frame::CredentialAck).await {
                                        return SessionEnd::Lost(e);
                                    }
                                    tracing::info!("credential rotated");
                                }
                                Err(e) => tracing::warn!(error = %e, "cannot store the new credential; keeping the old one"),
                            }
                        }
                        Ok(Frame::LogAck { batch }) => {
                            if let Some(l) = logs.as_ref() {
                                l.acked(batch);
                            }
                        }
                        Ok(Frame::MetricsAck { batch }) => {
                            if let Some(m) = metrics {
                                m.acked(batch);
                            }
                        }
                        Ok(f @ (Frame::TunnelOpen(_) | Frame::TunnelCredit { .. } | Frame::TunnelCancel { .. })) => {
                            tunnels.on_frame(f);
                        }
                        Ok(other) => tracing::debug!(kind = other.kind(), "ignored frame"),
                        Err(e) => tracing::warn!(error = %e, "bad frame from ECP"),
                    },
                    Some(Ok(Message::Close(f))) => return on_close(f),
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}

/// The answer to `Hello`. A server older than protocol 3 sends its Welcome
/// without `metrics_interval_secs` (the frame ends before it), which this
/// build's decoder cannot read as is: it reads as 0, "takes no metrics",
/// so the agent neither collects nor sends them to that server.
fn decode_welcome(bytes: &[u8]) -> Result<Frame, ecp_protocol::CodecError> {
    match ecp_protocol::decode(bytes) {
        Err(e @ ecp_protocol::CodecError::Malformed(_)) => {
            let mut padded = bytes.to_vec();
            padded.push(0);
            match ecp_protocol::decode(&padded) {
                Ok(f @ Frame::Welcome { .. }) => Ok(f),
                _ => Err(e),
            }
        }
        other => other,
    }
}

/// What ECP's close frame means: decided by its code alone (the text is
/// for people). Only a code that says this agent was removed drops the
/// credential; any other, one this build does not know, or none at all,
/// reconnects with backoff (a credential that really is gone is refused at
/// connect, 401/410, which drops it then).
fn on_close(frame: Option<CloseFrame>) -> SessionEnd {
    let number = frame.as_ref().map(|f| u16::from(f.code));
    let why = match (&frame, number.and_then(CloseCode::from_u16)) {
        (None, _) => "no close code".to_string(),
        (Some(f), Some(c)) => format!("{c}: {}", f.reason),
        (Some(f), None) => format!("code {}: {}", u16::from(f.code), f.reason),
    };
    match ecp_protocol::close::after_close(number) {
        AfterClose::DropCredential => SessionEnd::Dropped(why),
        AfterClose::ReconnectNow => {
            tracing::info!(reason = %why, "ECP closed the session: moving");
            SessionEnd::Moved(Duration::from_millis(rand::random_range(0..=1_000)))
        }
        AfterClose::Reconnect => SessionEnd::Lost(format!("ECP closed the session ({why})")),
    }
}

/// Equal for reporting purposes (uptime and observation time ignored).
fn same(a: &Observation, b: &Observation) -> bool {
    let strip = |o: &Observation| {
        o.nodes
            .iter()
            .map(|n| (n.name.clone(), n.running, n.version.clone(), n.connections))
            .collect::<Vec<_>>()
    };
    a.health == b.health
        && a.emqx == b.emqx
        && a.connections == b.connections
        && strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        for a in 0..20 {
            assert!(backoff(a) <= Duration::from_secs(60));
        }
        let spread: std::collections::BTreeSet<u128> =
            (0..50).map(|_| backoff(6).as_millis()).collect();
        assert!(spread.len() > 10, "full jitter spreads retries");
    }

    fn close(code: u16, text: &str) -> Option<CloseFrame> {
        Some(CloseFrame {
            code: code.into(),
            reason: text.into(),
        })
    }

    #[test]
    fn only_a_known_removal_code_drops_the_credential() {
        for c in [
            CloseCode::Revoked,
            CloseCode::ClusterDeleted,
            CloseCode::Unregistered,
        ] {
            assert!(
                matches!(on_close(close(c.code(), "")), SessionEnd::Dropped(_)),
                "{c:?}"
            );
        }
        for c in CloseCode::ALL {
            let end = on_close(close(c.code(), "cluster was deleted"));
            match c.after_close() {
                AfterClose::DropCredential => assert!(matches!(end, SessionEnd::Dropped(_))),
                AfterClose::ReconnectNow => assert!(matches!(end, SessionEnd::Moved(_))),
                AfterClose::Reconnect => assert!(matches!(end, SessionEnd::Lost(_)), "{c:?}"),
            }
        }
    }

    #[test]
    fn a_code_from_a_newer_server_reconnects_whatever_its_text_says() {
        // A newer encoder's code: the text would have dropped a protocol 1 agent.
        for text in ["cluster was deleted", "agent was unregistered"] {
            match on_close(close(4999, text)) {
                SessionEnd::Lost(why) => assert!(why.contains("4999"), "{why}"),
                _ => panic!("{text}: must reconnect, keeping the credential"),
            }
        }
        // An older server's standard code with the old text: reconnect too.
        assert!(matches!(
            on_close(close(1008, "cluster was deleted")),
            SessionEnd::Lost(_)
        ));
        assert!(matches!(on_close(None), SessionEnd::Lost(_)));
    }

    #[test]
    fn a_welcome_without_the_metrics_interval_reads_as_no_metrics() {
        let settings = ecp_protocol::Settings {
            cluster_id: "c1".into(),
            heartbeat_interval_secs: 5,
            report_interval_secs: 3,
            ping_interval_secs: 10,
            metrics_interval_secs: 15,
        };
        let now = ecp_protocol::encode(&Frame::Welcome {
            settings: settings.clone(),
        })
        .expect("encode");
        assert_eq!(
            decode_welcome(&now).expect("protocol 3"),
            Frame::Welcome {
                settings: settings.clone()
            }
        );
        // Protocol 2 wrote the same fields but the last (15: one varint byte).
        let old = &now[..now.len() - 1];
        assert!(
            ecp_protocol::decode(old).is_err(),
            "the plain decoder fails"
        );
        let Ok(Frame::Welcome { settings: got }) = decode_welcome(old) else {
            panic!("an older server's Welcome is read");
        };
        assert_eq!(got.metrics_interval_secs, 0);
        assert_eq!(got.cluster_id, "c1");
        assert!(decode_welcome(&[0xff; 3]).is_err(), "garbage stays garbage");
    }

    #[test]
    fn draining_moves_at_once_with_a_stagger() {
        match on_close(close(CloseCode::Draining.code(), "node draining")) {
            SessionEnd::Moved(after) => assert!(after <= Duration::from_secs(1)),
            _ => panic!("draining moves"),
        }
    }
}
