//! HTTP routes: EMQX v5 or v4 (by the configured version), the dashboard
//! page, and the `/__sim/` control API.

use crate::model::{
    kmg, rfc3339_ms, uptime_text, Alarm, Gauges, SimState, DROPPED, RECEIVED, SENT,
};
use crate::Shared;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/__sim/state", web::get().to(ctl_state))
        .route("/__sim/nodes/{node}/stop", web::post().to(ctl_stop))
        .route("/__sim/nodes/{node}/start", web::post().to(ctl_start))
        .route("/__sim/password", web::put().to(ctl_password))
        .route("/__sim/latency", web::put().to(ctl_latency))
        .route("/__sim/fail", web::put().to(ctl_fail))
        .route("/__sim/connections", web::put().to(ctl_connections))
        .route("/__sim/load", web::post().to(ctl_load))
        .route("/__sim/alarms", web::post().to(ctl_alarms))
        .route("/__sim/logs", web::post().to(ctl_logs_start))
        .route("/__sim/logs", web::get().to(ctl_logs_status))
        .route("/__sim/blob", web::get().to(ctl_blob))
        .route("/__sim/respond", web::to(ctl_respond))
        .default_service(web::to(dispatch));
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, SimState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------- control

async fn ctl_state(s: web::Data<Shared>) -> HttpResponse {
    let mut st = lock(&s);
    st.advance();
    HttpResponse::Ok().json(json!({
        "version": st.config.version,
        "nodes": st.nodes.iter().map(|n| json!({"node": n.name, "running": n.running})).collect::<Vec<_>>(),
        "hits": st.hits,
        "load": st.load,
        "alarms": st.alarms.len(),
        "deactivatedAlarms": st.deactivated.len(),
    }))
}

fn set_running(s: &Shared, node: &str, running: bool) -> HttpResponse {
    let mut st = lock(s);
    match st.node_index(node) {
        Some(i) => {
            st.set_running(i, running);
            HttpResponse::Ok().json(json!({"node": st.nodes[i].name, "running": running}))
        }
        None => HttpResponse::NotFound().json(json!({"message": format!("no node {node}")})),
    }
}

async fn ctl_stop(s: web::Data<Shared>, p: web::Path<String>) -> HttpResponse {
    set_running(&s, &p, false)
}

async fn ctl_start(s: web::Data<Shared>, p: web::Path<String>) -> HttpResponse {
    set_running(&s, &p, true)
}

async fn ctl_password(s: web::Data<Shared>, body: web::Json<Value>) -> HttpResponse {
    let mut st = lock(&s);
    st.password = body["password"].as_str().unwrap_or_default().to_string();
    st.tokens.clear();
    HttpResponse::NoContent().finish()
}

async fn ctl_latency(s: web::Data<Shared>, body: web::Json<Value>) -> HttpResponse {
    lock(&s).latency = Duration::from_millis(body["ms"].as_u64().unwrap_or(0));
    HttpResponse::NoContent().finish()
}

async fn ctl_fail(s: web::Data<Shared>, body: web::Json<Value>) -> HttpResponse {
    lock(&s).fail_status = body["status"]
        .as_u64()
        .map(|v| v as u16)
        .filter(|v| *v >= 500);
    HttpResponse::NoContent().finish()
}

async fn ctl_connections(s: web::Data<Shared>, body: web::Json<Value>) -> HttpResponse {
    let n = body["perNode"].as_u64().unwrap_or(0);
    lock(&s).set_connections_per_node(n);
    HttpResponse::NoContent().finish()
}

fn ctl_error(message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "message": message }))
}

/// A part of a control body: absent (or null) is `None`; anything but a
/// finite number that is not negative is an error.
fn non_negative(body: &Value, key: &str) -> Result<Option<f64>, String> {
    match &body[key] {
        Value::Null => Ok(None),
        v => match v.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
            _ => Err(format!("{key} must be a number that is not negative")),
        },
    }
}

/// `POST /__sim/load {connections, msgRate, dropRate}`: the cluster's load
/// from now on; a missing part stays as it was.
async fn ctl_load(s: web::Data<Shared>, body: web::Json<Value>) -> HttpResponse {
    let parts = (|| {
        Ok::<_, String>((
            non_negative(&body, "connections")?,
            non_negative(&body, "msgRate")?,
            non_negative(&body, "dropRate")?,
        ))
    })();
    match parts {
        Ok((connections, msg_rate, drop_rate)) => {
            lock(&s).set_load(connections.map(|c| c as u64), msg_rate, drop_rate);
            HttpResponse::NoContent().finish()
        }
        Err(message) => ctl_error(message),
    }
}

