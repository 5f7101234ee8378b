// wsplus admin console: plain JavaScript, no build step, no third party.
// Every piece of data comes from the admin API with the token kept in this
// tab's sessionStorage (never persistent storage, a cookie or the URL).
"use strict";

(() => {
  const TOKEN_KEY = "wsplus.admin.token";
  const POLL_MS = 2000;
  const HISTORY = 90; // points per chart (3 minutes at 2 s)
  const LIMITS = ["max_connections", "rate_limit_per_s", "max_channels"];
  const HISTORY_ROWS = 10; // newest publications shown for a channel

  const $ = (id) => document.getElementById(id);
  const state = {
    timer: null,
    last: null,           // previous stats sample {t, in, out}
    history: { connections: [], in: [], out: [] },
    tenant: null,         // tenant whose sessions are shown
    listeners: [],        // GET /admin/v1/listeners
    space: null,          // channel space shown {listener, scope, tenant}
    channel: null,        // channel whose detail is shown
    edits: {},            // "tenant/field" -> value typed but not saved
    polls: 0,
  };
  window.wsplusConsole = state;

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const init = { method, headers: { Authorization: "Bearer " + token() } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
    if (res.status === 401) {
      logout("The token was refused.");
      throw new ApiError(401, "unauthorized");
    }
    if (!res.ok) {
      throw new ApiError(res.status, (data && data.error) || res.statusText);
    }
    return data;
  }

  // ---- login ----------------------------------------------------------------

  function showApp(on) {
    $("login").hidden = on;
    $("app").hidden = !on;
    $("nav").hidden = !on;
  }

  function logout(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearInterval(state.timer);
    state.timer = null;
    showApp(false);
    $("login-error").textContent = message || "";
  }

  async function start() {
    try {
      await api("GET", "/admin/v1/stats");
    } catch (e) {
      if (e.status !== 401) logout("The admin API answered: " + e.message);
      return;
    }
    showApp(true);
    $("login-error").textContent = "";
    loadListeners();
    await poll();
    state.timer = setInterval(poll, POLL_MS);
  }

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("logout").addEventListener("click", () => logout());

  // ---- polling --------------------------------------------------------------

  async function poll() {
    try {
      await Promise.all([refreshStats(), refreshTenants(), refreshBridges(), refreshCluster()]);
      if (state.tenant !== null) await refreshSessions();
      if (state.space !== null) await refreshChannels();
      $("status").textContent = "";
      state.polls += 1;
    } catch (e) {
      if (e.status !== 401) $("status").textContent = "Refresh failed: " + e.message;
    }
  }

  function push(series, v) {
    series.push(v);
    if (series.length > HISTORY) series.shift();
  }

  async function refreshStats() {
    const s = await api("GET", "/admin/v1/stats");
    state.stats = s;
    const set = (id, v) => { $(id).textContent = v; };
    set("s-connections", s.connections);
    set("s-tenants", s.tenants);
    set("s-in", s.messages_in);
    set("s-out", s.messages_out);
    set("s-dropped", s.dropped);
    set("s-rejected", Object.values(s.rejected || {}).reduce((a, b) => a + b, 0));
    set("s-uptime", duration(s.uptime_s));
    const now = performance.now();
    push(state.history.connections, s.connections);
    if (state.last) {
      const dt = Math.max((now - state.last.t) / 1000, 0.001);
      push(state.history.in, Math.max(0, (s.messages_in - state.last.in) / dt));
      push(state.history.out, Math.max(0, (s.messages_out - state.last.out) / dt));
    }
    state.last = { t: now, in: s.messages_in, out: s.messages_out };
    drawChart($("chart-connections"), [{ values: state.history.connections, color: "#2f6fde" }]);
    drawChart($("chart-rates"), [
      { values: state.history.in, color: "#2f6fde" },
      { values: state.history.out, color: "#1aa36f" },
    ]);
  }

  function duration(s) {
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  // A line chart on a canvas: one polyline per series, a shared y scale
  // starting at 0, the maximum written in the corner.
  function drawChart(canvas, series) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== w * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const max = Math.max(1, ...series.flatMap((s) => s.values));
    const pad = 8, top = 18;
    ctx.strokeStyle = "#e4e8ef";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = top + ((h - top - pad) * i) / 4;
      ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - pad, y); ctx.stroke();
    }
    ctx.fillStyle = "#6b7385";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText("max " + (max >= 10 ? Math.round(max) : max.toFixed(1)), pad, 12);
    for (const s of series) {
      if (s.values.length === 0) continue;
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      s.values.forEach((v, i) => {
        const x = w - pad - ((s.values.length - 1 - i) * (w - 2 * pad)) / (HISTORY - 1);
        const y = h - pad - (v / max) * (h - top - pad);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    }
  }

  // ---- tenants --------------------------------------------------------------

  async function refreshTenants() {
    const [live, records] = await Promise.all([
      api("GET", "/admin/v1/tenants"),
      api("GET", "/admin/v1/tenant-settings"),
    ]);
    const rows = new Map();
    const row = (id) => {
      if (!rows.has(id)) rows.set(id, { id, connections: 0, record: null });
      return rows.get(id);
    };
    for (const t of live) row(t.tenant).connections += t.connections;
    for (const r of records) row(r.id).record = r;
    // The tenant whose sessions are open stays listed after its last one left.
    if (state.tenant !== null) row(state.tenant);
    const sorted = [...rows.values()].sort((a, b) => a.id.localeCompare(b.id));
    // Rebuild only when something changed: a row under the pointer stays put.
    const key = JSON.stringify([sorted, state.tenant]);
    if (key === state.tenantsKey) return;
    state.tenantsKey = key;
    renderTenants(sorted);
  }

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    for (const c of children) e.append(c);
    return e;
  }

  function button(label, cls, onclick) {
    return el("button", { type: "button", className: cls, textContent: label, onclick });
  }

  function renderTenants(rows) {
    // Keep the field being typed in: rows are rebuilt on every poll.
    const focused = document.activeElement;
    const focusKey = focused && focused.dataset ? focused.dataset.key : null;
    const body = $("tenant-rows");
    body.replaceChildren();
    for (const t of rows) {
      const r = t.record;
      const enabled = r ? r.enabled : true;
      const tr = el("tr", { className: (t.id === state.tenant ? "selected " : "") + (enabled ? "" : "disabled") });
      tr.dataset.tenant = t.id;
      const inputs = LIMITS.map((f) => {
        const key = t.id + "/" + f;
        const saved = r && r[f] !== undefined ? String(r[f]) : "";
        const input = el("input", { type: "number", min: "0", placeholder: "listener" });
        input.value = key in state.edits ? state.edits[key] : saved;
        input.dataset.key = key;
        input.dataset.field = f;
        input.oninput = () => { state.edits[key] = input.value; };
        return input;
      });
      const actions = el("td", {},
        button("Save", "save", () => saveLimits(t, inputs)),
        " ",
        button(enabled ? "Disable" : "Enable", enabled ? "toggle danger" : "toggle", () => setEnabled(t, !enabled)),
        " ",
        button("Sessions", "sessions", () => { state.tenant = t.id; refreshSessions(); refreshTenants(); }),
      );
      if (r && r.source === "api") {
        actions.append(" ", button("Reset", "reset", () => act(api("DELETE", settingsPath(t.id)))));
      }
      tr.append(
        el("td", { textContent: t.id }),
        el("td", { textContent: String(t.connections), className: "connections" }),
        el("td", { textContent: r ? (enabled ? "yes" : "no") : "yes (not registered)" }),
        ...inputs.map((i) => el("td", {}, i)),
        el("td", { textContent: r ? r.source : "–" }),
        actions,
      );
      body.append(tr);
    }
    if (focusKey) {
      const again = body.querySelector(`input[data-key="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
  }

  const settingsPath = (id) => "/admin/v1/tenants/" + encodeURIComponent(id) + "/settings";

  async function act(promise) {
    try {
      await promise;
      $("status").textContent = "";
    } catch (e) {
      if (e.status !== 401) $("status").textContent = e.message;
    }
    await poll();
  }

  function saveLimits(t, inputs) {
    const body = {};
    for (const i of inputs) {
      const v = i.value.trim();
      if (v !== "") body[i.dataset.field] = Number(v);
      else if (t.record) body[i.dataset.field] = null; // back to the listener's
      delete state.edits[i.dataset.key];
    }
    return act(t.record ? api("PATCH", settingsPath(t.id), body) : api("PUT", settingsPath(t.id), body));
  }

  function setEnabled(t, enabled) {
    return act(t.record
      ? api("PATCH", settingsPath(t.id), { enabled })
      : api("PUT", settingsPath(t.id), { enabled }));
  }

  $("register-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = $("register-id").value.trim();
    $("register-id").value = "";
    act(api("PUT", settingsPath(id), {}));
  });

  // ---- sessions -------------------------------------------------------------

  async function refreshSessions() {
    const tenant = state.tenant;
    const sessions = await api("GET", "/admin/v1/tenants/" + encodeURIComponent(tenant) + "/sessions");
    if (tenant !== state.tenant) return;
    const key = JSON.stringify([tenant, sessions]);
    if (key === state.sessionsKey) return;
    state.sessionsKey = key;
    $("sessions").hidden = false;
    $("sessions-tenant").textContent = tenant;
    $("session-rows").replaceChildren(...sessions.map((s) => {
      const tr = el("tr", {},
        el("td", { textContent: s.id, className: "id" }),
        el("td", { textContent: s.listener }),
        el("td", { textContent: s.subject ?? "–" }),
        el("td", { textContent: s.remote ?? "–" }),
        el("td", { textContent: new Date(s.connected_at * 1000).toLocaleTimeString() }),
        el("td", { textContent: String(s.messages_in) }),
        el("td", { textContent: String(s.messages_out) }),
        el("td", {}, button("Kick", "kick danger", () =>
          act(api("DELETE", "/admin/v1/sessions/" + encodeURIComponent(s.id)))))
      );
      tr.dataset.session = s.id;
      return tr;
    }));
  }

  // ---- channels -------------------------------------------------------------

  // The query naming a channel space: the listener, and the tenant on a
  // tenant-scope listener.
  function spaceQuery(space, extra) {
    const q = new URLSearchParams({ listener: space.listener });
    if (space.tenant !== null) q.set("tenant", space.tenant);
    for (const [k, v] of Object.entries(extra || {})) q.set(k, String(v));
    return q.toString();
  }

  const channelPath = (name, rest) =>
    "/admin/v1/channels/" + encodeURIComponent(name) + (rest || "");

  function fillChannelListeners() {
    const channels = state.listeners.filter((l) => l.mode === "channels");
    $("ch-listener").replaceChildren(...channels.map((l) =>
      el("option", { value: l.path, textContent: `${l.path} (${l.scope})` })));
    $("channels-form").querySelector("button").disabled = channels.length === 0;
    if (channels.length === 0) {
      $("ch-listener").append(el("option", { textContent: "no channels-mode listener" }));
    }
    scopeChanged();
  }

  function scopeChanged() {
    const l = state.listeners.find((x) => x.path === $("ch-listener").value);
    $("ch-tenant").disabled = !l || l.scope === "global";
  }
  $("ch-listener").addEventListener("change", scopeChanged);

  $("channels-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const l = state.listeners.find((x) => x.path === $("ch-listener").value);
    if (!l) return;
    const tenant = l.scope === "global" ? null : $("ch-tenant").value.trim();
    if (tenant === "") {
      $("status").textContent = "A tenant-scope listener needs a tenant.";
      return;
    }
    state.space = { listener: l.path, scope: l.scope, tenant };
    state.channel = null;
    state.channelsKey = state.channelKey = null;
    $("channel-detail").hidden = true;
    refreshNow(refreshChannels);
  });

  // Refreshes one view at once (not waiting for the next poll).
  function refreshNow(refresh) {
    refresh().then(() => { $("status").textContent = ""; }, (e) => {
      if (e.status !== 401) $("status").textContent = e.message;
    });
  }

  async function refreshChannels() {
    const space = state.space;
    const rows = await api("GET", "/admin/v1/channels?" + spaceQuery(space));
    if (space !== state.space) return;
    const key = JSON.stringify([space, rows, state.channel]);
    if (key !== state.channelsKey) {
      state.channelsKey = key;
      renderChannels(space, rows);
    }
    if (state.channel !== null) await refreshChannel();
  }

  function renderChannels(space, rows) {
    $("channel-list").hidden = false;
    $("ch-space").textContent = space.listener + (space.tenant !== null ? " / " + space.tenant : "");
    $("channel-rows").replaceChildren(...rows.map((c) => {
      const tr = el("tr", { className: c.channel === state.channel ? "selected" : "" },
        el("td", { textContent: c.channel, className: "id" }),
        el("td", { textContent: String(c.subscribers), className: "subscribers" }),
        el("td", {},
          button("Details", "details", () => {
            state.channel = c.channel;
            state.channelKey = null;
            refreshNow(refreshChannels);
          }),
          " ",
          button("Publish here", "publish-here", () => publishTo(space, c.channel))));
      tr.dataset.channel = c.channel;
      return tr;
    }));
    if (rows.length === 0) {
      $("channel-rows").append(el("tr", {}, el("td", { colSpan: 3, className: "hint", textContent: "no channel has subscribers" })));
    }
  }

  // The detail of the selected channel: its subscribers, and presence and
  // the newest history entries when the listener keeps them (the detail then
  // has `presence` and `history`).
  async function refreshChannel() {
    const space = state.space, name = state.channel;
    const d = await api("GET", channelPath(name, "?" + spaceQuery(space)));
    let history = null;
    if (d.history) {
      try {
        history = await api("GET", channelPath(name, "/history?" + spaceQuery(space, { limit: HISTORY_ROWS })));
      } catch (e) {
        if (e.status === 401) throw e;
        history = { error: e.message };
      }
    }
    if (space !== state.space || name !== state.channel) return;
    const key = JSON.stringify([d, history]);
    if (key === state.channelKey) return;
    state.channelKey = key;
    renderChannel(d, history);
  }

  function renderChannel(d, history) {
    $("channel-detail").hidden = false;
    $("cd-name").textContent = d.channel;
    $("cd-subscribers").textContent = String(d.subscribers);
    const h = d.history;
    $("cd-stream").textContent = h ? ` — stream epoch ${h.epoch}, offset ${h.offset}, ${h.size} kept` : "";
    const clients = Array.isArray(d.presence) ? d.presence : d.presence && d.presence.clients;
    $("cd-presence").hidden = !Array.isArray(clients);
    $("presence-rows").replaceChildren(...(clients || []).map((c) => {
      const tr = el("tr", {},
        el("td", { textContent: c.id, className: "id" }),
        el("td", { textContent: c.subject ?? "–" }));
      tr.dataset.client = c.id;
      return tr;
    }));
    $("cd-history").hidden = history === null;
    if (history === null) return;
    if (history.error !== undefined) {
      $("history-rows").replaceChildren(el("tr", {}, el("td", { colSpan: 3, className: "error", textContent: history.error })));
      return;
    }
    const pubs = (Array.isArray(history) ? history : history.publications || []).slice();
    pubs.sort((a, b) => (b.offset ?? 0) - (a.offset ?? 0)); // newest first
    $("history-rows").replaceChildren(...pubs.map((p) => {
      const from = p._session ? (p._session.subject ?? p._session.id ?? "admin") : "–";
      const tr = el("tr", {},
        el("td", { textContent: String(p.offset ?? "–") }),
        el("td", { textContent: JSON.stringify(p.data), className: "data" }),
        el("td", { textContent: String(from) }));
      tr.dataset.offset = String(p.offset);
      return tr;
    }));
    if (pubs.length === 0) {
      $("history-rows").append(el("tr", {}, el("td", { colSpan: 3, className: "hint", textContent: "nothing kept" })));
    }
  }

  // Fills the publish form to target a channel of a space.
  function publishTo(space, channel) {
    $("pub-listener").value = space.listener;
    $("pub-scope").value = space.scope;
    $("pub-tenant").value = space.tenant ?? "";
    $("pub-session").value = "";
    $("pub-channel").value = channel;
    $("publish").scrollIntoView();
    $("pub-payload").focus();
  }

  // ---- publish --------------------------------------------------------------

  async function loadListeners() {
    try {
      state.listeners = await api("GET", "/admin/v1/listeners");
      $("pub-listener").replaceChildren(...state.listeners.map((l) =>
        el("option", { value: l.path, textContent: `${l.path} (${l.mode}, ${l.scope})` })));
      fillChannelListeners();
    } catch (e) {
      if (e.status !== 401) $("status").textContent = "Listeners: " + e.message;
    }
  }

  $("publish-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("pub-payload").value;
    let payload;
    try { payload = JSON.parse(text); } catch (_) { payload = text; }
    const body = { listener: $("pub-listener").value, scope: $("pub-scope").value, payload };
    const tenant = $("pub-tenant").value.trim();
    const session = $("pub-session").value.trim();
    const channel = $("pub-channel").value.trim();
    if (tenant && body.scope !== "global") body.tenant = tenant;
    if (session && body.scope === "session") body.session = session;
    if (channel) body.channel = channel;
    try {
      const r = await api("POST", "/admin/v1/publish", body);
      $("pub-result").textContent = "delivered to " + r.delivered + " session(s)" +
        (r.offset !== undefined ? ", offset " + r.offset : "");
    } catch (e) {
      $("pub-result").textContent = "refused: " + e.message;
    }
  });

  // ---- bridges and cluster --------------------------------------------------

  async function refreshBridges() {
    const bridges = await api("GET", "/admin/v1/bridges");
    $("bridge-rows").replaceChildren(...bridges.map((b) => el("tr", {},
      el("td", { textContent: b.name }),
      el("td", { textContent: b.url }),
      el("td", { textContent: b.connected ? "yes" : "no" }),
      el("td", { textContent: String(b.reconnects) }),
      el("td", { textContent: String(b.messages_in) }),
      el("td", { textContent: String(b.messages_out) }),
      el("td", { textContent: b.last_error ?? "–" }),
    )));
    if (bridges.length === 0) {
      $("bridge-rows").append(el("tr", {}, el("td", { colSpan: 7, className: "hint", textContent: "no bridges configured" })));
    }
  }

  async function refreshCluster() {
    const res = await fetch("/readyz");
    const body = await res.json();
    const c = body.cluster;
    $("cluster").textContent = c
      ? `node ${c.node} — ${c.state}; published ${c.published}, received ${c.received}, lost ${c.lost}, connects ${c.connects}`
      : "single node (cluster.backend = \"local\")";
  }

  if (token()) start(); else showApp(false);
})();
