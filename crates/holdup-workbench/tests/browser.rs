//! The web UI in a real browser: headless Chromium driven over WebDriver
//! (Debian's chromium and chromium-driver). A requester opens an incident,
//! submits a bpftrace script and requests a 5 s run; an approver approves
//! and runs it; the incident page shows the run's output and a plot; the
//! screenshot of that page must not be blank.
//!
//! Needs root (the run loads BPF) and chromedriver: skipped without them,
//! failing with CI=true.

use serde_json::{json, Value};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{StoreDir, Tmp};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Counts one `interval` every 100 ms and prints the count every second:
/// about 10 more per print, so the plot is a rising series.
const SCRIPT: &str = "interval:ms:100 { @ticks = count(); }\ninterval:s:1 { print(@ticks); }\n";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A small WebDriver client: just the commands this test needs.
struct Driver {
    http: ureq::Agent,
    base: String,
    session: String,
    process: Child,
}

impl Driver {
    fn start(profile: &std::path::Path) -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = agent();
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
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,1800",
                         format!("--user-data-dir={}", profile.display())]
            }
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

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
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

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    /// The first element matching `css`, waiting up to `secs` for it.
    fn find(&self, css: &str, secs: u64) -> String {
        let t0 = Instant::now();
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let mut r = self
                .http
                .post(&url)
                .send_json(json!({"using": "css selector", "value": css}))
                .unwrap();
            let ok = r.status().is_success();
            let v: Value = r.body_mut().read_json().unwrap_or_default();
            if ok {
                return v["value"]
                    .as_object()
                    .and_then(|o| o.values().next())
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_string();
            }
            if t0.elapsed() > Duration::from_secs(secs) {
                let flash = self.js("return document.getElementById('flash').textContent");
                panic!("no element {css} after {secs} s (page says: {flash})");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn click(&self, css: &str) {
        let e = self.find(css, 15);
        self.cmd("POST", &format!("/element/{e}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css, 15);
        self.cmd("POST", &format!("/element/{e}/clear"), None);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        );
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css, 15);
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Waits until `script` returns true.
    fn wait_js(&self, script: &str, secs: u64, what: &str) {
        let t0 = Instant::now();
        while self.js(script) != true {
            if t0.elapsed() > Duration::from_secs(secs) {
                let main = self.js("return document.getElementById('main').innerText");
                let flash = self.js("return document.getElementById('flash').textContent");
                panic!("{what}: not after {secs} s; flash: {flash}; page: {main}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn login(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/#/incidents"));
        // A new hash on the same page does not reload it: log out by
        // forgetting the token and reloading.
        self.js("sessionStorage.clear(); return true");
        self.cmd("POST", "/refresh", None);
        self.type_into("#token", token);
        self.click("#login");
        self.wait_js(
            "return !document.getElementById('nav').hidden",
            15,
            "logged in",
        );
    }

    /// Saves a screenshot under the test's target tmp dir, for people to
    /// look at (the checked one is the incident page's).
    fn keep_screenshot(&self, name: &str) {
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::write(out, self.screenshot());
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap()
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

/// Serves the workbench on a free loopback port from a background runtime.
fn serve(tmp: &Tmp) -> (String, String) {
    let (wb, admin) =
        holdup_workbench::Workbench::open(&tmp.db(), holdup_workbench::policy::Policy::default())
            .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, holdup_workbench::api::router(Arc::new(wb)))
                .await
                .unwrap();
        });
    });
    (format!("http://{addr}"), admin.unwrap())
}

/// Share of pixels that differ from the most common colour, and the number
/// of distinct colours: a blank or all-white page has ~0 and 1.
fn png_variety(png_bytes: &[u8]) -> (f64, usize) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let mut counts = std::collections::HashMap::new();
    for p in buf[..info.buffer_size()].chunks(px) {
        *counts.entry(p[..3.min(px)].to_vec()).or_insert(0usize) += 1;
    }
    let total: usize = counts.values().sum();
    let top = counts.values().copied().max().unwrap_or(0);
    ((total - top) as f64 / total.max(1) as f64, counts.len())
}

