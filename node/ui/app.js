// The Starling console: one page per view, fed by this node's HTTP API and
// kept live by its event stream (/v1/events): the server says which topics
// changed, the page fetches what the open view shows of them. Actions go
// through the same requests as the CLI, carrying the token in a header.
"use strict";

const S = {
  token: sessionStorage.getItem("starling-token") || "",
  data: {},          // resource -> last fetched value
  stale: new Set(),  // resources to fetch again
  errors: {},        // resource -> why its last fetch failed
  page: null,
  arg: "",
  selected: new Set(),
  filter: { text: "", chips: {} },
  refreshing: false,
  again: false,
};

const RESOURCES = {
  console: "/v1/console", info: "/v1/info", nodes: "/v1/nodes", members: "/v1/members",
  rollout: "/v1/rollout", lease: "/v1/lease", state: "/v1/state", history: "/v1/history",
  graph: "/v1/graph", artifacts: "/v1/artifacts", hooks: "/v1/hooks",
};
// What a change of each topic makes stale.
const TOPICS = {
  members: ["members", "nodes", "info", "graph", "rollout"],
  nodes: ["nodes", "rollout", "graph", "hooks"],
  state: ["state", "history", "rollout", "nodes", "graph", "artifacts", "info"],
  lease: ["info", "lease", "rollout"],
};

// ---- helpers ---------------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);
// Replaces an element's content only when it would change: a live update
// that shows the same must not take the element a click is landing on.
function setHtml(el, html) {
  if (el.__html === html) return;
  el.__html = html;
  el.innerHTML = html;
}
function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const short = r => (r ? String(r).slice(0, 12) : "-");
const cls = v => "s-" + String(v ?? "unknown").replace(/[^a-z-]/gi, "");
const list = v => (Array.isArray(v) ? v : v && Array.isArray(v.members) ? v.members : []);
function when(unix) {
  if (!unix) return "-";
  return new Date(unix * 1000).toLocaleString();
}
function hlcTime(row) {
  const us = row && row.hlc && row.hlc.wall_us;
  return us ? new Date(us / 1000).toLocaleString() : esc(row.time || "");
}

function say(text, kind = "info") {
  const m = $("#message");
  m.textContent = text;
  m.className = "banner " + kind;
  m.hidden = !text;
}

async function getJson(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || "HTTP " + r.status);
  return body;
}

async function act(path, body, done) {
  try {
    const r = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Starling-Token": S.token },
      body: JSON.stringify(body || {}),
    });
    const reply = await r.json().catch(() => ({ error: r.statusText }));
    if (!r.ok) throw new Error(reply.error || "HTTP " + r.status);
    say(done(reply), "info");
    Object.values(TOPICS).flat().forEach(k => S.stale.add(k));
    refresh();
  } catch (e) {
    say("Refused: " + e.message, "error");
  }
}

function canAct() { return !!(S.data.console && S.data.console.write && S.token); }

function confirmThen(title, html, label, go) {
  const d = $("#dialog");
  $("#dialog-title").textContent = title;
  $("#dialog-body").innerHTML = html +
    `<div class="actions"><button id="dialog-confirm" type="button" class="primary">${esc(label)}</button></div>`;
  d.hidden = false;
  $("#dialog-confirm").onclick = () => { d.hidden = true; go(); };
}
function show(title, html) {
  $("#dialog-title").textContent = title;
  $("#dialog-body").innerHTML = html;
  $("#dialog").hidden = false;
}

// ---- data ------------------------------------------------------------------------------------

const NEEDS = {
  overview: ["console", "info", "nodes", "rollout", "state"],
  node: ["console", "nodes", "members", "rollout", "hooks"],
  state: ["console", "state", "history"],
  rollout: ["console", "rollout", "state", "nodes"],
  graph: ["console", "graph"],
  members: ["console", "members"],
  artifacts: ["console", "artifacts"],
};

async function refresh() {
  if (S.refreshing) { S.again = true; return; }
  S.refreshing = true;
  try {
    const want = (NEEDS[S.page] || []).filter(k => !(k in S.data) || S.stale.has(k));
    await Promise.all(want.map(async k => {
      S.stale.delete(k);
      try {
        S.data[k] = await getJson(RESOURCES[k]);
        delete S.errors[k];
      } catch (e) {
        S.errors[k] = e.message;
      }
    }));
    chrome();
    update();
  } finally {
    S.refreshing = false;
    if (S.again) { S.again = false; refresh(); }
  }
}

