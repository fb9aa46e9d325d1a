//! `emqxee-agent`: adopts an EMQX cluster into ECP.
//!
//! `start` runs the agent in the background (systemd when installed, else a
//! detached process with a pid file); `register` checks everything it can and
//! redeems a registration token; `run` is the foreground loop.

mod ecp;
mod run;
mod tls;
mod tunnel;

// The parsers of outside input live in the library (`lib.rs`) so the fuzz
// runner can reach them; `crate::emqx` etc. keep working through these.
use emqxee_agent::{emqx, home, logship};

use clap::{Args, Parser, Subcommand};
use ecp_protocol::register::{RegisterEmqx, RegisterLogCollection, RegisterRequest};
use home::{Credential, Home, Settings};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "emqxee-agent",
    version,
    about = "Agent that adopts an EMQX cluster into ECP"
)]
struct Cli {
    /// Home directory: settings, credential, state, log, pid file.
    #[arg(long, global = true, env = "EMQXEE_AGENT_HOME", default_value = home::DEFAULT_HOME)]
    home: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install a systemd unit (restart on failure) and enable it.
    Install(InstallArgs),
    /// Stop and remove the systemd unit.
    Uninstall(InstallArgs),
    /// Start the agent in the background (it idles until registered).
    Start,
    /// Stop the background agent.
    Stop,
    /// Stop, then start.
    Restart,
    /// Show whether the agent runs, is registered and connected.
    Status,
    /// Register with ECP (checks ECP, token, EMQX, version, log dir first).
    Register(RegisterArgs),
    /// Unregister from ECP and drop the credential.
    Unregister,
    /// Run in the foreground (systemd, Kubernetes, tests).
    Run(RunArgs),
    /// Print the version.
    Version,
}

#[derive(Args)]
struct InstallArgs {
    /// Where the unit file goes.
    #[arg(long, default_value = "/etc/systemd/system")]
    unit_dir: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// Exit non-zero after this many seconds without a session (while
    /// registered), so systemd or Kubernetes restarts the agent clean.
    #[arg(long, env = "EMQXEE_AGENT_WATCHDOG_SECS", default_value_t = 600)]
    watchdog_secs: u64,
}

#[derive(Args)]
struct RegisterArgs {
    /// ECP address (the root, or root/api).
    #[arg(long, env = "EMQXEE_AGENT_URL")]
    url: String,
    #[arg(long, env = "EMQXEE_AGENT_REGISTRATION_TOKEN", hide_env_values = true)]
    registration_token: String,
    #[arg(long, env = "EMQXEE_AGENT_EMQX_DASHBOARD_USERNAME")]
    emqx_dashboard_username: String,
    #[arg(
        long,
        env = "EMQXEE_AGENT_EMQX_DASHBOARD_PASSWORD",
        hide_env_values = true
    )]
    emqx_dashboard_password: String,
    #[arg(
        long,
        env = "EMQXEE_AGENT_EMQX_DASHBOARD_URL",
        default_value = "http://127.0.0.1:18083"
    )]
    emqx_dashboard_url: String,
    #[arg(
        long,
        env = "EMQXEE_AGENT_EMQX_API_URL",
        default_value = "http://127.0.0.1:18083"
    )]
    emqx_api_url: String,
    /// Collect EMQX's log files from --log-dir.
    #[arg(long, env = "EMQXEE_AGENT_ENABLE_LOG")]
    enable_log: bool,
    #[arg(long, env = "EMQXEE_AGENT_LOG_DIR", default_value = "/opt/emqx/log")]
    log_dir: String,
    /// Do not verify TLS certificates (ECP and EMQX).
    #[arg(long, env = "EMQXEE_AGENT_INSECURE")]
    insecure: bool,
    /// Extra CA certificates (PEM) to trust.
    #[arg(long, env = "EMQXEE_AGENT_CA_FILE")]
    ca_file: Option<PathBuf>,
}

