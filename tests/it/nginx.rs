//! A real nginx running `docker/nginx.conf` unchanged in front of ecp.

use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub struct Nginx {
    _child: Child,
    pub base: String,
    /// The dashboard site's address (its own port).
    pub dash: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// A port for nginx's dashboard site, chosen before the nodes start (they
/// are told it as `server.dashboard_origin`).
pub fn dashboard_port() -> u16 {
    free_port()
}

impl Nginx {
    /// Proxies to these `host:port` upstreams (no dashboard site).
    pub async fn start(upstreams: &[String]) -> Nginx {
        Nginx::start_with(upstreams, &[], free_port()).await
    }

    /// Also serves the dashboard site on `dash_port`, proxied to the
    /// nodes' dashboard listeners.
    pub async fn start_with(upstreams: &[String], dashboards: &[String], dash_port: u16) -> Nginx {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "nginx is not installed: scripts/test installs it (apt-get install -y nginx)"
                )
            });
        let dir = tempfile::tempdir().expect("tmp");
        let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/nginx.conf");
        // The shipped file, byte for byte, with its two include files beside it.
        std::fs::copy(&conf, dir.path().join("nginx.conf")).expect("copy nginx.conf");
        let port = free_port();
        std::fs::write(
            dir.path().join("ecp-listen.conf"),
            format!("listen 127.0.0.1:{port};\n"),
        )
        .expect("listen");
        let servers: String = upstreams
            .iter()
            .map(|u| format!("server {u} max_fails=1 fail_timeout=5s;\n"))
            .collect();
        std::fs::write(dir.path().join("ecp-upstreams.conf"), servers).expect("upstreams");
        let dash_servers: String = if dashboards.is_empty() {
            "server 127.0.0.1:9 down;\n".to_string()
        } else {
            dashboards
                .iter()
                .map(|u| format!("server {u} max_fails=1 fail_timeout=5s;\n"))
                .collect()
        };
        std::fs::write(
            dir.path().join("ecp-dashboard-upstreams.conf"),
            dash_servers,
        )
        .expect("dashboard upstreams");
        std::fs::write(
            dir.path().join("ecp-dashboard-listen.conf"),
            format!("listen 127.0.0.1:{dash_port};\n"),
        )
        .expect("dashboard listen");
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Nginx {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            dash: format!("http://127.0.0.1:{dash_port}"),
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    /// SIGTERM, which nginx handles (its workers exit with the master; a
    /// SIGKILLed master would leave them behind), then wait for it.
    fn drop(&mut self) {
        crate::stop::child(&mut self._child, Duration::from_secs(10));
    }
}
