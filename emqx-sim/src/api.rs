//! HTTP routes: EMQX v5 or v4 (by the configured version), the dashboard
//! page, and the `/__sim/` control API.

use crate::model::{kmg, uptime_text, SimState};
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
    let st = lock(&s);
    HttpResponse::Ok().json(json!({
        "version": st.config.version,
        "nodes": st.nodes.iter().map(|n| json!({"node": n.name, "running": n.running})).collect::<Vec<_>>(),
        "hits": st.hits,
    }))
}

fn set_running(s: &Shared, node: &str, running: bool) -> HttpResponse {
    let mut st = lock(s);
    match st
        .nodes
        .iter_mut()
        .find(|n| n.name == node || n.name.starts_with(&format!("{node}.")))
    {
        Some(n) => {
            n.running = running;
            if running {
                n.started = Instant::now();
            }
            HttpResponse::Ok().json(json!({"node": n.name, "running": running}))
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
    for node in lock(&s).nodes.iter_mut() {
        node.connections = n;
    }
    HttpResponse::NoContent().finish()
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
    let st = lock(s);
    let aggregate = q.contains("aggregate=true");
    match (req.method().as_str(), path) {
        ("GET", "/api/v5/nodes") => HttpResponse::Ok().json(v5_nodes(&st)),
        ("GET", "/api/v5/stats") => {
            let per_node: Vec<Value> = st.running().map(|n| stats_object(Some(&n.name), n.connections)).collect();
            if aggregate {
                let total: u64 = st.running().map(|n| n.connections).sum();
                HttpResponse::Ok().json(stats_object(None, total))
            } else {
                HttpResponse::Ok().json(per_node)
            }
        }
        ("GET", "/api/v5/metrics") => {
            let m = |node: Option<&str>| {
                let mut v = json!({"bytes.received": 1024, "bytes.sent": 2048, "messages.received": 10, "messages.sent": 20,
                    "client.connected": 5, "client.disconnected": 1, "messages.dropped": 0});
                if let Some(n) = node {
                    v["node"] = json!(n);
                }
                v
            };
            if aggregate {
                HttpResponse::Ok().json(m(None))
            } else {
                HttpResponse::Ok().json(st.running().map(|n| m(Some(&n.name))).collect::<Vec<_>>())
            }
        }
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

fn stats_object(node: Option<&str>, connections: u64) -> Value {
    let mut v = json!({"channels.count": connections, "channels.max": connections,
        "connections.count": connections, "connections.max": connections,
        "live_connections.count": connections, "live_connections.max": connections,
        "cluster_sessions.count": connections, "cluster_sessions.max": connections,
        "sessions.count": connections, "sessions.max": connections,
        "delayed.count": 0, "delayed.max": 0, "retained.count": 3, "retained.max": 3,
        "suboptions.count": 0, "suboptions.max": 0, "subscribers.count": 0, "subscribers.max": 0,
        "subscriptions.count": 0, "subscriptions.max": 0, "subscriptions.shared.count": 0,
        "subscriptions.shared.max": 0, "topics.count": 0, "topics.max": 0});
    if let Some(n) = node {
        v["node"] = json!(n);
    }
    v
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
    let st = lock(s);
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
        ("GET", "/api/v4/stats") => v4_ok(Value::Array(
            st.running()
                .map(|n| {
                    json!({"node": n.name, "stats": {"connections.count": n.connections, "connections.max": n.connections,
                        "channels.count": n.connections, "channels.max": n.connections, "sessions.count": n.connections,
                        "sessions.max": n.connections, "topics.count": 0, "topics.max": 0, "subscriptions.count": 0,
                        "subscriptions.max": 0, "retained.count": 3, "retained.max": 3, "routes.count": 0, "routes.max": 0}})
                })
                .collect(),
        )),
        ("GET", "/api/v4/license") if st.enterprise() => v4_ok(json!({
            "customer": "Sim", "max_connections": st.config.license_max_connections,
            "expiry_at": "2295-10-27 00:00:00", "type": "trial"})),
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