#[test]
fn requester_and_approver_take_a_script_to_a_plotted_run_in_the_browser() {
    let Some(_g) = holdup_testkit::bpf_setup("browser test (runs bpftrace)") else {
        return;
    };
    if !std::path::Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {CHROMEDRIVER} is missing: scripts/setup.sh installs chromium-driver"
        );
        eprintln!("skipped: {CHROMEDRIVER} missing (apt install chromium chromium-driver)");
        return;
    }
    let tmp = Tmp::new("browser");
    // Built-in probes run the real `holdup record`.
    std::env::set_var("HOLDUP_BIN", holdup_testkit::holdup_bin());
    let (base, admin) = serve(&tmp);
    let d = Driver::start(&tmp.0.join("chromium-profile"));

    // The admin adds the two users on the Users page; each token is shown once.
    d.login(&base, &admin);
    let mut tokens = Vec::new();
    for (name, role) in [("rita", "requester"), ("amos", "approver")] {
        d.goto(&format!("{base}/#/users"));
        d.type_into("#user-name", name);
        d.click(&format!("#user-role option[value='{role}']"));
        d.click("#user-create");
        tokens.push(d.text(&format!("pre.token[data-user='{name}']")));
    }
    let (rita, amos) = (tokens[0].clone(), tokens[1].clone());
    assert!(
        rita.starts_with("hwb_") && amos.starts_with("hwb_"),
        "{tokens:?}"
    );

    // The requester opens an incident.
    d.login(&base, &rita);
    d.type_into("#incident-title", "GET p99 doubled after deploy");
    d.type_into("#incident-service", "redis");
    d.click("#incident-create");
    let inc = d.find("#incident-view", 15);
    let inc_id = d.cmd(
        "GET",
        &format!("/element/{inc}/attribute/data-incident"),
        None,
    );
    let inc_id = inc_id.as_str().unwrap().to_string();

    // ... submits a bpftrace script, which passes the checks ...
    d.goto(&format!("{base}/#/catalog"));
    d.type_into("#script-name", "ticks.bt");
    d.type_into("#script-body", SCRIPT);
    d.click("#script-submit");
    let report = d.find("#script-report .report", 60);
    let sid = d.cmd(
        "GET",
        &format!("/element/{report}/attribute/data-script"),
        None,
    );
    let sid = sid.as_str().unwrap().to_string();
    assert!(d.text("#script-report").contains("accepted"));
    d.keep_screenshot("workbench-catalog.png");

    // ... and requests a 5 s run of it on the incident.
    d.goto(&format!("{base}/#/incidents/{inc_id}"));
    d.click(&format!("#req-probe option[value='script:{sid}']"));
    d.type_into("#req-duration", "5");
    d.type_into("#req-purpose", "count timer ticks while GET is slow");
    d.click("#req-submit");
    d.wait_js(
        "return /request #\\d+ pending/.test(document.getElementById('flash').textContent)",
        15,
        "request pending",
    );

    // The approver approves it from the review queue and runs it.
    d.login(&base, &amos);
    d.goto(&format!("{base}/#/review"));
    d.find("tr[data-request] .comment", 15);
    d.keep_screenshot("workbench-review.png");
    d.type_into("tr[data-request] .comment", "fine: 5 s, timers only");
    d.click("tr[data-request] button.approve");
    d.wait_js(
        "return document.getElementById('flash').textContent.includes('approved')",
        15,
        "approved",
    );
    d.goto(&format!("{base}/#/incidents/{inc_id}"));
    d.click("button.run");

    // The incident page shows the run's output and its plot once it ends.
    d.wait_js(
        "const o = document.querySelector('.run .run-output'); const st = document.querySelector('.run .status'); return !!o && o.textContent.includes('@ticks') && st.textContent != 'running'",
        40,
        "run output on the incident page",
    );
    d.wait_js(
        "const i = [...document.querySelectorAll('.run .plots img')]; return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0)",
        15,
        "plot rendered on the incident page",
    );
    let status = d.text(".run .status");
    assert!(
        status == "stopped_duration" || status == "finished",
        "run status {status}"
    );

    // A built-in probe on the same incident: holdup's own recording, plotted
    // as thread states over time and a run-queue latency histogram.
    d.click("#req-probe option[value='holdup-sched']");
    d.type_into("#req-duration", "3");
    d.type_into("#req-purpose", "who runs instead of redis");
    d.click("#req-submit");
    d.wait_js(
        "return /request #\\d+ approved/.test(document.getElementById('flash').textContent)",
        15,
        "holdup-sched approved by policy",
    );
    d.goto(&format!("{base}/#/runs"));
    d.goto(&format!("{base}/#/incidents/{inc_id}"));
    d.wait_js(
        "return document.querySelectorAll('button.run').length == 2",
        15,
        "two runnable requests",
    );
    d.js("const b = document.querySelectorAll('button.run'); b[b.length - 1].click(); return true");
    d.wait_js(
        "return document.querySelector('.run .status').textContent != 'running' && document.querySelectorAll('.artifact').length == 2",
        30,
        "the recording's run ended and its artifact is listed",
    );
    d.wait_js(
        "const i = [...document.querySelectorAll('.run .plots img')]; return i.some(x => x.alt == 'thread states over time') && i.some(x => x.alt == 'run-queue latency histogram') && i.every(x => x.complete && x.naturalWidth > 0)",
        60,
        "recording plots on the incident page",
    );
    assert_eq!(d.text(".run .status"), "stopped_duration");
    // holdup's diagnosis of the recording, attached to the incident too.
    d.click(".artifact[data-name='run-2.rec'] button.diagnose");
    d.wait_js(
        "const p = document.querySelector('pre.diagnosis'); return !!p && p.textContent.length > 40",
        60,
        "diagnosis shown",
    );
    // A note on the timeline (the page redraws, with the new artifact).
    d.type_into("#note-text", "GET slow while host busy");
    d.js("document.getElementById('note-text').form.requestSubmit(); return true");
    d.wait_js(
        "return document.getElementById('timeline').textContent.includes('GET slow while host busy') && document.querySelectorAll('.artifact').length == 3",
        15,
        "note on the timeline and the diagnosis among the artifacts",
    );
    d.click(".artifact[data-name='run-2.rec'] button.secondary:not(.diagnose):nth-of-type(2)");
    d.wait_js(
        "const i = [...document.querySelectorAll('.artifact .plots img')]; return i.some(x => x.alt == 'thread states over time') && i.every(x => x.complete && x.naturalWidth > 0)",
        30,
        "the artifact's plots",
    );
    d.js("document.querySelector('.run .plots img').scrollIntoView(); return true");
    let png = d.screenshot();
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("workbench-incident.png");
    std::fs::write(&out, &png).unwrap();
    let (varied, colours) = png_variety(&png);
    eprintln!(
        "screenshot {}: {:.1}% of pixels off the background, {colours} colours",
        out.display(),
        varied * 100.0
    );
    // A page with a plot and text: well above a blank page's 0% and 1 colour.
    assert!(
        varied > 0.02 && colours > 20,
        "screenshot looks blank: {varied} {colours}"
    );

    // The output is attached to the incident as an artifact.
    let mut r = agent()
        .get(format!("{base}/api/incidents/{inc_id}"))
        .header("Authorization", format!("Bearer {amos}"))
        .call()
        .unwrap();
    let mut body = String::new();
    r.body_mut().as_reader().read_to_string(&mut body).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["artifacts"],
        json!(["run-1.json", "run-2.rec", "run-2.rec.diagnosis.txt"]),
        "{v}"
    );
    assert_eq!(v["timeline"][0]["text"], "GET slow while host busy", "{v}");
}