/// `POST /__sim/alarms {name, node?, message?, details?, action}`: raises
/// (`activate`) or clears (`deactivate`) an alarm on a node (default: the
/// first). 404 for an unknown node, or an alarm to clear that is not active.
async fn ctl_alarms(s: web::Data<Shared>, body: web::Json<Value>) -> HttpResponse {
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return ctl_error("name is required".into());
    };
    let mut st = lock(&s);
    st.advance();
    let node = match body["node"].as_str() {
        None => st.nodes[0].name.clone(),
        Some(n) => match st.node_index(n) {
            Some(i) => st.nodes[i].name.clone(),
            None => {
                return HttpResponse::NotFound().json(json!({"message": format!("no node {n}")}))
            }
        },
    };
    match body["action"].as_str() {
        Some("activate") => {
            let message = body["message"].as_str().unwrap_or(name).to_string();
            let details = match &body["details"] {
                Value::Null => json!({}),
                d @ Value::Object(_) => d.clone(),
                _ => return ctl_error("details must be an object".into()),
            };
            st.activate_alarm(&node, name, &message, details);
            HttpResponse::NoContent().finish()
        }
        Some("deactivate") => {
            if st.deactivate_alarm(&node, name) {
                HttpResponse::NoContent().finish()
            } else {
                HttpResponse::NotFound()
                    .json(json!({"message": format!("no active alarm {name} on {node}")}))
            }
        }
        _ => ctl_error("action must be activate or deactivate".into()),
    }
}

/// Starts writing wrap logs for one node (see `logs::Job`).
async fn ctl_logs_start(s: web::Data<Shared>, body: web::Json<crate::logs::Job>) -> HttpResponse {
    let job = body.into_inner();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = std::sync::Arc::new(std::sync::Mutex::new(None));
    lock(&s).log_jobs.push(crate::model::LogJob {
        node: job.node.clone(),
        total: job.lines,
        written: written.clone(),
        done: done.clone(),
    });
    std::thread::spawn(move || {
        let start = Instant::now();
        let r = crate::logs::run_job(&job, &written)
            .map(|_| job.lines as f64 / start.elapsed().as_secs_f64().max(1e-9))
            .map_err(|e| e.to_string());
        *done.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    });
    HttpResponse::Accepted().finish()
}

/// Progress of the log jobs: lines written, and lines/s of finished ones.
async fn ctl_logs_status(s: web::Data<Shared>) -> HttpResponse {
    let st = lock(&s);
    let jobs: Vec<Value> = st
        .log_jobs
        .iter()
        .map(|j| {
            let done = j.done.lock().unwrap_or_else(|p| p.into_inner()).clone();
            json!({"node": j.node, "total": j.total,
                "written": j.written.load(std::sync::atomic::Ordering::Relaxed),
                "done": done.is_some(),
                "linesPerSec": done.as_ref().and_then(|d| d.as_ref().ok()).copied(),
                "error": done.and_then(|d| d.err())})
        })
        .collect();
    HttpResponse::Ok().json(json!({ "jobs": jobs }))
}

/// `GET /__sim/blob?bytes=N`: N bytes of a fixed pattern (byte i is
/// `(i * 7 + 3) % 251`), streamed, for download tests.
async fn ctl_blob(q: web::Query<std::collections::HashMap<String, String>>) -> HttpResponse {
    let total: u64 = q.get("bytes").and_then(|b| b.parse().ok()).unwrap_or(0);
    const CHUNK: u64 = 32 * 1024;
    let body = futures_util::stream::unfold(0u64, move |at| async move {
        if at >= total {
            return None;
        }
        let n = CHUNK.min(total - at);
        let chunk: Vec<u8> = (at..at + n).map(|i| ((i * 7 + 3) % 251) as u8).collect();
        Some((Ok::<_, std::io::Error>(web::Bytes::from(chunk)), at + n))
    });
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(actix_web::body::SizedStream::new(total, Box::pin(body)))
}

/// `ANY /__sim/respond?status=302&h=Location:/x&h=Set-Cookie:a=b`: answers
/// with that status and those headers, as a misbehaving (or compromised)
/// EMQX could. Tests use it to check what ECP lets through.
async fn ctl_respond(req: HttpRequest) -> HttpResponse {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let status = pairs
        .iter()
        .find(|(k, _)| k == "status")
        .and_then(|(_, v)| v.parse::<u16>().ok())
        .and_then(|v| StatusCode::from_u16(v).ok())
        .unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    for (_, h) in pairs.iter().filter(|(k, _)| k == "h") {
        if let Some((name, value)) = h.split_once(':') {
            res.append_header((name.trim(), value.trim()));
        }
    }
    res.body("simulated answer")
}

