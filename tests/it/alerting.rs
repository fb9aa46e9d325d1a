//! Alert rules, notification channels and alerts over the API, and what
//! the delivery worker sends: a real webhook receiver here (signatures,
//! retries, refusals, storm control) and a local SMTP sink (aiosmtpd).
//! Both stores where it matters (the claims, counts and logs differ).

use crate::harness::*;
use crate::redis_server::RedisServer;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Redis,
}

/// A server on the back end (the Redis server is dropped after it).
async fn start(backend: Backend, env: &[(&str, &str)]) -> (Server, Option<RedisServer>) {
    match backend {
        Backend::Embedded => (Server::start_with(env).await, None),
        Backend::Redis => {
            let redis = RedisServer::start().await;
            let url = redis.url();
            let mut env: Vec<(&str, &str)> = env.to_vec();
            env.push(("ECP_REDIS", &url));
            (Server::start_with(&env).await, Some(redis))
        }
    }
}

// ---------------------------------------------------------------- receiver

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    path: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    at: Instant,
}

impl Req {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Queued answers: status and extra headers.
type Answers = Arc<Mutex<VecDeque<(u16, Vec<(String, String)>)>>>;

/// A webhook receiver: answers each request with the next queued answer
/// (200 when none is queued) and hands the request, raw body and all, to
/// the test.
pub(crate) struct Hook {
    pub(crate) url: String,
    rx: mpsc::UnboundedReceiver<Req>,
    answers: Answers,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Req {
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

impl Hook {
    pub(crate) async fn start() -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("local address")
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let answers: Answers = Arc::default();
        let queue = answers.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (tx, queue) = (tx.clone(), queue.clone());
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut conn).await else {
                        return;
                    };
                    let (status, headers) = queue
                        .lock()
                        .expect("answers")
                        .pop_front()
                        .unwrap_or((200, Vec::new()));
                    let mut res = format!(
                        "HTTP/1.1 {status} Answer\r\ncontent-length: 2\r\nconnection: close\r\n"
                    );
                    for (k, v) in headers {
                        res.push_str(&format!("{k}: {v}\r\n"));
                    }
                    res.push_str("\r\nok");
                    let _ = tx.send(req);
                    let _ = conn.write_all(res.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Hook {
            url,
            rx,
            answers,
            task,
        }
    }

    fn answer(&self, status: u16) {
        self.answer_with(status, &[]);
    }

    fn answer_with(&self, status: u16, headers: &[(&str, &str)]) {
        self.answers.lock().expect("answers").push_back((
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
    }

    pub(crate) async fn next(&mut self) -> Req {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("the webhook got no request within {WAIT:?}"))
            .expect("receiver running")
    }

    /// A request that already arrived, if any.
    pub(crate) fn arrived(&mut self) -> Option<Req> {
        self.rx.try_recv().ok()
    }
}

pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

// ---------------------------------------------------------------- helpers

pub(crate) async fn create_channel(api: &Api, body: Value) -> Value {
    let (s, v) = api.post(&format!("{P}/notification-channels"), body).await;
    assert_eq!(s, 201, "create channel: {v}");
    v
}

async fn put(api: &Api, path: &str, body: Value) -> (u16, Value) {
    api.call(reqwest::Method::PUT, path, Some(body)).await
}

async fn delete(api: &Api, path: &str) -> (u16, Value) {
    api.call(reqwest::Method::DELETE, path, None).await
}

/// The channel's Test button: the queued delivery's id.
async fn test(api: &Api, channel: &str) -> String {
    let (s, v) = api
        .post(
            &format!("{P}/notification-channels/{channel}/test"),
            json!({}),
        )
        .await;
    assert_eq!(s, 202, "test: {v}");
    v["deliveryId"].as_str().expect("deliveryId").to_string()
}

async fn deliveries(api: &Api, channel: &str) -> Vec<Value> {
    let (s, v) = api
        .get(&format!(
            "{P}/notification-channels/{channel}/deliveries?limit=200"
        ))
        .await;
    assert_eq!(s, 200, "deliveries: {v}");
    v["data"].as_array().expect("data").clone()
}

/// Polls the channel's delivery log until delivery `id` is `state`.
async fn delivery_in(api: &Api, channel: &str, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = deliveries(api, channel).await;
        let d = list.iter().find(|d| d["id"] == id).cloned();
        match d {
            Some(d) if d["state"] == state => return d,
            Some(d) if Instant::now() > deadline => {
                panic!("delivery {id} is not {state} after {WAIT:?}: {d}")
            }
            None if Instant::now() > deadline => panic!("no delivery {id}: {list:?}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A refusal: 400 with `code`, the message naming `field`.
fn refused(what: &str, (status, v): (u16, Value), code: &str, field: &str) {
    assert_eq!(status, 400, "{what}: {v}");
    assert_eq!(v["code"], code, "{what}: {v}");
    let m = v["message"].as_str().unwrap_or_default();
    assert!(
        m.contains(field),
        "{what}: the message does not name {field}: {m}"
    );
}

// ---------------------------------------------------------------- API

#[tokio::test]
async fn rules_channels_and_alerts_over_the_api_on_both_stores() {
    for backend in [Backend::Embedded, Backend::Redis] {
        crud(backend).await;
    }
}

async fn crud(backend: Backend) {
    let (server, _redis) = start(backend, &[]).await;
    let api = server.api().await;
    let cluster = api.create_cluster("alerting one").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Another project, with its own cluster and channel.
    let (s, other) = api
        .post("/api/orgs/default/projects", json!({"name": "other"}))
        .await;
    assert_eq!(s, 201, "{other}");
    let op = format!(
        "/api/orgs/default/projects/{}",
        other["id"].as_str().expect("id")
    );
    let (_, oc) = api
        .post(&format!("{op}/clusters"), json!({"name": "elsewhere"}))
        .await;
    let other_cluster = oc["id"].as_str().expect("id").to_string();
    let (_, och) = api
        .post(
            &format!("{op}/notification-channels"),
            json!({"name": "theirs", "kind": "webhook", "webhook": {"url": "https://x.example/h"}}),
        )
        .await;
    let other_channel = och["id"].as_str().expect("id").to_string();
    let (_, or) = api
        .post(
            &format!("{op}/alert-rules"),
            json!({"name": "theirs", "kind": "no_metrics"}),
        )
        .await;
    let other_rule = or["id"].as_str().expect("id").to_string();

    // A webhook channel with only a URL: the server makes its secret and
    // shows it once.
    let hook = create_channel(
        &api,
        json!({"name": " ops hook ", "kind": "webhook", "webhook": {"url": "https://hooks.example.com/ecp"}}),
    )
    .await;
    let hook_id = hook["id"].as_str().expect("id").to_string();
    let made = hook["secret"].as_str().expect("a made secret").to_string();
    assert!(made.starts_with("ecpw_") && made.len() > 40, "{made}");
    assert_eq!(hook["name"], "ops hook", "trimmed");
    assert_eq!(
        hook["maxPerMinute"], 10,
        "alerts.max_notifications_per_minute"
    );
    assert_eq!(
        hook["webhook"],
        json!({"url": "https://hooks.example.com/ecp", "headers": {}, "bodyTemplate": null, "hasSecret": true})
    );
    assert!(hook.get("email").is_none(), "{hook}");
    // Replaced without a secret: the stored one stays, none is shown.
    let ch_path = format!("{P}/notification-channels/{hook_id}");
    let (s, v) = put(
        &api,
        &ch_path,
        json!({"name": "ops hook", "kind": "webhook", "maxPerMinute": 5,
               "webhook": {"url": "https://hooks.example.com/v2", "headers": {"X-Team": "ops"}}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("secret").is_none(), "no secret shown on PUT: {v}");
    assert_eq!(
        (
            &v["maxPerMinute"],
            &v["webhook"]["hasSecret"],
            &v["webhook"]["headers"]
        ),
        (&json!(5), &json!(true), &json!({"X-Team": "ops"}))
    );
    let given = "given-secret-1";
    let (s, v) = put(
        &api,
        &ch_path,
        json!({"name": "ops hook", "kind": "webhook",
               "webhook": {"url": "https://hooks.example.com/v2", "secret": given}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(!v.to_string().contains(given), "{v}");
    // An email channel: defaults, and the password never shown.
    let password = "smtp-pass-1";
    let mail = create_channel(
        &api,
        json!({"name": "ops mail", "kind": "email", "email": {
            "host": "smtp.example.com", "username": "ecp", "password": password,
            "from": "ECP <ecp@example.com>", "to": ["ops@example.com"]}}),
    )
    .await;
    let mail_id = mail["id"].as_str().expect("id").to_string();
    assert!(mail.get("secret").is_none() && mail.get("webhook").is_none());
    assert_eq!(
        mail["email"],
        json!({"host": "smtp.example.com", "port": 587, "security": "starttls", "username": "ecp",
               "hasPassword": true, "from": "ECP <ecp@example.com>", "to": ["ops@example.com"]})
    );
    // Same user on the same server, no password: kept.
    let (s, v) = put(
        &api,
        &format!("{P}/notification-channels/{mail_id}"),
        json!({"name": "ops mail", "kind": "email", "email": {
            "host": "smtp.example.com", "username": "ecp",
            "from": "ecp@example.com", "to": ["ops@example.com", "oncall@example.com"]}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["email"]["hasPassword"], json!(true), "{v}");
    // Another port (or host, or security) without the password: refused,
    // so the stored password never goes to a server it was not given for.
    refused(
        "a new port without the password",
        put(
            &api,
            &format!("{P}/notification-channels/{mail_id}"),
            json!({"name": "ops mail", "kind": "email", "email": {
                "host": "smtp.example.com", "port": 2587, "username": "ecp",
                "from": "ecp@example.com", "to": ["ops@example.com"]}}),
        )
        .await,
        "INVALID_INPUT",
        "email.password",
    );
    let (s, v) = put(
        &api,
        &format!("{P}/notification-channels/{mail_id}"),
        json!({"name": "ops mail", "kind": "email", "email": {
            "host": "smtp.example.com", "port": 2587, "username": "ecp", "password": password,
            "from": "ecp@example.com", "to": ["ops@example.com", "oncall@example.com"]}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["email"]["hasPassword"], &v["email"]["port"]),
        (&json!(true), &json!(2587))
    );
    let (s, list) = api.get(&format!("{P}/notification-channels")).await;
    assert_eq!(s, 200, "{list}");
    let text = list.to_string();
    for secret in [made.as_str(), given, password] {
        assert!(!text.contains(secret), "a GET shows a secret: {text}");
    }
    let listed: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(
        listed,
        vec![hook_id.as_str(), mail_id.as_str()],
        "only this project's, oldest first"
    );

    // Channel refusals: each names its field; POST and PUT alike, and the
    // channel stays as it was.
    let webhook = |w: Value| json!({"name": "x", "kind": "webhook", "webhook": w});
    let email = |e: Value| json!({"name": "x", "kind": "email", "email": e});
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "a webhook without a URL",
            webhook(json!({})),
            "INVALID_INPUT",
            "webhook.url",
        ),
        (
            "an ftp URL",
            webhook(json!({"url": "ftp://x.example/"})),
            "INVALID_INPUT",
            "webhook.url",
        ),
        (
            "a URL of 2049 characters",
            webhook(json!({"url": format!("https://x.example/{}", "a".repeat(2031))})),
            "INVALID_INPUT",
            "webhook.url",
        ),
        (
            "a Host header",
            webhook(json!({"url": "https://x.example/", "headers": {"Host": "y"}})),
            "INVALID_INPUT",
            "webhook.headers.Host",
        ),
        (
            "a header value with a line break",
            webhook(json!({"url": "https://x.example/", "headers": {"X-A": "a\r\nB: c"}})),
            "INVALID_INPUT",
            "webhook.headers.X-A",
        ),
        (
            "21 headers",
            webhook(
                json!({"url": "https://x.example/", "headers": (0..21).map(|i| (format!("X-{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            ),
            "INVALID_INPUT",
            "webhook.headers",
        ),
        (
            "a secret of 7 characters",
            webhook(json!({"url": "https://x.example/", "secret": "1234567"})),
            "INVALID_INPUT",
            "webhook.secret",
        ),
        (
            "a template over 16 KiB",
            webhook(
                json!({"url": "https://x.example/", "bodyTemplate": "x".repeat(16 * 1024 + 1)}),
            ),
            "INVALID_INPUT",
            "webhook.bodyTemplate",
        ),
        (
            "maxPerMinute 0",
            json!({"name": "x", "kind": "webhook", "maxPerMinute": 0, "webhook": {"url": "https://x.example/"}}),
            "INVALID_INPUT",
            "maxPerMinute",
        ),
        (
            "maxPerMinute 1001",
            json!({"name": "x", "kind": "webhook", "maxPerMinute": 1001, "webhook": {"url": "https://x.example/"}}),
            "INVALID_INPUT",
            "maxPerMinute",
        ),
        (
            "email settings on a webhook",
            json!({"name": "x", "kind": "webhook", "webhook": {"url": "https://x.example/"}, "email": {}}),
            "INVALID_INPUT",
            "email",
        ),
        (
            "an email channel without settings",
            json!({"name": "x", "kind": "email"}),
            "INVALID_INPUT",
            "email",
        ),
        (
            "no recipients",
            email(json!({"host": "h", "from": "a@example.com", "to": []})),
            "INVALID_INPUT",
            "email.to",
        ),
        (
            "11 recipients",
            email(
                json!({"host": "h", "from": "a@example.com", "to": (0..11).map(|i| format!("r{i}@example.com")).collect::<Vec<_>>()}),
            ),
            "INVALID_INPUT",
            "email.to",
        ),
        (
            "a sender that is no address",
            email(json!({"host": "h", "from": "nobody", "to": ["a@example.com"]})),
            "INVALID_INPUT",
            "email.from",
        ),
        (
            "credentials over a plain connection",
            email(
                json!({"host": "h", "security": "none", "username": "u", "password": "p", "from": "a@example.com", "to": ["a@example.com"]}),
            ),
            "INVALID_INPUT",
            "email.username",
        ),
        (
            "a kind that does not exist",
            json!({"name": "x", "kind": "sms"}),
            "INVALID_INPUT",
            "kind",
        ),
        (
            "a name of 65 characters",
            webhook(json!({"url": "https://x.example/"}))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("name".into(), json!("n".repeat(65)));
                    Value::Object(o)
                })
                .expect("object"),
            "INVALID_INPUT",
            "name",
        ),
        (
            "an unknown field",
            json!({"name": "x", "kind": "webhook", "colour": "red", "webhook": {"url": "https://x.example/"}}),
            "UNKNOWN_FIELD",
            "colour",
        ),
        (
            "an unknown field in webhook",
            webhook(json!({"url": "https://x.example/", "verb": "PUT"})),
            "UNKNOWN_FIELD",
            "verb",
        ),
    ];
    for (what, body, code, field) in &cases {
        refused(
            what,
            api.post(&format!("{P}/notification-channels"), body.clone())
                .await,
            code,
            field,
        );
        refused(what, put(&api, &ch_path, body.clone()).await, code, field);
    }
    let (s, raw) = {
        let r = api
            .http
            .post(format!("{}{P}/notification-channels", api.base))
            .bearer_auth(&api.token)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("send");
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(
        (s, raw["code"].as_str()),
        (400, Some("BAD_JSON")),
        "a body that is no JSON: {raw}"
    );
    let (_, list) = api.get(&format!("{P}/notification-channels")).await;
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(2),
        "no refused channel was made: {list}"
    );
    assert_eq!(
        list["data"][0]["webhook"]["url"], "https://hooks.example.com/v2",
        "unchanged"
    );

    // Rules.
    let (s, r1) = api
        .post(
            &format!("{P}/alert-rules"),
            json!({"name": "  agents gone ", "kind": "agent_offline", "clusterIds": [cluster],
                   "channelIds": [hook_id], "severity": "critical", "forSecs": 30}),
        )
        .await;
    assert_eq!(s, 201, "{r1}");
    let r1_id = r1["id"].as_str().expect("id").to_string();
    for (k, want) in [
        ("name", json!("agents gone")),
        ("kind", json!("agent_offline")),
        ("clusterIds", json!([cluster])),
        ("channelIds", json!([hook_id])),
        ("severity", json!("critical")),
        ("forSecs", json!(30)),
        ("recoverSecs", json!(0)),
        ("enabled", json!(true)),
        ("threshold", Value::Null),
        ("unit", Value::Null),
        ("reasonCode", Value::Null),
        ("alarmPattern", Value::Null),
    ] {
        assert_eq!(r1[k], want, "{k} of {r1}");
    }
    let (s, r2) = api
        .post(
            &format!("{P}/alert-rules"),
            json!({"name": "busy", "kind": "connections_over", "threshold": 80}),
        )
        .await;
    assert_eq!(s, 201, "{r2}");
    assert_eq!(
        (
            &r2["unit"],
            &r2["threshold"],
            &r2["severity"],
            &r2["clusterIds"]
        ),
        (
            &json!("percent"),
            &json!(80.0),
            &json!("warning"),
            &json!([])
        )
    );
    let (s, r3) = api
        .post(
            &format!("{P}/alert-rules"),
            json!({"name": "alarms", "kind": "emqx_alarm", "channelIds": [hook_id, mail_id]}),
        )
        .await;
    assert_eq!(s, 201, "{r3}");
    assert_eq!(r3["alarmPattern"], "*");
    let r3_id = r3["id"].as_str().expect("id").to_string();
    // A full replace: what is left out takes its default.
    let r1_path = format!("{P}/alert-rules/{r1_id}");
    let (s, v) = put(
        &api,
        &r1_path,
        json!({"name": "agents gone", "kind": "cluster_abnormal", "reasonCode": "agent_offline", "enabled": false}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            &v["id"],
            &v["kind"],
            &v["reasonCode"],
            &v["enabled"],
            &v["clusterIds"],
            &v["forSecs"],
            &v["createdAt"]
        ),
        (
            &json!(r1_id),
            &json!("cluster_abnormal"),
            &json!("agent_offline"),
            &json!(false),
            &json!([]),
            &json!(0),
            &r1["createdAt"]
        )
    );
    // Rule refusals, each naming its field; the rule stays as it was.
    let rule = |extra: Value| {
        let mut b = json!({"name": "r", "kind": "agent_offline"});
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        b
    };
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("no kind", json!({"name": "r"}), "INVALID_INPUT", "kind"),
        (
            "no name",
            json!({"kind": "agent_offline"}),
            "INVALID_INPUT",
            "name",
        ),
        (
            "a blank name",
            rule(json!({"name": "   "})),
            "INVALID_INPUT",
            "name",
        ),
        (
            "a kind that does not exist",
            rule(json!({"kind": "cpu_high"})),
            "INVALID_INPUT",
            "kind",
        ),
        (
            "a threshold for agent_offline",
            rule(json!({"threshold": 3})),
            "INVALID_INPUT",
            "threshold",
        ),
        (
            "no threshold for connections_over",
            rule(json!({"kind": "connections_over"})),
            "INVALID_INPUT",
            "threshold",
        ),
        (
            "a negative threshold",
            rule(json!({"kind": "license_expiring", "threshold": -1})),
            "INVALID_INPUT",
            "threshold",
        ),
        (
            "a unit for msg_dropped_rate_over",
            rule(json!({"kind": "msg_dropped_rate_over", "threshold": 5, "unit": "absolute"})),
            "INVALID_INPUT",
            "unit",
        ),
        (
            "a reason code for agent_offline",
            rule(json!({"reasonCode": "agent_offline"})),
            "INVALID_INPUT",
            "reasonCode",
        ),
        (
            "a reason code that does not exist",
            rule(json!({"kind": "cluster_abnormal", "reasonCode": "tired"})),
            "INVALID_INPUT",
            "reasonCode",
        ),
        (
            "an alarm pattern of 256 characters",
            rule(json!({"kind": "emqx_alarm", "alarmPattern": "p".repeat(256)})),
            "INVALID_INPUT",
            "alarmPattern",
        ),
        (
            "forSecs over a day",
            rule(json!({"forSecs": 86_401})),
            "INVALID_INPUT",
            "forSecs",
        ),
        (
            "recoverSecs as text",
            rule(json!({"recoverSecs": "10"})),
            "INVALID_INPUT",
            "recoverSecs",
        ),
        (
            "a severity of fatal",
            rule(json!({"severity": "fatal"})),
            "INVALID_INPUT",
            "severity",
        ),
        (
            "enabled as text",
            rule(json!({"enabled": "yes"})),
            "INVALID_INPUT",
            "enabled",
        ),
        (
            "a cluster of another project",
            rule(json!({"clusterIds": [other_cluster]})),
            "UNKNOWN_CLUSTER",
            "clusterIds",
        ),
        (
            "a cluster that does not exist",
            rule(json!({"clusterIds": ["nope"]})),
            "UNKNOWN_CLUSTER",
            "clusterIds",
        ),
        (
            "a channel of another project",
            rule(json!({"channelIds": [other_channel]})),
            "UNKNOWN_CHANNEL",
            "channelIds",
        ),
        (
            "21 channels",
            rule(json!({"channelIds": (0..21).map(|i| format!("c{i}")).collect::<Vec<_>>()})),
            "INVALID_INPUT",
            "channelIds",
        ),
        (
            "1001 clusters",
            rule(json!({"clusterIds": (0..1001).map(|i| format!("c{i}")).collect::<Vec<_>>()})),
            "INVALID_INPUT",
            "clusterIds",
        ),
        (
            "an unknown field",
            rule(json!({"window": 5})),
            "UNKNOWN_FIELD",
            "window",
        ),
    ];
    for (what, body, code, field) in &cases {
        refused(
            what,
            api.post(&format!("{P}/alert-rules"), body.clone()).await,
            code,
            field,
        );
        refused(what, put(&api, &r1_path, body.clone()).await, code, field);
    }
    let (s, rules) = api.get(&format!("{P}/alert-rules")).await;
    assert_eq!(s, 200, "{rules}");
    let names: Vec<&str> = rules["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["agents gone", "busy", "alarms"],
        "only these, oldest first"
    );
    assert_eq!(
        rules["data"][0]["kind"], "cluster_abnormal",
        "unchanged by the refusals"
    );
    // Another project's rule is not found here; nor is a deleted one.
    assert_eq!(
        put(
            &api,
            &format!("{P}/alert-rules/{other_rule}"),
            rule(json!({}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        delete(&api, &format!("{P}/alert-rules/{other_rule}"))
            .await
            .0,
        404
    );
    let r2_path = format!("{P}/alert-rules/{}", r2["id"].as_str().expect("id"));
    assert_eq!(delete(&api, &r2_path).await.0, 204);
    assert_eq!(delete(&api, &r2_path).await.0, 404);
    assert_eq!(put(&api, &r2_path, rule(json!({}))).await.0, 404);
    let (_, rules) = api.get(&format!("{P}/alert-rules")).await;
    assert_eq!(rules["data"].as_array().map(Vec::len), Some(2), "{rules}");

    // A deleted channel: rules stop naming it; its log is gone.
    assert_eq!(delete(&api, &ch_path).await.0, 204);
    assert_eq!(delete(&api, &ch_path).await.0, 404);
    let (_, rules) = api.get(&format!("{P}/alert-rules")).await;
    let r3_now = rules["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|r| r["id"] == r3_id.as_str())
        .cloned()
        .expect("r3");
    assert_eq!(r3_now["channelIds"], json!([mail_id]), "{r3_now}");
    assert_eq!(
        api.get(&format!("{ch_path}/deliveries")).await.0,
        404,
        "a deleted channel's log"
    );

    // Alerts and delivery logs: reads with bounded, checked parameters.
    let (s, v) = api.get(&format!("{P}/alerts")).await;
    assert_eq!(
        (s, v["data"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    assert_eq!(
        api.get(&format!("{P}/alerts?state=resolved&limit=1000"))
            .await
            .0,
        200
    );
    refused(
        "state open",
        api.get(&format!("{P}/alerts?state=open")).await,
        "INVALID_INPUT",
        "state",
    );
    refused(
        "limit 0",
        api.get(&format!("{P}/alerts?limit=0")).await,
        "INVALID_INPUT",
        "limit",
    );
    refused(
        "limit 1001",
        api.get(&format!("{P}/alerts?limit=1001")).await,
        "INVALID_INPUT",
        "limit",
    );
    assert_eq!(
        api.get(&format!("{P}/alerts?since=1")).await.0,
        400,
        "an unknown parameter"
    );
    let mail_log = format!("{P}/notification-channels/{mail_id}/deliveries");
    let (s, v) = api.get(&mail_log).await;
    assert_eq!(
        (s, v["data"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    refused(
        "limit 201",
        api.get(&format!("{mail_log}?limit=201")).await,
        "INVALID_INPUT",
        "limit",
    );

    // Every write is audited, without a secret.
    let (s, audit) = api.get("/api/audit/operations?size=200").await;
    assert_eq!(s, 200, "{audit}");
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for a in [
        "alert_rule.create",
        "alert_rule.edit",
        "alert_rule.delete",
        "channel.create",
        "channel.edit",
        "channel.delete",
    ] {
        assert!(actions.contains(&a), "{backend:?}: no {a} in {actions:?}");
    }
    let log = server.log_text();
    for secret in [made.as_str(), given, password] {
        assert!(
            !audit.to_string().contains(secret),
            "the audit log shows a secret"
        );
        assert!(!log.contains(secret), "the server log shows a secret");
    }
}

// ---------------------------------------------------------------- webhooks

#[tokio::test]
async fn webhooks_are_signed_retried_and_refused_as_the_receiver_answers_on_both_stores() {
    for backend in [Backend::Embedded, Backend::Redis] {
        webhooks(backend).await;
    }
}

async fn webhooks(backend: Backend) {
    let (server, _redis) = start(backend, &[]).await;
    let api = server.api().await;
    let mut hook = Hook::start().await;
    let ch = create_channel(
        &api,
        json!({"name": "receiver", "kind": "webhook",
               "webhook": {"url": hook.url, "headers": {"X-Team": "ops"}}}),
    )
    .await;
    let id = ch["id"].as_str().expect("id").to_string();
    let secret = ch["secret"].as_str().expect("made secret").to_string();

    // A test delivery, signed over the raw body.
    let d1 = test(&api, &id).await;
    let req = hook.next().await;
    assert_eq!(req.path, "/hook");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-ecp-event"), Some("test"));
    assert_eq!(req.header("x-ecp-delivery"), Some(d1.as_str()));
    assert_eq!(req.header("x-team"), Some("ops"));
    assert_eq!(
        req.header("x-ecp-signature-256"),
        Some(sign(&secret, &req.body).as_str()),
        "{backend:?}: a valid HMAC over the raw body"
    );
    assert_ne!(
        req.header("x-ecp-signature-256"),
        Some(sign("another secret", &req.body).as_str())
    );
    let body = req.json();
    assert_eq!(
        (
            &body["status"],
            &body["deliveryId"],
            &body["severity"],
            &body["alertId"]
        ),
        (&json!("test"), &json!(d1), &json!("info"), &Value::Null),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("receiver"),
        "{body}"
    );
    let d = delivery_in(&api, &id, &d1, "delivered").await;
    assert_eq!(
        (&d["kind"], &d["attempts"], &d["lastStatus"]),
        (&json!("test"), &json!(1), &json!(200)),
        "{d}"
    );
    assert!(d["finishedAt"].is_string(), "{d}");

    // 500, then 200: retried with the same delivery id and body.
    hook.answer(500);
    hook.answer(200);
    let d2 = test(&api, &id).await;
    let first = hook.next().await;
    let second = hook.next().await;
    for r in [&first, &second] {
        assert_eq!(
            r.header("x-ecp-delivery"),
            Some(d2.as_str()),
            "the same id on a retry"
        );
        assert_eq!(
            r.header("x-ecp-signature-256"),
            Some(sign(&secret, &r.body).as_str())
        );
    }
    assert_eq!(first.body, second.body, "the same notification");
    assert!(
        second.at.duration_since(first.at) >= Duration::from_millis(900),
        "the retry waited its backoff (1 s): {:?}",
        second.at.duration_since(first.at)
    );
    let d = delivery_in(&api, &id, &d2, "delivered").await;
    assert_eq!(
        (&d["attempts"], &d["lastStatus"]),
        (&json!(2), &json!(200)),
        "{d}"
    );

    // 400: failed at once, never retried.
    hook.answer(400);
    let d3 = test(&api, &id).await;
    let r = hook.next().await;
    assert_eq!(r.header("x-ecp-delivery"), Some(d3.as_str()));
    let d = delivery_in(&api, &id, &d3, "failed").await;
    assert_eq!(
        (&d["attempts"], &d["lastStatus"]),
        (&json!(1), &json!(400)),
        "{d}"
    );
    assert!(
        d["lastError"].as_str().unwrap_or_default().contains("400"),
        "{d}"
    );
    assert!(
        hook.arrived().is_none(),
        "a failed delivery is not sent again"
    );

    // A redirect is not followed: failed, and nothing reaches its target.
    let elsewhere = format!("{}/elsewhere", hook.url);
    hook.answer_with(302, &[("location", &elsewhere)]);
    let d4 = test(&api, &id).await;
    assert_eq!(hook.next().await.path, "/hook");
    let d = delivery_in(&api, &id, &d4, "failed").await;
    assert_eq!(d["lastStatus"], 302, "{d}");
    assert!(hook.arrived().is_none(), "the redirect was followed");

    // A template, and a secret of our own; kept when a PUT leaves it out.
    let own = "our-own-secret-1";
    let template = r#"{"text": "{{status}} {{severity}}: {{message}}", "rule": "{{rule}}"}"#;
    let with = |secret: Option<&str>| {
        let mut w = json!({"url": hook.url, "bodyTemplate": template});
        if let Some(s) = secret {
            w["secret"] = json!(s);
        }
        json!({"name": "receiver", "kind": "webhook", "webhook": w})
    };
    let path = format!("{P}/notification-channels/{id}");
    assert_eq!(put(&api, &path, with(Some(own))).await.0, 200);
    assert_eq!(put(&api, &path, with(None)).await.0, 200);
    let d5 = test(&api, &id).await;
    let r = hook.next().await;
    assert_eq!(
        r.header("x-ecp-signature-256"),
        Some(sign(own, &r.body).as_str()),
        "the secret was kept"
    );
    let v = r.json();
    assert!(
        v["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("test info: Test notification from ECP for channel \"receiver\""),
        "{v}"
    );
    delivery_in(&api, &id, &d5, "delivered").await;

    let log = server.log_text();
    assert!(
        !log.contains(&secret) && !log.contains(own),
        "a secret in the server log"
    );
}

// ---------------------------------------------------------------- storm control

#[tokio::test]
async fn storm_control_sends_the_limit_then_one_summary_on_both_stores() {
    for backend in [Backend::Embedded, Backend::Redis] {
        storm(backend).await;
    }
}

async fn storm(backend: Backend) {
    const WINDOW_MS: u64 = 10_000;
    const MAX: usize = 3;
    let (server, _redis) = start(backend, &[("ECP_ALERTS_STORM_WINDOW_SECS", "10")]).await;
    let api = server.api().await;
    let mut hook = Hook::start().await;
    let ch = create_channel(
        &api,
        json!({"name": "stormy", "kind": "webhook", "maxPerMinute": MAX, "webhook": {"url": hook.url}}),
    )
    .await;
    let id = ch["id"].as_str().expect("id").to_string();
    let secret = ch["secret"].as_str().expect("secret").to_string();

    // Start early in a window (the server counts by the same clock), so
    // the burst falls in one.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64
    };
    if now() % WINDOW_MS > WINDOW_MS / 4 {
        let wait = WINDOW_MS - now() % WINDOW_MS + 50;
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let window_end = now() - now() % WINDOW_MS + WINDOW_MS;
    let mut ids = Vec::new();
    for _ in 0..MAX + 3 {
        ids.push(test(&api, &id).await);
    }
    // N tests, then the one summary at the window's end.
    let mut tests = Vec::new();
    let summary = loop {
        let r = hook.next().await;
        assert_eq!(
            r.header("x-ecp-signature-256"),
            Some(sign(&secret, &r.body).as_str())
        );
        match r.header("x-ecp-event") {
            Some("test") => tests.push(r),
            Some("summary") => break r,
            other => panic!("unexpected event {other:?}"),
        }
    };
    assert_eq!(
        tests.len(),
        MAX,
        "{backend:?}: the limit's worth went out before the summary"
    );
    assert!(
        now() >= window_end,
        "the summary came before its window ended ({} ms early)",
        window_end - now()
    );
    let body = summary.json();
    assert_eq!(body["status"], "summary", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("held back 3 notifications"), "{message}");
    let summary_id = summary.header("x-ecp-delivery").expect("id").to_string();
    let s = delivery_in(&api, &id, &summary_id, "delivered").await;
    assert_eq!(s["kind"], "summary");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("held back 3"),
        "{s}"
    );
    // Every test delivery is final: N delivered, 3 suppressed.
    let mut delivered = 0;
    let mut suppressed = 0;
    for d in &ids {
        let deadline = Instant::now() + WAIT;
        loop {
            let list = deliveries(&api, &id).await;
            let state = list
                .iter()
                .find(|x| x["id"] == d.as_str())
                .map(|x| x["state"].as_str().unwrap_or_default().to_string())
                .unwrap_or_default();
            match state.as_str() {
                "delivered" => delivered += 1,
                "suppressed" => suppressed += 1,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                other => panic!("delivery {d} is {other:?}"),
            }
            break;
        }
    }
    assert_eq!((delivered, suppressed), (MAX, 3), "{backend:?}");
    let all = deliveries(&api, &id).await;
    assert_eq!(
        all.iter().filter(|d| d["kind"] == "summary").count(),
        1,
        "one summary: {all:?}"
    );
    assert!(hook.arrived().is_none(), "nothing else was sent");
}

// ---------------------------------------------------------------- email

/// The Python interpreter that has aiosmtpd (Debian's `python3-aiosmtpd`
/// installs it for /usr/bin/python3).
fn python_with_aiosmtpd() -> String {
    for py in ["/usr/bin/python3", "python3"] {
        let ok = std::process::Command::new(py)
            .args(["-c", "import aiosmtpd"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return py.to_string();
        }
    }
    panic!(
        "python3-aiosmtpd is not installed: scripts/test installs it (apt-get install -y python3-aiosmtpd)"
    );
}

/// A local SMTP sink writing each message into a maildir.
pub(crate) struct Sink {
    child: tokio::process::Child,
    pub(crate) port: u16,
    maildir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Sink {
    pub(crate) async fn start() -> Sink {
        let py = python_with_aiosmtpd();
        let dir = tempfile::tempdir().expect("tempdir");
        let maildir = dir.path().join("maildir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let child = tokio::process::Command::new(py)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Sink {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    /// The messages delivered so far (raw).
    pub(crate) fn messages(&self) -> Vec<String> {
        std::fs::read_dir(self.maildir.join("new"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        crate::stop::child(&mut self.child, Duration::from_secs(10));
    }
}

#[tokio::test]
async fn an_email_channel_delivers_to_a_local_smtp_sink() {
    let sink = Sink::start().await;
    let server = Server::start().await;
    let api = server.api().await;
    let ch = create_channel(
        &api,
        json!({"name": "mail", "kind": "email", "email": {
            "host": "127.0.0.1", "port": sink.port, "security": "none",
            "from": "ECP <ecp@example.com>", "to": ["ops@example.com", "oncall@example.com"]}}),
    )
    .await;
    assert_eq!(ch["email"]["security"], "none");
    let id = ch["id"].as_str().expect("id").to_string();
    let d = test(&api, &id).await;
    let done = delivery_in(&api, &id, &d, "delivered").await;
    assert_eq!(done["lastStatus"], 250, "{done}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    let (head, body) = m
        .split_once("\n\n")
        .or_else(|| m.split_once("\r\n\r\n"))
        .expect("headers and body");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("Subject"), "[ECP] TEST notification", "{head}");
    assert_eq!(header("From"), "ECP <ecp@example.com>", "{head}");
    let to = header("X-RcptTo");
    assert!(
        to.contains("ops@example.com") && to.contains("oncall@example.com"),
        "both recipients: {to}"
    );
    for want in [
        "Status: TEST".to_string(),
        "Severity: info".to_string(),
        "Message: Test notification from ECP".to_string(),
        format!("Delivery: {d}"),
    ] {
        assert!(body.contains(&want), "{want} not in:\n{body}");
    }
}