function follow() {
  const live = $("#live");
  const es = new EventSource("/v1/events");
  es.addEventListener("hello", () => { live.textContent = "live"; live.className = "badge ok"; });
  es.addEventListener("change", ev => {
    let topics = [];
    try { topics = JSON.parse(ev.data); } catch (_) { return; }
    topics.forEach(t => (TOPICS[t] || []).forEach(k => S.stale.add(k)));
    refresh();
  });
  es.onerror = () => {
    live.textContent = "reconnecting";
    live.className = "badge warn";
    // Whatever was missed while away is fetched again once it is back.
    Object.keys(RESOURCES).forEach(k => S.stale.add(k));
  };
}

// ---- frame -----------------------------------------------------------------------------------

function chrome() {
  const c = S.data.console || {};
  $("#cluster").textContent = c.cluster ? `${c.cluster} · on ${c.name}` : "";
  const a = $("#access");
  if (!c.write) { a.textContent = "read-only"; a.className = "badge"; a.title = "starlingd runs without --ui-write"; }
  else if (!S.token) { a.textContent = "no token"; a.className = "badge warn"; a.title = "open the link of `starling ui url`"; }
  else { a.textContent = "actions on"; a.className = "badge ok"; a.title = "actions carry this node's token"; }
  const st = S.data.state;
  const f = $("#freeze");
  const freeze = st && st.document && st.document.freeze;
  if (freeze && typeof freeze === "object") {
    f.hidden = false;
    f.innerHTML = `<b>Frozen:</b> ${esc(freeze.reason)} <span class="muted">(by ${esc(freeze.by)})</span> — ` +
      `rollouts and changes wait until it is lifted.` +
      (canAct() ? ` <button id="unfreeze" type="button" class="small">Unfreeze</button>` : "");
  } else {
    f.hidden = true;
  }
  document.querySelectorAll("#nav a").forEach(n => n.classList.toggle("active", n.dataset.page === S.page ||
    (S.page === "node" && n.dataset.page === "overview")));
}

function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = h.split("/");
  S.page = NEEDS[page] ? page : "overview";
  S.arg = decodeURIComponent(rest.join("/"));
  mount();
  refresh();
}

function mount() {
  const m = $("#main");
  if (S.page === "overview") {
    m.innerHTML = `<h2>Cluster overview</h2>
      <div id="cards" class="cards"></div>
      <div id="chips"></div>
      <div class="toolbar">
        <input id="search" type="search" placeholder="Filter: name, role, tag, version, revision" value="${esc(S.filter.text)}">
        <span id="shown" class="muted"></span>
        <span style="flex:1"></span>
        <label class="muted">batch <input id="batch" size="6" placeholder="policy" title="A count (2), a percentage (25%) or a ramp (1,50%)"></label>
        <button id="approve-selected" type="button" class="primary">Approve update for selected</button>
        <button id="approve-all" type="button">Approve for all</button>
        <button id="freeze-btn" type="button">Freeze…</button>
      </div>
      <table id="nodes"><thead><tr>
        <th><input id="select-all" type="checkbox" title="Select every node shown"></th>
        <th>Name</th><th>Lifecycle</th><th>Status</th><th>Roles</th><th>Applied</th><th>Desired</th>
        <th>Health</th><th>Rollout</th><th>Version</th><th></th></tr></thead><tbody></tbody></table>`;
    $("#search").addEventListener("input", e => { S.filter.text = e.target.value; update(); });
  } else {
    m.innerHTML = `<div id="view"></div>`;
  }
}

// ---- overview --------------------------------------------------------------------------------

function desiredRevision() { return (S.data.state && S.data.state.revision) || ""; }

function overviewRows() {
  const nodes = S.data.nodes || [];
  const phases = {};
  for (const n of (S.data.rollout && S.data.rollout.nodes) || []) phases[n.name] = n.phase;
  return nodes.map(n => ({
    ...n,
    health: n.healthy === true ? "healthy" : n.healthy === false ? "unhealthy" : "unknown",
    rollout: phases[n.name] || (n.lifecycle === "commissioned" ? "idle" : "-"),
  }));
}

function matches(n) {
  for (const [key, value] of Object.entries(S.filter.chips)) if (value && String(n[key]) !== value) return false;
  const t = S.filter.text.trim().toLowerCase();
  if (!t) return true;
  const hay = [n.name, n.lifecycle, n.status, (n.roles || []).join(","), n.version, n.applied_revision, n.rollout,
    ...Object.entries(n.tags || {}).map(([k, v]) => k + "=" + v)].join(" ").toLowerCase();
  return t.split(/\s+/).every(w => hay.includes(w));
}

