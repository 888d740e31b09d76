// holdup workbench UI: a small single-page app over the JSON API.
// Every dynamic text goes into the page through textContent (never
// innerHTML); plots arrive as SVG strings and are shown as <img> data URLs,
// where no script can run.
"use strict";

const ROLES = ["viewer", "requester", "approver", "admin"];
let me = null;

// ---- helpers ---------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function flash(msg, ok) {
  const f = document.getElementById("flash");
  f.textContent = msg;
  f.className = ok ? "ok" : "";
  f.hidden = !msg;
}

function token() { return sessionStorage.getItem("hwb_token"); }

class ApiError extends Error {}

async function api(method, path, body, raw) {
  const headers = { Authorization: "Bearer " + token() };
  let payload;
  if (raw !== undefined) { payload = raw; headers["Content-Type"] = "application/octet-stream"; }
  else if (body !== undefined) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  const r = await fetch(path, { method, headers, body: payload });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (r.status === 401) { logout("Your token was not accepted: " + (data && data.error || r.status)); throw new ApiError("unauthorized"); }
  if (!r.ok) throw Object.assign(new ApiError((data && data.error) || ("HTTP " + r.status)), { data });
  return data;
}

// Runs an action, showing its error (the server says why) instead of failing silently.
async function attempt(fn, okMsg) {
  try { const v = await fn(); if (okMsg) flash(okMsg, true); return v; }
  catch (e) { if (!(e instanceof ApiError && e.message === "unauthorized")) flash(e.message); return undefined; }
}

function can(role) { return me && ROLES.indexOf(me.role) >= ROLES.indexOf(role); }
function when(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }
function status(s) { return el("span", { class: "status " + s, text: s }); }
function svgImg(svg, alt) {
  return el("img", { alt: alt, src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg) });
}
function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: headers.length, class: "muted", text: "nothing yet" }))));
}
function field(label, input) { return el("div", {}, el("label", { for: input.id, text: label }), input); }

// ---- login -----------------------------------------------------------------

function logout(msg) {
  sessionStorage.removeItem("hwb_token");
  me = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("whoami").textContent = "";
  showLogin(msg);
}