// ---------------------------------------------------------------- dispatch

async fn dispatch(s: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (latency, fail, major) = {
        let mut st = lock(&s);
        st.advance();
        *st.hits.entry(req.path().to_string()).or_insert(0) += 1;
        (st.latency, st.fail_status, st.major())
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let path = req.path().to_string();
    if let Some(code) = fail {
        if path.starts_with("/api/") || path == "/status" {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return HttpResponse::build(status).body("simulated failure");
        }
    }
    match path.as_str() {
        "/" | "/index.html" => return dashboard_index(major),
        "/static/app.js" => {
            return HttpResponse::Ok()
                .content_type("application/javascript")
                .body(DASHBOARD_JS)
        }
        "/static/app.css" => {
            return HttpResponse::Ok()
                .content_type("text/css")
                .body(DASHBOARD_CSS)
        }
        _ => {}
    }
    if major >= 5 {
        v5(&s, &req, &path, &body).await
    } else {
        v4(&s, &req, &path, &body).await
    }
}

// ---------------------------------------------------------------- v5

fn v5_err(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"code": code, "message": message}))
}

async fn v5(s: &Shared, req: &HttpRequest, path: &str, body: &[u8]) -> HttpResponse {
    let q = req.query_string();
    match (req.method().as_str(), path) {
        ("GET", "/status") | ("GET", "/api/v5/status") => return v5_status(s, q),
        ("POST", "/api/v5/login") => return v5_login(s, body),
        _ => {}
    }
    if !path.starts_with("/api/v5/") {
        return HttpResponse::NotFound().body("");
    }
    if let Err(r) = v5_auth(s, req) {
        return r;
    }
    let mut st = lock(s);
    st.advance();
    let aggregate = q.contains("aggregate=true");
    match (req.method().as_str(), path) {
        ("GET", "/api/v5/nodes") => HttpResponse::Ok().json(v5_nodes(&st)),
        ("GET", "/api/v5/stats") => {
            if aggregate {
                HttpResponse::Ok().json(stats_object(None, st.gauges()))
            } else {
                let per_node: Vec<Value> = st
                    .running()
                    .map(|n| stats_object(Some(&n.name), st.node_gauges(n)))
                    .collect();
                HttpResponse::Ok().json(per_node)
            }
        }
        ("GET", "/api/v5/metrics") => {
            if aggregate {
                let mut sum = [0.0f64; 3];
                for n in st.running() {
                    for (s, c) in sum.iter_mut().zip(n.counters) {
                        *s += c;
                    }
                }
                HttpResponse::Ok().json(metrics_object(None, sum))
            } else {
                HttpResponse::Ok().json(st.running().map(|n| metrics_object(Some(&n.name), n.counters)).collect::<Vec<_>>())
            }
        }
        ("GET", "/api/v5/monitor_current") => HttpResponse::Ok().json(monitor_current(&st, None)),
        ("GET", p) if p.starts_with("/api/v5/monitor_current/nodes/") => {
            let name = &p["/api/v5/monitor_current/nodes/".len()..];
            match st.running().find(|n| n.name == name) {
                Some(n) => HttpResponse::Ok().json(monitor_current(&st, Some(n))),
                None => v5_err(StatusCode::NOT_FOUND, "NOT_FOUND", "Node not found"),
            }
        }
        ("GET", "/api/v5/monitor") => v5_monitor(&st, q),
        ("GET", "/api/v5/alarms") => v5_alarms(&st, q),
        ("GET", "/api/v5/cluster") => {
            let running: Vec<&str> = st.running().map(|n| n.name.as_str()).collect();
            HttpResponse::Ok().json(json!({"name": st.config.cluster_name, "nodes": running,
                "self": st.nodes.get(st.config.self_node.saturating_sub(1)).unwrap_or(&st.nodes[0]).name}))
        }
        ("GET", "/api/v5/license") if st.enterprise() => HttpResponse::Ok().json(json!({
            "customer": "Sim", "customer_type": 10, "deployment": "sim", "email": "sim@example.com",
            "expiry": false, "expiry_at": "2295-10-27", "max_connections": st.config.license_max_connections,
            "start_at": "2022-01-11", "type": "trial"})),
        ("GET", p) if p.starts_with("/api/v5/nodes/") => {
            let name = &p["/api/v5/nodes/".len()..];
            match v5_nodes(&st).as_array().and_then(|a| a.iter().find(|n| n["node"] == name).cloned()) {
                Some(n) => HttpResponse::Ok().json(n),
                None => v5_err(StatusCode::NOT_FOUND, "NOT_FOUND", &format!("Node not found: {name}")),
            }
        }
        _ => v5_err(StatusCode::NOT_FOUND, "NOT_FOUND", "Request path error"),
    }
}