function updateOverview() {
  const t0 = performance.now();
  const rows = overviewRows();
  const info = S.data.info || {};
  const ro = S.data.rollout || {};
  const count = (key) => rows.reduce((m, n) => (m[n[key]] = (m[n[key]] || 0) + 1, m), {});
  const life = count("lifecycle"), status = count("status"), health = count("health"), phase = count("rollout");
  const holder = info.lease && info.lease.holder;
  setHtml($("#cards"), [
    [rows.length, "nodes"],
    [(life.commissioned || 0) + (life.upgrading || 0), "commissioned"],
    [status.alive || 0, "alive"],
    [health.healthy || 0, "healthy"],
    [(status.failed || 0) + (status.suspect || 0), "failed or suspect"],
    [holder ? esc(holder) : "none", "lease holder"],
    [esc(short(desiredRevision())), "desired revision"],
    [`<span class="${cls(ro.state)}">${esc(ro.state || "idle")}</span>`, "rollout" + (ro.id ? " " + ro.id : "")],
  ].map(([n, l]) => `<div class="card"><div class="n">${n}</div><div class="l">${l}</div></div>`).join(""));

  const chipRow = (key, counts) => Object.keys(counts).sort().map(v =>
    `<button type="button" class="chip${S.filter.chips[key] === v ? " on" : ""}" data-chip="${esc(key)}" data-value="${esc(v)}">` +
    `<span class="${cls(v)}">${esc(v)}</span> ${counts[v]}</button>`).join("");
  setHtml($("#chips"), `<div class="chips">${chipRow("lifecycle", life)}${chipRow("status", status)}` +
    `${chipRow("health", health)}${chipRow("rollout", phase)}</div>`);

  const shown = rows.filter(matches);
  const want = desiredRevision();
  const write = canAct();
  const html = shown.map(n => {
    const sel = S.selected.has(n.name) ? " checked" : "";
    const commissionable = n.lifecycle === "discovered" || n.lifecycle === "decommissioned";
    const actions = [`<button type="button" class="small act-copy" data-node="${esc(n.name)}" title="The starlingd command line that adds a node like this one">copy</button>`];
    if (commissionable) actions.push(`<button type="button" class="small act-commission" data-node="${esc(n.name)}"${write ? "" : " disabled"}>commission</button>`);
    else if (n.lifecycle === "commissioned" || n.lifecycle === "upgrading") actions.push(`<button type="button" class="small danger act-decommission" data-node="${esc(n.name)}" title="Decommission: its services stop, it leaves the rollouts and the load balancer"${write ? "" : " disabled"}>&minus;</button>`);
    const applied = n.applied_revision || "";
    return `<tr data-node="${esc(n.name)}">
      <td><input type="checkbox" class="sel" data-node="${esc(n.name)}"${sel}></td>
      <td><a href="#/node/${encodeURIComponent(n.name)}">${esc(n.name)}</a></td>
      <td class="c-lifecycle ${cls(n.lifecycle)}">${esc(n.lifecycle)}</td>
      <td class="c-status ${cls(n.status)}">${esc(n.status)}</td>
      <td>${esc((n.roles || []).join(", "))}</td>
      <td class="mono c-applied">${esc(short(applied))}</td>
      <td class="mono">${esc(short(want))}</td>
      <td class="c-health ${cls(n.health)}">${esc(n.health)}</td>
      <td class="c-phase ${cls(n.rollout)}">${esc(n.rollout)}</td>
      <td>${esc(n.version || "-")}</td>
      <td>${actions.join(" ")}</td></tr>`;
  }).join("");
  setHtml($("#nodes tbody"), html);
  $("#shown").textContent = `${shown.length} of ${rows.length} shown` + (S.selected.size ? `, ${S.selected.size} selected` : "");
  $("#select-all").checked = shown.length > 0 && shown.every(n => S.selected.has(n.name));
  $("#approve-selected").textContent = `Approve update for selected (${S.selected.size})`;
  $("#approve-selected").disabled = !write || S.selected.size === 0;
  $("#approve-all").disabled = !write;
  const frozen = S.data.state && S.data.state.document && typeof S.data.state.document.freeze === "object";
  $("#freeze-btn").disabled = !write || frozen;
  // For the benchmark (tests/ui/overview_bench.py): what the last render showed and took.
  S.lastRender = { rows: shown.length, of: rows.length, ms: performance.now() - t0, at: performance.now() };
}

