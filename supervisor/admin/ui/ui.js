// ws-supervisor /ui: reads GET /debug/state and GET /readyz with the admin bearer token
// and redraws in place every few seconds. No framework, no innerHTML with data, no
// request to any other host (the page's CSP enforces connect-src 'self').
"use strict";
(() => {
  const TOKEN_KEY = "ws-supervisor.token";
  const VIEW_KEY = "ws-supervisor.view";
  const LEVELS = ["ok", "warning", "critical", "emergency"];
  const MAX_ROWS = 500;        // rows drawn at once; search narrows the rest
  const TIMEOUT_MS = 5000;     // one request; then "cannot reach the daemon"

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // --- the token: from #token=… (never sent to the server) or the form; kept per tab ----------
  const everyMs = Math.max(1000, 1000 * (Number(new URLSearchParams(location.hash.slice(1)).get("every")) || 3));
  function tokenFromHash() {  // true if the fragment held one; it is then removed from the URL
    const hash = new URLSearchParams(location.hash.slice(1));
    if (!hash.has("token")) return false;
    sessionStorage.setItem(TOKEN_KEY, hash.get("token"));
    hash.delete("token");
    const rest = hash.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    return true;
  }
  tokenFromHash();
  let token = sessionStorage.getItem(TOKEN_KEY);

  // --- the reader's place: search, sort and open rows survive refreshes (and reloads) --------
  const saved = (() => {
    try { return JSON.parse(sessionStorage.getItem(VIEW_KEY) || "{}"); } catch (_) { return {}; }
  })();
  const view = Object.assign({ search: "", sort: "usage", open: [] }, saved);
  const open = new Set(view.open);
  const saveView = () => {
    view.open = [...open];
    sessionStorage.setItem(VIEW_KEY, JSON.stringify(view));
  };

  // --- fetching ----------------------------------------------------------------------------------
  async function get(path) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const response = await fetch(path, {
        headers, cache: "no-store", credentials: "omit", redirect: "error", signal: abort.signal,
      });
      let body = null;
      try { body = await response.json(); } catch (_) { /* not JSON: reported below */ }
      return { status: response.status, body };
    } finally {
      clearTimeout(timer);
    }
  }

  let inflight = null;
  let timer = null;
  let lastOk = null;
  let failures = 0;
  let latest = null;  // the last good answer, redrawn when the search or sort changes

  function refresh() {
    if (inflight) return inflight;
    clearTimeout(timer);
    if (document.hidden) {  // a background tab asks nothing; see "visibilitychange" below
      if (document.body.dataset.state === "ok") $("status").textContent += " · paused while hidden";
      return Promise.resolve();
    }
    inflight = (async () => {
      let again = true;
      try {
        const [state, ready] = await Promise.all([get("/debug/state"), get("/readyz")]);
        if (state.status === 401 || ready.status === 401) {
          again = false;
          unauthorized((state.body && state.body.error) || "token refused");
          return;
        }
        const shaped = state.body && (Array.isArray(state.body.users) || Array.isArray(state.body.workers));
        if (state.status !== 200 || !shaped) {
          const why = state.body && state.body.error ? ": " + state.body.error : "";
          throw Object.assign(new Error(`HTTP ${state.status}${why}`), { answered: true });
        }
        latest = { state: normalize(state.body), ready: ready.body || {}, readyStatus: ready.status };
        failures = 0;
        lastOk = new Date();
        draw();
        setStatus("ok", `updated ${lastOk.toLocaleTimeString()} · every ${everyMs / 1000}s`);
      } catch (error) {
        failures += 1;
        const why = error.name === "AbortError" ? `no answer in ${TIMEOUT_MS / 1000}s` : error.message;
        const since = lastOk ? `; showing data from ${lastOk.toLocaleTimeString()}` : "";
        if (error.answered) setStatus("error", `the daemon answered but gave no state (${why})${since}`);
        else setStatus("unreachable", `cannot reach the daemon (${why}), ${failures} failed${since}`);
      } finally {
        document.body.dataset.generation = String(Number(document.body.dataset.generation) + 1);
        inflight = null;
        if (again) timer = setTimeout(refresh, everyMs);
      }
    })();
    return inflight;
  }

  function setStatus(state, text) {
    document.body.dataset.state = state;
    $("status").textContent = text;
  }

  function unauthorized(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    latest = null;
    clearData();
    setStatus("unauthorized", `no data: ${message}`);
    $("login").hidden = false;
    $("token").focus();
  }

  // One shape for the drawing, whatever /debug/state gave: one tree ({"root", "users"}), or
  // several workers ({"workers": [{"worker_id", "root", "users"} or {"worker_id", "error"}]}),
  // whose users are tagged with their worker. Ages and idle times are read against the
  // daemon's own clock (root.now) when it says it, so a laptop's clock does not matter.
  function normalize(state) {
    const here = Date.now() / 1000;
    const clock = (root) => (typeof root.now === "number" ? root.now : here);
    if (!Array.isArray(state.workers)) {
      const root = state.root || {};
      const users = (state.users || []).map((user) => Object.assign({ now: clock(root) }, user));
      return { roots: [root], users, workers: null };
    }
    const roots = [];
    const users = [];
    const workers = [];
    state.workers.forEach((worker, index) => {
      const id = String(worker.worker_id ?? worker.worker ?? worker.id ?? index + 1);
      const root = worker.root || {};
      if (worker.root) roots.push(Object.assign({ worker_id: id }, root));
      const listed = worker.users || [];
      for (const user of listed) users.push(Object.assign({ now: clock(root), worker: id }, user));
      workers.push({ id, root, users: listed.length, error: worker.error });
    });
    if (!roots.length) roots.push(state.root || {});
    return { roots, users, workers };
  }

  // --- drawing -----------------------------------------------------------------------------------
  const rows = new Map();  // user_id (+ worker) -> {body, cells, conns: Map(websocket_id -> tr)}
  const num = (value) => (typeof value === "number" ? value : 0);
  const rank = (level) => Math.max(0, LEVELS.indexOf(level));
  const share = (user) => (num(user.limit) ? num(user.used) / user.limit : 0);

  function duration(seconds) {
    if (!Number.isFinite(seconds)) return "?";
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
  }

  function levelBadge(target, level) {
    target.className = "lvl lvl-" + (LEVELS.includes(level) ? level : "unknown");
    target.textContent = level || "?";
  }

  function draw() {
    const { state, ready, readyStatus } = latest;
    drawNode(state, ready, readyStatus);
    drawUsers(state);
  }

  const sum = (roots, field) => roots.reduce((total, root) => total + num(root[field]), 0);
  const worstLevel = (roots) => roots.map((r) => r.node_level).sort((a, b) => rank(b) - rank(a))[0];

  // With workers, each worker's tree has its own node cap: the node's slots are the sum of
  // the workers' slots of the sum of their caps, and its level the worst of theirs.
  function drawNode(state, ready, readyStatus) {
    const roots = state.roots;
    const used = sum(roots, "node_used");
    const limit = sum(roots, "node_limit");
    const worst = worstLevel(roots);
    const ids = [...new Set(roots.map((r) => r.node_id).filter(Boolean))];
    $("node-id").textContent = ids.join(" · ") + (state.workers ? ` · ${state.workers.length} workers` : "");
    levelBadge($("node-level"), worst);
    $("node-slots").textContent = `${used} / ${limit}`;
    $("node-bar").style.width = `${limit ? Math.min(100, (100 * used) / limit) : 0}%`;  // CSSOM: CSP-safe
    $("node-bar").className = "fill lvl-" + worst;
    $("node-users").textContent = String(state.users.length);
    const counts = $("node-levels");
    counts.replaceChildren();
    for (const level of LEVELS) {
      const n = roots.reduce((total, r) => total + num((r.levels || {})[level]), 0);
      if (!n) continue;
      const badge = el("span");
      levelBadge(badge, level);
      badge.textContent = `${level} ${n}`;
      counts.append(badge, " ");
    }
    if (!counts.childNodes.length) counts.textContent = "no users";
    drawReadiness(ready, readyStatus);
    const ledgers = [...new Set(roots.map((r) => r.ledger || "?"))].join(", ");
    $("node-ledger").textContent = `${ledgers}, ${sum(roots, "slots_held")} slots held`;
    $("node-threads").textContent = roots.map((r) => r.threads ?? "?").join(" + ");
    $("node-restarts").textContent = String(sum(roots, "supervisor_restarts"));
    drawWorkers(state.workers);
    drawAlerts(roots);
  }

  // A reason is a string today; an object ({"id", "reason"} or the like) is shown by its parts.
  function reasonText(reason) {
    if (typeof reason !== "object" || reason === null) return String(reason);
    const parts = [reason.id ?? reason.trigger, reason.reason ?? reason.message ?? reason.detail];
    const shown = parts.filter((part) => part !== undefined && part !== null).join(": ");
    return shown || JSON.stringify(reason);
  }

  function drawReadiness(ready, readyStatus) {
    const readiness = $("node-ready");
    readiness.replaceChildren();
    if (ready.ready === true) {
      readiness.append(el("span", "ready", "ready"));
      return;
    }
    readiness.append(el("span", "notready", `not ready (HTTP ${readyStatus})`));
    const reasons = el("ul");
    for (const reason of ready.reasons || [ready.error || "no reason given"]) {
      reasons.append(el("li", "", reasonText(reason)));
    }
    readiness.append(reasons);
  }

  function drawWorkers(workers) {
    $("workers").hidden = !workers;
    const rowsOut = (workers || []).map((worker) => {
      const tr = el("tr", worker.error ? "down" : "");
      tr.dataset.worker = worker.id;
      const level = el("td");
      const badge = el("span");
      levelBadge(badge, worker.root.node_level);
      level.append(worker.error ? el("span", "", "down") : badge);
      const slots = worker.error ? "" : `${num(worker.root.node_used)} / ${num(worker.root.node_limit)}`;
      tr.append(el("td", "mono", worker.id), level, el("td", "num", slots),
        el("td", "num", String(worker.users)), el("td", "num", String(worker.root.threads ?? "")),
        el("td", "", worker.error ? String(worker.error) : worker.root.ledger || "?"));
      return tr;
    });
    $("worker-rows").replaceChildren(...rowsOut);
  }

  function drawAlerts(roots) {
    const alerts = roots.flatMap((r) => (r.alerts || []).map((alert) => Object.assign({ worker: r.worker_id }, alert)))
      .sort((a, b) => num(a.at) - num(b.at)).slice(-20);
    $("alert-count").textContent = String(alerts.length);
    $("alert-list").replaceChildren(...alerts.reverse().map((alert) => {
      const when = typeof alert.at === "number" ? new Date(alert.at * 1000).toLocaleTimeString() : "?";
      const scope = alert.user_id ? `user ${alert.user_id}` : alert.scope || "?";
      const where = alert.worker ? ` (worker ${alert.worker})` : "";
      const item = el("li", "", `${when}  ${scope}${where}  ${alert.from} → `);
      const to = el("span");
      levelBadge(to, alert.to);
      item.append(to);
      return item;
    }));
  }

  function makeRow(key, user) {
    const body = el("tbody", "user");
    body.dataset.user = user.user_id;
    const summary = el("tr", "summary");
    const toggle = el("button", "open");
    toggle.type = "button";
    toggle.setAttribute("aria-label", "connections of " + user.user_id);
    toggle.addEventListener("click", () => {
      const entry = rows.get(key);
      if (open.has(key)) open.delete(key); else open.add(key);
      saveView();
      if (latest && open.has(key)) drawUsers(latest.state);  // its connections, drawn now
      entry.detail.hidden = !open.has(key);
      toggle.setAttribute("aria-expanded", String(open.has(key)));
    });
    const cells = {
      toggle: el("td", "toggle"), user: el("td", "user"), used: el("td", "num"), level: el("td"),
      pool: el("td", "num"), restarts: el("td", "num"), cluster: el("td", "num col-cluster"),
      worker: el("td", "col-worker"),
    };
    cells.toggle.append(toggle);
    cells.usedText = el("span");
    cells.bar = el("span", "fill");
    const bar = el("span", "bar");
    bar.append(cells.bar);
    cells.used.append(cells.usedText, " ", bar);
    cells.badge = el("span");
    cells.level.append(cells.badge);
    summary.append(cells.toggle, cells.user, cells.used, cells.level, cells.pool, cells.restarts,
      cells.cluster, cells.worker);
    const detail = el("tr", "conns");
    const cell = el("td");
    cell.colSpan = 8;
    const table = el("table", "conn-table");
    const head = el("tr");
    for (const name of ["websocket", "thread", "state", "age", "idle", "in", "out", "queued", "restarts"]) {
      head.append(el("th", "", name));
    }
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    table.append(thead, tbody);
    cell.append(table);
    detail.append(cell);
    body.append(summary, detail);
    return { body, cells, toggle, detail, tbody, conns: new Map() };
  }

  function fillRow(entry, key, user) {
    const c = entry.cells;
    c.user.textContent = user.user_id;
    c.usedText.textContent = `${num(user.used)}/${num(user.limit)}`;
    c.bar.style.width = `${Math.min(100, 100 * share(user))}%`;
    c.bar.className = "fill lvl-" + user.level;
    levelBadge(c.badge, user.level);
    c.pool.textContent = String(num(user.pool_idle));
    c.restarts.textContent = String(num(user.restarts));
    c.cluster.textContent = `${user.cluster_used ?? "?"}/${num(user.limit)}`;
    c.worker.textContent = user.worker ?? "";
    if (user.error) c.user.textContent = `${user.user_id} (${user.error})`;
    const isOpen = open.has(key);
    entry.detail.hidden = !isOpen;
    entry.toggle.setAttribute("aria-expanded", String(isOpen));
    c.user.title = `${(user.managers || []).length} connection(s)`;
    if (!isOpen) return;  // a closed row's connections are drawn when it opens
    // the connections, keyed by websocket id: rows are updated, added and removed in place
    const managers = user.managers || [];
    const seen = new Set();
    for (const manager of managers) {
      const id = manager.websocket_id;
      seen.add(id);
      let tr = entry.conns.get(id);
      if (!tr) {
        tr = el("tr", "conn");
        tr.dataset.websocket = id;
        for (let i = 0; i < 9; i++) tr.append(el("td"));
        entry.conns.set(id, tr);
      }
      const values = [
        id, manager.thread_id, manager.state + (manager.holds_slot === false ? " (no slot)" : ""),
        duration(user.now - manager.connected_at), duration(user.now - manager.last_activity),
        num(manager.messages_in), num(manager.messages_out), num(manager.outbound_queued),
        num(manager.restarts),
      ];
      values.forEach((value, i) => { tr.cells[i].textContent = String(value); });
      tr.classList.toggle("noslot", manager.holds_slot === false);
      entry.tbody.append(tr);  // appending an existing row moves it: keeps the daemon's order
    }
    for (const [id, tr] of entry.conns) {
      if (!seen.has(id)) { tr.remove(); entry.conns.delete(id); }
    }
    if (!managers.length) {
      if (!entry.none) { entry.none = el("tr"); const td = el("td", "empty", "no connections"); td.colSpan = 9; entry.none.append(td); }
      entry.tbody.append(entry.none);
    } else if (entry.none) {
      entry.none.remove();
    }
  }

  function drawUsers(state) {
    const table = $("user-table");
    table.classList.toggle("cluster", state.roots.some((r) => r.ledger === "redis"));
    const workers = (state.workers && state.workers.length > 1) || new Set(state.users.map((u) => u.worker)).size > 1;
    table.classList.toggle("workers", workers);
    const query = view.search.trim().toLowerCase();
    const order = {
      usage: (a, b) => share(b) - share(a) || num(b.used) - num(a.used),
      level: (a, b) => rank(b.level) - rank(a.level) || share(b) - share(a),
      user: () => 0,
    }[view.sort] || (() => 0);
    const users = [...state.users].sort((a, b) => order(a, b) || String(a.user_id).localeCompare(String(b.user_id)));
    const present = new Set();
    let shown = 0;
    let position = table.tHead;
    for (const user of users) {
      const key = user.worker ? `${user.worker}/${user.user_id}` : String(user.user_id);
      present.add(key);
      let entry = rows.get(key);
      if (!entry) { entry = makeRow(key, user); rows.set(key, entry); }
      const match = !query || String(user.user_id).toLowerCase().includes(query);
      const visible = match && shown < MAX_ROWS;
      entry.body.hidden = !visible;
      if (match) shown += 1;
      if (!visible) continue;
      fillRow(entry, key, user);
      if (position.nextSibling !== entry.body) position.after(entry.body);  // move only if out of place
      position = entry.body;
    }
    for (const [key, entry] of rows) {
      if (!present.has(key)) { entry.body.remove(); rows.delete(key); }
    }
    const matching = query ? users.filter((u) => String(u.user_id).toLowerCase().includes(query)).length : users.length;
    const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    $("shown").textContent = query ? `${matching} of ${plural(users.length, "user")} match` : plural(users.length, "user");
    $("more").hidden = matching <= MAX_ROWS;
    $("more").textContent = `${matching - MAX_ROWS} more not drawn: narrow the search`;
  }

  function clearData() {
    for (const entry of rows.values()) entry.body.remove();
    rows.clear();
    for (const id of ["node-id", "node-slots", "node-users", "node-levels", "node-ready", "node-ledger",
      "node-threads", "node-restarts", "shown", "worker-rows", "alert-list"]) $(id).replaceChildren();
    $("alert-count").textContent = "0";
    $("workers").hidden = true;
  }

  // --- controls ----------------------------------------------------------------------------------
  $("search").value = view.search;
  $("sort").value = view.sort;
  $("search").addEventListener("input", (event) => {
    view.search = event.target.value;
    saveView();
    if (latest) drawUsers(latest.state);
  });
  $("sort").addEventListener("change", (event) => {
    view.sort = event.target.value;
    saveView();
    if (latest) drawUsers(latest.state);
  });
  $("refresh").addEventListener("click", () => refresh());
  $("forget").addEventListener("click", () => unauthorized("token forgotten"));
  document.addEventListener("visibilitychange", () => {  // back to the tab: fresh data at once
    if (!document.hidden && document.body.dataset.state !== "unauthorized") refresh();
  });
  window.addEventListener("hashchange", () => {  // a new #token=… pasted into this tab
    if (!tokenFromHash()) return;
    token = sessionStorage.getItem(TOKEN_KEY);
    $("login").hidden = true;
    setStatus("starting", "connecting…");
    refresh();
  });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    setStatus("starting", "connecting…");
    refresh();
  });

  refresh();
})();