fn v5_status(s: &Shared, q: &str) -> HttpResponse {
    let st = lock(s);
    let node = &st.nodes[0];
    let prefix = if st.enterprise() { "e" } else { "v" };
    let code = if node.running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if q.contains("format=json") {
        // 5.6.0's misspelled content type, on purpose.
        HttpResponse::build(code)
            .insert_header(("retry-after", "15"))
            .content_type("applicatin/json")
            .body(
                json!({"node_name": node.name, "rel_vsn": format!("{prefix}{}", st.config.version),
                "broker_status": if node.running {"started"} else {"stopped"},
                "app_status": if node.running {"running"} else {"not_running"}})
                .to_string(),
            )
    } else {
        HttpResponse::build(code)
            .insert_header(("retry-after", "15"))
            .body(format!(
                "Node {} is {}\nemqx is {}",
                node.name,
                if node.running { "started" } else { "stopped" },
                if node.running {
                    "running"
                } else {
                    "not_running"
                }
            ))
    }
}

fn v5_login(s: &Shared, body: &[u8]) -> HttpResponse {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut st = lock(s);
    let ok = v["username"].as_str() == Some(st.config.username.as_str())
        && v["password"].as_str() == Some(st.password.as_str());
    if !ok {
        return v5_err(
            StatusCode::UNAUTHORIZED,
            "BAD_USERNAME_OR_PWD",
            "Auth failed",
        );
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let expiry = Instant::now() + st.config.token_ttl;
    st.tokens.insert(token.clone(), expiry);
    let mut out = json!({"token": token, "version": st.config.version,
        "license": {"edition": if st.enterprise() {"ee"} else {"ce"}}});
    if st.enterprise() {
        out["role"] = json!("administrator");
    }
    HttpResponse::Ok().json(out)
}

// The refusal is the response itself; boxing it buys nothing here.
#[allow(clippy::result_large_err)]
fn v5_auth(s: &Shared, req: &HttpRequest) -> Result<(), HttpResponse> {
    let header_err = || {
        HttpResponse::build(StatusCode::UNAUTHORIZED)
            .insert_header((header::WWW_AUTHENTICATE, "Basic Realm=\"emqx-dashboard\""))
            .json(json!({"code": "AUTHORIZATION_HEADER_ERROR", "message": "Support authorization: basic/bearer "}))
    };
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(header_err)?;
    let Some(token) = auth.strip_prefix("Bearer ") else {
        // Basic is for API keys only; dashboard users are not accepted.
        return Err(if auth.starts_with("Basic ") {
            v5_err(
                StatusCode::UNAUTHORIZED,
                "BAD_API_KEY_OR_SECRET",
                "Check api_key/api_secret",
            )
        } else {
            header_err()
        });
    };
    let mut st = lock(s);
    match st.tokens.get(token).copied() {
        None => Err(v5_err(
            StatusCode::UNAUTHORIZED,
            "BAD_TOKEN",
            "Get a token by POST /login",
        )),
        Some(exp) if exp <= Instant::now() => {
            st.tokens.remove(token);
            Err(v5_err(
                StatusCode::UNAUTHORIZED,
                "TOKEN_TIME_OUT",
                "Token expired, get new token by POST /login",
            ))
        }
        Some(_) => Ok(()),
    }
}

fn v5_nodes(st: &SimState) -> Value {
    let edition = if st.enterprise() {
        "Enterprise"
    } else {
        "Opensource"
    };
    let mut out: Vec<Value> = st
        .running()
        .map(|n| {
            json!({"node": n.name, "node_status": "running", "role": "core", "version": st.config.version,
                "edition": edition, "uptime": n.started.elapsed().as_millis() as u64 + 5_120_000,
                "connections": n.connections, "live_connections": n.connections, "cluster_sessions": n.connections,
                "load1": 2.66, "load5": 2.66, "load15": 2.66, "max_fds": 1024,
                "memory_total": kmg(512 * 1_048_576), "memory_used": kmg(256 * 1_048_576),
                "otp_release": "26.2.1/14.2.1", "process_available": 2_097_152, "process_used": 1024,
                "sys_path": "/opt/emqx", "log_path": "/opt/emqx/log"})
        })
        .collect();
    // Stopped core nodes: three fields only.
    out.extend(
        st.nodes
            .iter()
            .filter(|n| !n.running)
            .map(|n| json!({"node": n.name, "node_status": "stopped", "role": "core"})),
    );
    Value::Array(out)
}

fn stats_object(node: Option<&str>, g: Gauges) -> Value {
    let c = g.connections;
    let mut v = json!({"channels.count": c, "channels.max": c,
        "connections.count": c, "connections.max": c,
        "live_connections.count": g.live_connections, "live_connections.max": g.live_connections,
        "cluster_sessions.count": c, "cluster_sessions.max": c,
        "sessions.count": c, "sessions.max": c,
        "delayed.count": 0, "delayed.max": 0, "retained.count": g.retained, "retained.max": g.retained,
        "suboptions.count": g.subscriptions, "suboptions.max": g.subscriptions,
        "subscribers.count": g.subscriptions, "subscribers.max": g.subscriptions,
        "subscriptions.count": g.subscriptions, "subscriptions.max": g.subscriptions,
        "subscriptions.shared.count": g.shared_subscriptions,
        "subscriptions.shared.max": g.shared_subscriptions, "topics.count": g.topics, "topics.max": g.topics});
    if let Some(n) = node {
        v["node"] = json!(n);
    }
    v
}

/// A node's (or the cluster's) metrics: the message counters follow the
/// load, the rest is constant.
fn metrics_object(node: Option<&str>, counters: [f64; 3]) -> Value {
    let [received, sent, dropped] = counters.map(|c| c as u64);
    let mut v = json!({"bytes.received": received * 64, "bytes.sent": sent * 64,
        "messages.received": received, "messages.sent": sent, "messages.dropped": dropped,
        "messages.publish": received, "messages.delivered": sent,
        "client.connected": 5, "client.disconnected": 1});
    if let Some(n) = node {
        v["node"] = json!(n);
    }
    v
}

/// `GET /api/v5/monitor_current[/nodes/:node]`: rates (whole messages per
/// second, summed over nodes), gauges, and, on Enterprise, the licence's
/// quota; a node's answer adds `node_uptime` (ms).
fn monitor_current(st: &SimState, node: Option<&crate::model::Node>) -> Value {
    let (g, rates) = match node {
        Some(n) => (st.node_gauges(n), n.rates.map(|r| r as u64)),
        None => (st.gauges(), st.rates()),
    };
    let mut v = json!({
        "received_msg_rate": rates[RECEIVED], "sent_msg_rate": rates[SENT], "dropped_msg_rate": rates[DROPPED],
        "subscriptions": g.subscriptions, "topics": g.topics, "connections": g.connections,
        "live_connections": g.live_connections, "retained_msg_count": g.retained,
        "shared_subscriptions": g.shared_subscriptions});
    if st.enterprise() {
        v["license_quota"] = json!(st.config.license_max_connections);
    }
    if let Some(n) = node {
        v["node_uptime"] = json!(n.started.elapsed().as_millis() as u64 + 5_120_000);
    }
    v
}

/// A query parameter (the last one of that name), if given.
fn query_param(q: &str, key: &str) -> Option<String> {
    web::Query::<Vec<(String, String)>>::from_query(q)
        .ok()?
        .into_inner()
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn bad_request(message: &str) -> HttpResponse {
    v5_err(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

/// `GET /api/v5/monitor?latest=S`: the samples of the last S seconds (all
/// without `latest`), oldest first; more than 1000 are merged in pairs
/// (deltas summed, gauges of the later one), as EMQX does.
fn v5_monitor(st: &SimState, q: &str) -> HttpResponse {
    let since = match query_param(q, "latest") {
        None => 0,
        Some(l) => match l.parse::<u64>() {
            Ok(secs) if secs >= 1 => st.clock_ms.saturating_sub(secs.saturating_mul(1000)),
            _ => return bad_request("latest: must be an integer of at least 1"),
        },
    };
    let list: Vec<&crate::model::Sample> = st
        .samples
        .iter()
        .filter(|s| s.time_stamp >= since)
        .collect();
    let out: Vec<Value> = if list.len() > 1000 {
        list.chunks(2)
            .map(|pair| {
                let last = pair[pair.len() - 1];
                let mut v = json!(last);
                if pair.len() == 2 {
                    v["received"] = json!(pair[0].received + last.received);
                    v["sent"] = json!(pair[0].sent + last.sent);
                    v["dropped"] = json!(pair[0].dropped + last.dropped);
                }
                v
            })
            .collect()
    } else {
        list.into_iter().map(|s| json!(s)).collect()
    };
    HttpResponse::Ok().json(out)
}

/// A v5 alarm (`emqx_alarm:format/2`): times as RFC 3339 strings with
/// milliseconds in the node's local time, `duration` in ms, and
/// `deactivate_at` only once deactivated.
fn v5_alarm(st: &SimState, a: &Alarm) -> Value {
    let offset = st.config.utc_offset_minutes;
    let end_us = a.deactivate_at_us.unwrap_or_else(crate::model::now_us);
    let mut v = json!({"node": a.node, "name": a.name, "message": a.message, "details": a.details,
        "duration": end_us.saturating_sub(a.activate_at_us) / 1000,
        "activate_at": rfc3339_ms(a.activate_at_us / 1000, offset)});
    if let Some(d) = a.deactivate_at_us {
        v["deactivate_at"] = json!(rfc3339_ms(d / 1000, offset));
    }
    v
}

/// The alarms of running nodes, node by node, each in activation order
/// (EMQX's cluster query).
fn alarms_of(st: &SimState, activated: bool) -> Vec<&Alarm> {
    let list = if activated {
        &st.alarms
    } else {
        &st.deactivated
    };
    st.running()
        .flat_map(|n| list.iter().filter(move |a| a.node == n.name))
        .collect()
}

/// `GET /api/v5/alarms?activated=true|false&page&limit` (defaults true, 1,
/// 100; limit at most 10000) → `{data, meta: {page, limit, hasnext, count}}`.
fn v5_alarms(st: &SimState, q: &str) -> HttpResponse {
    let activated = match query_param(q, "activated").as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return bad_request("activated: must be true or false"),
    };
    let number = |key: &str, default: u64, max: u64| match query_param(q, key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or(()),
    };
    let (Ok(page), Ok(limit)) = (number("page", 1, u64::MAX), number("limit", 100, 10_000)) else {
        return bad_request("page and limit: integers of at least 1 (limit at most 10000)");
    };
    let all = alarms_of(st, activated);
    let start = (page - 1).saturating_mul(limit);
    let data: Vec<Value> = all
        .iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(limit as usize)
        .map(|a| v5_alarm(st, a))
        .collect();
    let hasnext = start.saturating_add(limit) < all.len() as u64;
    HttpResponse::Ok().json(json!({"data": data,
        "meta": {"page": page, "limit": limit, "hasnext": hasnext, "count": all.len()}}))
}

// ---------------------------------------------------------------- v4

fn v4_ok(data: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"code": 0, "data": data}))
}

