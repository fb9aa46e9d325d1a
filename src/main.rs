//! `ecp`: the control plane for fleets of EMQX clusters.

use clap::{Args, Parser, Subcommand};
use ecp::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ecp",
    version,
    about = "Control plane for fleets of EMQX clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded store by default; no Redis needed).
    Serve(ServeArgs),
    /// Manage users from the command line.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print the effective configuration (defaults < file < env < flags).
    Config(ServeArgs),
    /// The secret nodes share to forward dashboard traffic (Redis mode).
    PeerSecret {
        #[command(subcommand)]
        command: PeerSecretCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Configuration file (TOML); see config/ecp.toml.
    #[arg(long, env = "ECP_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, e.g. 0.0.0.0:8080 (port 0: any free port).
    #[arg(long, env = "ECP_LISTEN")]
    listen: Option<String>,
    /// Public URL of the console.
    #[arg(long, env = "ECP_PUBLIC_URL")]
    public_url: Option<String>,
    /// Directory of the embedded store.
    #[arg(long, env = "ECP_DATA_DIR")]
    data_dir: Option<String>,
    /// Use the Redis back end at this URL.
    #[arg(long, env = "ECP_REDIS")]
    redis: Option<String>,
    /// Listen address of the dashboard listener ("" for none).
    #[arg(long)]
    dashboard_listen: Option<String>,
}

#[derive(Subcommand)]
enum PeerSecretCommand {
    /// Replace it. Nodes pick the new one up within seconds and keep
    /// accepting the previous one until the next rotation.
    Rotate {
        #[command(flatten)]
        serve: ServeArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a system admin.
    Create {
        #[arg(long)]
        username: String,
        /// The password (or set ECP_USER_PASSWORD).
        #[arg(long, env = "ECP_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

fn load(args: &ServeArgs) -> Result<Config, ecp::config::ConfigError> {
    let mut c = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(v) = &args.listen {
        c.server.listen = v.clone();
    }
    if let Some(v) = &args.public_url {
        c.server.public_url = v.clone();
    }
    if let Some(v) = &args.data_dir {
        c.store.data_dir = v.clone();
    }
    if let Some(v) = &args.dashboard_listen {
        c.server.dashboard_listen = v.clone();
    }
    if let Some(v) = &args.redis {
        c.store.backend = "redis".into();
        c.store.redis_url = v.clone();
    }
    c.validate()?;
    Ok(c)
}

fn init_tracing(c: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&c.log.level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if c.log.format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!(
                "ecp {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                ecp_protocol::PROTOCOL_VERSION
            );
            Ok(())
        }
        Command::Config(args) => load(&args)
            .map_err(|e| e.to_string())
            .and_then(|c| toml::to_string_pretty(&c).map_err(|e| e.to_string()))
            .map(|s| print!("{s}")),
        Command::Serve(args) => match load(&args) {
            Err(e) => Err(e.to_string()),
            Ok(c) => {
                init_tracing(&c);
                let workers = c.server.workers;
                actix_web::rt::System::new().block_on(async move {
                    let _ = workers;
                    ecp::serve(c).await.map_err(|e| e.to_string())
                })
            }
        },
        Command::PeerSecret {
            command: PeerSecretCommand::Rotate { serve },
        } => match load(&serve) {
            Err(e) => Err(e.to_string()),
            Ok(c) if c.store.backend != "redis" => Err(
                "the peer secret exists only in Redis mode: give --redis URL (or store.redis_url)"
                    .into(),
            ),
            Ok(c) => actix_web::rt::System::new().block_on(async move {
                ecp::peers::rotate(&c.store.redis_url).await?;
                println!("peer secret rotated; nodes pick it up within seconds");
                Ok(())
            }),
        },
        Command::User {
            command:
                UserCommand::Create {
                    username,
                    password,
                    serve,
                },
        } => match load(&serve) {
            Err(e) => Err(e.to_string()),
            Ok(c) => actix_web::rt::System::new().block_on(async move {
                let store = ecp::open_store(&c).await.map_err(|e| e.to_string())?;
                ecp::bootstrap::create_admin(&store, &username, &password).await?;
                println!("created system admin {username:?}");
                Ok(())
            }),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ecp: {e}");
            ExitCode::FAILURE
        }
    }
}
