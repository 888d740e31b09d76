//! Headless Chromium over WebDriver (Debian's chromium and chromium-driver,
//! installed by scripts/setup.sh): a small client with just the commands
//! holdup's page tests need. The workbench's browser test drives the same
//! protocol the same way.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether Chromium and chromedriver are installed; skips (false, with a
/// note) or, with CI=true, fails when they are not.
pub fn available(what: &str) -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let msg = format!("{what} needs {CHROMIUM} and {CHROMEDRIVER} (run scripts/setup.sh)");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: {msg}");
    }
    eprintln!("skipping {msg}");
    false
}

/// A WebDriver session on a chromedriver this process started; both end
/// when it is dropped.
pub struct Driver {
    http: ureq::Agent,
    base: String,
    session: String,
    process: Child,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and a headless Chromium
    /// session with its profile in `profile`, plus `extra_args` for Chromium.
    pub fn start(profile: &Path, extra_args: &[String]) -> Driver {
        let port = crate::scenario::free_port();
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let t0 = Instant::now();
        loop {
            if let Ok(mut r) = http.get(format!("{base}/status")).call() {
                let v: Value = r.body_mut().read_json().unwrap_or_default();
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "chromedriver not ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The flags keep Chromium off the network it cannot reach here
        // (background services, component updates) and run it as root.
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1800",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra_args.iter().cloned());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"performance": "ALL"},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
        }}});
        let mut d = Driver {
            http,
            base,
            session: String::new(),
            process,
        };
        let v = d.cmd("POST", "/session", Some(caps));
        d.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        d
    }

    /// One WebDriver command on the session; its `value`.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let mut r = match method {
            "GET" => self.http.get(&url).call(),
            "DELETE" => self.http.delete(&url).call(),
            _ => self.http.post(&url).send_json(body.unwrap_or(json!({}))),
        }
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = r.status();
        let v: Value = r.body_mut().read_json().unwrap_or_default();
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {v}"
        );
        v["value"].clone()
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    /// Runs `script` in the page; what it returns.
    pub fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Every request pages made since the last call, as (the page's
    /// document URL, the requested URL): the DevTools
    /// `Network.requestWillBeSent` events of chromedriver's performance log,
    /// the pages' own requests and not the browser's background services.
    pub fn page_requests(&self) -> Vec<(String, String)> {
        let log = self.cmd("POST", "/se/log", Some(json!({"type": "performance"})));
        log.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| serde_json::from_str::<Value>(e["message"].as_str()?).ok())
            .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|m| {
                let p = &m["message"]["params"];
                Some((
                    p["documentURL"].as_str()?.to_string(),
                    p["request"]["url"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("screenshot is base64")
    }

    /// Saves a screenshot to `path` (for people to look at); returns it.
    pub fn save_screenshot(&self, path: &Path) -> PathBuf {
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        std::fs::write(path, self.screenshot()).expect("write the screenshot");
        path.to_path_buf()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .http
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