async fn v4(s: &Shared, req: &HttpRequest, path: &str, body: &[u8]) -> HttpResponse {
    // No /status on the dashboard port in v4.
    if req.method() == "POST" && path == "/api/v4/auth" {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let (ok, penalty) = {
            let st = lock(s);
            (
                v["username"].as_str() == Some(st.config.username.as_str())
                    && v["password"].as_str() == Some(st.password.as_str()),
                st.config.v4_bad_login_penalty,
            )
        };
        if ok {
            return HttpResponse::Ok().json(json!({"code": 0}));
        }
        tokio::time::sleep(penalty).await;
        return HttpResponse::Ok().json(json!({"code": 103, "message": "Username/Password error"}));
    }
    if !path.starts_with("/api/v4/") {
        return HttpResponse::NotFound().body("");
    }
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let (authorized, penalty) = {
        let st = lock(s);
        let expected = format!("{}:{}", st.config.username, st.password);
        (
            basic.as_deref() == Some(expected.as_str()),
            st.config.v4_bad_login_penalty,
        )
    };
    if !authorized {
        if basic.is_some() {
            tokio::time::sleep(penalty).await;
        }
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Basic Realm=\"minirest-server\""))
            .body("UNAUTHORIZED");
    }
    let mut st = lock(s);
    st.advance();
    let sysdescr = if st.enterprise() {
        "EMQ X Enterprise"
    } else {
        "EMQ X Broker"
    };
    match (req.method().as_str(), path) {
        // A topic in the path is one segment with its '/' as %2F: a proxy
        // that decodes the path turns it into several segments, and EMQX
        // then answers 404 (emqx/emqx#14071).
        ("GET", p) if p.starts_with("/api/v4/routes/") => {
            let segment = &p["/api/v4/routes/".len()..];
            if segment.is_empty() || segment.contains('/') {
                return HttpResponse::NotFound().json(json!({"code": 404, "message": "Not Found"}));
            }
            let topic = percent_decode(segment);
            let node = st.running().next().map(|n| n.name.clone()).unwrap_or_default();
            v4_ok(json!([{"topic": topic, "node": node}]))
        }
        // Stopped nodes silently dropped.
        ("GET", "/api/v4/nodes") => v4_ok(Value::Array(
            st.running()
                .map(|n| {
                    json!({"version": st.config.version, "uptime": uptime_text(n.started.elapsed().as_secs() + 3_600),
                        "process_used": 315, "process_available": 2_097_152, "otp_release": "R21/10.3.5",
                        "node_status": "Running", "node": n.name, "memory_used": kmg(96 * 1_048_576),
                        "memory_total": kmg(118 * 1_048_576), "max_fds": 10240, "load5": "2.60", "load15": "2.65",
                        "load1": "2.31", "connections": n.connections})
                })
                .collect(),
        )),
        ("GET", "/api/v4/brokers") => v4_ok(Value::Array(
            st.running()
                .map(|n| {
                    json!({"version": st.config.version, "uptime": uptime_text(n.started.elapsed().as_secs() + 3_600),
                        "sysdescr": sysdescr, "otp_release": "R21/10.3.5", "node_status": "Running",
                        "node": n.name, "datetime": "2024-02-19 15:27:24"})
                })
                .collect(),
        )),
        // Per running node; topics, retained messages and shared
        // subscriptions are cluster-wide: every node reports the same.
        ("GET", "/api/v4/stats") => v4_ok(Value::Array(
            st.running()
                .map(|n| {
                    let g = st.node_gauges(n);
                    let c = g.connections;
                    json!({"node": n.name, "stats": {"connections.count": c, "connections.max": c,
                        "live_connections.count": g.live_connections, "live_connections.max": g.live_connections,
                        "channels.count": c, "channels.max": c, "sessions.count": c,
                        "sessions.max": c, "topics.count": g.topics, "topics.max": g.topics,
                        "subscriptions.count": g.subscriptions, "subscriptions.max": g.subscriptions,
                        "subscriptions.shared.count": g.shared_subscriptions,
                        "subscriptions.shared.max": g.shared_subscriptions,
                        "subscribers.count": g.subscriptions, "subscribers.max": g.subscriptions,
                        "suboptions.count": g.subscriptions, "suboptions.max": g.subscriptions,
                        "retained.count": g.retained, "retained.max": g.retained,
                        "routes.count": g.topics, "routes.max": g.topics}})
                })
                .collect(),
        )),
        ("GET", "/api/v4/metrics") => v4_ok(Value::Array(
            st.running()
                .map(|n| {
                    let mut m = metrics_object(None, n.counters);
                    m["packets.publish.received"] = m["messages.received"].clone();
                    json!({"node": n.name, "metrics": m})
                })
                .collect(),
        )),
        // Enterprise only (the EE dashboard's overview): sums over running
        // nodes, received and sent as messages per second.
        ("GET", "/api/v4/monitor/current_metrics") if st.enterprise() => {
            let g = st.gauges();
            let rates = st.rates();
            v4_ok(json!({"connection": g.connections, "live_connection": g.live_connections,
                "received": rates[RECEIVED], "sent": rates[SENT], "subscription": g.subscriptions}))
        }
        ("GET", "/api/v4/license") if st.enterprise() => v4_ok(json!({
            "customer": "Sim", "customer_type": 10, "email": "sim@example.com", "expiry": false,
            "issued_at": "2022-01-11 00:00:00", "expiry_at": "2295-10-27 00:00:00",
            "max_connections": st.config.license_max_connections, "type": "trial",
            "vendor": "EMQ Technologies Co., Ltd.", "version": st.config.version})),
        ("GET", "/api/v4/alarms") => v4_alarms(&st, None),
        ("GET", "/api/v4/alarms/activated") => v4_alarms(&st, Some(true)),
        ("GET", "/api/v4/alarms/deactivated") => v4_alarms(&st, Some(false)),
        ("GET", p) if p.starts_with("/api/v4/nodes/") => {
            let name = &p["/api/v4/nodes/".len()..];
            match st.running().find(|n| n.name == name) {
                Some(n) => v4_ok(json!({"node": n.name, "node_status": "Running", "version": st.config.version})),
                // Errors on HTTP 200.
                None => HttpResponse::Ok().json(json!({"code": 102, "message": "unknown node"})),
            }
        }
        _ => HttpResponse::NotFound().json(json!({"code": 404, "message": "Not Found"})),
    }
}