function showLogin(msg) {
  const main = document.getElementById("main");
  const input = el("input", { id: "token", type: "password", autocomplete: "off", placeholder: "hwb_…" });
  const form = el("form", { class: "card", id: "login-form" },
    el("h1", { text: "Log in" }),
    el("p", { class: "muted", text: "Paste your API token. The first start of the server printed the admin's; admins create users and their tokens under POST /api/users (or `holdup wb users create`)." }),
    field("API token", input),
    el("button", { id: "login", type: "submit", text: "Log in" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("hwb_token", input.value.trim());
    const who = await attempt(() => api("GET", "/api/whoami"));
    if (who) { flash(""); await loggedIn(who); }
  });
  main.replaceChildren(form);
  flash(msg || "");
  input.focus();
}

async function loggedIn(who) {
  me = who;
  document.getElementById("whoami").textContent = who.name + " (" + who.role + ")";
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  if (!location.hash || location.hash === "#/") location.hash = "#/incidents";
  else route();
}

// ---- pages -----------------------------------------------------------------

async function incidentsPage(main) {
  const list = await api("GET", "/api/incidents");
  const rows = list.slice().reverse().map((i) => el("tr", {},
    el("td", {}, el("a", { href: "#/incidents/" + i.id, text: "#" + i.id + " " + i.title })),
    el("td", { text: i.service }), el("td", { text: i.host }),
    el("td", { text: String(i.artifacts.length) }), el("td", { text: i.created_by + ", " + when(i.created) })));
  main.replaceChildren(el("h1", { text: "Incidents" }), table(["incident", "service", "host", "artifacts", "opened"], rows));
  if (can("requester")) {
    const title = el("input", { id: "incident-title", required: true, placeholder: "p99 of GET doubled since 14:05" });
    const service = el("input", { id: "incident-service", placeholder: "redis" });
    const host = el("input", { id: "incident-host", value: location.hostname });
    const notes = el("textarea", { id: "incident-notes" });
    const start = el("input", { id: "incident-start", type: "datetime-local" });
    const end = el("input", { id: "incident-end", type: "datetime-local" });
    const secs = (input) => (input.value ? Math.floor(new Date(input.value).getTime() / 1000) : null);
    const form = el("form", { class: "card", id: "new-incident" }, el("h2", { text: "Open an incident" }),
      el("div", { class: "row" }, field("Title", title), field("Service", service), field("Host", host)),
      el("div", { class: "row" }, field("Started (local time, optional)", start), field("Ended (optional)", end)),
      field("Notes", notes), el("button", { id: "incident-create", type: "submit", text: "Open incident" }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const inc = await attempt(() => api("POST", "/api/incidents",
        { title: title.value, service: service.value, host: host.value, notes: notes.value, start_time: secs(start), end_time: secs(end) }));
      if (inc) location.hash = "#/incidents/" + inc.id;
    });
    main.append(form);
  }
}

async function probeOptions() {
  const cat = await api("GET", "/api/catalog");
  const opts = cat.builtin.map((b) => el("option", { value: b.name, text: b.name + " (built-in, " + b.overhead + " overhead)" }));
  for (const s of cat.scripts) opts.push(el("option", { value: s.probe, text: s.probe + " " + s.name + " (bpftrace, by " + s.submitted_by + ")" }));
  return opts;
}

function requestForm(incidentId, onDone) {
  const probe = el("select", { id: "req-probe" });
  probeOptions().then((o) => probe.replaceChildren(...o)).catch((e) => flash(e.message));
  const kind = el("select", { id: "req-target-kind" }, ["host", "pid", "cgroup"].map((k) => el("option", { value: k, text: k })));
  const target = el("input", { id: "req-target", placeholder: "pid or /cgroup/path (empty for host)" });
  const host = el("input", { id: "req-host", value: location.hostname });
  const duration = el("input", { id: "req-duration", type: "number", min: "1", value: "10" });
  const purpose = el("textarea", { id: "req-purpose", placeholder: "what you want to learn and why now" });
  const result = el("p", { id: "req-result", class: "muted" });
  const form = el("form", { class: "card", id: "request-form" }, el("h2", { text: "Request a probe" }),
    el("div", { class: "row" }, field("Probe", probe), field("Target", kind), field("pid / cgroup", target)),
    el("div", { class: "row" }, field("Host", host), field("Duration (s)", duration)),
    field("Purpose", purpose), el("button", { id: "req-submit", type: "submit", text: "Request" }), result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await attempt(() => api("POST", "/api/requests", {
      probe: probe.value, target_kind: kind.value, target: target.value, host: host.value,
      duration_s: Number(duration.value), purpose: purpose.value, incident_id: incidentId }));
    if (r) {
      result.textContent = "Request #" + r.id + " is " + r.status + (r.status === "pending" ? ": an approver must review it." : ".");
      flash("request #" + r.id + " " + r.status, true);
      onDone && onDone();
    }
  });
  return form;
}

function requestRow(r, refresh) {
  const actions = el("td", {});
  const mine = me && r.requester === me.name;
  if (r.status === "approved" && (mine || can("approver"))) {
    actions.append(el("button", { class: "run", "data-request": r.id, text: "Run", onclick: async () => {
      const run = await attempt(() => api("POST", "/api/requests/" + r.id + "/run"), "run started");
      if (run) refresh();
    } }));
  }
  if (r.status === "pending" && can("approver") && !mine) actions.append(el("a", { href: "#/review", text: "review" }));
  return el("tr", { "data-request": r.id },
    el("td", { text: "#" + r.id }), el("td", { text: r.input ? r.input.probe : r.probe }),
    el("td", { text: r.target_kind + (r.target ? " " + r.target : "") + " on " + r.host }),
    el("td", { text: r.duration_s + " s" }), el("td", { text: r.purpose }),
    el("td", {}, status(r.status), r.decided_by ? el("div", { class: "muted", text: "by " + r.decided_by + (r.comment ? ": " + r.comment : "") }) : null),
    el("td", { text: r.requester }), actions);
}

