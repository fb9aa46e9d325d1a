//! A small protocol client that speaks to `ecp` the way an agent does:
//! register over HTTP, then a WebSocket session of bincode frames. Used by
//! the integration tests and the session benchmark until (and beside) the
//! real agent.

use ecp_protocol::register::{
    RegisterEmqx, RegisterLogCollection, RegisterRequest, RegisterResponse,
};
use ecp_protocol::{
    AgentHello, CloseCode, Connections, EmqxSummary, Frame, Health, NodeStatus, Report, Settings,
};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the benchmarks do over the API before agents come in.
pub mod bench {
    use serde_json::{json, Value};

    /// Logs in; the Bearer token.
    pub async fn login(
        http: &reqwest::Client,
        base: &str,
        username: &str,
        password: &str,
    ) -> Result<String, super::Error> {
        let v: Value = http
            .post(format!("{base}/api/account/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await?
            .json()
            .await?;
        Ok(v["accessToken"].as_str().ok_or("login failed")?.to_string())
    }

    /// Creates a cluster in the default project and issues a registration
    /// token for it: (cluster id, token).
    pub async fn cluster_with_token(
        http: &reqwest::Client,
        base: &str,
        token: &str,
        name: &str,
    ) -> Result<(String, String), super::Error> {
        let p = format!("{base}/api/orgs/default/projects/default/clusters");
        let c: Value = http
            .post(&p)
            .bearer_auth(token)
            .json(&json!({"name": name}))
            .send()
            .await?
            .json()
            .await?;
        let id = c["id"].as_str().ok_or("create failed")?.to_string();
        let t: Value = http
            .post(format!("{p}/{id}/registration-tokens"))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await?
            .json()
            .await?;
        Ok((id, t["token"].as_str().ok_or("token failed")?.to_string()))
    }
}

/// A process's memory and CPU time from `/proc`, for the benchmarks.
pub mod procstat {
    /// Resident set size in KiB (0 when unreadable).
    pub fn rss_kib(pid: u32) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// utime + stime in clock ticks.
    pub fn cpu_ticks(pid: u32) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the ")" of the command name; utime and stime are 14 and 15.
        let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        get(11) + get(12)
    }

    /// Clock ticks per second.
    pub fn clk_tck() -> u64 {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    }
}

/// What `POST /api/clusters/agents/emqxee/register` answered.
pub type Registration = RegisterResponse;

/// A register body as an agent on `node_name` running EMQX `version` sends it.
pub fn register_body(
    registration_token: &str,
    node_id: &str,
    node_name: &str,
    version: &str,
) -> RegisterRequest {
    RegisterRequest {
        registration_token: registration_token.into(),
        node_id: node_id.into(),
        agent_version: "testkit".into(),
        hostname: "test-host".into(),
        machine_id: format!("machine-{node_id}"),
        emqx: RegisterEmqx {
            version: version.into(),
            edition: "Enterprise".into(),
            cluster_name: "emqxcl".into(),
            nodes: vec![node_name.into()],
            local_node: node_name.into(),
        },
        dashboard_url: "http://127.0.0.1:18083".into(),
        api_url: String::new(),
        log_collection: RegisterLogCollection {
            enabled: false,
            dir: "/opt/emqx/log".into(),
        },
    }
}

/// Registers with `body` (a [`RegisterRequest`]; a bad-input test may pass
/// raw JSON on purpose); `Err((status, error body))` for a refusal.
pub async fn register<B: Serialize + ?Sized>(
    http: &reqwest::Client,
    base: &str,
    body: &B,
) -> Result<Registration, (u16, Value)> {
    let res = http
        .post(format!("{base}/api/clusters/agents/emqxee/register"))
        .json(body)
        .send()
        .await
        .map_err(|e| (0, json!({"message": e.to_string()})))?;
    let status = res.status().as_u16();
    let bytes = res
        .bytes()
        .await
        .map_err(|e| (status, json!({"message": e.to_string()})))?;
    if status != 200 {
        return Err((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| (status, json!({"message": e.to_string()})))
}

/// A healthy report of a cluster with these nodes (all running).
pub fn report(seq: u64, health: Health, nodes: &[(&str, bool)]) -> Frame {
    Frame::Report(Report {
        seq,
        observed_at_ms: 0,
        health,
        emqx: Some(EmqxSummary {
            version: "5.6.0".into(),
            edition: "Enterprise".into(),
            cluster_name: "emqxcl".into(),
        }),
        nodes: nodes
            .iter()
            .map(|(n, running)| NodeStatus {
                name: n.to_string(),
                running: *running,
                version: Some("5.6.0".into()),
                role: Some("core".into()),
                connections: Some(if *running { 10 } else { 0 }),
                uptime_secs: Some(60),
            })
            .collect(),
        connections: Some(Connections {
            current: 10 * nodes.iter().filter(|n| n.1).count() as u64,
            max: Some(100_000),
        }),
    })
}

/// Why a WebSocket connect failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server refused the upgrade with this HTTP status.
    Status(u16),
    /// The session opened but closed before `Welcome` (`"code: text"`,
    /// and the code when it is one of [`CloseCode`]).
    Closed(Option<String>, Option<CloseCode>),
    Other(Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ConnectError {}

pub struct Session {
    ws: WebSocketStream<TcpStream>,
    pub settings: Option<Settings>,
    pub agent_id: String,
    /// `"code: text"` of the server's close frame (taken by `closed`).
    pub close_reason: Option<String>,
    /// The number in the server's close frame (kept).
    pub close_number: Option<u16>,
    seq: u64,
}

impl Session {
    /// Opens the WebSocket (optionally from a given local IP), without Hello.
    pub async fn open(
        base: &str,
        credential: &str,
        agent_id: &str,
        local_ip: Option<IpAddr>,
    ) -> Result<Session, ConnectError> {
        let url = format!(
            "{}/api/clusters/agents/emqxee/connect",
            base.replacen("http://", "ws://", 1)
        );
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| ConnectError::Other(e.into()))?;
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {credential}").parse().map_err(
                |e: tungstenite::http::header::InvalidHeaderValue| ConnectError::Other(e.into()),
            )?,
        );
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let addr: SocketAddr = tokio::net::lookup_host(&host)
            .await
            .map_err(|e| ConnectError::Other(e.into()))?
            .next()
            .ok_or_else(|| ConnectError::Other("no address".into()))?;
        let socket = TcpSocket::new_v4().map_err(|e| ConnectError::Other(e.into()))?;
        if let Some(ip) = local_ip {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| ConnectError::Other(e.into()))?;
        }
        let tcp = socket
            .connect(addr)
            .await
            .map_err(|e| ConnectError::Other(e.into()))?;
        let (ws, _) = tokio_tungstenite::client_async(req, tcp)
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(r) => ConnectError::Status(r.status().as_u16()),
                other => ConnectError::Other(other.into()),
            })?;
        Ok(Session {
            ws,
            settings: None,
            agent_id: agent_id.to_string(),
            close_reason: None,
            close_number: None,
            seq: 0,
        })
    }

    /// Opens, sends Hello and waits for Welcome. Speaks protocol 1: no
    /// credential rotation, so tests and benchmarks can reconnect with the
    /// credential they registered with (the server still serves protocol 1;
    /// rotation is tested with the real agent).
    pub async fn connect(
        base: &str,
        credential: &str,
        agent_id: &str,
        local_ip: Option<IpAddr>,
    ) -> Result<Session, ConnectError> {
        Session::connect_speaking(1, base, credential, agent_id, local_ip).await
    }

    /// As `connect`, with the protocol version said in Hello.
    pub async fn connect_speaking(
        protocol: u16,
        base: &str,
        credential: &str,
        agent_id: &str,
        local_ip: Option<IpAddr>,
    ) -> Result<Session, ConnectError> {
        let mut s = Session::open(base, credential, agent_id, local_ip).await?;
        s.send(&Frame::Hello {
            protocol,
            agent: AgentHello {
                agent_id: agent_id.to_string(),
                agent_version: "testkit".into(),
                node_name: "emqx@test".into(),
            },
        })
        .await
        .map_err(ConnectError::Other)?;
        match s.next_frame(Duration::from_secs(10)).await {
            Ok(Some(Frame::Welcome { settings })) => {
                s.settings = Some(settings);
                Ok(s)
            }
            Ok(Some(other)) => Err(ConnectError::Other(
                format!("expected Welcome, got {other:?}").into(),
            )),
            Ok(None) => Err(ConnectError::Closed(s.close_reason.take(), s.close_code())),
            Err(e) => Err(ConnectError::Other(e)),
        }
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<(), Error> {
        let bytes = ecp_protocol::encode(frame)?;
        self.send_raw(bytes).await
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    pub async fn heartbeat(&mut self) -> Result<(), Error> {
        self.seq += 1;
        let seq = self.seq;
        self.send(&Frame::Heartbeat { seq, at_ms: 0 }).await
    }

    pub async fn report(&mut self, health: Health, nodes: &[(&str, bool)]) -> Result<(), Error> {
        self.seq += 1;
        let f = report(self.seq, health, nodes);
        self.send(&f).await
    }

    /// The next protocol frame, `Ok(None)` once the server closed (reason in
    /// `close_reason`). Pings are answered by the library while reading.
    pub async fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| "timed out waiting for a frame")?;
            match msg {
                None => return Ok(None),
                Some(Err(tungstenite::Error::ConnectionClosed))
                | Some(Err(tungstenite::Error::AlreadyClosed)) => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Binary(b))) => return Ok(Some(ecp_protocol::decode(&b)?)),
                Some(Ok(Message::Close(frame))) => {
                    self.close_number = frame.as_ref().map(|f| u16::from(f.code));
                    self.close_reason =
                        frame.map(|f: CloseFrame| format!("{}: {}", u16::from(f.code), f.reason));
                    return Ok(None);
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Waits until the server closes the session; returns its reason.
    pub async fn closed(&mut self, timeout: Duration) -> Result<Option<String>, Error> {
        loop {
            match self.next_frame(timeout).await? {
                None => return Ok(self.close_reason.take()),
                Some(_) => continue,
            }
        }
    }

    /// Why the server closed the session, as the protocol's code (`None`
    /// before a close, or for a number that is no [`CloseCode`]).
    pub fn close_code(&self) -> Option<CloseCode> {
        self.close_number.and_then(CloseCode::from_u16)
    }

    /// Drops the TCP connection without a WebSocket close (a vanished agent).
    pub fn vanish(self) {
        drop(self);
    }
}
