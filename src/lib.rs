//! The `ecp` server: configuration, store back ends, HTTP API and wiring.
//! `main.rs` only parses the command line; tests start the same server.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod client_ip;
pub mod config;
pub mod console;
pub mod error;
pub mod hashing;
pub mod limits;
pub mod login_guard;
pub mod notify;
pub mod peers;
pub mod policy;
pub mod revoke;
pub mod store;
pub mod validate;

use actix::{Actor, Addr};
use actix_web::{web, App, HttpRequest, HttpServer};
use config::Config;
use ecp_actors::machine::Timing;
use ecp_actors::registry::{Ready, Registry};
use ecp_actors::session::SessionConfig;
use ecp_actors::Deps;
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Everything a request handler needs; built once in `main`.
pub struct AppState {
    pub deps: Arc<Deps>,
    /// The whole store (the actors' `deps.store` is its `ActorStore` part).
    pub store: store::SharedStore,
    pub registry: Addr<Registry>,
    pub config: Arc<Config>,
    pub draining: AtomicBool,
    pub registrations: limits::Bucket,
    pub upgrades: limits::Bucket,
    pub logins: login_guard::LoginGuard,
    /// Node-to-node forwarding (Redis mode).
    pub peers: Option<Arc<peers::Peers>>,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: Vec<client_ip::Net>,
    /// Flips to true when the node drains: long-lived streams end.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The dashboard listener's port, once bound.
    pub dashboard_port: std::sync::OnceLock<u16>,
    /// `server.dashboard_origin`'s `host[:port]` (empty when unset).
    pub dashboard_host: String,
    /// "User U's access changed" notices: streams re-check (`revoke`).
    pub revocations: Arc<revoke::Revocations>,
    /// Open `GET /api/events` streams per user on this node.
    pub event_streams: api::events::Slots,
    /// Argon2 for requests, bounded (`limits.argon2_*`).
    pub hashing: hashing::HashPool,
    /// `/metrics`' clusters by status, counted in the background.
    pub cluster_gauges: api::ops::ClusterGauges,
}

impl AppState {
    /// Whether a request is for the dashboard site rather than the console:
    /// it came in on the dashboard listener, or names the dashboard origin's
    /// host.
    pub fn is_site(&self, req: &HttpRequest) -> bool {
        let host = req.headers().get("host").and_then(|h| h.to_str().ok());
        is_site_request(
            req.app_config().local_addr().port(),
            self.dashboard_port.get().copied(),
            host,
            &self.dashboard_host,
        )
    }

    /// The ECP address agents use: `cluster.agent.url`, else
    /// `server.public_url`, else the address this request came to.
    pub fn agent_url(&self, req: &HttpRequest) -> String {
        let c = &self.config;
        let configured = if !c.cluster.agent.url.is_empty() {
            &c.cluster.agent.url
        } else {
            &c.server.public_url
        };
        if !configured.is_empty() {
            return configured
                .trim_end_matches('/')
                .trim_end_matches("/api")
                .to_string();
        }
        let info = req.connection_info();
        format!("{}://{}", info.scheme(), info.host())
    }
}

/// The one decision "dashboard site or console" (see `api::dashboard`).
pub fn is_site_request(
    local_port: u16,
    dashboard_port: Option<u16>,
    host: Option<&str>,
    dashboard_host: &str,
) -> bool {
    dashboard_port == Some(local_port)
        || (!dashboard_host.is_empty()
            && host.is_some_and(|h| h.eq_ignore_ascii_case(dashboard_host)))
}

