//! The web UI in a real browser: headless Chromium driven over WebDriver
//! (Debian's chromium and chromium-driver). A requester opens an incident,
//! submits a bpftrace script and requests a 5 s run; an approver approves
//! and runs it; the incident page shows the run's output and a plot; the
//! screenshot of that page must not be blank.
//!
//! Needs root (the run loads BPF) and chromedriver: skipped without them,
//! failing with CI=true.

use holdup_testkit::browser::{self, Driver};
use serde_json::{json, Value};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{StoreDir, Tmp};

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

/// Waits until `script` returns true; on a timeout the failure shows the
/// workbench's flash line and main pane.
fn wait(d: &Driver, script: &str, secs: u64, what: &str) {
    d.wait_js(
        script,
        secs,
        what,
        "return 'flash: ' + document.getElementById('flash').textContent + '; page: ' + document.getElementById('main').innerText",
    );
}

/// Waits until the workbench's flash line matches the JavaScript regular
/// expression `pattern`.
fn wait_flash(d: &Driver, pattern: &str, what: &str) {
    let script = format!("return /{pattern}/.test(document.getElementById('flash').textContent)");
    wait(d, &script, 15, what);
}

/// Logs in to the workbench at `base` with `token`, after logging out.
fn login(d: &Driver, base: &str, token: &str) {
    d.goto(&format!("{base}/#/incidents"));
    // A new hash on the same page does not reload it: log out by
    // forgetting the token and reloading.
    d.js("sessionStorage.clear(); return true");
    d.cmd("POST", "/refresh", None);
    d.type_into("#token", token);
    d.click("#login");
    wait(
        d,
        "return !document.getElementById('nav').hidden",
        15,
        "logged in",
    );
}

/// Saves a screenshot under the test's target tmp dir, for people to look
/// at (the checked one is the incident page's).
fn keep_screenshot(d: &Driver, name: &str) {
    d.save_screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name));
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
    if !browser::available("the workbench's browser test") {
        return;
    }
    let tmp = Tmp::new("browser");
    // Built-in probes run the real `holdup record`.
    std::env::set_var("HOLDUP_BIN", holdup_testkit::holdup_bin());
    let (base, admin) = serve(&tmp);
    let d = Driver::start(&tmp.0.join("chromium-profile"), &[]);

    // The admin adds the two users on the Users page; each token is shown once.
    login(&d, &base, &admin);
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
    login(&d, &base, &rita);
    d.type_into("#incident-title", "GET p99 doubled after deploy");
    d.type_into("#incident-service", "redis");
    d.click("#incident-create");
    let inc = d.find("#incident-view", 15);
    let inc_id = d.attribute(&inc, "data-incident");
    let inc_id = inc_id.as_str().unwrap().to_string();

    // ... submits a bpftrace script, which passes the checks ...
    d.goto(&format!("{base}/#/catalog"));
    d.type_into("#script-name", "ticks.bt");
    d.type_into("#script-body", SCRIPT);
    d.click("#script-submit");
    let report = d.find("#script-report .report", 60);
    let sid = d.attribute(&report, "data-script");
    let sid = sid.as_str().unwrap().to_string();
    assert!(d.text("#script-report").contains("accepted"));
    keep_screenshot(&d, "workbench-catalog.png");

    // ... and requests a 5 s run of it on the incident.
    d.goto(&format!("{base}/#/incidents/{inc_id}"));
    d.click(&format!("#req-probe option[value='script:{sid}']"));
    d.type_into("#req-duration", "5");
    d.type_into("#req-purpose", "count timer ticks while GET is slow");
    d.click("#req-submit");
    wait_flash(&d, "request #\\d+ pending", "request pending");

    // The approver approves it from the review queue and runs it.
    login(&d, &base, &amos);
    d.goto(&format!("{base}/#/review"));
    d.find("tr[data-request] .comment", 15);
    keep_screenshot(&d, "workbench-review.png");
    d.type_into("tr[data-request] .comment", "fine: 5 s, timers only");
    d.click("tr[data-request] button.approve");
    wait_flash(&d, "approved", "approved");
    d.goto(&format!("{base}/#/incidents/{inc_id}"));
    d.click("button.run");

    // The incident page shows the run's output and its plot once it ends.
    wait(
        &d,
        "const o = document.querySelector('.run .run-output'); const st = document.querySelector('.run .status'); return !!o && o.textContent.includes('@ticks') && st.textContent != 'running'",
        40,
        "run output on the incident page",
    );
    wait(
        &d,
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
    wait_flash(
        &d,
        "request #\\d+ approved",
        "holdup-sched approved by policy",
    );
    d.goto(&format!("{base}/#/runs"));
    d.goto(&format!("{base}/#/incidents/{inc_id}"));
    wait(
        &d,
        "return document.querySelectorAll('button.run').length == 2",
        15,
        "two runnable requests",
    );
    d.js("const b = document.querySelectorAll('button.run'); b[b.length - 1].click(); return true");
    wait(
        &d,
        "return document.querySelector('.run .status').textContent != 'running' && document.querySelectorAll('.artifact').length == 2",
        30,
        "the recording's run ended and its artifact is listed",
    );
    wait(
        &d,
        "const i = [...document.querySelectorAll('.run .plots img')]; return i.some(x => x.alt == 'thread states over time') && i.some(x => x.alt == 'run-queue latency histogram') && i.every(x => x.complete && x.naturalWidth > 0)",
        60,
        "recording plots on the incident page",
    );
    assert_eq!(d.text(".run .status"), "stopped_duration");
    // holdup's diagnosis of the recording, attached to the incident too.
    d.click(".artifact[data-name='run-2.rec'] button.diagnose");
    wait(
        &d,
        "const p = document.querySelector('pre.diagnosis'); return !!p && p.textContent.length > 40",
        60,
        "diagnosis shown",
    );
    // A note on the timeline (the page redraws, with the new artifact).
    d.type_into("#note-text", "GET slow while host busy");
    d.js("document.getElementById('note-text').form.requestSubmit(); return true");
    wait(
        &d,
        "return document.getElementById('timeline').textContent.includes('GET slow while host busy') && document.querySelectorAll('.artifact').length == 3",
        15,
        "note on the timeline and the diagnosis among the artifacts",
    );
    d.click(".artifact[data-name='run-2.rec'] button.secondary:not(.diagnose):nth-of-type(2)");
    wait(
        &d,
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
