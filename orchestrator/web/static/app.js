// repro dashboard: a small hash-routed single-page app over the /api endpoints.
"use strict";

const app = document.getElementById("app");
let meta = { params: [], metrics: [], tags: [], count: 0 };
const charts = [];

// ---- helpers ---------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
async function api(path) {
  const res = await fetch(path);
  const doc = await res.json();
  if (!res.ok) throw new Error(doc.error || res.statusText);
  return doc;
}
function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(6).replace(/\.?0+$/, "");
  return String(v);
}
function short(d) { return d ? String(d).replace("sha256:", "").slice(0, 12) : ""; }
function status(s) { return h("span", { class: `status-${s}` }, s); }
function verdict(v) { return v ? h("span", { class: `verdict-${v}` }, v) : ""; }
function size(n) {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}
function params() {
  const q = location.hash.split("?")[1] || "";
  return Object.fromEntries(new URLSearchParams(q));
}
function go(page, q = {}) {
  const qs = new URLSearchParams(Object.entries(q).filter(([, v]) => v !== "" && v !== undefined));
  location.hash = `#/${page}${qs.toString() ? "?" + qs : ""}`;
}
function clearCharts() { while (charts.length) charts.pop().destroy(); }
function lineChart(canvas, title, datasets) {
  charts.push(new Chart(canvas, {
    type: "line",
    data: { datasets },
    options: { animation: false, parsing: false, plugins: { title: { display: true, text: title } },
      scales: { x: { type: "linear", title: { display: true, text: "step" } } },
      elements: { point: { radius: 1.5 } } },
  }));
}
// a marker on a curve: the first step at which it leaves the curve it is compared with
const partsWays = (label, x, y, color) => ({ type: "scatter", label, data: [{ x, y }], pointStyle: "triangle",
  pointRadius: 8, borderColor: color, backgroundColor: color });
const PALETTE = ["#2f6fd0", "#d0452f", "#1a7f37", "#8e44ad", "#b26a00", "#0e7490", "#be185d"];

