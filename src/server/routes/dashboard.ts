/**
 * The dashboard at GET /: one self-contained page (inline CSS and JS, no build step, no external requests) over the
 * same JSON routes a program uses. The teacher side: bulk jobs with live progress, tokens, cost and failures by
 * reason (GET /v1/jobs, polled every second while one runs), and a rationale browser (GET /v1/rationales/browse:
 * question, choices, the teacher's rationale, parsed label, agreement with gold; filtered by teacher, dataset and
 * agreement). The student side: the runs table (GET /v1/runs, refreshed), live loss curves (the SSE stream of
 * GET /v1/runs/:id/metrics, read with fetch so a bearer token can be sent), and the results of experiment grids
 * (GET /v1/experiments: every `<runs root>/<grid>/results.json`), and how the teacher's answers of each recent bulk
 * job parsed (GET /v1/jobs: the parse-failure rate and the failures by kind), so a template that does not suit a
 * teacher shows at once.
 *
 * Everything the server sends is put into the page with textContent, never as HTML.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Hono } from "hono";
import type { PairedComparison } from "../../experiment/compare.ts";
import type { ConditionSummary } from "../../experiment/results.ts";

export interface DashboardDeps {
  /** Folder whose sub-folders are experiment grids (default runs). */
  experimentsRoot?: string;
}

export interface ExperimentSummary {
  /** The grid's folder name. */
  name: string;
  /** results.json's per-condition summaries (src/experiment/results.ts). */
  cells: ConditionSummary[];
  /** Paired comparisons between conditions (src/experiment/compare.ts). */
  comparisons: PairedComparison[];
  /** 1 / number of choices, when known. */
  chance: number | null;
}