async function plotsFor(path) {
  const p = await api("GET", path);
  const box = el("div", { class: "plots" });
  if (p.kind === "recording") {
    box.append(svgImg(p.plots.states, "thread states over time"), svgImg(p.plots.runq, "run-queue latency histogram"));
    if (p.plots.note) box.append(el("p", { class: "muted", text: p.plots.note }));
  } else {
    for (const c of p.charts) box.append(svgImg(c.svg, "bpftrace map " + c.map));
    if (!p.charts.length) box.append(el("p", { class: "muted", text: "no maps in this output to plot" }));
  }
  return box;
}

function runCard(run) {
  const card = el("div", { class: "card run", "data-run": run.id },
    el("h3", {}, el("a", { href: "#/runs/" + run.id, text: "Run #" + run.id }), " of request #" + run.request_id + " (" + run.probe + ") ", status(run.status)),
    el("p", { class: "muted run-reason", text: [
      "started " + when(run.started_at) + " by " + run.started_by,
      run.ended_at ? "ended " + when(run.ended_at) : "deadline " + when(run.deadline),
      run.reason || "",
      run.bpf_cpu_percent != null ? "BPF programs used " + run.bpf_cpu_percent.toFixed(3) + "% of a CPU" : "",
      run.output_bytes + " bytes of output"].filter(Boolean).join(" · ") }));
  if (run.status === "running" && (can("approver") || (me && run.started_by === me.name))) {
    card.append(el("button", { class: "danger stop", text: "Stop", onclick: () => attempt(() => api("POST", "/api/runs/" + run.id + "/stop"), "stopping run #" + run.id) }));
  }
  // Output and plots, so far while the run goes.
  api("GET", "/api/runs/" + run.id).then((full) => {
    card.append(el("pre", { class: "run-output", text: full.output || (run.status === "running" ? "(no output yet)" : "(no output)") }));
    if (full.output_bytes > 0) return plotsFor("/api/runs/" + run.id + "/plots").then((p) => card.append(p));
  }).catch((e) => card.append(el("p", { class: "muted", text: "output: " + e.message })));
  return card;
}

let refreshTimer = null;

