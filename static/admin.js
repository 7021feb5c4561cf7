/* The admin dashboard (/admin): polls the backend API's /api/stats and
   /api/rooms with the operator's key and shows them, with messages/s and
   deliveries/s over the last 10 minutes drawn by uPlot (static/vendor/).
   Rates are worked out here from the server's monotonic counters: the
   server keeps no time series. docs/admin.md describes every number. */
"use strict";

(function () {
  const KEY_STORAGE = "wshub.admin.key";
  const POLL_MS = 1500;
  const WINDOW_S = 600; // the chart's span: 10 minutes
  const ROOMS_SHOWN = 10;
  const CHART_HEIGHT = 220;

  const $ = (id) => document.getElementById(id);
  const state = {
    key: null,
    timer: null,
    previous: null, // the last sample: {t, published, deliveries}
    xs: [], // seconds since the epoch, as uPlot wants
    messages: [],
    deliveries: [],
    chart: null,
  };
  window.hubAdmin = state; // for the browser tests and for a curious operator

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function notice(text) {
    $("notice").textContent = text || "";
    show("notice", Boolean(text));
  }

  function badge(kind, text) {
    $("conn").dataset.state = kind;
    $("conn").textContent = text;
  }

  async function api(path) {
    const headers = state.key ? { Authorization: "Bearer " + state.key } : {};
    const response = await fetch(path, { headers, cache: "no-store" });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null; // not JSON: reported by status below
    }
    return { status: response.status, body };
  }

  function detail(body) {
    return body && body.error && body.error.detail ? body.error.detail : "";
  }

  // -- signing in ------------------------------------------------------------

  async function begin() {
    if (document.body.dataset.api === "off") {
      apiOff(); // the server said so in the page: no request needed
      return;
    }
    state.key = sessionStorage.getItem(KEY_STORAGE);
    if (state.key === null) {
      refused(false, null); // ask for the key
      return;
    }
    let answer;
    try {
      answer = await api("/api/stats");
    } catch (_) {
      badge("closed", "Server unreachable");
      notice("Cannot reach the server; trying again.");
      setTimeout(begin, POLL_MS * 2);
      return;
    }
    if (answer.status === 404) {
      apiOff();
    } else if (answer.status === 401) {
      refused(state.key !== null, answer.body);
    } else if (answer.status === 200) {
      signedIn(answer.body);
    } else {
      badge("closed", "Error " + answer.status);
      notice("The server answered " + answer.status + " " + detail(answer.body));
    }
  }

  function apiOff() {
    badge("closed", "API off");
    show("login", false);
    show("dashboard", false);
    show("api-off", true);
  }

  function refused(hadKey, body) {
    stopPolling();
    sessionStorage.removeItem(KEY_STORAGE);
    state.key = null;
    badge("closed", "Not signed in");
    show("dashboard", false);
    show("forget", false);
    show("login", true);
    if (hadKey) {
      notice(
        "That key was refused (401 unauthorized): it is not one of the server's --api_key keys. " +
          detail(body),
      );
      $("key").value = "";
      $("key").focus();
    }
  }

  function signedIn(stats) {
    notice("");
    show("login", false);
    show("api-off", false);
    show("dashboard", true);
    show("forget", true);
    record(stats);
    poll();
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    begin();
  });

  $("forget").addEventListener("click", () => refused(false, null));

  // -- polling ---------------------------------------------------------------

  function stopPolling() {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
  }

  function poll() {
    stopPolling();
    state.timer = setTimeout(tick, POLL_MS);
  }

  async function tick() {
    state.timer = null;
    try {
      const [stats, rooms] = await Promise.all([
        api("/api/stats"),
        api("/api/rooms?limit=" + ROOMS_SHOWN),
      ]);
      if (stats.status === 401 || rooms.status === 401) {
        refused(true, stats.body); // the key was rotated away meanwhile
        return;
      }
      if (stats.status === 404) {
        apiOff(); // restarted without --api_key
        return;
      }
      if (stats.status === 200) record(stats.body);
      if (rooms.status === 200) showRooms(rooms.body.rooms || []);
    } catch (_) {
      badge("reconnecting", "Server unreachable");
    }
    if ($("dashboard").hidden === false) poll();
  }

  // -- numbers ---------------------------------------------------------------

  function count(value) {
    return typeof value === "number" ? value.toLocaleString("en-US") : "–";
  }

  function rate(value) {
    if (value === null || value === undefined) return "–";
    return value >= 100 ? Math.round(value).toLocaleString("en-US") : value.toFixed(1);
  }

  // Per-second rate of a monotonic counter between two samples; null when the
  // server lacks it or restarted (the counter went down).
  function perSecond(now, before, name, seconds) {
    if (!before || typeof now[name] !== "number" || typeof before[name] !== "number") return null;
    const delta = now[name] - before[name];
    return delta >= 0 && seconds > 0 ? delta / seconds : null;
  }

  function record(stats) {
    const t = Date.now() / 1000;
    const sample = { t, published: stats.published, deliveries: stats.deliveries };
    const before = state.previous;
    const seconds = before ? t - before.t : 0;
    const messagesRate = perSecond(sample, before, "published", seconds);
    const deliveriesRate = perSecond(sample, before, "deliveries", seconds);
    state.previous = sample;
    if (before) {
      state.xs.push(t);
      state.messages.push(messagesRate);
      state.deliveries.push(deliveriesRate);
      while (state.xs.length && state.xs[0] < t - WINDOW_S) {
        state.xs.shift();
        state.messages.shift();
        state.deliveries.shift();
      }
      draw();
    }
    showStats(stats, messagesRate, deliveriesRate);
    const degraded = stats.status !== "ok";
    badge(degraded ? "reconnecting" : "open", degraded ? "Degraded" : "Live");
    $("updated").textContent = new Date().toLocaleTimeString();
  }

  function showStats(s, messagesRate, deliveriesRate) {
    $("v-connections").textContent = count(s.connections);
    $("v-kinds").textContent = count(s.hub_connections) + " /ws · " + count(s.echo_connections) + " echo";
    $("v-rooms").textContent = count(s.rooms);
    $("v-memberships").textContent = count(s.memberships) + " memberships";
    $("v-messages-rate").textContent = rate(messagesRate);
    $("v-deliveries-rate").textContent = rate(deliveriesRate);
    $("v-deliveries-note").textContent =
      typeof s.deliveries === "number" ? "to members" : "not counted by this server";
    $("v-slow").textContent = count(s.slow_consumers_dropped);
    $("v-stale").textContent = count(s.stale_evicted);
    const rejections = [
      ["capacity", s.rejected_at_capacity],
      ["per IP", s.rejected_per_ip],
      ["token", s.rejected_unauthorized],
      ["origin", s.rejected_origin],
    ].filter(([, n]) => typeof n === "number");
    $("v-rejected").textContent = count(rejections.reduce((sum, [, n]) => sum + n, 0));
    $("v-rejected-detail").textContent = rejections.map(([k, n]) => k + " " + n).join(" · ");
    const broker = s.broker || {};
    $("v-broker").textContent = (broker.kind || "?") + (broker.connected ? " ✓" : " down");
    $("v-broker").dataset.connected = String(Boolean(broker.connected));
    $("v-node").textContent = "node " + (s.node || "?");
    fillCounts("t-errors", s.errors_by_code, "not counted by this server");
    fillCounts("t-disconnects", s.disconnects_by_code, "not counted by this server");
    fillRows("t-limits", [
      ["Rate limited (refused)", s.rate_limited],
      ["Closed for rate (1008)", s.closed_for_rate],
      ["Closed for ping rate (1008)", s.closed_for_ping_rate],
      ["Tokens expired (4004)", s.tokens_expired],
      ["Ephemeral skipped", s.ephemeral_skipped],
      ["History rooms evicted", s.history_rooms_evicted],
    ].filter(([, n]) => typeof n === "number").map(([k, n]) => [k, count(n)]));
    const nodes = Array.isArray(s.nodes) ? s.nodes : [];
    show("nodes-panel", nodes.length > 0);
    fillRows("t-nodes", nodes.map((n) => [
      n.node || "?",
      count(n.connections),
      count(n.rooms),
      n.broker && n.broker.connected ? "connected" : "down",
    ]));
  }

  function fillRows(id, rows, empty) {
    const body = $(id);
    body.replaceChildren();
    for (const cells of rows) {
      const tr = document.createElement("tr");
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = String(text);
        if (i > 0 && /^[\d,–]+$/.test(String(text))) td.className = "num";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
    if (!rows.length && empty) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 2;
      td.className = "empty";
      td.textContent = empty;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }

  function fillCounts(id, counts, missing) {
    if (!counts || typeof counts !== "object") {
      fillRows(id, [], missing);
      return;
    }
    const rows = Object.entries(counts)
      .sort((a, b) => b[1] - a[1])
      .map(([code, n]) => [code, count(n)]);
    fillRows(id, rows, "none yet");
  }

  function showRooms(rooms) {
    fillRows("t-rooms", rooms.map((r) => [r.room, count(r.member_count)]), "no rooms with members");
  }

  // -- the chart -------------------------------------------------------------

  function chartWidth() {
    return Math.max(200, $("chart").clientWidth);
  }

  function draw() {
    const data = [state.xs, state.messages, state.deliveries];
    if (state.chart === null) {
      state.chart = new uPlot(
        {
          width: chartWidth(),
          height: CHART_HEIGHT,
          scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
          axes: [{}, { size: 56 }],
          series: [
            {},
            { label: "messages/s", stroke: "#3b5bdb", width: 2, spanGaps: false },
            { label: "deliveries/s", stroke: "#2f9e44", width: 2, spanGaps: false },
          ],
        },
        data,
        $("chart"),
      );
    } else {
      state.chart.setData(data);
    }
    $("chart").dataset.points = String(state.xs.length);
  }

  window.addEventListener("resize", () => {
    if (state.chart !== null) state.chart.setSize({ width: chartWidth(), height: CHART_HEIGHT });
  });

  begin();
})();
