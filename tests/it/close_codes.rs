//! Why a session ended travels as a close code (`ecp_protocol::CloseCode`),
//! and the agent decides by the code alone: the server's codes for the ways
//! it ends a session, and the real agent against a fake ECP that closes
//! with a code from a newer build.

use crate::harness::*;
use crate::procs::*;
use ecp_protocol::{CloseCode, Frame, Settings};
use ecp_testkit::{register, register_body, Session};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const WAIT: Duration = Duration::from_secs(15);

/// Words a protocol 1 agent took as "drop the credential".
fn removes_an_old_agent(why: &str) -> bool {
    why.contains("deleted") || why.contains("unregistered")
}

#[tokio::test]
async fn a_replaced_credential_and_a_revoked_agent_close_with_their_codes() {
    let server = Server::start().await;
    let api = server.api().await;
    let id = api.create_cluster("close codes").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let token = api.issue_token(&id).await;
    let body = register_body(&token, "inst-1", "emqx@codes", "5.6.0");
    let first = register(&api.http, &server.base, &body)
        .await
        .expect("register");
    let mut s = Session::connect(&server.base, &first.token, &first.agent_id, None)
        .await
        .expect("connect");

    // The same instance registers again: the session's credential is replaced.
    let again = register(&api.http, &server.base, &body)
        .await
        .expect("register again");
    let why = s.closed(WAIT).await.expect("closed").unwrap_or_default();
    assert_eq!(s.close_code(), Some(CloseCode::Reregistered), "{why}");
    assert!(!removes_an_old_agent(&why), "{why}");

    // Revoked in the console: the agent is removed.
    let mut s = Session::connect(&server.base, &again.token, &again.agent_id, None)
        .await
        .expect("connect");
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("{P}/clusters/{id}/agents/{}", again.agent_id),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let why = s.closed(WAIT).await.expect("closed").unwrap_or_default();
    assert_eq!(s.close_code(), Some(CloseCode::Revoked), "{why}");
    assert!(
        removes_an_old_agent(&why),
        "a protocol 1 agent drops too: {why}"
    );
}

/// A stand-in for ECP: accepts the agent's WebSocket, answers its Hello
/// with Welcome, and closes however a test says.
struct FakeEcp {
    listener: TcpListener,
}

impl FakeEcp {
    async fn start() -> FakeEcp {
        FakeEcp {
            listener: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        }
    }

    fn url(&self) -> String {
        format!(
            "http://{}",
            self.listener.local_addr().expect("local address")
        )
    }

    /// The next session: its `Authorization` header, after Hello → Welcome.
    #[allow(clippy::result_large_err)] // tungstenite's handshake callback type
    async fn session(&self) -> (WebSocketStream<TcpStream>, String) {
        let (tcp, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("the agent connects")
            .expect("accept");
        let mut auth = String::new();
        let mut ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, res: Response| {
            auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            Ok(res)
        })
        .await
        .expect("websocket");
        let hello = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("Hello in time")
            .expect("a message")
            .expect("no error");
        let Message::Binary(b) = hello else {
            panic!("expected a binary Hello, got {hello:?}");
        };
        assert!(
            matches!(ecp_protocol::decode(&b), Ok(Frame::Hello { .. })),
            "expected Hello"
        );
        let welcome = Frame::Welcome {
            settings: Settings {
                cluster_id: "cluster-1".into(),
                heartbeat_interval_secs: 60,
                report_interval_secs: 60,
                ping_interval_secs: 60,
                metrics_interval_secs: 0,
            },
        };
        let bytes = ecp_protocol::encode(&welcome).expect("encode");
        ws.send(Message::Binary(bytes.into()))
            .await
            .expect("send Welcome");
        (ws, auth)
    }
}

async fn close(mut ws: WebSocketStream<TcpStream>, code: u16, text: &str) {
    ws.send(Message::Close(Some(CloseFrame {
        code: WsCode::from(code),
        reason: text.into(),
    })))
    .await
    .expect("send close");
    // Let the agent answer the close (or go away).
    let _ = tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
}

#[tokio::test]
async fn the_agent_keeps_its_credential_for_a_close_code_it_does_not_know() {
    let ecp = FakeEcp::start().await;
    let agent = Agent::new();
    let home = agent.home.path();
    std::fs::create_dir_all(home.join("etc")).expect("etc");
    // As `register` leaves them; EMQX is nowhere (reports say so, harmlessly).
    let settings = format!(
        "url = \"{}\"\ndashboard_username = \"admin\"\ndashboard_password = \"public\"\n\
         dashboard_url = \"http://127.0.0.1:9\"\napi_url = \"http://127.0.0.1:9\"\n",
        ecp.url()
    );
    std::fs::write(home.join("etc/agent.toml"), settings).expect("settings");
    let credential = r#"{"token": "ecpa_fake", "clusterId": "cluster-1", "agentId": "agent-1"}"#;
    std::fs::write(home.join("etc/credential.json"), credential).expect("credential");
    let out = agent.cmd(&["start"]).await;
    assert!(out.status.success(), "start: {:?}", text(&out));

    // A newer ECP closes with a code this agent does not know, and a text
    // that would have dropped a protocol 1 agent's credential.
    let (ws, auth) = ecp.session().await;
    assert_eq!(auth, "Bearer ecpa_fake");
    close(ws, 4999, "cluster was deleted (by a newer reason)").await;
    // The agent connects again, with the same credential, still on disk.
    let (ws, auth) = ecp.session().await;
    assert_eq!(auth, "Bearer ecpa_fake", "{}", agent.log());
    assert_eq!(
        agent.credential().map(|c| c["token"].clone()),
        Some("ecpa_fake".into()),
        "{}",
        agent.log()
    );

    // The code that means it: the credential goes, the agent idles.
    close(ws, CloseCode::ClusterDeleted.code(), "cluster was deleted").await;
    let deadline = Instant::now() + WAIT;
    while agent.credential().is_some() {
        assert!(
            Instant::now() < deadline,
            "credential not dropped: {}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = agent.cmd(&["stop"]).await;
    assert!(out.status.success(), "stop: {:?}", text(&out));
}