// ---- runs --------------------------------------------------------------------------------------
async function runsPage() {
  const q = params();
  const page = Number(q.page || 0), limit = 50;
  const chosen = (q.cols || "").split(",").filter(Boolean);
  const cols = chosen.length ? chosen
    : [...meta.params.slice(0, 4).map(p => `params.${p}`), ...meta.metrics.slice(0, 4).map(m => `metrics.${m}`)];
  const whereInput = h("input", { type: "text", id: "where", value: q.where || "",
    placeholder: "params.lr < 0.1 and metrics.acc >= 0.9  (Enter to filter)" });
  whereInput.addEventListener("keydown", e => {
    if (e.key === "Enter") go("runs", { ...q, where: whereInput.value, page: 0 });
  });
  const selected = new Set();
  const compareBtn = h("button", { class: "primary", id: "compare", disabled: true,
    onclick: () => go("compare", { ids: [...selected].join(",") }) }, "Compare selected");
  const colPicker = h("details", {}, h("summary", {}, "columns"),
    h("div", { class: "columns" }, [...meta.params.map(p => `params.${p}`), ...meta.metrics.map(m => `metrics.${m}`)].map(c =>
      h("label", {}, h("input", { type: "checkbox", checked: cols.includes(c) ? "checked" : null,
        onchange: e => { const next = e.target.checked ? [...cols, c] : cols.filter(x => x !== c);
          go("runs", { ...q, cols: next.join(",") }); } }), " ", c))));
  const grouped = q.group === "sweep";
  const groupBtn = h("button", { id: "group-sweeps", onclick: () => go("runs", { ...q, group: grouped ? "" : "sweep", page: 0 }) },
    grouped ? "Ungroup" : "Group by sweep");
  app.replaceChildren(h("h1", {}, "Runs"),
    h("div", { class: "toolbar" }, whereInput, h("button", { onclick: () => go("runs", { ...q, where: whereInput.value, page: 0 }) }, "Filter"),
      groupBtn, grouped ? null : compareBtn,
      h("label", { class: "muted" }, h("input", { type: "checkbox", id: "show-experiments", checked: q.experiments === "1" ? "checked" : null,
        onchange: e => go("runs", { ...q, experiments: e.target.checked ? "1" : "", page: 0 }) }), " diagnosis experiments")),
    colPicker, h("div", { id: "runs-body" }, h("p", { class: "muted" }, "loading…")));
  if (grouped) return sweepGroups(q, cols);
  let doc;
  try {
    doc = await api(`/api/runs?${new URLSearchParams({ where: q.where || "", sort: q.sort || "", limit, offset: page * limit, experiments: q.experiments || "" })}`);
  } catch (e) {
    document.getElementById("runs-body").replaceChildren(h("p", { class: "error", id: "error" }, e.message));
    return;
  }
  const sortKey = q.sort || "-created_at";
  const header = (label, key) => {
    const active = sortKey.replace(/^-/, "") === key;
    const next = active && !sortKey.startsWith("-") ? `-${key}` : key;
    return h("th", { class: "sortable", onclick: () => go("runs", { ...q, sort: next }) },
      label + (active ? (sortKey.startsWith("-") ? " ▼" : " ▲") : ""));
  };
  const table = h("table", { id: "runs-table" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), header("id", "id"), header("name", "name"),
      header("status", "status"), header("user", "user"), header("created", "created_at"), header("took", "duration_s"),
      h("th", {}, "sweep"), ...cols.map(c => header(c, c)), h("th", {}, "tags"))),
    h("tbody", {}, doc.runs.map(r => {
      const box = h("input", { type: "checkbox", onclick: e => e.stopPropagation(),
        onchange: e => { e.target.checked ? selected.add(r.id) : selected.delete(r.id);
          compareBtn.disabled = selected.size < 2; } });
      const tags = Object.keys(r).filter(k => k.startsWith("tags.")).map(k => h("span", { class: "tag" }, `${k.slice(5)}=${r[k]}`));
      return h("tr", { class: "row", "data-id": r.id, onclick: () => go(`run/${r.id}`) },
        h("td", {}, box), h("td", { class: "mono" }, r.id),
        h("td", {}, r.name, r.published ? h("span", { class: "published", title: "published (repro cite)" }, " ★") : ""),
        h("td", {}, status(r.status)),
        h("td", {}, r.user ? h("a", { href: "#", class: "user", onclick: e => { e.preventDefault(); e.stopPropagation();
          go("runs", { ...q, where: `user = '${r.user.replace(/'/g, "")}'`, page: 0 }); } }, r.user.split("@")[0]) : ""),
        h("td", { class: "nowrap" }, (r.created_at || "").replace("T", " ").slice(0, 19)),
        h("td", {}, r.duration_s != null ? `${r.duration_s.toFixed(1)}s` : ""),
        h("td", { class: "mono" }, r.sweep ? h("a", { href: `#/sweep/${r.sweep}`, onclick: e => e.stopPropagation() }, r.sweep) : ""),
        ...cols.map(c => h("td", {}, fmt(r[c]))), h("td", {}, tags));
    })));
  const pages = Math.max(1, Math.ceil(doc.total / limit));
  document.getElementById("runs-body").replaceChildren(
    h("p", { class: "muted", id: "total" }, `${doc.total} run(s) match`),
    ...(doc.skipped || []).map(w => h("p", { class: "warning" }, `warning: ${w}`)), table,
    h("div", { class: "pager" },
      h("button", { disabled: page === 0 ? true : null, onclick: () => go("runs", { ...q, page: page - 1 }) }, "‹ prev"),
      h("span", {}, `page ${page + 1} of ${pages}`),
      h("button", { disabled: page + 1 >= pages ? true : null, onclick: () => go("runs", { ...q, page: page + 1 }) }, "next ›")));
}