/// Keeps the two sites apart on every listener: the dashboard site serves
/// `/d/…` only, the console never serves `/d/…`.
async fn split_sites(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let site = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.is_site(req.request()));
    if site != req.path().starts_with(api::dashboard::SITE_PREFIX) {
        let res = api::dashboard::site_not_found().await;
        return Ok(req.into_response(res).map_into_right_body());
    }
    // Only the API reads the session cookie; pages and assets load anyway.
    if !site && req.path().starts_with("/api/") && auth::session_cookie_count(req.request()) > 1 {
        // A second session cookie was planted beside ours (cookies ignore
        // ports): trust neither, and clear them all; the user logs in again.
        let host = req.connection_info().host().to_string();
        let mut res = actix_web::ResponseError::error_response(&error::ApiError::new(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "SESSION_COOKIE_CONFLICT",
            "more than one session cookie was sent; all were cleared, log in again",
        ));
        for c in auth::clearing_cookies(req.path(), &host) {
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&c) {
                res.headers_mut()
                    .append(actix_web::http::header::SET_COOKIE, v);
            }
        }
        return Ok(req.into_response(res).map_into_right_body());
    }
    next.call(req).await.map(|r| r.map_into_left_body())
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("store: {0}")]
    Store(#[from] ecp_actors::store::StoreError),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub async fn open_store(config: &Config) -> Result<store::SharedStore, StartError> {
    match config.store.backend.as_str() {
        "embedded" => Ok(Arc::new(store::embedded::EmbeddedStore::open(
            std::path::Path::new(&config.store.data_dir),
        )?)),
        "redis" => Ok(Arc::new(
            store::redis::RedisStore::connect(&config.store.redis_url).await?,
        )),
        other => Err(StartError::Unsupported(format!(
            "store back end {other:?} is not available in this build; use \"embedded\""
        ))),
    }
}

fn timing(config: &Config) -> (Timing, SessionConfig) {
    let a = &config.agent;
    (
        Timing {
            offline_grace_ms: u64::from(a.offline_grace_secs) * 1000,
            delete_timeout_ms: u64::from(a.delete_timeout_secs) * 1000,
        },
        SessionConfig {
            heartbeat_interval_secs: a.heartbeat_interval_secs,
            report_interval_secs: a.report_interval_secs,
            ping_interval_secs: a.ping_interval_secs,
            idle_timeout: Duration::from_secs(u64::from(a.idle_timeout_secs)),
            handshake_timeout: Duration::from_secs(10),
            control_queue: a.control_queue,
            bulk_queue: a.bulk_queue,
            log_cap_lines: config.logs.lines_per_cluster.max(1),
            credential_rotate: Duration::from_secs(u64::from(a.credential_rotate_secs.max(60))),
            metrics_interval_secs: config.metrics.collect_interval_secs.max(1),
        },
    )
}

/// This node's id: `node.id`, else the host name with a random suffix.
fn node_id(config: &Config) -> String {
    if !config.node.id.is_empty() {
        return config.node.id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "ecp".into());
    let (suffix, _) = auth::new_secret("");
    format!("{host}-{}", &suffix[..8])
}