async function incidentPage(main, id) {
  const [inc, reqs, runs] = await Promise.all([
    api("GET", "/api/incidents/" + id), api("GET", "/api/requests"), api("GET", "/api/runs?incident=" + id + "&limit=50")]);
  const refresh = () => route();
  const mine = reqs.filter((r) => r.incident_id === inc.id);
  const view = el("div", { id: "incident-view", "data-incident": inc.id },
    el("h1", { text: "#" + inc.id + " " + inc.title }),
    el("p", { class: "muted", text: [inc.service && "service " + inc.service, inc.host && "host " + inc.host,
      inc.start_time && "from " + when(inc.start_time), inc.end_time && "to " + when(inc.end_time),
      "opened by " + inc.created_by + " " + when(inc.created)].filter(Boolean).join(" · ") }),
    inc.notes ? el("p", { text: inc.notes }) : null);
  view.append(el("h2", { text: "Timeline" }));
  const notes = el("ul", { id: "timeline" }, inc.timeline.map((n) => el("li", {}, el("span", { class: "muted", text: when(n.created) + " " + n.author + ": " }), n.text)));
  if (!inc.timeline.length) notes.append(el("li", { class: "muted", text: "no notes yet" }));
  view.append(notes);
  if (can("requester")) {
    const text = el("input", { id: "note-text", placeholder: "what you saw, what you tried" });
    const nf = el("form", { class: "row" }, text, el("button", { type: "submit", text: "Add note" }));
    nf.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (await attempt(() => api("POST", "/api/incidents/" + inc.id + "/notes", { text: text.value }))) refresh();
    });
    view.append(nf);
  }
  view.append(el("h2", { text: "Requests" }),
    table(["id", "probe", "target", "duration", "purpose", "status", "requester", ""], mine.map((r) => requestRow(r, refresh))));
  if (can("requester")) view.append(requestForm(inc.id, refresh));
  view.append(el("h2", { text: "Runs" }));
  const runsBox = el("div", { id: "runs" });
  view.append(runsBox);
  // Only the runs are redrawn while one goes, so forms keep what is typed.
  const drawRuns = (list) => {
    runsBox.replaceChildren(...list.map(runCard));
    if (!list.length) runsBox.append(el("p", { class: "muted", text: "No runs yet: request a probe, get it approved, then run it." }));
    if (list.some((r) => r.status === "running")) {
      refreshTimer = setTimeout(async () => {
        const again = await attempt(() => api("GET", "/api/runs?incident=" + id + "&limit=50"));
        if (!again || location.hash !== "#/incidents/" + id) return;
        // All ended: redraw the whole page, whose artifacts now hold the outputs.
        if (again.every((r) => r.status !== "running")) route(); else drawRuns(again);
      }, 1500);
    }
  };
  drawRuns(runs);
  view.append(el("h2", { text: "Artifacts" }));
  const arts = el("div", { id: "artifacts" });
  for (const name of inc.artifacts) {
    const a = el("div", { class: "card artifact", "data-name": name }, el("strong", { text: name }), " ",
      el("button", { class: "secondary", text: "Download", onclick: () => download("/api/incidents/" + inc.id + "/artifacts/" + encodeURIComponent(name), name) }),
      el("button", { class: "secondary", text: "Plot", onclick: async (ev) => {
        ev.target.disabled = true;
        const p = await attempt(() => plotsFor("/api/incidents/" + inc.id + "/artifacts/" + encodeURIComponent(name) + "/plots"));
        if (p) a.append(p);
      } }),
      name.endsWith(".rec") && can("requester") ? el("button", { class: "secondary diagnose", text: "Diagnose", onclick: async (ev) => {
        ev.target.disabled = true;
        const d = await attempt(() => api("POST", "/api/incidents/" + inc.id + "/artifacts/" + encodeURIComponent(name) + "/diagnose"), "diagnosis attached");
        if (d) a.append(el("pre", { class: "diagnosis", text: d.text }));
      } }) : null);
    arts.append(a);
  }
  if (!inc.artifacts.length) arts.append(el("p", { class: "muted", text: "Run outputs and uploaded recordings appear here." }));
  view.append(arts);
  // Earlier incidents that look like this one (holdup-lab's fingerprints; src/matches.rs).
  const similar = el("div", { id: "matches" }, el("p", { class: "muted", text: "comparing with earlier incidents…" }));
  view.append(el("h2", { text: "Looks like" }), similar);
  api("GET", "/api/incidents/" + inc.id + "/matches").then((m) => similar.replaceChildren(m.matches.length ? table(["incident", "similarity", "verdict", "date", "notes"], m.matches.map((x) => el("tr", {},
    el("td", {}, x.id ? el("a", { href: "#/incidents/" + x.id, text: x.incident }) : x.incident), el("td", { text: x.similarity.toFixed(2) }),
    el("td", { text: x.verdict || x.diagnosed }), el("td", { text: x.date }), el("td", { text: x.notes || "" })))) : el("p", { class: "muted", text: m.note || "no earlier incident with a recording" })), () => similar.replaceChildren());
  if (can("requester")) {
    const file = el("input", { id: "upload-file", type: "file" });
    const up = el("form", { class: "card" }, el("h2", { text: "Attach a recording or file" }),
      el("p", { class: "muted", text: "e.g. a `holdup record -o x.rec` file; names may use letters, digits, . _ -" }), file,
      el("button", { type: "submit", text: "Upload" }));
    up.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = file.files[0];
      if (!f) return flash("choose a file first");
      const ok = await attempt(async () => api("PUT", "/api/incidents/" + inc.id + "/artifacts/" + encodeURIComponent(f.name), undefined, await f.arrayBuffer()), "uploaded " + f.name);
      if (ok !== undefined) refresh();
    });
    view.append(up);
  }
  main.replaceChildren(view);
}

