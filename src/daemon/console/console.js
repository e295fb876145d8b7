// muster's console (SPEC §8): every tenant at a glance, a tenant's run history with a chart of
// actions per run, a run's results lines, and the release of a held file. It reads the daemon's
// JSON API only (the same one scripts use), polls it every few seconds, and builds the page
// with DOM calls (textContent, never innerHTML: file names and messages come from clients).
// The chart is SVG drawn here: five series of a few hundred points need no library.
"use strict";

const PAGE = 50;
const POLL_MS = 2000;
const STATES = {
  ok: "ok", rows_failed: "rows failed", held: "held", refused: "refused",
  failed: "failed", running: "running", never: "never run",
};
const SERIES = [
  ["create", "creates"], ["update", "updates"], ["deactivate", "deactivations"],
  ["delete", "deletions"], ["reject", "rejects"],
];

const ui = {
  token: sessionStorage.getItem("muster-token") || "",
  tenants: [],
  sort: { key: "name", dir: 1 },
  filter: { state: "", name: "" },
  page: 0,
  refresh: null,
};

// el("td", {class: "num"}, "12", child…): an element with attributes and children.
function el(tag, attrs, ...children) {
  const node = tag === "svg" || SVG_TAGS.has(tag)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const SVG_TAGS = new Set(["g", "line", "polyline", "circle", "text", "title", "rect", "path"]);

function say(text) { document.getElementById("live").textContent = text; }

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (ui.token) opts.headers["Authorization"] = "Bearer " + ui.token;
  const resp = await fetch(path, opts);
  if (resp.status === 401 && !(options && options.method === "POST")) {
    const token = await askToken("The daemon is not on loopback: it asks for its token to show anything.");
    if (token) return api(path, options);
  }
  return resp;
}

function stateOf(t) {
  if (t.running) return "running";
  if (!t.last_run) return "never";
  return t.last_run.result;
}

function badge(state) {
  return el("span", { class: "state state-" + state, "data-state": state }, STATES[state] || state);
}

// {create, update, deactivate, delete, reject}: a run's lines by action, every outcome.
function actions(run) {
  const sum = { create: 0, update: 0, deactivate: 0, delete: 0, reject: 0, unchanged: 0 };
  for (const f of (run && run.files) || []) {
    for (const [action, by] of Object.entries(f.counts || {})) {
      for (const n of Object.values(by)) sum[action] = (sum[action] || 0) + n;
    }
  }
  return sum;
}

function countsText(run) {
  if (!run) return "";
  const a = actions(run);
  const words = [["create", "created"], ["update", "updated"], ["deactivate", "deactivated"],
    ["delete", "deleted"], ["reject", "rejected"]];
  const parts = words.filter(([k]) => a[k] > 0).map(([k, w]) => `${a[k].toLocaleString()} ${w}`);
  return parts.length ? parts.join(" · ") : "no change";
}

function when(ts) {
  if (!ts) return el("span", { class: "muted" }, "—");
  const d = new Date(ts);
  const secs = Math.round((Date.now() - d.getTime()) / 1000);
  const rel = Math.abs(secs) < 60 ? `${Math.abs(secs)} s`
    : Math.abs(secs) < 3600 ? `${Math.round(Math.abs(secs) / 60)} min`
    : Math.abs(secs) < 86400 ? `${Math.round(Math.abs(secs) / 3600)} h`
    : `${Math.round(Math.abs(secs) / 86400)} d`;
  return el("time", { datetime: ts, title: d.toLocaleString() }, secs >= 0 ? `${rel} ago` : `in ${rel}`);
}

function enc(s) { return encodeURIComponent(s); }

// ---- the tenants page ----