// ---- runs grouped by sweep: one row a sweep, opened in place ------------------------------------
async function sweepGroups(q, cols) {
  const body = document.getElementById("runs-body");
  const page = Number(q.page || 0), limit = 50;
  const metricCol = cols.find(c => c.startsWith("metrics.")) || (meta.metrics[0] ? `metrics.${meta.metrics[0]}` : "");
  const metric = metricCol.replace(/^metrics\./, "");
  let doc;
  try {
    doc = await api(`/api/sweep-groups?${new URLSearchParams({ where: q.where || "", metric, limit, offset: page * limit })}`);
  } catch (e) {
    body.replaceChildren(h("p", { class: "error", id: "error" }, e.message));
    return;
  }
  const within = id => q.where ? `(${q.where}) and sweep = ${id}` : `sweep = ${id}`;
  const rows = doc.groups.flatMap(g => {
    const arrow = h("td", { class: "arrow" }, "▸");
    const cell = h("td", { colspan: 7 });
    const detail = h("tr", { class: "group-runs", "data-sweep": g.sweep, hidden: true }, cell);
    const toggle = async () => {
      detail.hidden = !detail.hidden;
      arrow.textContent = detail.hidden ? "▸" : "▾";
      if (detail.hidden || detail.dataset.loaded) return;
      cell.replaceChildren(h("p", { class: "muted" }, "loading…"));
      const where = within(g.sweep);
      const runs = await api(`/api/runs?${new URLSearchParams({ where, sort: metricCol ? `-${metricCol}` : "", limit: 200 })}`);
      detail.dataset.loaded = "1";
      cell.replaceChildren(...[h("table", { class: "inner" },
        h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "status"), h("th", {}, "took"), ...cols.map(c => h("th", {}, c)))),
        h("tbody", {}, runs.runs.map(r => h("tr", { class: "row", "data-id": r.id, onclick: () => go(`run/${r.id}`) },
          h("td", { class: "mono" }, r.id), h("td", {}, status(r.status)),
          h("td", {}, r.duration_s != null ? `${r.duration_s.toFixed(1)}s` : ""), ...cols.map(c => h("td", {}, fmt(r[c]))))))),
        runs.total > runs.runs.length ? h("p", { class: "muted" }, `best ${runs.runs.length} of ${runs.total} · `,
          h("a", { href: `#/runs?${new URLSearchParams({ where })}` }, "all in the table")) : null].filter(Boolean));
    };
    const outcome = `${g.succeeded} succeeded` + (g.failed ? ` · ${g.failed} failed` : "") + (g.active ? ` · ${g.active} running` : "");
    return [h("tr", { class: "group row", "data-sweep": g.sweep, onclick: toggle }, arrow,
      h("td", { class: "mono" }, h("a", { href: `#/sweep/${g.sweep}`, onclick: e => e.stopPropagation() }, g.sweep)),
      h("td", {}, g.name || ""), h("td", {}, g.runs), h("td", {}, outcome),
      h("td", { class: "nowrap" }, (g.created_at || "").replace("T", " ").slice(0, 19)),
      h("td", {}, g.min === null ? "" : g.min === g.max ? fmt(g.min) : `${fmt(g.min)} – ${fmt(g.max)}`)), detail];
  });
  const pages = Math.max(1, Math.ceil(doc.total / limit));
  const outside = q.where ? `(${q.where}) and sweep is null` : "sweep is null";
  body.replaceChildren(
    h("p", { class: "muted", id: "total" }, `${doc.total} sweep(s) with matching runs · `,
      h("a", { id: "outside", href: `#/runs?${new URLSearchParams({ ...q, where: outside, group: "" })}` }, `${doc.outside} matching run(s) outside sweeps`)),
    h("table", { id: "sweep-groups" }, h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "sweep"), h("th", {}, "name"),
      h("th", {}, "runs"), h("th", {}, "outcome"), h("th", {}, "created"), h("th", {}, metricCol ? `${metricCol} (min – max)` : ""))),
      h("tbody", {}, rows)),
    h("div", { class: "pager" },
      h("button", { disabled: page === 0 ? true : null, onclick: () => go("runs", { ...q, page: page - 1 }) }, "‹ prev"),
      h("span", {}, `page ${page + 1} of ${pages}`),
      h("button", { disabled: page + 1 >= pages ? true : null, onclick: () => go("runs", { ...q, page: page + 1 }) }, "next ›")));
}

