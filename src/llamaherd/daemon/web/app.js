// herd's web console: plain JavaScript over the management API (docs/console.md).
// The API key, when the daemon has one, lives in this tab's sessionStorage and goes in
// a header on every call (never in a URL); a 401 brings up the sign-in form.
"use strict";

const $ = (selector) => document.querySelector(selector);
const KEY = "herd-api-key";
const POLL_MS = 2000;
let status = null, models = [], timer = null, logStream = null;

async function api(path, options = {}) {
  const headers = {...(options.headers || {})};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = {...options, body: JSON.stringify(options.json)};
  }
  const response = await fetch(path, {...options, headers});
  if (response.status === 401) {
    showLogin(key ? "wrong key" : "");
    throw new Error("the daemon needs its API key");
  }
  return response;
}

async function getJson(path) {
  const response = await api(path);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function showLogin(message) {
  $("#login").hidden = false;
  $("#login-error").textContent = message;
  $("#key").focus();
}

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#key").value);
  $("#key").value = "";
  $("#login").hidden = true;
  show();
});

function note(text, bad = false) {
  const notice = $("#notice");
  notice.textContent = text;
  notice.className = bad ? "bad" : "muted";
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const bytes = (n) => n == null ? "" : n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB`
  : `${(n / 2 ** 20).toFixed(0)} MiB`;
const perDevice = (memory) => memory ? Object.entries(memory)
  .filter(([, n]) => n > 0).map(([device, n]) => `${device} ${bytes(n)}`).join(", ") : "";

// A profile's saved prompt caches and what its last start restored (docs/kv-keep.md).
function kvLine([model, cache]) {
  const saved = cache.saved.map((f) => `slot ${f.slot}: ${f.tokens} tokens, ` +
    `${bytes(f.bytes)}, ${Math.round(f.age_s)} s old`).join("; ");
  const last = cache.last_restore;
  const restored = last ? ` · last start restored ${last.tokens} tokens from ${last.files} ` +
    `file(s)${last.discarded ? `, discarded ${last.discarded}` : ""}` : "";
  return el("div", {}, el("strong", {}, model), ` ${saved || "nothing saved"}${restored}`);
}

// -- models --------------------------------------------------------------------------
async function refreshModels() {
  [status, {models}] = await Promise.all([getJson("status"), getJson("models")]);
  $("#daemon").textContent = `${status.daemon.version} · ${status.daemon.url} · ` +
    `current: ${status.model || "none"}`;
  const loaded = Object.fromEntries(status.loaded.map((m) => [m.model, m]));
  const rows = models.map((row) => modelRow(row, loaded[row.id]));
  $("#model-table tbody").replaceChildren(...rows);
  $("#devices").replaceChildren(...(status.devices || []).map((d) => el("div", {},
    `${d.name}: ${bytes(d.capacity - d.free)} of ${bytes(d.capacity)} used`,
    perDevice(d.used) ? el("span", {class: "muted"}, ` (${perDevice(d.used)})`) : null)));
  $("#kv-caches").replaceChildren(...Object.entries(status.kv_cache || {}).map(kvLine));
  fillLogModels();
}

function modelRow(row, running) {
  const state = row.state;
  const ttl = row.ttl && running && running.idle_s != null
    ? `${Math.max(0, row.ttl - running.idle_s).toFixed(0)} s` : "";
  const measured = running && running.memory_measured ? perDevice(running.memory) : "";
  const estimate = row.memory ? `GPU ${bytes(row.memory.gpu)}, CPU ${bytes(row.memory.cpu)}` : "";
  const act = (label, run) => el("button", {onclick: () => run().catch((e) => note(e.message, true)),
    "data-action": label.toLowerCase(), "aria-label": `${label} ${row.id}`}, label);
  const stateCell = el("td", {class: `state-${state}`, "data-state": state}, state);
  if (state === "starting") stateCell.append(" ", loadProgress(running));
  return el("tr", {"data-model": row.id},
    el("td", {class: "name"}, row.id, el("small", {}, row.name)),
    stateCell,
    el("td", {}, estimate),
    el("td", {}, measured),
    el("td", {}, row.speed_tps ? `${row.speed_tps.toFixed(1)} t/s` : ""),
    el("td", {}, ttl),
    el("td", {}, running && running.in_flight != null ? String(running.in_flight) : ""),
    el("td", {}, String((status.queue || {})[row.id] || "")),
    el("td", {},
      state === "ready" || state === "starting"
        ? act("Stop", () => command(`stop?model=${encodeURIComponent(row.id)}`))
        : act(status.model ? "Switch" : "Start", () => switchTo(row.id)),
      " ", act("Restart", () => switchTo(row.id, true))));
}

// LOAD PROGRESS: a bar from the model's `progress` in /status (issue 16 item 3) when the
// daemon reports one, else an indeterminate bar while it starts.
function loadProgress(running) {
  const bar = el("progress", {max: "1", "aria-label": "loading"});
  const fraction = running && running.progress && (running.progress.fraction ?? running.progress);
  if (typeof fraction === "number") bar.value = fraction;
  return bar;
}

async function switchTo(id, restart = false) {
  note(`${restart ? "restarting" : "switching to"} ${id}…`);
  const pending = api("switch", {method: "POST", json: {model: id, restart}});
  setTimeout(refreshModels, 300);  // show it starting while the switch runs
  const answer = await (await pending).json();
  if (answer.ok === false || answer.error) note(`${id}: ${answer.error}`, true);
  else note(`${answer.model} is ${answer.state}`);
  await refreshModels();
}

async function command(path) {
  const response = await api(path, {method: "POST"});
  const answer = await response.json();
  note(response.ok ? `stopped: ${answer.stopped.join(", ") || "nothing"}` : answer.error, !response.ok);
  await refreshModels();
}

// -- logs ----------------------------------------------------------------------------
// The current model's log, until the user picks another.
let logPicked = false;

function fillLogModels() {
  const select = $("#log-model");
  const ids = models.map((m) => m.id);
  const chosen = logPicked ? select.value : status.model || select.value || ids[0];
  if ([...select.options].map((o) => o.value).join() !== ids.join()) {
    select.replaceChildren(...ids.map((id) => el("option", {value: id}, id)));
  }
  select.value = chosen;
}

async function followLog() {
  if (logStream) logStream.abort();
  logStream = new AbortController();
  const model = $("#log-model").value;
  const lines = $("#log-lines");
  lines.textContent = "";
  const response = await api(`logs/stream?tail=500&model=${encodeURIComponent(model)}`,
    {signal: logStream.signal});
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, {stream: true});
    const records = buffer.split("\n\n");
    buffer = records.pop();
    for (const record of records) {
      const data = record.split("\n").find((l) => l.startsWith("data: "));
      if (data) addLogLine(JSON.parse(data.slice(6)).line);
    }
  }
}

function addLogLine(text) {
  const line = el("div", {}, text);
  const search = $("#log-search").value.toLowerCase();
  line.hidden = Boolean(search) && !text.toLowerCase().includes(search);
  const lines = $("#log-lines");
  lines.append(line);
  if ($("#log-follow").checked) lines.scrollTop = lines.scrollHeight;
}

$("#log-search").addEventListener("input", () => {
  const search = $("#log-search").value.toLowerCase();
  for (const line of $("#log-lines").children) {
    line.hidden = Boolean(search) && !line.textContent.toLowerCase().includes(search);
  }
});
$("#log-model").addEventListener("change", () => {
  logPicked = true;
  followLog().catch(streamEnded);
});

function streamEnded(error) {
  if (error.name !== "AbortError") note(`log stream: ${error.message}`, true);
}

// -- system --------------------------------------------------------------------------
async function refreshSystem() {
  const snapshot = await getJson("system?points=120");
  const history = snapshot.history;
  const charts = [["CPU %", {cpu: history.cpu_percent}, 100]];
  for (const [gpu, series] of Object.entries(history.gpu_utilization)) {
    charts.push([`GPU${gpu} utilization %`, {[`GPU${gpu}`]: series}, 100]);
  }
  for (const [gpu, series] of Object.entries(history.gpu_memory_used)) {
    const total = (snapshot.gpus.find((g) => String(g.index) === gpu) || {}).memory_total;
    charts.push([`GPU${gpu} memory`, {[`GPU${gpu}`]: series}, total]);
  }
  charts.push(["tokens/s", history.tokens_per_s, null]);
  $("#charts").replaceChildren(...charts.map(([title, series, top]) => chart(title, series, top)));
  const host = snapshot.system;
  $("#system-text").replaceChildren(el("p", {class: "muted"}, host
    ? `RAM ${bytes(host.memory_used)} of ${bytes(host.memory_total)} · load ${
      (host.load_avg || []).map((x) => x.toFixed(2)).join(" ")}` : snapshot.error || ""));
}

const COLORS = ["var(--accent)", "var(--ok)", "var(--warn)", "var(--bad)"];

function chart(title, series, top) {
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", "0 0 300 100");
  svg.setAttribute("preserveAspectRatio", "none");
  const values = Object.values(series).flat().filter((v) => v != null);
  const max = top || Math.max(1, ...values);
  const latest = [];
  Object.entries(series).forEach(([name, points], i) => {
    const line = document.createElementNS(svgNS, "polyline");
    const step = 300 / Math.max(1, points.length - 1);
    line.setAttribute("points", points.map((v, x) => v == null ? null
      : `${(x * step).toFixed(1)},${(100 - (v / max) * 100).toFixed(1)}`).filter(Boolean).join(" "));
    line.setAttribute("stroke", COLORS[i % COLORS.length]);
    svg.append(line);
    const last = points.filter((v) => v != null).pop();
    if (last != null) latest.push(`${name} ${title.endsWith("memory") ? bytes(last) : last.toFixed(1)}`);
  });
  return el("figure", {class: "chart", "data-chart": title}, el("figcaption", {}, title, " ",
    el("span", {class: "muted"}, latest.join(" · "))), svg);
}

// -- activity ------------------------------------------------------------------------
// -- activity: one row per gateway request (GET /activity, docs/activity.md) ----------
function activityQuery(extra = {}) {
  const query = new URLSearchParams({limit: "200", ...extra});
  if ($("#activity-model").value) query.set("model", $("#activity-model").value);
  if ($("#activity-status").value) query.set("status", $("#activity-status").value);
  return query;
}

const num = (value, digits = 0) => (value === null || value === undefined ? "—"
  : Number(value).toFixed(digits));

function activityRow(r) {
  const show = r.captured ? el("button", {type: "button", onclick: () => showCapture(r.id)},
    "body") : null;
  const served = r.requested && r.requested !== r.model ? `${r.model} (asked ${r.requested})`
    : (r.model || r.requested || "—");
  return el("tr", {class: r.cancelled || (r.status || 500) >= 400 ? "bad" : ""},
    el("td", {}, new Date(r.at * 1000).toLocaleTimeString()), el("td", {}, r.client || "—"),
    el("td", {}, `${r.method} ${r.endpoint}`), el("td", {}, served),
    el("td", {}, r.cancelled ? "cancelled" : String(r.status ?? "—")),
    el("td", {}, num(r.prompt_tokens)), el("td", {}, num(r.cached_tokens)),
    el("td", {}, num(r.generated_tokens)), el("td", {}, num(r.wait_s, 2)),
    el("td", {}, num(r.ttft_s, 2)), el("td", {}, num(r.prompt_tps, 1)),
    el("td", {}, num(r.generation_tps, 1)), el("td", {}, num(r.duration_s, 2)),
    el("td", {}, show));
}

let activityShown = false;  // polled while "Follow" is on; shown once when it is off

async function showActivity(force = false) {
  if (activityShown && force !== true && !$("#activity-follow").checked) return;
  activityShown = true;
  const select = $("#activity-model");
  if (select.options.length === 1) {
    for (const m of models) select.append(el("option", {value: m.id}, m.id));
  }
  const response = await api(`activity?${activityQuery()}`);
  const page = await response.json();
  if (!response.ok) {
    note(`no activity log: ${page.error || response.status}`, true);
    return;
  }
  $("#activity-table tbody").replaceChildren(...page.records.map(activityRow));
}

async function showCapture(id) {
  const capture = await getJson(`activity/${id}/capture`);
  const pane = $("#activity-capture");
  pane.hidden = false;
  pane.textContent = JSON.stringify(capture, null, 2);
  pane.focus();
}

async function exportActivity(format) {
  const response = await api(`activity?${activityQuery({format})}`);
  const link = el("a", {download: `herd-activity.${format === "csv" ? "csv" : "md"}`,
    href: URL.createObjectURL(await response.blob())});
  link.click();
  URL.revokeObjectURL(link.href);
}

for (const id of ["#activity-model", "#activity-status"]) {
  $(id).addEventListener("change", () => showActivity(true).catch((e) => note(e.message, true)));
}
$("#activity-csv").addEventListener("click", () => exportActivity("csv"));
$("#activity-md").addEventListener("click", () => exportActivity("markdown"));

// -- bench, config, failures ---------------------------------------------------------
async function showReport() {
  const report = await getJson("console/report");
  const pane = $("#report");
  if (!report.html) {
    pane.replaceChildren(el("p", {class: "muted"},
      "No report yet: run `herd bench speed`, then `herd bench report`."));
    return;
  }
  pane.innerHTML = report.html;  // rendered by the daemon with raw HTML escaped
  pane.prepend(el("p", {class: "muted"}, report.path));
}

async function showConfig() {
  const config = await getJson("console/config");
  $("#config-path").textContent = config.path ? `read from ${config.path}` : "";
  $("#config-text").textContent = JSON.stringify(config.effective, null, 2);
}

$("#reload").addEventListener("click", async () => {
  const response = await api("reload", {method: "POST"});
  const answer = await response.json();
  $("#reload-result").textContent = response.ok
    ? `reloaded${answer.stale && answer.stale.length ? `; restart to apply: ${answer.stale.join(", ")}` : ""}`
    : answer.error;
  $("#reload-result").className = response.ok ? "" : "bad";
  await showConfig();
});

async function showFailures() {
  await refreshModels();
  const failed = models.filter((m) => m.state === "failed" || m.state === "missing");
  const items = [];
  if (status.last_error) {
    const e = status.last_error;
    items.push(failure(`${e.model} (${e.kind}, ${new Date(e.at * 1000).toLocaleString()})`,
      e.reason, e.log_tail));
  }
  for (const row of failed) {
    if (status.last_error && status.last_error.model === row.id) continue;
    const page = await getJson(`logs?tail=30&model=${encodeURIComponent(row.id)}`);
    items.push(failure(row.id, row.state === "missing" ? `model file not found: ${row.file}`
      : "failed", page.lines));
  }
  $("#failure-list").replaceChildren(...(items.length ? items
    : [el("p", {class: "muted"}, "No failures.")]));
}

function failure(title, reason, tail) {
  return el("div", {class: "failure"}, el("h3", {}, title), el("p", {}, reason),
    el("pre", {}, (tail || []).join("\n")));
}

// -- pages ---------------------------------------------------------------------------
const PAGES = {
  models: [refreshModels, true],
  logs: [() => refreshModels().then(() => followLog().catch(streamEnded)), false],
  system: [refreshSystem, true], bench: [showReport, false],
  activity: [showActivity, true],
  config: [showConfig, false], failures: [showFailures, true],
};

function show() {
  const name = (location.hash || "#models").slice(1);
  const [load, poll] = PAGES[name] || PAGES.models;
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== name;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.hash === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clearInterval(timer);
  activityShown = false;
  if (name !== "logs" && logStream) logStream.abort();
  const run = () => load().catch((error) => {
    if (error.name !== "AbortError") note(error.message, true);
  });
  run();
  if (poll) timer = setInterval(run, POLL_MS);
}

// Keys 1-7 open the pages (Alt+digit works too, as accesskey), outside text fields.
document.addEventListener("keydown", (event) => {
  if (event.target.matches("input, select, textarea") || event.ctrlKey || event.metaKey) return;
  const link = document.querySelectorAll("nav a")[Number(event.key) - 1];
  if (link) location.hash = link.hash;
});
window.addEventListener("hashchange", show);
show();