/** The results of every grid folder under root that has a results.json, by name. */
export function listExperiments(root: string): ExperimentSummary[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(root, entry.name, "results.json")))
    .map((entry) => {
      const results = JSON.parse(readFileSync(join(root, entry.name, "results.json"), "utf8")) as Partial<ExperimentSummary>;
      return { name: entry.name, cells: results.cells ?? [], comparisons: results.comparisons ?? [], chance: results.chance ?? null };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

export function dashboardRoutes(deps: DashboardDeps = {}): Hono {
  return new Hono()
    .get("/", (c) => c.html(PAGE))
    .get("/v1/experiments", (c) => c.json({ experiments: listExperiments(deps.experimentsRoot ?? "runs") }));
}

const PAGE = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cot-distill dashboard</title>
<style>
  :root { --fg: #1d2330; --muted: #6b7385; --line: #e3e6ec; --bg: #fafbfc; font-family: system-ui, sans-serif; color: var(--fg); }
  body { margin: 0; background: var(--bg); }
  header { padding: 14px 24px; border-bottom: 1px solid var(--line); background: #fff; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header span { color: var(--muted); font-size: 13px; }
  header form { margin-left: auto; }
  main { padding: 16px 24px; display: grid; gap: 20px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
  h2 { font-size: 15px; margin: 0 0 10px; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--muted); font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  tr.run { cursor: pointer; }
  tr.run:hover { background: #f3f5f9; }
  .status { padding: 1px 8px; border-radius: 10px; font-size: 12px; }
  .status.queued { background: #eef0f4; } .status.running { background: #dcebff; color: #0b4fb3; }
  .status.done { background: #dcf5e3; color: #146c2e; } .status.failed { background: #fde2e1; color: #a4161a; }
  .status.cancelled { background: #f1e8d8; color: #7a5b12; }
  .empty { color: var(--muted); font-size: 13px; }
  svg text { font-size: 11px; fill: var(--muted); }
  #legend { display: flex; flex-wrap: wrap; gap: 12px; font-size: 12px; margin-top: 6px; }
  #legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
  .grid-name { font-weight: 600; margin: 10px 0 4px; }
  .status.stopped { background: #fff1cc; color: #7a5300; } .status.cancelled { background: #eef0f4; }
  progress { width: 120px; vertical-align: middle; }
  #rationales td.text { white-space: normal; max-width: 420px; }
  .agree-yes { color: #146c2e; } .agree-no { color: #a4161a; }
  .filters { display: flex; gap: 10px; font-size: 13px; margin-bottom: 8px; align-items: center; }
</style>
</head>
<body>
<header><h1>cot-distill</h1><span>CoT-augmented distillation runs, loss curves and experiment results</span>
  <form id="auth" hidden><input id="token" type="password" placeholder="bearer token" autocomplete="off"> <button>use token</button></form></header>
<main>
  <section>
    <h2>Runs</h2>
    <table id="runs"><thead><tr><th>name</th><th>status</th><th>dataset</th><th>condition</th><th>model</th>
      <th>steps</th><th>loss</th><th>test accuracy</th><th>started</th></tr></thead><tbody></tbody></table>
    <p class="empty" id="no-runs" hidden>No runs yet. Start one with <code>POST /v1/runs</code> or <code>bun src/cli.ts train</code>.</p>
  </section>
  <section>
    <h2>Teacher jobs</h2>
    <table id="jobs"><thead><tr><th>job</th><th>dataset</th><th>teacher</th><th>mode</th><th>status</th><th>progress</th>
      <th>cached</th><th>failed</th><th>tokens</th><th>cost</th><th>failures by reason</th></tr></thead><tbody></tbody></table>
    <p class="empty" id="no-jobs" hidden>No teacher jobs yet (<code>POST /v1/jobs</code> or <code>bun src/cli.ts rationales</code>).</p>
  </section>
  <section>
    <h2>Rationales</h2>
    <div class="filters">
      <label>teacher <select id="f-teacher"><option value="">all</option></select></label>
      <label>dataset <select id="f-dataset"><option value="">all</option></select></label>
      <label>agreement <select id="f-agrees"><option value="">all</option><option value="true">agrees with gold</option>
        <option value="false">disagrees</option><option value="unknown">no gold</option></select></label>
      <span class="empty" id="rationale-count"></span>
    </div>
    <table id="rationales"><thead><tr><th>dataset</th><th>teacher</th><th>question</th><th>choices</th><th>rationale</th>
      <th>label</th><th>gold</th><th>agrees</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Training loss</h2>
    <svg id="loss" width="100%" height="280" viewBox="0 0 800 280" preserveAspectRatio="none" role="img" aria-label="training loss curves"></svg>
    <div id="legend"></div>
  </section>
  <section id="answers-section" hidden>
    <h2>Teacher answers <span class="empty">(per bulk job: answers the parser refused, by reason)</span></h2>
    <table id="answers"><thead><tr><th>job</th><th>status</th><th>dataset</th><th>answered</th><th>parse failures</th>
      <th>failed by kind</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Experiment results <span class="empty">(accuracy, mean ± 95% CI over seeds)</span></h2>
    <div id="experiments"></div>
    <p class="empty" id="no-experiments" hidden>No finished experiment grids yet (<code>bun src/cli.ts experiment experiments/tiny.json</code>).</p>
  </section>
</main>
<script>
"use strict";
const token = localStorage.getItem("cot-distill-token");
const headers = token ? { authorization: "Bearer " + token } : {};
const COLORS = ["#2f6fdb", "#e4572e", "#29a36a", "#9b5de5", "#f3a712", "#17bebb", "#d1495b", "#5c6b73"];
const MAX_CURVES = 8;
const curves = new Map(); // run id -> { name, points: [[step, loss]], color }
const streams = new Map(); // run id -> AbortController

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
const fmt = (x, digits) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–");
function condition(config) {
  const s = config.selection || {};
  const kind = typeof s === "string" ? s : s.kind;
  const extra = s.k !== undefined && s.k !== null ? "-" + s.k : s.p !== undefined && s.p !== null ? "-" + s.p : "";
  return (config.placement || "?") + (kind && kind !== "full" && config.placement !== "none" ? "-" + kind + extra : "");
}

async function getJson(path) {
  const res = await fetch(path, { headers });
  if (res.status === 401) document.getElementById("auth").hidden = false;
  if (!res.ok) throw new Error(path + ": " + res.status);
  return res.json();
}
// a server started with a token (COT_DISTILL_TOKEN) wants it on every API call: kept in this browser only
document.getElementById("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("cot-distill-token", document.getElementById("token").value.trim());
  location.reload();
});

async function refreshRuns() {
  const { runs } = await getJson("/v1/runs?limit=50");
  const body = document.querySelector("#runs tbody");
  body.replaceChildren();
  document.getElementById("no-runs").hidden = runs.length > 0;
  for (const run of runs) {
    const c = run.config || {};
    const m = run.finalMetrics || {};
    const curve = curves.get(run.id);
    const last = curve && curve.points.length ? curve.points[curve.points.length - 1] : null;
    const tr = el("tr", undefined, "run");
    tr.dataset.id = run.id;
    tr.append(el("td", run.name));
    const status = el("td");
    status.append(el("span", run.status, "status " + run.status));
    if (run.error) status.title = run.error;
    tr.append(status, el("td", c.dataset ?? "–"), el("td", condition(c)), el("td", c.model ?? "–"));
    tr.append(el("td", m.steps ?? (last ? last[0] : "–"), "num"), el("td", fmt(m.final_loss ?? (last ? last[1] : undefined), 3), "num"));
    tr.append(el("td", fmt(m.test_accuracy, 3), "num"), el("td", run.startedAt ? new Date(run.startedAt).toLocaleString() : "–"));
    body.append(tr);
  }
  for (const run of runs.slice(0, MAX_CURVES)) follow(run);
}

/** Reads the run's SSE metrics stream with fetch (EventSource cannot send a token) and extends its curve. */
async function follow(run) {
  if (streams.has(run.id)) return;
  const abort = new AbortController();
  streams.set(run.id, abort);
  if (!curves.has(run.id)) curves.set(run.id, { name: run.name, points: [], color: COLORS[curves.size % COLORS.length] });
  const curve = curves.get(run.id);
  curve.points = [];
  try {
    const res = await fetch("/v1/runs/" + encodeURIComponent(run.id) + "/metrics", { headers, signal: abort.signal });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event === "restart") curve.points = [];
        if (event === "metrics" && data) {
          const m = JSON.parse(data);
          curve.points.push([m.step, m.loss]);
          scheduleDraw();
        }
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") console.warn("metrics stream of", run.id, err);
  }
  // a finished run keeps its stream entry: its curve is complete and need not be read again
}

let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; drawLoss(); });
}

function drawLoss() {
  const svg = document.getElementById("loss");
  const NS = "http://www.w3.org/2000/svg";
  const W = 800, H = 280, L = 48, R = 12, T = 10, B = 26;
  const shown = [...curves.entries()].filter(([, c]) => c.points.length > 0);
  svg.replaceChildren();
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  if (!shown.length) {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", "20"); t.setAttribute("y", "30"); t.textContent = "no training metrics yet";
    svg.append(t);
    return;
  }
  const all = shown.flatMap(([, c]) => c.points);
  const maxStep = Math.max(1, ...all.map((p) => p[0]));
  const losses = all.map((p) => p[1]).filter(Number.isFinite);
  let lo = Math.min(...losses), hi = Math.max(...losses);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const x = (s) => L + (s / maxStep) * (W - L - R);
  const y = (l) => T + (1 - (l - lo) / (hi - lo)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    const line = document.createElementNS(NS, "line");
    line.setAttribute("x1", L); line.setAttribute("x2", W - R); line.setAttribute("y1", y(v)); line.setAttribute("y2", y(v));
    line.setAttribute("stroke", "#e3e6ec");
    const label = document.createElementNS(NS, "text");
    label.setAttribute("x", "4"); label.setAttribute("y", y(v) + 4); label.textContent = v.toFixed(2);
    svg.append(line, label);
  }
  const xl = document.createElementNS(NS, "text");
  xl.setAttribute("x", W - R - 60); xl.setAttribute("y", H - 6); xl.textContent = "step " + maxStep;
  svg.append(xl);
  for (const [id, c] of shown) {
    const path = document.createElementNS(NS, "polyline");
    path.setAttribute("points", c.points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "));
    path.setAttribute("fill", "none"); path.setAttribute("stroke", c.color); path.setAttribute("stroke-width", "1.6");
    path.setAttribute("class", "loss-curve"); path.dataset.run = id;
    svg.append(path);
    const item = el("span");
    const swatch = el("i"); swatch.style.background = c.color;
    item.append(swatch, document.createTextNode(c.name));
    legend.append(item);
  }
}

async function refreshExperiments() {
  const { experiments } = await getJson("/v1/experiments");
  const box = document.getElementById("experiments");
  box.replaceChildren();
  document.getElementById("no-experiments").hidden = experiments.length > 0;
  for (const exp of experiments) {
    box.append(el("div", exp.name, "grid-name"));
    const table = el("table");
    table.className = "results";
    const head = el("tr");
    for (const h of ["condition", "seeds", "accuracy", "± 95% CI"]) head.append(el("th", h));
    table.append(head);
    for (const cell of exp.cells ?? []) {
      const tr = el("tr");
      tr.append(el("td", Object.values(cell.condition).join(" · ")), el("td", cell.n, "num"),
        el("td", fmt(cell.mean, 3), "num"), el("td", cell.ci95 === null ? "(one seed)" : fmt(cell.ci95, 3), "num"));
      table.append(tr);
    }
    box.append(table);
    if (exp.chance !== null && exp.chance !== undefined) box.append(el("div", "chance: " + fmt(exp.chance, 3), "empty"));
    if ((exp.comparisons ?? []).length) {
      const paired = el("table");
      paired.className = "comparisons";
      const header = el("tr");
      for (const h of ["paired comparison", "seeds", "items", "difference", "95% CI", "p", "seed-level p"]) header.append(el("th", h));
      paired.append(header);
      for (const c of exp.comparisons) {
        const tr = el("tr");
        tr.append(el("td", c.a + " vs " + c.b), el("td", c.seeds.length, "num"), el("td", c.items, "num"),
          el("td", fmt(c.difference, 3), "num"), el("td", "[" + fmt(c.ci95[0], 3) + ", " + fmt(c.ci95[1], 3) + "]", "num"),
          el("td", c.p < 0.001 ? "<0.001" : fmt(c.p, 3), "num"), el("td", c.seedP === null ? "–" : fmt(c.seedP, 3), "num"));
        paired.append(tr);
      }
      box.append(paired);
    }
  }
}

function jobProgress(job) {
  const cell = el("td");
  const bar = el("progress");
  bar.max = job.total;
  bar.value = job.done + job.failed;
  cell.append(bar, document.createTextNode(" " + (job.done + job.failed) + "/" + job.total));
  return cell;
}

let jobsRunning = false;
async function refreshJobs() {
  const { jobs } = await getJson("/v1/jobs");
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  document.getElementById("no-jobs").hidden = jobs.length > 0;
  jobsRunning = jobs.some((job) => job.status === "running" && !job.stopped);
  for (const job of jobs) {
    const tr = el("tr");
    tr.dataset.id = job.id;
    const state = job.stopped ? "stopped" : job.status;
    const status = el("td");
    status.append(el("span", job.stopped ? "stopped (budget)" : job.status, "status " + state));
    const reasons = Object.entries(job.failuresByKind || {}).map(([why, n]) => why + " " + n).join(", ");
    tr.append(el("td", job.id), el("td", job.dataset + "/" + job.split), el("td", (job.params && job.params.model) || "–"), el("td", job.mode), status, jobProgress(job),
      el("td", job.cached, "num"), el("td", job.failed, "num"), el("td", job.tokens, "num"), el("td", "$" + fmt(job.costUsd, 4), "num"), el("td", reasons || "–"));
    body.append(tr);
  }
}

// teacher jobs: a high parse-failure rate means the template does not suit the teacher (or the teacher refuses)
async function refreshAnswers() {
  let jobs;
  try {
    jobs = (await getJson("/v1/jobs")).jobs;
  } catch {
    return; // a server without a teacher
  }
  document.getElementById("answers-section").hidden = jobs.length === 0;
  const body = document.querySelector("#answers tbody");
  body.replaceChildren();
  for (const job of jobs.slice(0, 20)) {
    const tr = el("tr");
    tr.dataset.id = job.id;
    const status = el("td");
    status.append(el("span", job.status, "status " + job.status));
    const rates = job.parseFailureRates || {};
    const kinds = Object.entries(job.failuresByKind || {})
      .map(([kind, n]) => kind + " " + n + (rates[kind] !== undefined ? " (" + fmt(100 * rates[kind], 1) + "%)" : ""))
      .join(", ");
    tr.append(el("td", job.id), status, el("td", job.dataset + "/" + job.split), el("td", job.done + job.failed, "num"),
      el("td", fmt(100 * (job.parseFailureRate || 0), 1) + "%", "num parse-rate"), el("td", kinds || "–", "kinds"));
    body.append(tr);
  }
}

function fillSelect(id, values) {
  const select = document.getElementById(id);
  const chosen = select.value;
  const known = new Set([...select.options].map((o) => o.value));
  for (const value of values) if (!known.has(value)) select.append(Object.assign(el("option", value), { value }));
  select.value = chosen;
}

async function refreshRationales() {
  const params = new URLSearchParams({ limit: "50" });
  for (const [key, id] of [["teacher", "f-teacher"], ["dataset", "f-dataset"], ["agrees", "f-agrees"]]) {
    const value = document.getElementById(id).value;
    if (value) params.set(key, value);
  }
  const page = await getJson("/v1/rationales/browse?" + params);
  fillSelect("f-teacher", [...new Set(page.teachers.map((t) => t.model))].sort());
  fillSelect("f-dataset", [...new Set(page.teachers.map((t) => t.dataset).filter(Boolean))].sort());
  document.getElementById("rationale-count").textContent = page.total + " matching" + (page.total > page.rows.length ? ", newest " + page.rows.length + " shown" : "");
  const body = document.querySelector("#rationales tbody");
  body.replaceChildren();
  for (const r of page.rows) {
    const tr = el("tr", undefined, "rationale");
    const choices = (r.choices || []).map((c) => "(" + c.label + ") " + c.text).join(" ");
    const agrees = r.agrees === null ? "–" : r.agrees ? "yes" : "no";
    tr.append(el("td", r.dataset ?? "–"), el("td", r.answeredBy || r.model), el("td", r.question, "text"), el("td", choices || "–", "text"),
      el("td", r.rationale, "text"), el("td", r.label ?? "–"), el("td", r.answer ?? "–"), el("td", agrees, r.agrees === null ? "" : r.agrees ? "agree-yes" : "agree-no"));
    body.append(tr);
  }
}
for (const id of ["f-teacher", "f-dataset", "f-agrees"]) document.getElementById(id).addEventListener("change", () => refreshRationales().catch((err) => console.warn(err)));

async function tick() {
  await Promise.all([refreshRuns(), refreshExperiments(), refreshJobs(), refreshAnswers(), refreshRationales()]).catch((err) => console.warn(err));
  drawLoss();
}
tick();
setInterval(tick, 3000);
// a running job's progress is live: polled every second while one runs
setInterval(() => { if (jobsRunning) refreshJobs().catch((err) => console.warn(err)); }, 1000);
</script>
</body>
</html>
`;
