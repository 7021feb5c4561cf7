/* The admin dashboard (/admin): polls the backend API's /api/stats and
   /api/rooms with the operator's key and shows them, with messages/s and
   deliveries/s over the last 10 minutes drawn by uPlot (static/vendor/).
   Rates are worked out here from the server's monotonic counters: the
   server keeps no time series. With a shared broker (Redis) every node
   reports itself once a second (`nodes` in /api/stats) and the page shows
   the sum over them, whichever node or worker answers the poll.
   docs/admin.md describes every number. */
"use strict";

(function () {
  const KEY_STORAGE = "wshub.admin.key";
  const POLL_MS = 1500;
  const WINDOW_S = 600; // the chart's span: 10 minutes
  const ROOMS_SHOWN = 10;
  const CHART_HEIGHT = 220;
  const RATE_WINDOW_S = 9; // all-nodes rates: averaged over this long (nodes report each second)
  const RATED = ["published", "deliveries"];
  // The counters summed over the nodes for the all-nodes view (rooms is summed
  // too and says so: a room with members on two nodes counts twice).
  const SUMMED = [
    "connections", "hub_connections", "echo_connections", "rooms", "memberships",
    "published", "deliveries", "slow_consumers_dropped", "stale_evicted",
    "rejected_at_capacity", "rejected_per_ip", "rejected_unauthorized", "rejected_origin",
    "rate_limited", "closed_for_rate", "closed_for_ping_rate", "tokens_expired",
    "ephemeral_skipped", "history_rooms_evicted",
  ];
  const SUMMED_BY_CODE = ["errors_by_code", "disconnects_by_code"];

  const $ = (id) => document.getElementById(id);
  const state = {
    key: null,
    timer: null,
    previous: null, // this node's last sample: {t, published, deliveries}
    view: null, // "node" (one process) or "all" (the sum over `nodes`)
    nodeCounters: new Map(), // node id -> its last {published, deliveries}
    counted: [], // all-nodes view: {t, published, deliveries} summed increments, last RATE_WINDOW_S
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

  // One process: the rates from this node's counters between two polls.
  function nodeRates(stats, t) {
    const sample = { t, published: stats.published, deliveries: stats.deliveries };
    const before = state.view === "node" ? state.previous : null;
    state.previous = sample;
    if (!before) return null;
    const seconds = t - before.t;
    return {
      published: perSecond(sample, before, "published", seconds),
      deliveries: perSecond(sample, before, "deliveries", seconds),
    };
  }

  // The hub as a whole: what each node's counters grew by since the last poll,
  // summed. A node seen for the first time adds nothing yet (its past cannot be
  // placed in time), one that is gone adds nothing, and one whose counters went
  // back (restarted under the same id) adds nothing for that poll: the sum
  // only grows, so no rate is negative and none spikes.
  function hubIncrement(nodes) {
    const step = { published: 0, deliveries: 0 };
    const seen = new Map();
    for (const n of nodes) {
      const before = state.nodeCounters.get(n.node);
      const now = {};
      for (const name of RATED) {
        now[name] = n[name];
        const grown = before && typeof n[name] === "number" && typeof before[name] === "number"
          ? n[name] - before[name]
          : 0;
        if (grown > 0) step[name] += grown;
      }
      seen.set(n.node, now);
    }
    state.nodeCounters = seen;
    return step;
  }

  // All nodes: rates over the last RATE_WINDOW_S of summed increments. Each
  // node's report is up to a second old and they are a second apart, so one
  // poll's increment may hold one second of traffic or two; averaging over a
  // longer window keeps that from showing as a jump.
  function hubRates(nodes, t) {
    const step = hubIncrement(nodes);
    const last = state.counted.length ? state.counted[state.counted.length - 1] : null;
    const fresh = state.view !== "all" || last === null;
    const sum = fresh
      ? { t, published: 0, deliveries: 0 }
      : { t, published: last.published + step.published, deliveries: last.deliveries + step.deliveries };
    if (fresh) state.counted = [];
    state.counted.push(sum);
    while (state.counted.length > 2 && state.counted[1].t <= t - RATE_WINDOW_S) state.counted.shift();
    if (fresh) return null;
    const base = state.counted[0];
    const seconds = t - base.t;
    return {
      published: seconds > 0 ? (sum.published - base.published) / seconds : null,
      deliveries: seconds > 0 ? (sum.deliveries - base.deliveries) / seconds : null,
    };
  }

  // The answering node's stats with the counters replaced by their sum over
  // `nodes` (broker, status and node id stay the answering node's).
  function hubTotals(stats, nodes) {
    const totals = { ...stats };
    for (const name of SUMMED) {
      const values = nodes.map((n) => n[name]).filter((v) => typeof v === "number");
      totals[name] = values.length ? values.reduce((a, b) => a + b, 0) : undefined;
    }
    for (const name of SUMMED_BY_CODE) {
      const merged = {};
      let any = false;
      for (const n of nodes) {
        if (!n[name] || typeof n[name] !== "object") continue;
        any = true;
        for (const [code, k] of Object.entries(n[name])) merged[code] = (merged[code] || 0) + k;
      }
      totals[name] = any ? merged : undefined;
    }
    return totals;
  }

  function reportingNodes(stats) {
    const nodes = Array.isArray(stats.nodes) ? stats.nodes : [];
    return nodes.filter((n) => n && typeof n === "object" && typeof n.node === "string");
  }

  function record(stats) {
    const t = Date.now() / 1000;
    const nodes = reportingNodes(stats);
    const view = nodes.length ? "all" : "node";
    const rates = view === "all" ? hubRates(nodes, t) : nodeRates(stats, t);
    if (view === "node") state.nodeCounters = new Map();
    state.view = view;
    const shown = view === "all" ? hubTotals(stats, nodes) : stats;
    const messagesRate = rates ? rates.published : null;
    const deliveriesRate = rates ? rates.deliveries : null;
    if (rates) {
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
    showScope(view, nodes.length, stats.node);
    showStats(shown, messagesRate, deliveriesRate);
    showNodes(nodes);
    const degraded = stats.status !== "ok";
    badge(degraded ? "reconnecting" : "open", degraded ? "Degraded" : "Live");
    $("updated").textContent = new Date().toLocaleTimeString();
  }

  function showScope(view, nodeCount, node) {
    const scope = $("v-scope");
    scope.dataset.view = view;
    scope.textContent = view === "all"
      ? "All " + nodeCount + (nodeCount === 1 ? " node" : " nodes") +
        ": totals summed over every node's report (each about a second old); rates averaged over " +
        RATE_WINDOW_S + " s"
      : "This node (" + (node || "?") + ")";
  }

  function showStats(s, messagesRate, deliveriesRate) {
    $("v-connections").textContent = count(s.connections);
    $("v-kinds").textContent = count(s.hub_connections) + " /ws · " + count(s.echo_connections) + " echo";
    $("v-rooms").textContent = count(s.rooms);
    $("v-memberships").textContent = count(s.memberships) + " memberships" +
      (state.view === "all" ? " · rooms summed per node" : "");
    $("v-messages-rate").textContent = rate(messagesRate);
    $("v-deliveries-rate").textContent = rate(deliveriesRate);
    $("v-published").textContent = count(s.published) + " published";
    $("v-published").dataset.total = String(s.published);
    $("v-deliveries-note").textContent =
      typeof s.deliveries === "number" ? count(s.deliveries) + " to members" : "not counted by this server";
    $("v-deliveries-note").dataset.total = String(s.deliveries);
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
  }

  function showNodes(nodes) {
    show("nodes-panel", nodes.length > 0);
    fillRows("t-nodes", nodes.map((n) => [
      n.node,
      count(n.connections),
      count(n.rooms),
      count(n.published),
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