function tenantsView(main) {
  const byName = (e) => { ui.filter.name = e.target.value; ui.page = 0; draw(); };
  const nameInput = el("input", { id: "filter-name", type: "search", placeholder: "part of a name",
    value: ui.filter.name, oninput: byName, onchange: byName });
  const stateSelect = el("select", { id: "filter-state",
    onchange: (e) => { ui.filter.state = e.target.value; ui.page = 0; draw(); } },
    el("option", { value: "" }, "every state"),
    Object.entries(STATES).map(([k, w]) => el("option", { value: k, selected: ui.filter.state === k }, w)));
  const chips = el("ul", { class: "chips", id: "state-counts", "aria-label": "Tenants by state" });
  const head = el("thead");
  const body = el("tbody");
  const pager = el("div", { class: "pager" });
  main.replaceChildren(
    el("h1", {}, "Tenants"), chips,
    el("div", { class: "controls" },
      el("span", {}, el("label", { for: "filter-name" }, "Name"), nameInput),
      el("span", {}, el("label", { for: "filter-state" }, "State"), stateSelect)),
    el("table", { id: "tenants" }, head, body), pager);

  const columns = [["name", "Tenant"], ["state", "State"], ["last", "Last run"], ["next", "Next run"],
    ["counts", "Last run's lines"], ["held", "Held files"]];
  function sortKey(t, key) {
    switch (key) {
      case "state": return Object.keys(STATES).indexOf(stateOf(t));
      case "last": return (t.last_run && t.last_run.ended) || "";
      case "next": return t.next_run || "~";
      case "held": return -t.held.length;
      default: return t.name;
    }
  }
  function draw() {
    const byState = {};
    for (const t of ui.tenants) byState[stateOf(t)] = (byState[stateOf(t)] || 0) + 1;
    chips.replaceChildren(...Object.keys(STATES).filter((s) => byState[s]).map((s) =>
      el("li", {}, el("button", { type: "button", class: "state state-" + s,
        "aria-pressed": ui.filter.state === s ? "true" : "false",
        onclick: () => { ui.filter.state = ui.filter.state === s ? "" : s; stateSelect.value = ui.filter.state; ui.page = 0; draw(); } },
        `${byState[s]} ${STATES[s]}`))));
    head.replaceChildren(el("tr", {}, columns.map(([key, title]) => {
      const sorted = ui.sort.key === key;
      return el("th", { scope: "col", "aria-sort": sorted ? (ui.sort.dir > 0 ? "ascending" : "descending") : null },
        key === "counts" ? title : el("button", { type: "button", "data-sort": key, onclick: () => {
          ui.sort = { key, dir: sorted ? -ui.sort.dir : 1 }; draw();
        } }, title + (sorted ? (ui.sort.dir > 0 ? " ▲" : " ▼") : "")));
    })));
    const name = ui.filter.name.toLowerCase();
    const shown = ui.tenants
      .filter((t) => (!ui.filter.state || stateOf(t) === ui.filter.state) && t.name.toLowerCase().includes(name))
      .sort((a, b) => {
        const x = sortKey(a, ui.sort.key), y = sortKey(b, ui.sort.key);
        return (x < y ? -1 : x > y ? 1 : a.name < b.name ? -1 : 1) * ui.sort.dir;
      });
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    ui.page = Math.min(ui.page, pages - 1);
    body.replaceChildren(...shown.slice(ui.page * PAGE, (ui.page + 1) * PAGE).map((t) =>
      el("tr", { "data-tenant": t.name },
        el("th", { scope: "row" }, el("a", { href: "#/t/" + enc(t.name) }, t.name)),
        el("td", {}, badge(stateOf(t))),
        el("td", {}, when(t.last_run && t.last_run.ended)),
        el("td", {}, when(t.next_run)),
        el("td", {}, countsText(t.last_run)),
        el("td", {}, t.held.length ? el("ul", { class: "files" }, t.held.map((f) => el("li", {}, f))) : ""))));
    if (!shown.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No tenant matches.")));
    pager.replaceChildren(
      el("button", { type: "button", disabled: ui.page === 0, onclick: () => { ui.page--; draw(); } }, "Previous"),
      el("span", { id: "page-of" }, `Page ${ui.page + 1} of ${pages} · ${shown.length} of ${ui.tenants.length} tenants`),
      el("button", { type: "button", disabled: ui.page >= pages - 1, onclick: () => { ui.page++; draw(); } }, "Next"));
  }
  let seen = null;
  ui.refresh = async () => {
    const resp = await api("/api/tenants");
    if (!resp.ok) { say(`The tenants could not be read (${resp.status}).`); return; }
    const text = await resp.text();
    if (text === seen) return; // redrawn only when something changed: focus stays put
    seen = text;
    ui.tenants = JSON.parse(text);
    draw();
    say(`Updated ${new Date().toLocaleTimeString()}`);
  };
  draw();
}

// ---- a tenant's page ----

function chart(runs) {
  // Oldest first; one point per run and series, evenly spaced in time order.
  const rs = runs.slice().reverse();
  const W = 900, H = 280, L = 56, R = 16, T = 16, B = 40;
  const max = Math.max(1, ...rs.map((r) => { const a = actions(r); return Math.max(...SERIES.map(([k]) => a[k])); }));
  const x = (i) => rs.length === 1 ? (L + W - R) / 2 : L + (i * (W - L - R)) / (rs.length - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", id: "chart",
    "aria-label": `Actions per run, ${rs.length} runs, oldest left` });
  for (const v of [0, max / 2, max]) {
    svg.append(el("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      el("text", { x: L - 8, y: y(v) + 4, "text-anchor": "end" }, Math.round(v).toLocaleString()));
  }
  svg.append(el("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  if (rs.length) {
    svg.append(el("text", { x: x(0), y: H - B + 18, "text-anchor": rs.length === 1 ? "middle" : "start" },
      new Date(rs[0].started).toLocaleString()));
    if (rs.length > 1) {
      svg.append(el("text", { x: x(rs.length - 1), y: H - B + 18, "text-anchor": "end" },
        new Date(rs[rs.length - 1].started).toLocaleString()));
    }
  }
  for (const [key, label] of SERIES) {
    const g = el("g", { class: "s-" + key, "data-series": key });
    const pts = rs.map((r, i) => [x(i), y(actions(r)[key])]);
    if (pts.length > 1) g.append(el("polyline", { class: "series", points: pts.map((p) => p.join(",")).join(" ") }));
    rs.forEach((r, i) => {
      const held = r.result === "held" || r.result === "refused";
      g.append(el("circle", { class: "point" + (held ? " held" : ""), cx: pts[i][0], cy: pts[i][1], r: 4, "data-run": r.id },
        el("title", {}, `run ${r.id} (${STATES[r.result] || r.result}${held ? ": not applied" : ""}): ${actions(r)[key].toLocaleString()} ${label}`)));
    });
    svg.append(g);
  }
  return el("div", { class: "chart card" }, svg,
    el("ul", { class: "legend" }, SERIES.map(([key, label]) => el("li", { class: "s-" + key }, el("span", {}, label))),
      el("li", { class: "hollow" }, el("span", {}, "hollow: held or refused, not applied"))));
}

function tenantView(main, name) {
  let runs = [];
  let busy = false;
  let seen = null;
  main.replaceChildren(el("p", {}, "Loading…"));
  async function draw(t) {
    const st = stateOf(t);
    const heldFiles = el("div", { id: "held" });
    for (const file of t.held) {
      const rec = ((t.last_run && t.last_run.files) || []).find((f) => f.name === file && f.status === "held");
      heldFiles.append(el("div", { class: "held-file card" },
        el("div", {}, el("strong", {}, file), el("div", { class: "muted" }, rec ? rec.reasons.join("; ") : "")),
        el("button", { type: "button", class: "primary", "data-release": file, "aria-label": `Release ${file}`,
          onclick: () => release(t, file, rec) }, "Release…")));
    }
    const table = el("table", { id: "runs" },
      el("thead", {}, el("tr", {}, ["Run", "Started", "Result", "Files"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, runs.map((r) => el("tr", { "data-run": r.id },
        el("th", { scope: "row" }, String(r.id)),
        el("td", {}, when(r.started)),
        el("td", {}, badge(r.result), r.error ? el("div", { class: "error" }, r.error) : ""),
        el("td", {}, el("ul", { class: "files" }, r.files.map((f, n) => el("li", {},
          el("strong", {}, f.name), ` (${f.profile}, ${f.records.toLocaleString()} records): `,
          badge(f.status === "superseded" ? "superseded" : f.status), " ", countsText({ files: [f] }),
          f.reasons.length ? el("div", { class: "muted" }, f.reasons.join("; ")) : "",
          f.results ? el("div", {},
            el("a", { href: `#/t/${enc(name)}/r/${r.id}/f/${n}` }, "results lines"), " · ",
            el("a", { href: `/api/tenants/${enc(name)}/runs/${r.id}/files/${n}/results.csv`, download: "" }, "download CSV")) : ""))))))));
    main.replaceChildren(
      el("h1", {}, name, badge(st)),
      el("p", {}, "Last run ", when(t.last_run && t.last_run.ended), " · next run ", when(t.next_run), " ",
        el("button", { type: "button", id: "run-now", onclick: () => runNow(name) }, "Run now")),
      t.held.length ? el("section", { "aria-labelledby": "held-title" }, el("h2", { id: "held-title" }, "Held files"), heldFiles) : "",
      el("section", { "aria-labelledby": "chart-title" }, el("h2", { id: "chart-title" }, "Actions per run"),
        runs.length ? chart(runs) : el("p", { class: "muted" }, busy ? "A run holds the history; it shows once the run ends." : "No run yet.")),
      el("section", { "aria-labelledby": "runs-title" }, el("h2", { id: "runs-title" }, "Runs"), table));
  }
  ui.refresh = async () => {
    const [tr, rr] = await Promise.all([api("/api/tenants"), api(`/api/tenants/${enc(name)}/runs?limit=100`)]);
    if (!tr.ok) { say(`The tenant could not be read (${tr.status}).`); return; }
    const t = (await tr.json()).find((x) => x.name === name);
    if (!t) { main.replaceChildren(el("h1", {}, "No tenant " + name), el("a", { href: "#/" }, "All tenants")); return; }
    busy = rr.status === 409;
    if (rr.ok) runs = await rr.json();
    if (document.querySelector("dialog[open]")) return; // not under the operator's hands
    const sig = JSON.stringify([t, runs, busy]);
    if (sig === seen) return; // redrawn only when something changed: focus stays put
    seen = sig;
    await draw(t);
    say(`Updated ${new Date().toLocaleTimeString()}`);
  };
}

// ---- a run's results ----

function resultsView(main, name, id, n) {
  const q = { outcome: "", code: "", offset: 0 };
  const LIMIT = 100;
  const outcome = el("select", { id: "filter-outcome", onchange: (e) => { q.outcome = e.target.value; q.offset = 0; load(); } },
    ["", "ok", "failed", "planned", "held"].map((o) => el("option", { value: o }, o || "every outcome")));
  const code = el("select", { id: "filter-code", onchange: (e) => { q.code = e.target.value; q.offset = 0; load(); } },
    el("option", { value: "" }, "every code"));
  const body = el("tbody");
  const pager = el("div", { class: "pager" });
  const csv = `/api/tenants/${enc(name)}/runs/${id}/files/${n}/results.csv`;
  const title = el("h1", {}, `Results of run ${id}`);
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/t/" + enc(name) }, "← " + name)),
    title,
    el("p", {}, el("a", { href: csv, download: "", id: "download" }, "Download the results CSV")),
    el("div", { class: "controls" },
      el("span", {}, el("label", { for: "filter-outcome" }, "Outcome"), outcome),
      el("span", {}, el("label", { for: "filter-code" }, "Code"), code)),
    el("table", { id: "results" },
      el("thead", {}, el("tr", {}, ["Line", "Key", "Action", "Outcome", "Code", "Message"].map((h) => el("th", { scope: "col" }, h)))),
      body), pager);
  async function load() {
    const params = new URLSearchParams({ offset: q.offset, limit: LIMIT });
    if (q.outcome) params.set("outcome", q.outcome);
    if (q.code) params.set("code", q.code);
    const resp = await api(`/api/tenants/${enc(name)}/runs/${id}/files/${n}/results?${params}`);
    if (!resp.ok) { say(`The results could not be read (${resp.status}): ${await resp.text()}`); return; }
    const r = await resp.json();
    title.textContent = `Results of ${r.file}, run ${id}`;
    const codes = Object.keys(r.codes).sort();
    code.replaceChildren(el("option", { value: "" }, "every code"),
      codes.map((c) => el("option", { value: c, selected: c === q.code }, `${c} (${r.codes[c].toLocaleString()})`)));
    body.replaceChildren(...r.lines.map((l) => el("tr", {},
      el("td", { class: "num" }, l.line), el("td", {}, l.key), el("td", {}, l.action),
      el("td", {}, l.outcome), el("td", {}, l.code), el("td", { class: "message" }, l.message))));
    if (!r.lines.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No line matches.")));
    pager.replaceChildren(
      el("button", { type: "button", disabled: q.offset === 0, onclick: () => { q.offset = Math.max(0, q.offset - LIMIT); load(); } }, "Previous"),
      el("span", { id: "matched" }, `${r.matched.toLocaleString()} of ${r.total.toLocaleString()} lines` +
        (r.matched ? `, ${q.offset + 1}–${q.offset + r.lines.length} shown` : "")),
      el("button", { type: "button", disabled: q.offset + LIMIT >= r.matched, onclick: () => { q.offset += LIMIT; load(); } }, "Next"));
  }
  ui.refresh = null; // a results file never changes
  load();
}

// ---- the token, release and run now ----

function askToken(why) {
  const dialog = document.getElementById("token-dialog");
  if (dialog.open) return Promise.resolve(null);
  document.getElementById("token-why").textContent = why;
  document.getElementById("token-error").textContent = "";
  const input = document.getElementById("token-input");
  input.value = ui.token;
  return new Promise((resolve) => {
    const form = document.getElementById("token-form");
    const done = (token) => {
      form.onsubmit = null; document.getElementById("token-cancel").onclick = null;
      dialog.close();
      resolve(token);
    };
    form.onsubmit = (e) => { e.preventDefault(); useToken(input.value); done(input.value); };
    document.getElementById("token-cancel").onclick = () => done(null);
    dialog.showModal();
    input.focus();
  });
}

function useToken(token) {
  ui.token = token;
  if (token) sessionStorage.setItem("muster-token", token); else sessionStorage.removeItem("muster-token");
}

function release(t, file, rec) {
  const dialog = document.getElementById("release-dialog");
  const c = (action) => (rec && rec.counts[action] && Object.values(rec.counts[action]).reduce((a, b) => a + b, 0)) || 0;
  const deletes = c("delete"), deactivates = c("deactivate");
  document.getElementById("release-what").textContent =
    `The next run of ${t.name} applies ${file} despite the guard that held it` +
    (rec && rec.reasons.length ? ` (${rec.reasons.join("; ")})` : "") +
    `: ${deletes.toLocaleString()} deletion${deletes === 1 ? "" : "s"} and ${deactivates.toLocaleString()} deactivation${deactivates === 1 ? "" : "s"}, with its creates and updates.`;
  const error = document.getElementById("release-error");
  error.textContent = "";
  const input = document.getElementById("release-token");
  input.value = ui.token;
  const form = document.getElementById("release-form");
  form.onsubmit = async (e) => {
    e.preventDefault();
    const resp = await fetch(`/api/tenants/${enc(t.name)}/release`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + input.value },
      body: JSON.stringify({ file }),
    });
    if (resp.status === 401) { error.textContent = "The token was refused: nothing was released."; input.select(); return; }
    if (!resp.ok) { error.textContent = `Not released (${resp.status}): ${await resp.text()}`; return; }
    useToken(input.value);
    dialog.close();
    say(`${file} released: the next run of ${t.name} applies it.`);
    if (ui.refresh) ui.refresh();
  };
  document.getElementById("release-cancel").onclick = () => dialog.close();
  dialog.showModal();
  input.focus();
}

async function runNow(name) {
  for (let tries = 0; tries < 2; tries++) {
    if (!ui.token && !(await askToken(`Running ${name} now needs the operator token.`))) return;
    const resp = await fetch(`/api/tenants/${enc(name)}/run`, { method: "POST", headers: { "Authorization": "Bearer " + ui.token } });
    if (resp.status === 401) { useToken(""); say("The token was refused."); continue; }
    say(resp.ok ? `${name} runs now (after the run in progress, if any).` : `Not run (${resp.status}).`);
    return;
  }
}

// ---- routing and polling ----

function route() {
  const main = document.getElementById("main");
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const where = document.getElementById("where");
  if (parts[0] === "t" && parts[1] && parts[2] === "r") {
    where.textContent = parts[1];
    resultsView(main, parts[1], parts[3], parts[5]);
  } else if (parts[0] === "t" && parts[1]) {
    where.textContent = parts[1];
    tenantView(main, parts[1]);
  } else {
    where.textContent = "";
    tenantsView(main);
  }
  document.title = where.textContent ? `${where.textContent} · muster console` : "muster console";
  if (ui.refresh) ui.refresh();
}

document.getElementById("token-button").addEventListener("click", async () => {
  await askToken("The token is kept in this tab only (session storage) and sent with each request.");
  if (ui.refresh) ui.refresh();
});
window.addEventListener("hashchange", route);
setInterval(() => { if (ui.refresh && !document.hidden) ui.refresh(); }, POLL_MS);
route();