function copyCommand(name) {
  const c = S.data.console || {};
  const n = (S.data.nodes || []).find(x => x.name === name) || {};
  const roles = (n.roles || []).join(",");
  const parts = ["starlingd", "--name", "NEW-NODE", "--join", c.addr, "--cluster", c.cluster, "--profile", c.profile,
    "--data-dir", "/var/lib/starling"];
  if (roles) parts.push("--tag", "roles=" + roles);
  for (const [k, v] of Object.entries(n.tags || {})) if (k !== "roles") parts.push("--tag", `${k}=${v}`);
  const quote = s => (/^[\w@%+=:,./-]+$/.test(s) ? s : "'" + String(s).replace(/'/g, "'\\''") + "'");
  const line = (c.encrypted ? "STARLING_ENCRYPT_KEY=\"$(cat cluster.key)\" " : "") + parts.map(quote).join(" ");
  show(`Add a node like ${name}`,
    `<p>Run this on the new machine (give it its own name). It joins through this node, with the same roles${roles ? ` (<b>${esc(roles)}</b>)` : ""}; ` +
    `once it shows up here as <i>discovered</i>, commission it and the next rollout brings it the same application.</p>` +
    `<pre id="copy-command" class="mono">${esc(line)}</pre>` +
    (c.encrypted ? `<p class="muted">The cluster is encrypted: cluster.key holds the key (<code>starling keys list</code> on a node names it).</p>` : "") +
    `<button type="button" id="copy-to-clipboard">Copy to clipboard</button>`);
  $("#copy-to-clipboard").onclick = () => navigator.clipboard && navigator.clipboard.writeText(line).then(() => say("Copied.", "info"));
}

function startRollout(nodes) {
  const batch = ($("#batch") && $("#batch").value.trim()) || "";
  const body = { revision: desiredRevision(), nodes, batch };
  const who = nodes.length ? `${nodes.length} node${nodes.length > 1 ? "s" : ""} (${nodes.join(", ")})` : "every commissioned node";
  confirmThen("Approve the update", `<p>Roll out revision <b class="mono">${esc(short(body.revision))}</b> to ${esc(who)}` +
    `${batch ? `, in batches of ${esc(batch)}` : ", in the policy's batches"}. The health gate holds each batch; a failure reverts.</p>`,
    "Approve", () => act("/v1/rollout/start", body, r => `Rollout ${r.id} of ${short(r.revision)} requested` +
      (r.only ? ` for ${r.only.join(", ")}` : "") + (r.waits_for ? ` (waits for rollout ${r.waits_for})` : "") + "."));
}

// ---- node ------------------------------------------------------------------------------------

function updateNode() {
  const name = S.arg;
  const n = (S.data.nodes || []).find(x => x.name === name);
  const m = list(S.data.members).find(x => x.name === name);
  const r = ((S.data.rollout && S.data.rollout.nodes) || []).find(x => x.name === name);
  const c = S.data.console || {};
  const v = $("#view");
  if (!n && !m) { v.innerHTML = `<h2>${esc(name)}</h2><p>No member and no node of the desired state has this name.</p>`; return; }
  const kv = rows => `<table>${rows.map(([k, val]) => `<tr><th style="width:190px;position:static">${esc(k)}</th><td>${val}</td></tr>`).join("")}</table>`;
  const outputs = Object.entries((n && n.outputs) || {});
  const hooks = name === c.name ? S.data.hooks || [] : null;
  setHtml(v, `<h2>${esc(name)} <span class="muted">${esc(n ? n.lifecycle : "")}</span></h2>
    <div class="grid2"><div>
    <h3>Report</h3>${kv([
      ["membership", `<span class="${cls(n ? n.status : m.status)}">${esc(n ? n.status : m.status)}</span>`],
      ["address", esc((m && m.addr) || (n && n.addr) || "-")],
      ["roles", esc(((n && n.roles) || []).join(", ") || "-")],
      ["applied revision", `<span class="mono">${esc((n && n.applied_revision) || "-")}</span>`],
      ["desired revision", `<span class="mono">${esc(desiredRevision() || "-")}</span>`],
      ["health", esc(n && n.healthy === true ? "healthy" : n && n.healthy === false ? "unhealthy" : "unknown")],
      ["agent phase", esc((n && n.phase) || "-")],
      ["rollout phase", `<span class="${cls(r && r.phase)}">${esc((r && r.phase) || "-")}</span>`],
      ["release", esc((m && m.version) || (n && n.version) || "-")],
      ["protocol", esc(m && m.protocol ? `${m.protocol.current} (${m.protocol.min}-${m.protocol.max})` : "-")],
      ["tags", esc(Object.entries((m && m.tags) || {}).map(([k, x]) => k + "=" + x).join(", ") || "-")],
      ["detail", `<pre>${esc((n && n.detail) || (r && r.detail) || "-")}</pre>`],
    ])}</div><div>
    <h3>Service outputs</h3>${outputs.length ? kv(outputs.map(([k, x]) => [k, `<span class="mono">${esc(x)}</span>`])) : `<p class="muted">none</p>`}
    <h3>Last hook runs</h3>${hooks === null
      ? `<p class="muted">Hook runs are kept on the node that ran them: open ${esc(name)}'s own console (its --http port) to see them; its last failure is in "detail".</p>`
      : hooks.length ? hooks.map(h => `<div class="panel"><b class="${h.ok ? "s-done" : "s-failed"}">${esc(h.kind)}</b> ${esc(h.hook)}
          <span class="muted">${esc(h.result)} · ${esc(h.took_ms)} ms · ${esc(when(h.at_unix))} · revision ${esc(short(h.revision))}</span>
          ${h.output ? `<pre>${esc(h.output)}</pre>` : ""}</div>`).join("") : `<p class="muted">no hook has run since this daemon started</p>`}
    </div></div>`);
}

// ---- desired state ---------------------------------------------------------------------------

function updateState() {
  const st = S.data.state || {};
  const hist = (S.data.history || []).slice().reverse();
  const v = $("#view");
  const from = S.diffFrom || (hist[1] && hist[1].revision) || "", to = S.diffTo || st.revision || "";
  const options = sel => hist.map(h => `<option value="${esc(h.revision)}"${h.revision === sel ? " selected" : ""}>${esc(short(h.revision))} ${esc(h.note || "")}</option>`).join("");
  const write = canAct();
  setHtml(v, `<h2>Desired state <span class="muted mono">${esc(short(st.revision))}</span></h2>
    <div class="grid2"><div>
    <h3>History</h3>
    <table id="history"><thead><tr><th>Revision</th><th>When</th><th>From</th><th>Change</th><th></th></tr></thead><tbody>
    ${hist.map(h => `<tr data-rev="${esc(h.revision)}"><td class="mono">${esc(short(h.revision))}${h.current ? ' <span class="badge ok">current</span>' : ""}</td>
      <td>${hlcTime(h)}</td><td>${esc(h.origin)}</td><td>${esc(h.note)}</td>
      <td>${h.current ? "" : `<button type="button" class="small act-rollback" data-rev="${esc(h.revision)}"${write ? "" : " disabled"}>roll back to this</button>`}
        <button type="button" class="small act-diff" data-rev="${esc(h.revision)}">diff</button></td></tr>`).join("")}
    </tbody></table></div><div>
    <h3>Diff</h3>
    <div class="toolbar"><select id="diff-from">${options(from)}</select> &rarr; <select id="diff-to">${options(to)}</select>
      <button type="button" id="diff-go">Show</button></div>
    <div id="diff-out">${S.diffHtml || `<p class="muted">Pick two revisions.</p>`}</div>
    <h3>Current document <span class="muted">(param values hidden)</span></h3>
    <pre id="document" class="mono">${esc(JSON.stringify(st.document || {}, null, 2))}</pre>
    </div></div>`);
}

async function showDiff(from, to) {
  S.diffFrom = from; S.diffTo = to;
  try {
    const d = await getJson(`/v1/diff?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    const rows = Array.isArray(d) ? d : d.changes || [];
    S.diffHtml = rows.length ? `<table><thead><tr><th>Path</th><th>Before</th><th>After</th></tr></thead><tbody>` +
      rows.map(c => `<tr class="diff-${esc(c.kind)}"><td class="mono">${esc(c.path)}</td><td class="mono">${esc(c.before === undefined ? "" : JSON.stringify(c.before))}</td>` +
        `<td class="mono">${esc(c.after === undefined ? "" : JSON.stringify(c.after))}</td></tr>`).join("") + `</tbody></table>`
      : `<p class="muted">No difference.</p>`;
  } catch (e) {
    S.diffHtml = `<p class="s-failed">${esc(e.message)}</p>`;
  }
  updateState();
}

// ---- rollout ---------------------------------------------------------------------------------

function updateRollout() {
  const r = S.data.rollout || {};
  const nodes = r.nodes || [];
  const policy = (S.data.state && S.data.state.document && S.data.state.document.policy) || {};
  const done = nodes.filter(n => n.phase === "done").length;
  const moved = nodes.filter(n => n.phase !== "excluded" && n.phase !== "left").length;
  const pct = moved ? Math.round(100 * done / moved) : 0;
  const batches = {};
  for (const n of nodes) if (n.batch) (batches[n.batch] = batches[n.batch] || []).push(n);
  const write = canAct();
  const running = r.state === "running" || r.state === "paused";
  setHtml($("#view"), `<h2>Rollout ${esc(r.id || "")} <span class="${cls(r.state)}" id="rollout-state">${esc(r.state || "idle")}</span></h2>
    <div class="panel">
      <div>revision <b class="mono">${esc(short(r.revision))}</b>${r.from ? ` from <span class="mono">${esc(short(r.from))}</span>` : ""}
      ${r.reverting ? ' <span class="badge bad">reverting</span>' : ""}${r.agent ? ' <span class="badge">agent upgrade</span>' : ""}
      · batch ${esc(r.batch_no || 0)} · by ${esc(r.by || "-")} · started ${esc(when(r.started_unix))}${r.ended_unix ? " · ended " + esc(when(r.ended_unix)) : ""}</div>
      <div class="muted">batch size ${esc(JSON.stringify(r.batch_size ?? policy.batch ?? 1))}${r.batch_size != null ? " (chosen for this rollout)" : " (the policy's)"}
      · min healthy ${esc(policy.min_healthy || "-")} · failure threshold ${esc(policy.failure_threshold ?? 0)}
      ${r.only && r.only.length ? " · only on " + esc(r.only.join(", ")) : ""}</div>
      ${r.reason ? `<div>${esc(r.reason)}</div>` : ""}
      ${r.requested ? `<div class="s-pending">requested: revision ${esc(short(r.requested.revision))}, waiting for the coordinator</div>` : ""}
      <div style="margin:8px 0" title="${done} of ${moved} done"><div class="progress"><div style="width:${pct}%"></div></div></div>
      <div class="muted">${done} of ${moved} nodes done</div>
      <div class="toolbar">
        <button type="button" class="act-control" data-action="pause"${write && r.state === "running" ? "" : " disabled"}>Pause</button>
        <button type="button" class="act-control" data-action="resume"${write && r.state === "paused" ? "" : " disabled"}>Resume</button>
        <button type="button" class="danger act-control" data-action="abort"${write && running ? "" : " disabled"}>Abort</button>
      </div>
    </div>
    <h3>Batches</h3>
    <div class="batches">${Object.keys(batches).sort((a, b) => a - b).map(b => `<div class="batch${+b === r.batch_no ? " current" : ""}">
      <b>batch ${esc(b)}</b>${batches[b].map(n => `<div><span class="${cls(n.phase)}">●</span> ${esc(n.name)} <span class="muted">${esc(n.phase)}</span></div>`).join("")}</div>`).join("") || `<p class="muted">no batch yet</p>`}</div>
    <h3>Nodes</h3>
    <table id="rollout-nodes"><thead><tr><th>Name</th><th>Phase</th><th>Batch</th><th>Applied</th><th>Healthy</th><th>Agent</th><th>Detail</th></tr></thead><tbody>
    ${nodes.map(n => `<tr data-node="${esc(n.name)}"><td><a href="#/node/${encodeURIComponent(n.name)}">${esc(n.name)}</a></td>
      <td class="c-phase ${cls(n.phase)}">${esc(n.phase)}</td><td>${n.batch || "-"}</td><td class="mono">${esc(short(n.applied_revision))}</td>
      <td class="${n.healthy ? "s-healthy" : "s-unhealthy"}">${n.healthy ? "yes" : "no"}</td><td>${esc(n.agent_phase)}</td>
      <td>${esc(n.detail)}</td></tr>`).join("")}</tbody></table>`);
}

// ---- services graph --------------------------------------------------------------------------

function updateGraph() {
  const g = S.data.graph || { services: [], edges: [] };
  const services = g.services || [];
  const needs = {};
  for (const s of services) needs[s.name] = [];
  for (const e of g.edges || []) if (needs[e.from] && needs[e.to] !== undefined) needs[e.from].push(e.to);
  // A service's column: one right of the deepest service it needs.
  const depth = {};
  const visit = (n, seen) => {
    if (depth[n] !== undefined) return depth[n];
    if (seen.has(n)) return 0;
    seen.add(n);
    depth[n] = needs[n].reduce((d, m) => Math.max(d, visit(m, seen) + 1), 0);
    return depth[n];
  };
  services.forEach(s => visit(s.name, new Set()));
  const cols = {};
  services.forEach(s => (cols[depth[s.name]] = cols[depth[s.name]] || []).push(s));
  const W = 200, H = 54, GX = 90, GY = 26, at = {};
  let width = 40, height = 40;
  Object.keys(cols).forEach(c => cols[c].forEach((s, i) => {
    at[s.name] = { x: 20 + c * (W + GX), y: 20 + i * (H + GY) };
    width = Math.max(width, at[s.name].x + W + 20);
    height = Math.max(height, at[s.name].y + H + 20);
  }));
  const edges = (g.edges || []).filter(e => at[e.from] && at[e.to]).map(e => {
    const a = at[e.from], b = at[e.to];
    const x1 = a.x, y1 = a.y + H / 2, x2 = b.x + W, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    return `<path class="edge" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 + 6},${y2}" marker-end="url(#arrow)"><title>${esc(e.from)} needs ${esc(e.to)}${e.via && e.via.length ? " (" + esc(e.via.join(", ")) + ")" : ""}</title></path>`;
  }).join("");
  const boxes = services.map(s => {
    const p = at[s.name];
    const on = (s.nodes || []).join(", ");
    return `<g class="service" data-service="${esc(s.name)}"><rect class="box" x="${p.x}" y="${p.y}" width="${W}" height="${H}" rx="8"/>
      <text x="${p.x + 10}" y="${p.y + 21}" font-weight="600">${esc(s.name)}</text>
      <text class="sub" x="${p.x + 10}" y="${p.y + 40}">${esc(on.length > 30 ? on.slice(0, 29) + "…" : on || "on no node")}<title>${esc(on)}</title></text></g>`;
  }).join("");
  setHtml($("#view"), `<h2>Services</h2><p class="muted">Each service, the nodes it runs on, and an arrow to each service whose output or start it needs (as <code>starling graph</code>).</p>
    ${services.length ? `<div class="panel" style="overflow:auto"><svg id="graph" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path class="arrow" d="M0,0 L10,5 L0,10 z"/></marker></defs>
      ${edges}${boxes}</svg></div>` : `<p>The desired state has no services.</p>`}`);
}

// ---- members and artifacts -------------------------------------------------------------------

function updateMembers() {
  const ms = list(S.data.members);
  setHtml($("#view"), `<h2>Members <span class="muted">${ms.length}</span></h2>
    <table id="members"><thead><tr><th>Name</th><th>Address</th><th>Status</th><th>Release</th><th>Protocol</th><th>Incarnation</th><th>Tags</th></tr></thead><tbody>
    ${ms.map(m => `<tr data-node="${esc(m.name)}"><td><a href="#/node/${encodeURIComponent(m.name)}">${esc(m.name)}</a></td><td class="mono">${esc(m.addr)}</td>
      <td class="${cls(m.status)}">${esc(m.status)}</td><td>${esc(m.version || "-")}</td>
      <td>${m.protocol ? esc(`${m.protocol.current} (${m.protocol.min}-${m.protocol.max})`) : "-"}</td><td>${esc(m.incarnation)}</td>
      <td>${esc(Object.entries(m.tags || {}).map(([k, v]) => k + "=" + v).join(", "))}</td></tr>`).join("")}</tbody></table>`);
}

function updateArtifacts() {
  const a = S.data.artifacts;
  const rows = Array.isArray(a) ? a : (a && a.artifacts) || [];
  const size = n => (n > 1 << 20 ? (n / 1048576).toFixed(1) + " MiB" : n > 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B");
  setHtml($("#view"), `<h2>Artifacts <span class="muted">${rows.length}</span></h2>
    <p class="muted">Files the desired state's packages name, shared peer to peer (added with <code>starling artifact add</code>).</p>
    <table id="artifacts"><thead><tr><th>Name</th><th>Version</th><th>Size</th><th>Here</th><th>Added by</th><th>Added</th><th>Digest</th></tr></thead><tbody>
    ${rows.map(x => `<tr><td>${esc(x.name)}</td><td>${esc(x.version)}</td><td>${esc(size(x.size || 0))}</td>
      <td class="${x.local === "complete" ? "s-done" : "s-pending"}">${esc(x.local)}</td><td>${esc(x.added_by)}</td>
      <td>${esc(x.added_at_us ? new Date(x.added_at_us / 1000).toLocaleString() : "-")}</td><td class="mono">${esc(short(x.digest))}</td></tr>`).join("")}</tbody></table>`);
}

// ---- wiring ----------------------------------------------------------------------------------

function update() {
  const errs = (NEEDS[S.page] || []).filter(k => S.errors[k]).map(k => `${RESOURCES[k]}: ${S.errors[k]}`);
  if (errs.length && !(NEEDS[S.page] || []).every(k => k in S.data)) {
    $("#main").innerHTML = `<h2>Cannot load this page</h2><pre>${esc(errs.join("\n"))}</pre>`;
    return;
  }
  ({ overview: updateOverview, node: updateNode, state: updateState, rollout: updateRollout, graph: updateGraph,
     members: updateMembers, artifacts: updateArtifacts })[S.page]();
}

document.addEventListener("click", e => {
  const t = e.target.closest("button, input.sel, #select-all");
  if (!t) return;
  const node = t.dataset && t.dataset.node;
  if (t.id === "dialog-close") { $("#dialog").hidden = true; return; }
  if (t.id === "theme") {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("starling-theme", next);
    return;
  }
  if (t.classList.contains("sel")) { t.checked ? S.selected.add(node) : S.selected.delete(node); update(); return; }
  if (t.id === "select-all") {
    overviewRows().filter(matches).forEach(n => (t.checked ? S.selected.add(n.name) : S.selected.delete(n.name)));
    update();
    return;
  }
  if (t.dataset.chip) {
    S.filter.chips[t.dataset.chip] = S.filter.chips[t.dataset.chip] === t.dataset.value ? null : t.dataset.value;
    update();
    return;
  }
  if (t.classList.contains("act-copy")) return copyCommand(node);
  if (t.id === "approve-selected") return startRollout([...S.selected].sort());
  if (t.id === "approve-all") return startRollout([]);
  if (t.classList.contains("act-decommission"))
    return confirmThen(`Decommission ${node}`, `<p>${esc(node)}'s services are stopped and removed (remove hooks run), it leaves the rollouts and every balancer that follows the commissioned nodes. It stays a member; commission it again to bring it back.</p>`,
      "Decommission", () => act("/v1/lifecycle", { nodes: [node], to: "decommissioned" }, () => `${node} is decommissioned.`));
  if (t.classList.contains("act-commission"))
    return act("/v1/lifecycle", { nodes: [node], to: "commissioned" }, () => `${node} is commissioned: the next rollout brings it the application.`);
  if (t.id === "freeze-btn")
    return confirmThen("Freeze the cluster", `<p>No rollout starts and no change is applied while frozen.</p><p><input id="freeze-reason" size="50" placeholder="reason (shown to whoever is refused)"></p>`,
      "Freeze", () => act("/v1/freeze", { reason: ($("#freeze-reason") || {}).value || "" }, () => "Frozen."));
  if (t.id === "unfreeze") return act("/v1/unfreeze", {}, () => "Unfrozen.");
  if (t.classList.contains("act-control")) return act("/v1/rollout/control", { action: t.dataset.action }, () => `Rollout ${t.dataset.action}d.`);
  if (t.classList.contains("act-rollback"))
    return confirmThen("Roll back", `<p>Make the desired state say again what revision <b class="mono">${esc(short(t.dataset.rev))}</b> said, as a new revision; a rollout then brings the nodes to it.</p>`,
      "Roll back", () => act("/v1/rollback", { to: t.dataset.rev }, r => `Rolled back: the desired state is now ${short(r.revision || "")}.`));
  if (t.classList.contains("act-diff")) return showDiff(t.dataset.rev, desiredRevision());
  if (t.id === "diff-go") return showDiff($("#diff-from").value, $("#diff-to").value);
});

// The login link carries the token in its fragment: kept for this tab only,
// and taken out of the address bar and the history.
(function login() {
  const m = location.hash.match(/(?:^#|&)token=([0-9a-f]+)/);
  if (m) {
    S.token = m[1];
    sessionStorage.setItem("starling-token", S.token);
    history.replaceState(null, "", location.pathname + "#/overview");
  }
  const theme = localStorage.getItem("starling-theme") ||
    (window.matchMedia && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  document.documentElement.dataset.theme = theme;
})();

document.addEventListener("change", e => {
  if (e.target.id === "diff-from") S.diffFrom = e.target.value;
  if (e.target.id === "diff-to") S.diffTo = e.target.value;
});

window.addEventListener("hashchange", route);
route();
follow();