/// Opens the store, bootstraps the first admin and the default org/project,
/// and starts the registry (once). Must run inside the actix system.
pub async fn build_state(config: Config) -> Result<web::Data<AppState>, StartError> {
    let store = open_store(&config).await?;
    tracing::info!(backend = %config.store.backend, "store opened");
    bootstrap::run(&store).await?;
    let (timing, session) = timing(&config);
    let coord: ecp_actors::coord::SharedCoordinator;
    let mut redis_coord = None;
    let mut login_conn = None;
    let mut peers = None;
    if config.store.backend == "redis" {
        let node = node_id(&config);
        let c = Arc::new(
            store::redis_coord::RedisCoordinator::connect(&config.store.redis_url, &node).await?,
        );
        tracing::info!(node = %node, "joined the node group in Redis");
        login_conn = Some(c.conn());
        peers = Some(Arc::new(
            peers::Peers::join(c.clone(), &node)
                .await
                .map_err(StartError::Unsupported)?,
        ));
        redis_coord = Some(c.clone());
        coord = c;
    } else {
        coord = Arc::new(ecp_actors::coord::LocalCoordinator);
    }
    let watch = ecp_actors::watch::WatchConfig {
        eval_interval: Duration::from_secs(u64::from(config.alerts.eval_interval_secs.max(1))),
        metrics_interval_ms: u64::from(config.metrics.collect_interval_secs.max(1)) * 1000,
    };
    let deps = Deps::new(store.clone(), coord, timing, session, watch);
    let revocations = Arc::new(revoke::Revocations::new(
        redis_coord.clone().map(|c| c as Arc<dyn revoke::Remote>),
    ));
    if let Some(c) = redis_coord {
        // Other nodes' changes and messages; resubscribes after every Redis
        // outage. Messages go through one bounded queue (full: dropped, and
        // their sender retries after its deadline).
        let d = deps.clone();
        let r = revocations.clone();
        let inbox = ecp_actors::cluster_ref::spawn_inbox(deps.clone());
        actix_web::rt::spawn(async move {
            c.subscribe(move |inbound| match inbound {
                store::redis_coord::Inbound::Subscribed => {
                    d.bus.resync();
                    r.inject(revoke::Notice::Everyone);
                }
                store::redis_coord::Inbound::Change(change) => d.bus.inject(change),
                store::redis_coord::Inbound::Msg(msg) => {
                    if inbox.try_send(msg).is_err() {
                        tracing::warn!("node inbox full; a message from another node was dropped");
                    }
                }
                store::redis_coord::Inbound::AccessChanged(user) => {
                    r.inject(revoke::Notice::User(user.into()))
                }
            })
            .await
        });
    }
    let registry = Registry::new(deps.clone()).start();
    let clusters = registry
        .send(Ready)
        .await
        .map_err(|e| StartError::Unsupported(format!("registry failed to start: {e}")))?;
    tracing::info!(clusters, "registry ready");
    let l = &config.limits;
    let lockout = Duration::from_secs(u64::from(l.login_lockout_secs));
    let logins = match login_conn {
        Some(conn) => login_guard::LoginGuard::shared(lockout, conn),
        None => login_guard::LoginGuard::new(lockout),
    };
    let trusted_proxies = client_ip::parse_trusted(&config.server.trusted_proxies)
        .map_err(|e| StartError::Unsupported(format!("server.trusted_proxies: {e}")))?;
    let dashboard_host = config::origin_host(&config.server.dashboard_origin)
        .map_err(|e| StartError::Unsupported(format!("server.dashboard_origin: {e}")))?;
    let registrations = limits::Bucket::new(l.registrations_per_sec, l.registration_burst);
    let upgrades = limits::Bucket::new(l.ws_upgrades_per_sec, l.ws_upgrade_burst);
    let event_streams = api::events::Slots::new(l.event_streams_per_user);
    let hashing = hashing::HashPool::new(l.argon2_concurrency, l.argon2_queue);
    Ok(web::Data::new(AppState {
        deps,
        store,
        registry,
        config: Arc::new(config),
        draining: AtomicBool::new(false),
        registrations,
        upgrades,
        closing: tokio::sync::watch::Sender::new(false),
        logins,
        trusted_proxies,
        peers,
        dashboard_port: std::sync::OnceLock::new(),
        dashboard_host,
        revocations,
        event_streams,
        hashing,
        cluster_gauges: Default::default(),
    }))
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let listen = config.server.listen.clone();
    let workers = config.server.workers;
    let state = build_state(config).await?;
    spawn_housekeeping(state.clone());
    api::ops::spawn_cluster_gauges(state.clone());
    // The node's one notification worker.
    let notifier = notify::spawn(state.deps.clone(), state.config.alerts.clone());
    let app_state = state.clone();
    let mut server = HttpServer::new(move || {
        let state = app_state.clone();
        App::new()
            .wrap(actix_web::middleware::Compress::default())
            .wrap(actix_web::middleware::from_fn(split_sites))
            .configure(move |cfg| api::routes(cfg, state))
    })
    .disable_signals() // SIGTERM drains first; see `drain_on_signal`
    .shutdown_timeout(10);
    if workers > 0 {
        server = server.workers(workers);
    }
    let mut server = server.bind(&listen).map_err(|source| StartError::Listen {
        addr: listen.clone(),
        source,
    })?;
    let console_addrs = server.addrs();
    let dashboard_listen = state.config.server.dashboard_listen.clone();
    if !dashboard_listen.is_empty() {
        server = server
            .bind(&dashboard_listen)
            .map_err(|source| StartError::Listen {
                addr: dashboard_listen.clone(),
                source,
            })?;
        for addr in server.addrs() {
            if !console_addrs.contains(&addr) {
                let _ = state.dashboard_port.set(addr.port());
                println!("ecp dashboards on http://{addr}");
            }
        }
    }
    for addr in &console_addrs {
        // The one line tests and scripts read to find the port.
        println!("ecp listening on http://{addr}");
    }
    if let (Some(peers), Some(addr)) = (state.peers.clone(), console_addrs.first().copied()) {
        let url = peers::own_url(&state.config.node.advertise_url, addr);
        tracing::info!(url = %url, "advertising this node to its peers");
        peers.set_url(url).await;
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                peers.advertise().await;
            }
        });
    }
    let _ = std::io::stdout().flush();
    let server = server.run();
    actix_web::rt::spawn(drain_on_signal(state, server.handle(), notifier));
    server.await?;
    tracing::info!("ecp stopped");
    Ok(())
}