const UNIT_NAME: &str = "emqxee-agent.service";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = Home::new(&cli.home);
    let result = match cli.command {
        Command::Version => {
            println!(
                "emqxee-agent {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                ecp_protocol::PROTOCOL_VERSION
            );
            Ok(())
        }
        Command::Run(a) => {
            init_tracing();
            runtime().and_then(|rt| {
                rt.block_on(run::run(
                    home,
                    run::RunOptions {
                        watchdog: Duration::from_secs(a.watchdog_secs),
                    },
                ))
            })
        }
        Command::Start => start(&home),
        Command::Stop => stop(&home),
        Command::Restart => stop(&home).and_then(|_| start(&home)),
        Command::Status => return status(&home),
        Command::Register(a) => runtime().and_then(|rt| rt.block_on(register(&home, a))),
        Command::Unregister => runtime().and_then(|rt| rt.block_on(unregister(&home))),
        Command::Install(a) => install(&home, &a),
        Command::Uninstall(a) => uninstall(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emqxee-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

// ------------------------------------------------------------ register

async fn register(home: &Home, a: RegisterArgs) -> Result<(), String> {
    home.ensure()?;
    let root = home::ecp_root(&a.url)?;
    let tls = tls::client_config(a.insecure, a.ca_file.as_deref())?;
    let http = tls::http_client(&tls, Duration::from_secs(10))?;
    // Check everything that can be checked before redeeming the token.
    let mut problems = Vec::new();
    let ecp_check = ecp::check(&http, &root);
    let mut emqx = emqx::Emqx::new(
        http.clone(),
        &a.emqx_api_url,
        &a.emqx_dashboard_username,
        &a.emqx_dashboard_password,
        home.seen_nodes(),
    );
    let (ecp_ok, observed) = tokio::join!(ecp_check, async {
        match emqx.detect().await {
            Ok(_) => Ok(emqx.observe().await),
            Err(e) => Err(e),
        }
    });
    if let Err(e) = ecp_ok {
        problems.push(e);
    }
    let observation = match observed {
        Ok(o) => match &o.health {
            ecp_protocol::Health::UnsupportedVersion { found, required } => {
                problems.push(format!(
                    "EMQX {found} is not supported: {required} is required"
                ));
                None
            }
            ecp_protocol::Health::EmqxUnreachable { message } => {
                problems.push(format!(
                    "cannot reach the EMQX API at {}: {message}",
                    a.emqx_api_url
                ));
                None
            }
            ecp_protocol::Health::EmqxAuthFailed { .. } => {
                problems.push("EMQX rejected the dashboard username or password".into());
                None
            }
            _ if o.emqx.is_none() => {
                problems.push(format!(
                    "unexpected answer from the EMQX API at {}",
                    a.emqx_api_url
                ));
                None
            }
            _ => Some(o),
        },
        Err(emqx::EmqxError::Unreachable(m)) => {
            problems.push(format!(
                "cannot reach the EMQX API at {}: {m}",
                a.emqx_api_url
            ));
            None
        }
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    if a.enable_log {
        if let Err(e) = std::fs::read_dir(&a.log_dir) {
            problems.push(format!("cannot read the log directory {}: {e}", a.log_dir));
        }
    }
    let Some(obs) = observation.filter(|_| problems.is_empty()) else {
        return Err(format!("register failed: {}", problems.join("; ")));
    };
    let emqx_info = obs.emqx.clone().unwrap_or(ecp_protocol::EmqxSummary {
        version: String::new(),
        edition: String::new(),
        cluster_name: String::new(),
    });
    let nodes: Vec<String> = obs.nodes.iter().map(|n| n.name.clone()).collect();
    let local = obs
        .local_node
        .clone()
        .or_else(|| nodes.first().cloned())
        .unwrap_or_default();
    let machine_id = home::machine_id();
    let body = RegisterRequest {
        registration_token: a.registration_token,
        node_id: home.node_id()?,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        hostname: home::hostname(),
        machine_id,
        emqx: RegisterEmqx {
            version: emqx_info.version.clone(),
            edition: emqx_info.edition.clone(),
            cluster_name: emqx_info.cluster_name,
            nodes: nodes.clone(),
            local_node: local,
        },
        dashboard_url: a.emqx_dashboard_url.clone(),
        api_url: a.emqx_api_url.clone(),
        log_collection: RegisterLogCollection {
            enabled: a.enable_log,
            dir: a.log_dir.clone(),
        },
    };
    let reg = ecp::register(&http, &root, &body)
        .await
        .map_err(|e| format!("register failed: {e}"))?;
    home.save_seen_nodes(&nodes);
    home.save_settings(&Settings {
        url: root.clone(),
        dashboard_username: a.emqx_dashboard_username,
        dashboard_password: a.emqx_dashboard_password,
        dashboard_url: a.emqx_dashboard_url,
        api_url: a.emqx_api_url,
        enable_log: a.enable_log,
        log_dir: a.log_dir,
        insecure: a.insecure,
        ca_file: a.ca_file,
    })?;
    home.save_credential(&Credential {
        token: reg.token,
        cluster_id: reg.cluster_id.clone(),
        agent_id: reg.agent_id.clone(),
    })?;
    println!(
        "registered with ECP at {root}: cluster {}, agent {} (EMQX {} {}, {} nodes)",
        reg.cluster_id,
        reg.agent_id,
        emqx_info.version,
        emqx_info.edition,
        nodes.len()
    );
    if running_pid(home).is_none() {
        println!("the agent is not running yet: start it with `emqxee-agent start`");
    }
    Ok(())
}

async fn unregister(home: &Home) -> Result<(), String> {
    let (Some(s), Some(c)) = (home.settings()?, home.credential()?) else {
        println!("not registered");
        return Ok(());
    };
    let tls = tls::client_config(s.insecure, s.ca_file.as_deref())?;
    let http = tls::http_client(&tls, Duration::from_secs(10))?;
    ecp::unregister(&http, &s.url, &c.token).await?;
    home.drop_credential()?;
    println!(
        "unregistered agent {} from cluster {}",
        c.agent_id, c.cluster_id
    );
    Ok(())
}

// ------------------------------------------------------------ daemon

/// Whether a process runs: it exists and is not a zombie waiting to be
/// reaped (a killed agent's pid answers signals until its parent reaps it).
fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok() && !zombie(pid)
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| proc_state(&s))
        .is_some_and(|state| state == 'Z' || state == 'X')
}

/// The state letter of a `/proc/PID/stat` line (after the command, which
/// may hold spaces and parentheses).
fn proc_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn running_pid(home: &Home) -> Option<i32> {
    home.pid().filter(|p| *p > 0 && alive(*p))
}

fn systemd_managed(unit_dir: &std::path::Path) -> bool {
    std::path::Path::new("/run/systemd/system").exists() && unit_dir.join(UNIT_NAME).exists()
}

fn systemctl(args: &[&str]) -> Result<(), String> {
    let st = std::process::Command::new("systemctl")
        .args(args)
        .status()
        .map_err(|e| format!("systemctl: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("systemctl {} failed", args.join(" ")))
    }
}

fn start(home: &Home) -> Result<(), String> {
    if systemd_managed(std::path::Path::new("/etc/systemd/system")) {
        systemctl(&["start", UNIT_NAME])?;
        println!("started through systemd ({UNIT_NAME})");
        return Ok(());
    }
    if let Some(pid) = running_pid(home) {
        println!("already running (pid {pid})");
        return Ok(());
    }
    home.ensure()?;
    let _ = std::fs::remove_file(home.pid_path());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.log_path())
        .map_err(|e| format!("cannot open {}: {e}", home.log_path().display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(exe)
        .arg("--home")
        .arg(&home.root)
        .arg("run")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0) // detached from the caller's terminal and signals
        .spawn()
        .map_err(|e| format!("cannot start the agent: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if home.pid() == Some(child.id() as i32) {
            println!("started (pid {})", child.id());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "the agent did not come up; see {}",
        home.log_path().display()
    ))
}

fn stop(home: &Home) -> Result<(), String> {
    if systemd_managed(std::path::Path::new("/etc/systemd/system")) {
        return systemctl(&["stop", UNIT_NAME]);
    }
    let Some(pid) = running_pid(home) else {
        println!("not running");
        return Ok(());
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(home.pid_path());
    println!("stopped (pid {pid})");
    Ok(())
}

/// LSB-style: 0 running, 3 not running.
fn status(home: &Home) -> ExitCode {
    let pid = running_pid(home);
    match pid {
        Some(p) => println!("agent: running (pid {p})"),
        None => println!("agent: not running"),
    }
    match (home.settings(), home.credential()) {
        (Ok(Some(s)), Ok(Some(c))) => println!(
            "registered: cluster {} as agent {} at {}",
            c.cluster_id, c.agent_id, s.url
        ),
        (Err(e), _) | (_, Err(e)) => println!("registered: unknown ({e})"),
        _ => println!("registered: no"),
    }
    if let Some(st) = home.status().filter(|_| pid.is_some()) {
        println!("session: {}", st.state);
        if let Some(e) = st.emqx {
            println!("emqx: {e}");
        }
        if let Some(e) = st.last_error {
            println!("last error: {e}");
        }
    }
    if pid.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

fn install(home: &Home, a: &InstallArgs) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let unit = format!(
        "[Unit]\nDescription=emqxee-agent: adopts this EMQX cluster into ECP\nAfter=network-online.target\nWants=network-online.target\n\n\
         [Service]\nType=simple\nExecStart={} --home {} run\nRestart=on-failure\nRestartSec=5\n\n[Install]\nWantedBy=multi-user.target\n",
        exe.display(),
        home.root.display()
    );
    std::fs::create_dir_all(&a.unit_dir)
        .map_err(|e| format!("cannot create {}: {e}", a.unit_dir.display()))?;
    let path = a.unit_dir.join(UNIT_NAME);
    std::fs::write(&path, unit).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("installed {}", path.display());
    if std::path::Path::new("/run/systemd/system").exists() {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", UNIT_NAME])?;
        println!("enabled {UNIT_NAME}; `emqxee-agent start` now starts it through systemd");
    } else {
        println!("systemd is not running here; `emqxee-agent start` keeps running the agent as a detached process");
    }
    Ok(())
}

fn uninstall(a: &InstallArgs) -> Result<(), String> {
    if systemd_managed(&a.unit_dir) {
        let _ = systemctl(&["stop", UNIT_NAME]);
        let _ = systemctl(&["disable", UNIT_NAME]);
    }
    let path = a.unit_dir.join(UNIT_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => println!("removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("not installed"),
        Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
    }
    Ok(())
}

#[cfg(test)]
mod daemon_tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_a_running_agent() {
        assert_eq!(proc_state("1234 (emqxee-agent) S 1 1234"), Some('S'));
        assert_eq!(proc_state("1234 (emqxee (odd) name) Z 1 1234"), Some('Z'));
        assert_eq!(proc_state("garbage"), None);
        assert!(alive(std::process::id() as i32), "this test runs");
        assert!(!zombie(std::process::id() as i32));
    }
}
