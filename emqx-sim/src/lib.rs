//! `emqx-sim`: reproduces the EMQX REST API an agent relies on, from
//! `shared/spec/emqx-api.md`, with its quirks: v5 bare arrays and stopped
//! core nodes reduced to three fields; v4's `{code, data}` envelope with
//! errors on HTTP 200, "Running", text uptime and stopped nodes silently
//! missing. A control API under `/__sim/` stops and starts nodes, changes
//! the password, adds latency or 5xx answers, scripts the load (`load`:
//! connections and message rates, which the monitoring endpoints follow)
//! and raises or clears alarms (`alarms`). It can also write EMQX-style
//! wrap log files and serves a small dashboard page.

pub mod api;
pub mod logs;
pub mod model;

use actix_web::{web, App, HttpServer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use model::{Edition, SimConfig, SimState};

pub type Shared = Arc<Mutex<SimState>>;

/// A running simulator.
pub struct Sim {
    pub addr: SocketAddr,
    pub state: Shared,
    pub handle: actix_web::dev::ServerHandle,
}

impl Sim {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Binds and starts the simulator on the current actix/tokio runtime.
pub fn start(config: SimConfig) -> std::io::Result<(Sim, actix_web::dev::Server)> {
    let listen = config.listen.clone();
    let state: Shared = Arc::new(Mutex::new(SimState::new(config)));
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(api::routes))
        .workers(1)
        .disable_signals()
        .bind(&listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let server = server.run();
    Ok((
        Sim {
            addr,
            state,
            handle: server.handle(),
        },
        server,
    ))
}
