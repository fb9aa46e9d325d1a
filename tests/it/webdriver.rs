//! A minimal W3C WebDriver client (JSON over HTTP) for Debian's chromedriver
//! driving headless Chromium.

use base64::Engine;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    _profile: tempfile::TempDir,
    http: reqwest::Client,
    base: String,
}

fn which(name: &str, fallback: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let p = format!("{dir}/{name}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} is not installed: {fallback}");
}

impl Browser {
    pub async fn start() -> Browser {
        let driver = which(
            "chromedriver",
            "scripts/test installs chromium-driver (apt-get install -y chromium chromium-driver)",
        );
        let chromium = which(
            "chromium",
            "scripts/test installs chromium (apt-get install -y chromium chromium-driver)",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chromedriver");
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{url}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1400,1000", format!("--user-data-dir={}", profile.path().display())]}}}});
        let r: Value = http
            .post(format!("{url}/session"))
            .json(&caps)
            .send()
            .await
            .expect("session")
            .json()
            .await
            .expect("json");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Browser {
            driver: child,
            _profile: profile,
            http,
            base: format!("{url}/session/{id}"),
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.try_cmd(method, path.to_string(), body)
            .await
            .unwrap_or_else(|v| panic!("webdriver {path}: {v}"))
    }

    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: String,
        body: Value,
    ) -> Result<Value, Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
            req = req.json(&body);
        }
        let r = req.send().await.expect("webdriver");
        let status = r.status();
        let v: Value = r.json().await.expect("webdriver json");
        if status.is_success() {
            Ok(v["value"].clone())
        } else {
            Err(v)
        }
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits until `script` (a function body) returns something truthy; returns it.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.js(script, args.clone()).await;
            let truthy = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
            if truthy {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .wait_for(
                css,
                "return document.querySelector(arguments[0]) ? true : false",
                json!([css]),
            )
            .await;
        assert_eq!(v, json!(true));
        let e = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        e[ELEMENT].as_str().expect("element id").to_string()
    }

    /// A real click (a user gesture). Live updates may re-render the page
    /// between finding the element and clicking it: then it is found again.
    pub async fn click(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.wait_for(
                css,
                "return document.querySelector(arguments[0]) ? true : false",
                json!([css]),
            )
            .await;
            let found = self
                .try_cmd(
                    reqwest::Method::POST,
                    "/element".into(),
                    json!({"using": "css selector", "value": css}),
                )
                .await;
            let clicked = match found {
                Ok(e) => {
                    let id = e[ELEMENT].as_str().unwrap_or_default().to_string();
                    self.try_cmd(
                        reqwest::Method::POST,
                        format!("/element/{id}/click"),
                        json!({}),
                    )
                    .await
                }
                Err(v) => Err(v),
            };
            match clicked {
                Ok(_) => return,
                Err(v) => {
                    let error = v["value"]["error"].as_str().unwrap_or_default();
                    assert!(
                        matches!(error, "no such element" | "stale element reference")
                            && tokio::time::Instant::now() < deadline,
                        "webdriver click {css}: {v}"
                    );
                }
            }
        }
    }

    pub async fn clear(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            json!({}),
        )
        .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// The text of `css` once it has any (a message the page shows after
    /// an answer arrives).
    pub async fn text_shown(&self, css: &str) -> String {
        self.wait_for(
            &format!("text in {css}"),
            "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : ''",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{id}/text"),
            json!(null),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// The browser's windows (tabs).
    pub async fn windows(&self) -> Vec<String> {
        let v = self
            .cmd(reqwest::Method::GET, "/window/handles", json!(null))
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn current_window(&self) -> String {
        self.cmd(reqwest::Method::GET, "/window", json!(null))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn switch_to(&self, handle: &str) {
        self.cmd(reqwest::Method::POST, "/window", json!({"handle": handle}))
            .await;
    }

    /// Waits for a window that is not in `before` (one a click opened),
    /// and switches to it.
    pub async fn switch_to_new_window(&self, before: &[String]) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(h) = self
                .windows()
                .await
                .into_iter()
                .find(|h| !before.contains(h))
            {
                self.switch_to(&h).await;
                return h;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no new window opened"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Closes the current window (then switch to another).
    pub async fn close_window(&self) {
        self.cmd(reqwest::Method::DELETE, "/window", json!(null))
            .await;
    }

    pub async fn screenshot(&self, name: &str) {
        let v = self
            .cmd(reqwest::Method::GET, "/screenshot", json!(null))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("png");
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write png");
    }
}

impl Drop for Browser {
    /// Chromium and its helpers are chromedriver's children (or, some of
    /// them, orphans naming the profile): noted first, then the session is
    /// closed (Chromium quits), chromedriver gets SIGTERM and is waited for,
    /// and whatever of Chromium is still there goes the same way.
    fn drop(&mut self) {
        let mut chromium = self
            .driver
            .id()
            .map(crate::stop::descendants)
            .unwrap_or_default();
        for p in crate::stop::mentioning(&self._profile.path().display().to_string()) {
            if !chromium.contains(&p) {
                chromium.push(p);
            }
        }
        // Plain blocking HTTP: no async runtime is needed (or safe) in drop.
        use std::io::{Read, Write};
        if let Some((host, path)) = self
            .base
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
        {
            if let Ok(mut s) = std::net::TcpStream::connect(host) {
                // chromedriver answers once Chromium has quit, and may keep
                // the connection open after: read the answer, not to EOF.
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let _ = write!(s, "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
            }
        }
        crate::stop::child(&mut self.driver, Duration::from_secs(10));
        crate::stop::others(&chromium, Duration::from_secs(10), Duration::from_secs(10));
    }
}