/// SIGTERM/SIGINT: fail readiness, tell agents to reconnect elsewhere in
/// staggered batches, wait until they left (or the timeout), then stop.
async fn drain_on_signal(
    state: web::Data<AppState>,
    handle: actix_web::dev::ServerHandle,
    notifier: notify::Running,
) {
    use std::sync::atomic::Ordering;
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    state.draining.store(true, Ordering::Relaxed);
    // Console event streams end now; consoles reconnect (to another node).
    state.closing.send_replace(true);
    let c = &state.config.server;
    let sessions = state.deps.dir.session_count();
    tracing::info!(sessions, "draining: agents are told to reconnect elsewhere");
    let _ = state
        .registry
        .send(ecp_actors::registry::Drain {
            batch: c.drain_batch as usize,
            every: Duration::from_millis(u64::from(c.drain_batch_interval_ms)),
            after_ms: 100,
        })
        .await;
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(u64::from(c.drain_timeout_secs));
    while state.deps.dir.session_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if state.deps.coord.distributed() {
        // Hand the clusters this node ran to the others now, not after the leases expire.
        let _ = state.registry.send(ecp_actors::registry::ReleaseAll).await;
    }
    tracing::info!(left = state.deps.dir.session_count(), "drained; stopping");
    // Notifications under way finish (each within its timeout); nothing new
    // is claimed: other nodes, or this one when it is back, send the rest.
    let patience = Duration::from_secs(u64::from(state.config.alerts.delivery_timeout_secs) + 2);
    notifier.stop(patience).await;
    // Agents that did not move yet are closed as draining: they reconnect
    // (to another node) at once rather than after a lost connection's backoff.
    for s in state.deps.dir.all_sessions() {
        let _ = s.shutdown.try_send(ecp_actors::msg::Shutdown {
            code: ecp_protocol::CloseCode::Draining,
            reason: "node draining: connect to another".into(),
        });
    }
    handle.stop(true).await;
}

/// Periodic chores: drop expired tokens, and audit records beyond the
/// retention (`audit.*`).
fn spawn_housekeeping(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            let now = ecp_actors::model::now_ms();
            match state.deps.store.purge_expired_tokens(now).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "expired tokens removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "token purge failed"),
            }
            let a = &state.config.audit;
            let before = audit_cutoff(now, a.retention_days);
            if before > 0 || a.max_records > 0 {
                match state.deps.store.purge_audit(before, a.max_records).await {
                    Ok(n) if n > 0 => tracing::info!(purged = n, "old audit records removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "audit purge failed"),
                }
            }
        }
    });
}

/// Audit records from before this time (ms) are dropped; 0: none by age.
fn audit_cutoff(now: ecp_actors::model::Millis, retention_days: u32) -> ecp_actors::model::Millis {
    if retention_days == 0 {
        return 0;
    }
    now.saturating_sub(u64::from(retention_days) * 24 * 3600 * 1000)
}

#[cfg(test)]
mod housekeeping_tests {
    #[test]
    fn audit_retention_in_days_or_none() {
        let day = 24 * 3600 * 1000;
        assert_eq!(super::audit_cutoff(100 * day, 90), 10 * day);
        assert_eq!(super::audit_cutoff(100 * day, 0), 0, "0 keeps any age");
        assert_eq!(super::audit_cutoff(5 * day, 90), 0);
    }
}