/// A v4 alarm (`emqx_alarm` normalized, with `emqx_mgmt`'s duration):
/// times in Unix microseconds, `deactivate_at` "infinity" while active.
fn v4_alarm(a: &Alarm) -> Value {
    let end_us = a.deactivate_at_us.unwrap_or_else(crate::model::now_us);
    json!({"name": a.name, "message": a.message, "details": a.details,
        "activate_at": a.activate_at_us,
        "deactivate_at": a.deactivate_at_us.map_or(json!("infinity"), |d| json!(d)),
        "activated": a.deactivate_at_us.is_none(),
        "duration": end_us.saturating_sub(a.activate_at_us)})
}

/// `GET /api/v4/alarms[/activated|/deactivated]`: one entry per running
/// node, `{node, alarms}` (all: active ones, then deactivated ones).
fn v4_alarms(st: &SimState, activated: Option<bool>) -> HttpResponse {
    let data: Vec<Value> = st
        .running()
        .map(|n| {
            let mut alarms: Vec<Value> = Vec::new();
            if activated != Some(false) {
                alarms.extend(st.alarms.iter().filter(|a| a.node == n.name).map(v4_alarm));
            }
            if activated != Some(true) {
                alarms.extend(
                    st.deactivated
                        .iter()
                        .filter(|a| a.node == n.name)
                        .map(v4_alarm),
                );
            }
            json!({"node": n.name, "alarms": alarms})
        })
        .collect();
    v4_ok(Value::Array(data))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------- dashboard

/// The dashboard page. Like the real v4.4 Enterprise dashboard
/// (emqx-dashboard-web, built with `useRelativeResourcePath`): assets and
/// API are addressed relatively (`./static/…`, `api/v4/…`), so it works
/// under any path prefix; routes are in the hash (`#/topics`); the login
/// is checked with `POST api/v4/auth` and kept in `localStorage.user` as
/// `{username, password}` (sessionStorage without "remember"); every API
/// call carries Basic auth from it; a topic in a path is one segment with
/// its `/` as `%2F`. v5 pages log in with `POST api/v5/login` and keep the
/// token the same way.
fn dashboard_index(major: u32) -> HttpResponse {
    let api = if major >= 5 { "api/v5" } else { "api/v4" };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>EMQX Dashboard (sim)</title>\
         <link rel=\"stylesheet\" href=\"./static/app.css\"></head><body data-api=\"{api}\">\
         <h1>EMQX Dashboard</h1>\
         <form id=\"login\" hidden><input id=\"username\" placeholder=\"username\">\
         <input id=\"password\" type=\"password\" placeholder=\"password\">\
         <label><input id=\"remember\" type=\"checkbox\" checked> remember</label>\
         <button id=\"login-button\" type=\"submit\">Login</button><p id=\"login-error\"></p></form>\
         <div id=\"app\" hidden>loading…</div><div id=\"route\"></div><div id=\"view\"></div>\
         <script src=\"./static/app.js\"></script></body></html>"
    ))
}