// ---- one run -----------------------------------------------------------------------------------
async function runPage(id) {
  const r = await api(`/api/runs/${id}`);
  const res = r.resolved;
  const kv = rows => h("table", { class: "kv" }, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))));
  const download = (sha, name) => h("a", { href: `/api/artifacts/${sha}?name=${encodeURIComponent(name)}` }, "download");
  const files = (title, entries) => entries.length ? [h("h2", {}, title), h("table", { id: title.toLowerCase() },
    h("thead", {}, h("tr", {}, h("th", {}, "path"), h("th", {}, "sha256"), h("th", {}, "size"), h("th", {}, ""))),
    h("tbody", {}, entries.map(([p, f]) => h("tr", {}, h("td", { class: "mono" }, p), h("td", { class: "mono sha" }, f.sha256),
      h("td", {}, size(f.size)), h("td", {}, f.stored === false ? h("span", { class: "muted" }, "not stored") : download(f.sha256, p))))))] : [];
  const host = r.environment.host || {}, cont = r.environment.container || {};
  const lineage = [];
  if (r.replay_of) lineage.push(h("p", {}, "replay of ", h("a", { href: `#/run/${r.replay_of}` }, r.replay_of), ": ", verdict(r.verdict && r.verdict.result),
    ((r.verdict && r.verdict.outputs && r.verdict.outputs.renamed) || []).length ? `, ${r.verdict.outputs.renamed.length} renamed by pattern` : ""));
  if (r.verdict && r.verdict.outputs && r.verdict.outputs.differ.length) {
    lineage.push(h("table", { id: "verdict-diff" }, h("thead", {}, h("tr", {}, h("th", {}, "differs"), h("th", {}, "original"), h("th", {}, "replay"))),
      h("tbody", {}, r.verdict.outputs.differ.map(d => h("tr", {}, h("td", { class: "mono" }, d.path), h("td", { class: "mono" }, d.original.sha256), h("td", { class: "mono" }, d.replay.sha256))))));
    lineage.push(h("ul", { id: "verdict-content" }, r.verdict.outputs.differ.filter(d => d.content && d.content.summary)
      .map(d => h("li", {}, h("span", { class: "mono" }, d.path), `: ${d.content.summary}`))));
  }
  const parted = (r.verdict && r.verdict.series) || {};
  if (Object.keys(parted).length)
    lineage.push(h("ul", { id: "verdict-series" }, Object.entries(parted).map(([n, p]) =>
      h("li", {}, `series ${n} parts ways with the original at step ${p.step}: ${fmt(p.original)} → ${fmt(p.replay)}`))));
  const diagnosis = (r.diagnoses || []).slice(-1)[0];
  const diagnosed = diagnosis ? [h("h2", {}, "Diagnosis"), h("div", { id: "diagnosis" },
    h("p", {}, h("b", {}, diagnosis.result.toUpperCase()), h("span", { class: "muted" },
      `  ${diagnosis.created_at.slice(0, 19).replace("T", " ")} · ${(diagnosis.cost || {}).replays ?? "?"} replays, ${fmt((diagnosis.cost || {}).multiple)}× one replay`)),
    h("ul", {}, (diagnosis.causes || diagnosis.findings.map(f => ({ line: f.sentence, fixes: f.fixes, subjects: [] }))).map(c => h("li", {}, c.line,
      h("ul", {}, ...(c.subjects || []).map(s => h("li", { class: "mono" }, s.where ? `${s.subject}: ${s.where}` : s.subject, s.how_much ? h("span", { class: "muted" }, `  (in a plain replay: ${s.how_much})`) : ""))),
      ...(c.fixes || []).map(x => h("div", { class: "muted" }, `try: ${x}`))))),
    h("table", { id: "experiments" }, h("thead", {}, h("tr", {}, h("th", {}, "experiment"), h("th", {}, "replays"))),
      h("tbody", {}, diagnosis.experiments.map(e => h("tr", {}, h("td", {}, e.title),
        h("td", { class: "mono" }, ...e.runs.map(id => h("a", { href: `#/run/${id}` }, `${id} `))))))))] : [];
  if (r.verdict && r.verdict.environment && r.verdict.environment.length)
    lineage.push(h("ul", {}, r.verdict.environment.map(c => h("li", {}, `${c.fact} changed — ${c.hint}`))));
  for (const rep of r.replays) lineage.push(h("p", {}, "replayed as ", h("a", { href: `#/run/${rep.id}` }, rep.id), ": ", verdict(rep.verdict),
    rep.through_step !== null && rep.through_step !== undefined ? ` (through step ${rep.through_step.toLocaleString("en")})` : ""));
  if ((r.verified || []).length)
    lineage.push(h("ul", { id: "verified" }, r.verified.map(v => h("li", {}, "verified: ",
      v.kind === "full" ? "full" : `prefix through step ${v.through_step.toLocaleString("en")} of ${v.of_steps.toLocaleString("en")}`,
      " by ", v.by || "?", ", ", (v.at || "").slice(0, 19).replace("T", " "), " (", h("a", { href: `#/run/${v.replay}` }, v.replay), ")"))));
  const curves = h("div", { class: "grid", id: "curves" });
  app.replaceChildren(
    h("h1", {}, `run ${r.id} `, h("span", { class: "muted" }, r.name), " ", status(r.status)),
    r.reason ? h("p", { class: "error" }, r.reason) : "",
    kv([["spec digest", h("span", { class: "mono" }, r.spec_digest)],
      ["image", h("span", { class: "mono", id: "image-digest" }, res.image.digest)],
      ["image ref", res.image.ref || ""],
      ["code", h("span", { class: "mono" }, `${res.code.commit || "no commit"}${res.code.dirty ? " (dirty)" : ""}  snapshot ${res.code.snapshot}`)],
      ["command", h("span", { class: "mono" }, res.command.join(" "))], ["seed", res.seed],
      ["resources", `cpus ${res.resources.cpus} (threads ${res.resources.threads}), memory ${res.resources.memory}, network ${res.network}, determinism ${res.determinism}`],
      ["params", Object.entries(r.params).map(([k, v]) => `${k}=${fmt(v)}`).join("  ")],
      ["metrics", Object.entries(r.metrics).map(([k, v]) => `${k}=${fmt(v)}`).join("  ")],
      ["tags", Object.entries(r.tags).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`))],
      ["created", `${r.created_at}  took ${r.duration_s ?? "-"} s`]]),
    ...r.notes.map(n => h("p", {}, h("span", { class: "muted" }, n.at.slice(0, 19) + "  "), n.text)),
    lineage.length ? h("h2", {}, "Replays") : "", ...lineage, ...diagnosed,
    Object.keys(r.series).length ? h("h2", {}, "Metric curves") : "", curves,
    ...files("Inputs", Object.entries(res.inputs)), ...files("Outputs", Object.entries(r.outputs)),
    h("h2", {}, "Environment"),
    kv([["host", `${host.os || ""}, kernel ${host.kernel || ""}`], ["cpu", (host.cpu || {}).model || ""],
      ["docker", host.docker || ""], ["gpus", (host.gpus || []).map(g => `${g.name} (${g.memory_gb} GB, driver ${g.driver}, CUDA ${g.cuda})`).join(", ") || "none"],
      ["container", `${cont.os || ""}, Python ${cont.python || ""}` +
        (cont.captured === "job" ? " (as the job reported them: it could rewrite them)" : "")],
      ...((cont.seeded || []).length ? [["seeding", "seeded as reported by the job: " + cont.seeded.join(", ")]] : [])]),
    h("details", {}, h("summary", {}, `${(cont.packages || []).length} container packages`),
      h("table", {}, h("tbody", {}, (cont.packages || []).map(p => h("tr", {}, h("td", {}, p.name), h("td", {}, p.version)))))),
    h("details", {}, h("summary", {}, "environment variables"), kv(Object.entries(res.env).map(([k, v]) => [k, h("span", { class: "mono" }, v)]))),
    h("h2", {}, "Logs"), h("pre", { class: "logs", id: "logs" }, r.logs ? "loading…" : "(no logs stored)"));
  for (const [name, pts] of Object.entries(r.series)) {
    const canvas = h("canvas", { height: 180 });
    curves.append(h("div", { class: "card" }, canvas));
    const marks = parted[name] ? [partsWays(`parts ways with the original (step ${parted[name].step})`, parted[name].step, parted[name].replay, PALETTE[1])] : [];
    lineChart(canvas, name, [{ label: name, data: pts.map(([x, y]) => ({ x, y })), borderColor: PALETTE[0] }, ...marks]);
  }
  if (r.logs) {
    const text = await (await fetch(`/api/artifacts/${r.logs.sha256}?name=logs.txt`)).text();
    document.getElementById("logs").textContent = text.slice(-20000);
  }
}

// ---- compare -----------------------------------------------------------------------------------
async function comparePage() {
  const doc = await api(`/api/compare?ids=${encodeURIComponent(params().ids || "")}`);
  const ids = doc.runs.map(r => r.id);
  const section = (title, rows, differing, fmtv = fmt) => [h("h2", {}, title), h("table", { id: `cmp-${title.toLowerCase()}` },
    h("thead", {}, h("tr", {}, h("th", {}, ""), ids.map(i => h("th", { class: "mono" }, h("a", { href: `#/run/${i}` }, i))))),
    h("tbody", {}, Object.entries(rows).map(([k, vals]) => h("tr", { class: differing.includes(k) ? "differs" : "" },
      h("th", {}, k), vals.map(v => h("td", { class: "mono" }, v === null ? "—" : fmtv(v)))))))];
  const curves = h("div", { class: "grid", id: "curves" });
  const pk = doc.packages_vs_first.filter(p => Object.keys(p.added).length + Object.keys(p.removed).length + Object.keys(p.changed).length);
  app.replaceChildren(h("h1", {}, `Compare ${ids.length} runs`),
    h("p", { class: "muted", id: "summary" }, `differs: ${["params", "metrics", "outputs", "facts"].map(k => `${doc.differs[k].length} ${k}`).join(", ")}`),
    ...section("Params", doc.params, doc.differs.params), ...section("Metrics", doc.metrics, doc.differs.metrics),
    h("h2", {}, "Metric curves"), curves,
    ...section("Outputs", doc.outputs, doc.differs.outputs, v => short(v)),
    h("ul", { id: "cmp-content" }, Object.entries(doc.content_vs_first || {}).flatMap(([path, byRun]) =>
      Object.entries(byRun).map(([id, summary]) => h("li", {}, h("span", { class: "mono" }, `${path} of ${id.slice(0, 8)}`), ` vs ${ids[0].slice(0, 8)}: ${summary}`)))),
    ...section("Facts", doc.facts, doc.differs.facts, v => String(v).slice(0, 48)),
    h("h2", {}, "Packages"), pk.length ? h("ul", {}, pk.map(p => h("li", {},
      `${p.run}: `, ...Object.entries(p.changed).map(([n, [a, b]]) => `${n} ${a}→${b}  `),
      ...Object.entries(p.added).map(([n, v]) => `+${n}==${v}  `), ...Object.entries(p.removed).map(([n, v]) => `-${n}==${v}  `))))
      : h("p", { class: "muted" }, "same packages"));
  const names = new Set(Object.values(doc.series).flatMap(s => Object.keys(s)));
  for (const name of names) {
    const canvas = h("canvas", { height: 180 });
    curves.append(h("div", { class: "card" }, canvas));
    const marks = Object.entries((doc.part_ways || {})[name] || {}).map(([id, p]) =>
      partsWays(`${id.slice(0, 8)} parts ways (step ${p.step})`, p.step, p.this, PALETTE[ids.indexOf(id) % PALETTE.length]));
    lineChart(canvas, name, [...ids.map((id, i) => ({ label: id.slice(0, 8), borderColor: PALETTE[i % PALETTE.length],
      data: ((doc.series[id] || {})[name] || []).map(([x, y]) => ({ x, y })) })), ...marks]);
  }
}

// ---- sweep: parallel coordinates ---------------------------------------------------------------
async function sweepPage(id) {
  const q = params();
  const doc = await api(`/api/runs?${new URLSearchParams({ where: `sweep = ${id}`, limit: 1000 })}`);
  const runs = doc.runs.filter(r => r.status === "succeeded");
  const pcols = [...new Set(runs.flatMap(r => Object.keys(r).filter(k => k.startsWith("params."))))]
    .filter(c => new Set(runs.map(r => String(r[c]))).size > 1);
  const mcols = [...new Set(runs.flatMap(r => Object.keys(r).filter(k => k.startsWith("metrics."))))];
  const metric = q.metric || mcols[0];
  const select = h("select", { id: "metric", onchange: e => go(`sweep/${id}`, { metric: e.target.value }) },
    mcols.map(m => h("option", { value: m, selected: m === metric ? "selected" : null }, m)));
  app.replaceChildren(h("h1", {}, `Sweep ${id}`), h("p", { class: "muted" }, `${doc.total} runs, ${runs.length} succeeded; colour: `, select),
    parallel([...pcols, metric], runs, metric),
    h("p", {}, h("a", { href: `#/runs?${new URLSearchParams({ where: `sweep = ${id}`, sort: `-${metric}` })}` }, "these runs in the table"), " · ",
      h("a", { href: `#/importance?${new URLSearchParams({ metric: metric.replace("metrics.", ""), where: `sweep = ${id}` })}` }, "parameter importance")));
}
function parallel(axes, runs, metric) {
  const W = Math.max(640, axes.length * 170), H = 380, pad = 70;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.id = "parallel";
  const el = (t, a) => { const e = document.createElementNS(ns, t); for (const [k, v] of Object.entries(a)) e.setAttribute(k, v); return e; };
  const scales = axes.map(a => {
    const vals = runs.map(r => r[a]);
    if (vals.every(v => typeof v === "number")) {
      const lo = Math.min(...vals), hi = Math.max(...vals);
      return { f: v => hi > lo ? (v - lo) / (hi - lo) : 0.5, lo, hi };
    }
    const cats = [...new Set(vals.map(String))].sort();
    return { f: v => cats.length > 1 ? cats.indexOf(String(v)) / (cats.length - 1) : 0.5, cats };
  });
  const x = i => pad + i * (W - 2 * pad) / Math.max(1, axes.length - 1);
  const y = t => H - pad - t * (H - 2 * pad);
  const mi = axes.indexOf(metric), ms = scales[mi];
  for (const r of runs) {
    const t = ms.f(r[metric]);
    const color = `hsl(${Math.round(220 - 200 * t)}, 70%, 45%)`;
    const d = axes.map((a, i) => `${i ? "L" : "M"}${x(i)},${y(scales[i].f(r[a]))}`).join(" ");
    const path = el("path", { d, fill: "none", stroke: color, "stroke-width": 1.6, "stroke-opacity": 0.75 });
    path.append(el("title", {})); path.lastChild.textContent = `${r.id}: ${metric} ${fmt(r[metric])}`;
    svg.append(path);
  }
  axes.forEach((a, i) => {
    svg.append(el("line", { x1: x(i), x2: x(i), y1: pad, y2: H - pad, stroke: "#334155" }));
    const label = el("text", { x: x(i), y: pad - 14, "text-anchor": "middle" }); label.textContent = a; svg.append(label);
    const s = scales[i];
    const ticks = s.cats ? s.cats.map((c, j) => [c, s.cats.length > 1 ? j / (s.cats.length - 1) : .5]) : [[fmt(s.lo), 0], [fmt(s.hi), 1]];
    for (const [txt, t] of ticks) { const tl = el("text", { x: x(i) + 4, y: y(t) + 4 }); tl.textContent = txt; svg.append(tl); }
  });
  return svg;
}

// ---- importance --------------------------------------------------------------------------------
async function importancePage() {
  const q = params();
  const metric = q.metric || meta.metrics[0] || "";
  const select = h("select", { id: "metric" }, meta.metrics.map(m => h("option", { value: m, selected: m === metric ? "selected" : null }, m)));
  const where = h("input", { type: "text", id: "where", value: q.where || "", placeholder: "which runs (e.g. sweep = ID)" });
  const run = () => go("importance", { metric: select.value, where: where.value });
  where.addEventListener("keydown", e => { if (e.key === "Enter") run(); });
  const body = h("div", { id: "importance-body" });
  app.replaceChildren(h("h1", {}, "Parameter importance"), h("div", { class: "toolbar" }, select, where, h("button", { class: "primary", onclick: run }, "Estimate")), body);
  if (!metric) { body.append(h("p", { class: "muted" }, "no metrics recorded yet")); return; }
  let doc;
  try { doc = await api(`/api/importance?${new URLSearchParams({ metric, where: q.where || "" })}`); }
  catch (e) { body.append(h("p", { class: "error", id: "error" }, e.message)); return; }
  const canvas = h("canvas", { id: "importance-chart", height: 60 + 30 * doc.params.length });
  body.append(...[h("p", { class: "muted" }, `${doc.sampled_from ? `a sample of ${doc.runs} of ${doc.sampled_from}` : doc.runs} runs; unexplained by main effects (interactions, noise): ${(doc.unexplained * 100).toFixed(1)}%`),
    h("div", { class: "card", style: "max-width: 760px" }, canvas),
    h("table", { id: "importance-table" }, h("thead", {}, h("tr", {}, ["param", "importance", "eta²", "spearman", "kind", "levels"].map(c => h("th", {}, c)))),
      h("tbody", {}, doc.params.map(p => h("tr", {}, h("td", {}, p.name), h("td", {}, `${(p.importance * 100).toFixed(1)}%`), h("td", {}, fmt(p.eta_squared)),
        h("td", {}, p.spearman === null ? "" : fmt(p.spearman)), h("td", {}, p.kind), h("td", {}, p.levels))))),
    doc.interactions.length ? h("div", { id: "interactions" }, h("h2", {}, "Interactions (pairs, beyond their main effects)"),
      h("table", {}, h("tbody", {}, doc.interactions.map(x => h("tr", {}, h("td", {}, x.params.join(" × ")),
        h("td", {}, `${(x.importance * 100).toFixed(1)}%`),
        h("td", { class: "muted" }, x.replicated ? `F-test p = ${fmt(x.p)}` : "one run a cell: interaction and noise together")))))) : null,
    h("p", { class: "muted" }, `Method: ${doc.method}.`)].filter(Boolean));
  charts.push(new Chart(canvas, { type: "bar", data: { labels: doc.params.map(p => p.name),
    datasets: [{ label: `share of ${metric} variance explained`, data: doc.params.map(p => p.importance), backgroundColor: PALETTE[0] }] },
    options: { indexAxis: "y", animation: false, scales: { x: { min: 0, max: 1 } } } }));
}

// ---- router ------------------------------------------------------------------------------------
async function route() {
  clearCharts();
  const path = location.hash.replace(/^#\//, "").split("?")[0] || "runs";
  const [page, arg] = path.split("/");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === page);
  try {
    if (page === "run") await runPage(arg);
    else if (page === "compare") await comparePage();
    else if (page === "sweep") await sweepPage(arg);
    else if (page === "importance") await importancePage();
    else await runsPage();
    document.body.dataset.ready = page;
  } catch (e) {
    app.replaceChildren(h("p", { class: "error", id: "error" }, e.message));
    document.body.dataset.ready = "error";
  }
}
window.addEventListener("hashchange", () => { document.body.dataset.ready = ""; route(); });
api("/api/meta").then(m => { meta = m; document.getElementById("store").textContent = `${m.count} runs · ${m.home}`; route(); })
  .catch(e => { app.replaceChildren(h("p", { class: "error" }, e.message)); });