async function download(path, name) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (!r.ok) return flash("download failed: HTTP " + r.status);
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", { href: url, download: name });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function catalogPage(main) {
  const cat = await api("GET", "/api/catalog");
  main.replaceChildren(el("h1", { text: "Catalog" }),
    el("h2", { text: "Built-in probes" }),
    table(["probe", "overhead class", "bounds of a run", "what it records"], cat.builtin.map((b) => el("tr", {},
      el("td", { text: b.name }), el("td", { text: b.overhead + (b.allowed ? "" : " (over the policy's max_overhead)") }),
      el("td", { text: "≤ " + b.budget_percent + "% of a CPU in BPF, ≤ " + b.max_duration_s + " s, ≤ " + Math.round(b.max_output_bytes / 1048576) + " MiB" +
        (b.auto_approve_max_duration_s ? "; no approval needed up to " + b.auto_approve_max_duration_s + " s" : "") }),
      el("td", { text: b.description })))),
    el("h2", { text: "Accepted bpftrace scripts" }),
    el("p", { class: "muted", text: "Scripts are class high: a run needs an approver and may use ≤ " + cat.script_budget_percent + "% of a CPU in BPF, ≤ " + cat.max_duration_s + " s." }),
    table(["probe", "name", "sha256", "by"], cat.scripts.map((s) => el("tr", {},
      el("td", { text: s.probe }), el("td", {}, el("a", { href: "#/scripts/" + s.probe.slice(7), text: s.name })),
      el("td", { class: "muted", text: s.sha256.slice(0, 16) + "…" }), el("td", { text: s.submitted_by })))));
  if (can("requester")) {
    const name = el("input", { id: "script-name", placeholder: "runq-by-comm.bt" });
    const body = el("textarea", { id: "script-body", placeholder: "tracepoint:sched:sched_switch { @[args->next_comm] = count(); }" });
    const report = el("div", { id: "script-report" });
    const form = el("form", { class: "card", id: "script-form" }, el("h2", { text: "Submit a bpftrace script" }),
      el("p", { class: "muted", text: "Checked before anyone reviews it: parsed by bpftrace without running, attach points listed, unsafe builtins (system, signal, override) refused, wildcards counted against the policy's limit." }),
      field("Name", name), field("Script", body), el("button", { id: "script-submit", type: "submit", text: "Submit for checks" }), report);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      let res;
      try { res = await api("POST", "/api/scripts", { name: name.value, body: body.value }); }
      catch (e) {
        flash(e.message);
        // A refused script comes back with its check report: show it.
        if (e.data && e.data.report) report.replaceChildren(scriptReport(e.data));
        return;
      }
      // Redraw the catalog (the new script is listed), then show its report.
      await route();
      document.getElementById("script-report").replaceChildren(scriptReport(res));
      flash("script " + res.name + " accepted as probe script:" + res.id + ": request it from an incident", true);
    });
    main.append(form);
  }
}

function scriptReport(s) {
  const r = s.report || {};
  return el("div", { class: "report", "data-script": s.id },
    el("p", {}, "Script #" + s.id + " ", status(s.status), " sha256 " + s.sha256),
    el("p", { text: "Attach points: " + ((r.attach_points || []).join(", ") || "none") }),
    el("p", { text: "Parse: " + (r.parse || "") }),
    (r.problems || []).length ? el("ul", {}, r.problems.map((p) => el("li", { text: p }))) : null);
}

async function scriptPage(main, id) {
  const s = await api("GET", "/api/scripts/" + id);
  main.replaceChildren(el("h1", { text: "Script " + s.name }), scriptReport(s), el("pre", { text: s.body }));
}