const DASHBOARD_CSS: &str = "body{font-family:sans-serif}#app{color:rgb(1, 2, 3)}";
const DASHBOARD_JS: &str = r#"const api = document.body.dataset.api;
const v5 = api === 'api/v5';
const $ = (id) => document.getElementById(id);
function user() {
  try { return JSON.parse(localStorage.user || sessionStorage.user || '{}'); } catch (e) { return {}; }
}
function auth(u) {
  return v5 ? { Authorization: 'Bearer ' + (u.token || '') } : { Authorization: 'Basic ' + btoa(u.username + ':' + u.password) };
}
function get(path) {
  return fetch(api + path, { headers: Object.assign({ 'Cache-Control': 'no-cache' }, auth(user())) })
    .then((r) => (r.ok ? r.json() : Promise.reject(r.status)));
}
function showLogin() {
  $('login').hidden = false;
  $('app').hidden = true;
}
function show() {
  $('login').hidden = true;
  $('app').hidden = false;
  get('/nodes').then((v) => { const d = v.data || v; $('app').textContent = 'nodes: ' + d.length; })
    .catch((e) => { if (e === 401) { localStorage.removeItem('user'); showLogin(); } else { $('app').textContent = 'error: ' + e; } });
  if (!v5) {
    get('/routes/' + encodeURIComponent('t/1'))
      .then((v) => { $('route').textContent = 'route: ' + v.data[0].topic; })
      .catch((e) => { $('route').textContent = 'route error: ' + e; });
  }
  $('view').textContent = 'view: ' + (location.hash || '#/');
}
$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  const username = $('username').value, password = $('password').value, remember = $('remember').checked;
  fetch(api + (v5 ? '/login' : '/auth'), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }) })
    .then((r) => r.json().then((b) => [r.status, b]))
    .then(([status, b]) => {
      if (status !== 200 || (!v5 && b.code !== 0)) { $('login-error').textContent = b.message || 'login failed'; return; }
      const u = v5 ? { username, token: b.token, remember } : { username, password, remember };
      (remember ? localStorage : sessionStorage).setItem('user', JSON.stringify(u));
      show();
    });
});
window.addEventListener('hashchange', () => { $('view').textContent = 'view: ' + location.hash; });
if (user().username) show(); else showLogin();
"#;
