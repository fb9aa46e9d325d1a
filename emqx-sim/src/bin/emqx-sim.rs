//! `emqx-sim`: run the simulator. Prints `emqx-sim listening on http://ADDR`.

use clap::Parser;
use emqx_sim::logs::{Format, WrapLog};
use emqx_sim::{Edition, SimConfig};
use std::io::Write;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "emqx-sim",
    about = "Simulated EMQX cluster (REST API v4/v5, logs, dashboard)"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18083")]
    listen: String,
    /// EMQX version to pretend to be, e.g. 5.6.0 or 4.4.6.
    #[arg(long = "emqx-version", default_value = "5.6.0")]
    version: String,
    /// enterprise or opensource.
    #[arg(long, default_value = "enterprise")]
    edition: String,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value = "emqxcl")]
    cluster_name: String,
    #[arg(long, default_value = "admin")]
    username: String,
    #[arg(long, default_value = "public")]
    password: String,
    #[arg(long, default_value_t = 10_000)]
    license_max_connections: u64,
    /// v5: lifetime of a dashboard login token (EMQX default: 60 min).
    #[arg(long, default_value_t = 3600)]
    token_ttl_secs: u64,
    /// v4: seconds a failed Basic check sleeps (EMQX: 2).
    #[arg(long, default_value_t = 2.0)]
    v4_bad_login_penalty: f64,
    /// Write wrap logs here.
    #[arg(long)]
    log_dir: Option<std::path::PathBuf>,
    /// text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Lines per second (all nodes together).
    #[arg(long, default_value_t = 10)]
    log_rate: u64,
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    log_rotation_size: u64,
    #[arg(long, default_value_t = 5)]
    log_rotation_count: u32,
    /// v5: the node this API endpoint belongs to (1-based), i.e. `self` in
    /// `/api/v5/cluster`; run one simulator per node to give each agent its own.
    #[arg(long, default_value_t = 1)]
    self_node: usize,
}

fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let config = SimConfig {
        listen: a.listen,
        version: a.version,
        edition: if a.edition.eq_ignore_ascii_case("opensource") {
            Edition::Opensource
        } else {
            Edition::Enterprise
        },
        nodes: a.nodes,
        cluster_name: a.cluster_name,
        username: a.username,
        password: a.password,
        license_max_connections: a.license_max_connections,
        v4_bad_login_penalty: Duration::from_secs_f64(a.v4_bad_login_penalty.max(0.0)),
        token_ttl: Duration::from_secs(a.token_ttl_secs),
        self_node: a.self_node.max(1),
        ..SimConfig::default()
    };
    let nodes: Vec<String> = emqx_sim::SimState::new(config.clone())
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    actix_web::rt::System::new().block_on(async move {
        let (sim, server) = emqx_sim::start(config)?;
        println!("emqx-sim listening on {}", sim.url());
        let _ = std::io::stdout().flush();
        if let Some(dir) = a.log_dir {
            let format = if a.log_format == "json" {
                Format::Json
            } else {
                Format::Text
            };
            let mut log = WrapLog::open(&dir, a.log_rotation_size, a.log_rotation_count, format)?;
            let rate = a.log_rate.max(1);
            std::thread::spawn(move || {
                let mut i: usize = 0;
                let tick = Duration::from_secs_f64(1.0 / rate as f64);
                loop {
                    let node = &nodes[i % nodes.len()];
                    if log.line(node, 3 + i % 2, "simulated event").is_err() {
                        return;
                    }
                    i += 1;
                    std::thread::sleep(tick);
                }
            });
        }
        let handle = sim.handle.clone();
        actix_web::rt::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            handle.stop(true).await;
        });
        server.await
    })
}