async function reviewPage(main) {
  const reqs = await api("GET", "/api/requests");
  const pending = reqs.filter((r) => r.status === "pending");
  const refresh = () => route();
  const rows = pending.map((r) => {
    const comment = el("input", { class: "comment", placeholder: "comment (required to reject)" });
    const decide = (verb) => async () => {
      const done = await attempt(() => api("POST", "/api/requests/" + r.id + "/" + verb, { comment: comment.value }), "request #" + r.id + " " + verb + "d");
      if (done) refresh();
    };
    const mine = me && r.requester === me.name;
    const probeCell = el("td", { text: r.probe });
    if (r.probe.startsWith("script:")) probeCell.replaceChildren(el("a", { href: "#/scripts/" + r.probe.slice(7), text: r.probe + " (read it)" }));
    return el("tr", { "data-request": r.id },
      el("td", { text: "#" + r.id }), probeCell,
      el("td", { text: r.target_kind + (r.target ? " " + r.target : "") + " on " + r.host }),
      el("td", { text: r.duration_s + " s" }), el("td", { text: r.purpose }), el("td", { text: r.requester }),
      el("td", {}, r.incident_id ? el("a", { href: "#/incidents/" + r.incident_id, text: "#" + r.incident_id }) : "—"),
      el("td", {}, can("approver") && !mine ? [comment,
        el("button", { class: "approve", text: "Approve", onclick: decide("approve") }),
        el("button", { class: "reject danger", text: "Reject", onclick: decide("reject") })]
        : el("span", { class: "muted", text: mine ? "your request: another approver decides" : "approvers decide" })));
  });
  main.replaceChildren(el("h1", { text: "Review queue" }),
    table(["id", "probe", "target", "duration", "purpose", "requester", "incident", "decision"], rows),
    el("h2", { text: "All requests" }),
    table(["id", "probe", "target", "duration", "purpose", "status", "requester", ""], reqs.slice().reverse().map((r) => requestRow(r, refresh))));
}

async function runsPage(main) {
  const runs = await api("GET", "/api/runs?limit=100");
  main.replaceChildren(el("h1", { text: "Runs" }), table(["run", "request", "probe", "incident", "status", "started", "BPF CPU", "output"],
    runs.map((r) => el("tr", {}, el("td", {}, el("a", { href: "#/runs/" + r.id, text: "#" + r.id })),
      el("td", { text: "#" + r.request_id }), el("td", { text: r.probe }),
      el("td", {}, r.incident_id ? el("a", { href: "#/incidents/" + r.incident_id, text: "#" + r.incident_id }) : "—"),
      el("td", {}, status(r.status)), el("td", { text: when(r.started_at) }),
      el("td", { text: r.bpf_cpu_percent != null ? r.bpf_cpu_percent.toFixed(3) + "%" : "" }),
      el("td", { text: r.output_bytes + " B" })))));
}

async function runPage(main, id) {
  const run = await api("GET", "/api/runs/" + id);
  main.replaceChildren(el("h1", { text: "Run #" + run.id }), runCard(run));
  if (run.status === "running") refreshTimer = setTimeout(route, 1500);
}

async function auditPage(main) {
  if (!can("approver")) { main.replaceChildren(el("p", { text: "The audit log is for approvers and admins." })); return; }
  const entries = await api("GET", "/api/audit?limit=1000");
  const result = el("p", { id: "audit-result" });
  main.replaceChildren(el("h1", { text: "Audit log" }),
    el("button", { id: "audit-verify", text: "Verify the hash chain", onclick: async () => {
      const v = await attempt(() => api("GET", "/api/audit/verify"));
      if (v) result.textContent = v.ok ? "intact: " + v.entries + " entries, head " + v.head_hash : "BROKEN at entry " + v.bad_seq + ": " + v.reason;
    } }), result,
    table(["seq", "time", "actor", "action", "details"], entries.slice().reverse().map((e) => el("tr", {},
      el("td", { text: String(e.seq) }), el("td", { text: when(e.time) }), el("td", { text: e.actor }),
      el("td", { text: e.action }), el("td", {}, el("code", { text: JSON.stringify(e.details) }))))));
}

