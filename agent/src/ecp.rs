//! Talking to ECP over HTTP: reachability, register, unregister.

use ecp_protocol::register::{RegisterRequest, RegisterResponse};
use serde_json::Value;

pub fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

/// `GET /api/version`: is this an ECP we can talk to?
pub async fn check(http: &reqwest::Client, root: &str) -> Result<(), String> {
    let r = http
        .get(format!("{root}/api/version"))
        .send()
        .await
        .map_err(|e| format!("cannot reach ECP at {root}: {}", describe(&e)))?;
    if !r.status().is_success() {
        return Err(format!(
            "{root} does not look like ECP (GET /api/version answered {})",
            r.status().as_u16()
        ));
    }
    let v: Value = r
        .json()
        .await
        .map_err(|_| format!("{root} does not look like ECP (no version document)"))?;
    let min = v["minProtocol"].as_u64().unwrap_or(0);
    let max = v["protocol"].as_u64().unwrap_or(0);
    let ours = u64::from(ecp_protocol::PROTOCOL_VERSION);
    if ours < min || ours > max {
        return Err(format!(
            "ECP speaks protocol {min}..={max}; this agent speaks {ours}: upgrade the agent"
        ));
    }
    Ok(())
}

/// An error answer's `{code, message}`; only the message is shown.
#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

/// `POST /api/clusters/agents/emqxee/register`; refusals become one sentence.
pub async fn register(
    http: &reqwest::Client,
    root: &str,
    body: &RegisterRequest,
) -> Result<RegisterResponse, String> {
    let r = http
        .post(format!("{root}/api/clusters/agents/emqxee/register"))
        .json(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach ECP at {root}: {}", describe(&e)))?;
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap_or_default();
    if status == 200 {
        return serde_json::from_slice(&bytes)
            .map_err(|e| format!("ECP answered the registration with an unexpected body: {e}"));
    }
    let message = serde_json::from_slice::<ErrorBody>(&bytes)
        .ok()
        .map(|b| b.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "no details".into());
    match status {
        401 => Err(format!("ECP refused the registration token: {message}")),
        409 => Err(format!("ECP refused: {message}")),
        410 => Err("ECP refused: the cluster this token belongs to was deleted".into()),
        422 => Err(format!("ECP refused: {message}")),
        429 => Err("ECP is busy (rate-limited); try again in a moment".into()),
        s => Err(format!("ECP answered {s}: {message}")),
    }
}

/// `POST /api/clusters/agents/emqxee/unregister`. 401/410 mean "already gone".
pub async fn unregister(http: &reqwest::Client, root: &str, token: &str) -> Result<(), String> {
    let r = http
        .post(format!("{root}/api/clusters/agents/emqxee/unregister"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("cannot reach ECP at {root}: {}", describe(&e)))?;
    match r.status().as_u16() {
        200..=299 | 401 | 410 => Ok(()),
        s => Err(format!("ECP answered {s} to unregister")),
    }
}
