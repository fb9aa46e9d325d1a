//! The agent's home directory (`--home`, default `/opt/emqxee-agent`):
//! `etc/agent.toml` (settings, 0600: it holds the EMQX password),
//! `etc/credential.json` (0600), `state/` (node id, seen nodes, status),
//! `log/agent.log`, `run/agent.pid`.

use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_HOME: &str = "/opt/emqxee-agent";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// ECP root URL (without `/api`).
    pub url: String,
    pub dashboard_username: String,
    pub dashboard_password: String,
    pub dashboard_url: String,
    pub api_url: String,
    #[serde(default)]
    pub enable_log: bool,
    #[serde(default)]
    pub log_dir: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub token: String,
    pub cluster_id: String,
    pub agent_id: String,
}

/// What `status` shows of a running daemon.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub pid: u32,
    /// "idle" (no credential), "connecting", "connected".
    pub state: String,
    pub since_ms: u64,
    pub last_error: Option<String>,
    pub emqx: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }
    pub fn settings_path(&self) -> PathBuf {
        self.root.join("etc/agent.toml")
    }
    pub fn credential_path(&self) -> PathBuf {
        self.root.join("etc/credential.json")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.root.join("run/agent.pid")
    }
    pub fn log_path(&self) -> PathBuf {
        self.root.join("log/agent.log")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn ensure(&self) -> Result<(), String> {
        for d in ["etc", "state", "log", "run"] {
            let p = self.root.join(d);
            std::fs::create_dir_all(&p)
                .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        }
        Ok(())
    }

    pub fn settings(&self) -> Result<Option<Settings>, String> {
        read_opt(&self.settings_path(), |t| {
            toml::from_str(t).map_err(|e| e.to_string())
        })
    }

    pub fn save_settings(&self, s: &Settings) -> Result<(), String> {
        let text = toml::to_string(s).map_err(|e| e.to_string())?;
        write_private(&self.settings_path(), text.as_bytes())
    }

    pub fn credential(&self) -> Result<Option<Credential>, String> {
        read_opt(&self.credential_path(), |t| {
            serde_json::from_str(t).map_err(|e| e.to_string())
        })
    }

    pub fn save_credential(&self, c: &Credential) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(c).map_err(|e| e.to_string())?;
        write_private(&self.credential_path(), &text)
    }

    pub fn drop_credential(&self) -> Result<(), String> {
        match std::fs::remove_file(self.credential_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove the credential: {e}")),
        }
    }

    /// The agent's stable instance id, created once.
    pub fn node_id(&self) -> Result<String, String> {
        let p = self.state_dir().join("node-id");
        if let Ok(id) = std::fs::read_to_string(&p) {
            let id = id.trim().to_string();
            if !id.is_empty() {
                return Ok(id);
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        write_private(&p, id.as_bytes())?;
        Ok(id)
    }

    /// v4: the EMQX nodes seen so far (stopped ones vanish from the API).
    pub fn seen_nodes(&self) -> Vec<String> {
        std::fs::read_to_string(self.state_dir().join("nodes.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn save_seen_nodes(&self, nodes: &[String]) {
        if let Ok(t) = serde_json::to_vec(nodes) {
            let _ = write_private(&self.state_dir().join("nodes.json"), &t);
        }
    }

    pub fn status(&self) -> Option<Status> {
        std::fs::read_to_string(self.state_dir().join("status.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    }

    pub fn save_status(&self, s: &Status) {
        if let Ok(t) = serde_json::to_vec(s) {
            let _ = write_private(&self.state_dir().join("status.json"), &t);
        }
    }

    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_path())
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

fn read_opt<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => parse(&t)
            .map(Some)
            .map_err(|e| format!("{} is damaged: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes a file readable by its owner only, atomically (temp file + rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `--url` accepts the ECP root or `root/api`; returns the root.
pub fn ecp_root(url: &str) -> Result<String, String> {
    let u = url.trim().trim_end_matches('/');
    let u = u.strip_suffix("/api").unwrap_or(u);
    if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() <= "https://".len() {
        return Err(format!(
            "--url {url:?} must be an http:// or https:// address of ECP"
        ));
    }
    Ok(u.to_string())
}

pub fn machine_id() -> String {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn url_accepts_root_or_api() {
        assert_eq!(
            ecp_root("https://ecp.example.com/api").as_deref(),
            Ok("https://ecp.example.com")
        );
        assert_eq!(
            ecp_root("https://ecp.example.com/api/").as_deref(),
            Ok("https://ecp.example.com")
        );
        assert_eq!(
            ecp_root("http://10.0.0.1:8080").as_deref(),
            Ok("http://10.0.0.1:8080")
        );
        assert!(ecp_root("ecp.example.com").is_err());
    }

    #[test]
    fn credential_is_private_and_node_id_is_stable() {
        let dir = tempfile::tempdir().expect("tmp");
        let h = Home::new(dir.path());
        h.ensure().expect("ensure");
        let c = Credential {
            token: "ecpa_x".into(),
            cluster_id: "c".into(),
            agent_id: "a".into(),
        };
        h.save_credential(&c).expect("save");
        let mode = std::fs::metadata(h.credential_path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(h.credential().expect("read"), Some(c));
        let id = h.node_id().expect("id");
        assert_eq!(h.node_id().expect("id"), id);
        h.drop_credential().expect("drop");
        assert_eq!(h.credential().expect("read"), None);
    }
}