async function usersPage(main) {
  if (!can("admin")) { main.replaceChildren(el("p", { text: "Users are managed by admins." })); return; }
  const users = await api("GET", "/api/users");
  const refresh = () => route();
  const shown = el("div", { id: "new-token" });
  const showToken = (who, tok) => document.getElementById("new-token").replaceChildren(el("div", { class: "card" },
    el("p", { text: "API token for " + who + ", shown only now: give it to them privately." }), el("pre", { class: "token", "data-user": who, text: tok })));
  const rows = users.map((u) => el("tr", { "data-user": u.name },
    el("td", { text: u.name }), el("td", { text: u.role }), el("td", { text: u.disabled ? "disabled" : "enabled" }),
    el("td", {},
      el("button", { class: "secondary", text: "New token", onclick: async () => {
        const v = await attempt(() => api("POST", "/api/users/" + encodeURIComponent(u.name) + "/token"));
        if (v) showToken(u.name, v.token);
      } }),
      el("button", { class: u.disabled ? "secondary" : "danger", text: u.disabled ? "Enable" : "Disable", onclick: async () => {
        if (await attempt(() => api("PUT", "/api/users/" + encodeURIComponent(u.name), { disabled: !u.disabled }))) refresh();
      } }))));
  const name = el("input", { id: "user-name", placeholder: "alice" });
  const role = el("select", { id: "user-role" }, ROLES.map((r) => el("option", { value: r, text: r, selected: r === "requester" })));
  const form = el("form", { class: "card" }, el("h2", { text: "Add a user" }),
    el("div", { class: "row" }, field("Name", name), field("Role", role)),
    el("button", { id: "user-create", type: "submit", text: "Create user" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = await attempt(() => api("POST", "/api/users", { name: name.value, role: role.value }));
    if (v) { await route(); showToken(v.user.name, v.token); }
  });
  main.replaceChildren(el("h1", { text: "Users" }), shown,
    el("p", { class: "muted", text: "Roles include the ones before them: viewer < requester < approver < admin. A new token revokes the old one." }),
    table(["name", "role", "state", ""], rows), form);
}

async function policyPage(main) {
  const p = await api("GET", "/api/policy");
  main.replaceChildren(el("h1", { text: "Policy in force" }),
    el("p", { class: "muted", text: "Loaded from the server's policy file at start (audited as policy.loaded)." }),
    el("pre", { id: "policy", text: JSON.stringify(p, null, 2) }));
}

// ---- router ----------------------------------------------------------------

const ROUTES = [
  [/^#\/incidents\/(\d+)$/, incidentPage],
  [/^#\/incidents$/, incidentsPage],
  [/^#\/catalog$/, catalogPage],
  [/^#\/scripts\/(\d+)$/, scriptPage],
  [/^#\/review$/, reviewPage],
  [/^#\/runs\/(\d+)$/, runPage],
  [/^#\/runs$/, runsPage],
  [/^#\/audit$/, auditPage],
  [/^#\/policy$/, policyPage],
  [/^#\/users$/, usersPage],
];

async function route() {
  clearTimeout(refreshTimer);
  if (!me) return;
  const main = document.getElementById("main");
  const hash = location.hash || "#/incidents";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  for (const [re, page] of ROUTES) {
    const m = hash.match(re);
    if (m) {
      try { await page(main, ...m.slice(1)); }
      catch (e) { if (!(e instanceof ApiError && e.message === "unauthorized")) main.replaceChildren(el("p", { class: "muted", text: "Could not load this page: " + e.message })); }
      return;
    }
  }
  main.replaceChildren(el("p", { text: "No such page. " }), el("a", { href: "#/incidents", text: "Go to incidents" }));
}

window.addEventListener("hashchange", () => { flash(""); route(); });
window.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("logout").addEventListener("click", () => logout("Logged out."));
  if (!token()) return showLogin();
  try { await loggedIn(await api("GET", "/api/whoami")); } catch (_) { /* logout() showed the login */ }
});
