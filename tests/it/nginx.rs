//! A real nginx running `docker/nginx.conf` unchanged in front of ecp.

use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub struct Nginx {
    _child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Proxies to these `host:port` upstreams.
    pub async fn start(upstreams: &[String]) -> Nginx {
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
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
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
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
            _dir: dir,
        }
    }
}
