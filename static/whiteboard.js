/**
 * The whiteboard page: pointer input, batching of strokes, live cursors,
 * tools and presence. The drawing itself lives in board-model.js and is
 * kept in step with the room by board-sync.js.
 *
 * For tests and curious developers, the page's model is `window.boardApp`.
 * @module whiteboard
 */
import { connect } from "./hub.js";
import { Board, HEIGHT, WIDTH, drawSegment } from "./board-model.js";
import { BoardSync } from "./board-sync.js";
import { PALETTE, memberColors } from "./board-colors.js";
import { ROOM_RE, bindStateBadge, pageParams, renderPeople, toast } from "./ui.js";

const $ = (id) => document.getElementById(id);

/** How often a stroke in progress is sent: one message per batch, not per mouse event. */
const FLUSH_MS = 60;
/** Cursor positions are sent at most this often (on the lossy, ephemeral lane). */
const CURSOR_MS = 60;
/** A remote cursor that has not moved for this long fades. */
const CURSOR_IDLE_MS = 5000;

const COLORS = ["#1d2330", "#e03131", "#f08c00", "#2f9e44", "#1971c2", "#9c36b5"];
const ERASER = "#ffffff";
const WIDTHS = [3, 7, 16];

const app = {
  /** @type {import("./hub.js").HubClient|null} */
  hub: null,
  board: new Board(),
  /** @type {BoardSync|null} */
  sync: null,
  room: "",
  name: "",
  color: COLORS[0],
  width: WIDTHS[1],
  /** Segments drawn here and published but not yet seen back from the room. */
  pending: new Map(),
  /** Counts for tests: how many pointer events vs stroke messages. */
  stats: { pointerMoves: 0, strokeMessages: 0 },
};
window.boardApp = app;

let ctx;

function redraw() {
  app.board.drawAll(ctx);
  // Our own strokes not yet echoed by the room must not blink away.
  for (const seg of app.pending.values()) drawSegment(ctx, seg);
}

// ---- drawing input ------------------------------------------------------

/** @type {{id: string, i: number, last: number[], buf: number[], timer: number}|null} */
let stroke = null;

// ---- fitting the board to the window -------------------------------------

/**
 * Whether the board is shown turned a quarter turn clockwise: on a portrait
 * window (a phone) its long side then runs down the screen, so it fills the
 * screen instead of a 16:10 strip at the top. Everyone still draws on the
 * same board; only this page's view of it is turned.
 */
let turned = false;
/** Turn only when that makes the board clearly bigger (not on near-square windows). */
const TURN_GAIN = 1.15;

/** Board coordinates -> fractions of the board as shown (across, down). */
function toView(x, y) {
  return turned ? [1 - y / HEIGHT, x / WIDTH] : [x / WIDTH, y / HEIGHT];
}

/** Fractions of the board as shown -> board coordinates. */
function fromView(fx, fy) {
  return turned ? [fy * WIDTH, (1 - fx) * HEIGHT] : [fx * WIDTH, fy * HEIGHT];
}

/** Size the board to the largest fit in the stage, turned or not, and redraw if it turned. */
function fitBoard() {
  if (!ctx) return;
  const stage = $("stage");
  const notice = $("notice");
  const w = stage.clientWidth;
  const h = stage.clientHeight - (notice.hidden ? 0 : notice.offsetHeight + 8);
  if (w <= 0 || h <= 0) return;
  const flat = Math.min(w / WIDTH, h / HEIGHT);
  const upright = Math.min(w / HEIGHT, h / WIDTH);
  const turn = upright > flat * TURN_GAIN;
  const scale = turn ? upright : flat;
  const wrap = $("board-wrap");
  wrap.style.width = `${Math.floor((turn ? HEIGHT : WIDTH) * scale)}px`;
  wrap.style.height = `${Math.floor((turn ? WIDTH : HEIGHT) * scale)}px`;
  if (turn !== turned || ctx.canvas.width !== (turn ? HEIGHT : WIDTH)) {
    turned = turn;
    wrap.dataset.turned = String(turn);
    ctx.canvas.width = turn ? HEIGHT : WIDTH; // resets the context, transform included
    ctx.canvas.height = turn ? WIDTH : HEIGHT;
    if (turn) ctx.setTransform(0, 1, -1, 0, HEIGHT, 0); // (x, y) -> (HEIGHT - y, x)
    redraw();
  }
  for (const c of cursors.values()) placeCursor(c);
}

function toLogical(ev) {
  const r = ctx.canvas.getBoundingClientRect();
  const [x, y] = fromView((ev.clientX - r.left) / r.width, (ev.clientY - r.top) / r.height);
  return [Math.round(Math.min(WIDTH, Math.max(0, x))), Math.round(Math.min(HEIGHT, Math.max(0, y)))];
}

function publishSegment(seg) {
  const key = `${seg.id}/${seg.i}`;
  app.pending.set(key, seg);
  app.stats.strokeMessages += 1;
  const send = () =>
    app.hub.publish(app.room, seg).catch((err) => {
      // The segment was on the wire when the connection dropped. Segments
      // are idempotent, so sending it again is safe: hub.js queues it
      // until the connection is back.
      if (err.code === "connection_lost") return send();
      app.pending.delete(key);
      toast(`A stroke could not be sent: ${err.code}`);
      redraw();
      return undefined;
    });
  send();
}

/** Send the points gathered since the last batch as one segment. */
function flush(final) {
  if (!stroke) return;
  if (stroke.buf.length > 0 || (stroke.i === 0 && final)) {
    const p = stroke.i === 0 ? stroke.buf : [...stroke.last, ...stroke.buf];
    const seg = { kind: "stroke", id: stroke.id, i: stroke.i, c: app.color, w: app.width, p, cid: app.hub.clientId };
    stroke.last = p.slice(-2);
    stroke.buf = [];
    stroke.i += 1;
    publishSegment(seg);
  }
  if (final) {
    clearInterval(stroke.timer);
    stroke = null;
  }
}

function onPointerDown(ev) {
  if (ev.button !== 0 || !app.hub) return;
  ctx.canvas.setPointerCapture(ev.pointerId);
  const pt = toLogical(ev);
  stroke = {
    id: Math.random().toString(36).slice(2, 10),
    i: 0,
    last: pt,
    buf: pt.slice(),
    timer: setInterval(() => flush(false), FLUSH_MS),
  };
  drawSegment(ctx, { c: app.color, w: app.width, p: pt });
  sendCursor(null); // the stroke shows where we are; hide the separate cursor
}

function onPointerMove(ev) {
  if (!app.hub) return;
  app.stats.pointerMoves += 1;
  if (!stroke) {
    maybeSendCursor(ev);
    return;
  }
  const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
  for (const e of events.length ? events : [ev]) {
    const pt = toLogical(e);
    const prev = stroke.buf.length ? stroke.buf.slice(-2) : stroke.last;
    if (Math.abs(pt[0] - prev[0]) + Math.abs(pt[1] - prev[1]) < 2) continue;
    drawSegment(ctx, { c: app.color, w: app.width, p: [...prev, ...pt] }); // feel instant
    stroke.buf.push(pt[0], pt[1]);
  }
}

function onPointerUp() {
  flush(true);
}

// ---- live cursors (ephemeral lane) --------------------------------------

let lastCursorAt = 0;
let cursorTimer = null;

function sendCursor(pt) {
  const data = pt ? { kind: "cursor", cid: app.hub.clientId, x: pt[0], y: pt[1] } : { kind: "cursor", cid: app.hub.clientId, gone: true };
  // ack: false — a cursor position is worthless a moment later, no need
  // for a round-trip per move.
  app.hub.publish(app.room, data, { ephemeral: true, ack: false });
}

function maybeSendCursor(ev) {
  const pt = toLogical(ev);
  const now = performance.now();
  clearTimeout(cursorTimer);
  if (now - lastCursorAt >= CURSOR_MS) {
    lastCursorAt = now;
    sendCursor(pt);
  } else {
    // Trailing send, so the last position is not lost to throttling.
    cursorTimer = setTimeout(() => {
      lastCursorAt = performance.now();
      sendCursor(pt);
    }, CURSOR_MS);
  }
}

/** @type {Map<string, {el: HTMLElement, idle: number, x: number, y: number}>} remote cursors by client id */
const cursors = new Map();
/** @type {Map<string, string>} each member's colour (board-colors.js) */
let colors = new Map();

function colorOf(cid) {
  return colors.get(cid) ?? PALETTE[PALETTE.length - 1];
}

function paintCursor(c, color) {
  c.el.querySelector("path").setAttribute("fill", color);
  c.el.querySelector(".label").style.background = color;
}

function placeCursor(c) {
  const wrap = $("board-wrap");
  const [fx, fy] = toView(c.x, c.y);
  c.el.style.transform = `translate(${fx * wrap.clientWidth}px, ${fy * wrap.clientHeight}px)`;
}

function showCursor(cid, name, x, y) {
  let c = cursors.get(cid);
  if (!c) {
    const el = document.createElement("div");
    el.className = "cursor";
    el.dataset.cid = cid;
    el.innerHTML =
      '<svg width="18" height="22" viewBox="0 0 18 22"><path d="M1 1 L1 17 L5.5 13 L9 21 L12 19.5 L8.5 12 L15 12 Z" stroke="#fff" stroke-width="1.5"/></svg>';
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = name; // textContent: names are user input
    el.append(label);
    $("cursors").append(el);
    c = { el, idle: 0, x, y };
    paintCursor(c, colorOf(cid));
    cursors.set(cid, c);
  }
  c.x = x;
  c.y = y;
  placeCursor(c);
  c.el.dataset.x = String(x);
  c.el.dataset.y = String(y);
  c.el.classList.remove("idle");
  c.el.hidden = false;
  clearTimeout(c.idle);
  c.idle = setTimeout(() => c.el.classList.add("idle"), CURSOR_IDLE_MS);
}

function hideCursor(cid) {
  const c = cursors.get(cid);
  if (c) c.el.hidden = true;
}

function removeCursor(cid) {
  const c = cursors.get(cid);
  if (!c) return;
  clearTimeout(c.idle);
  c.el.remove();
  cursors.delete(cid);
}

// ---- tools --------------------------------------------------------------

function buildTools() {
  const sw = $("swatches");
  for (const color of [...COLORS, ERASER]) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = color === ERASER ? "swatch eraser" : "swatch";
    if (color !== ERASER) b.style.background = color;
    b.title = color === ERASER ? "Eraser" : `Colour ${color}`;
    b.setAttribute("aria-label", b.title);
    b.setAttribute("aria-pressed", String(color === app.color));
    b.onclick = () => {
      app.color = color;
      for (const x of sw.children) x.setAttribute("aria-pressed", String(x === b));
    };
    sw.append(b);
  }
  const wd = $("widths");
  for (const w of WIDTHS) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "width-btn";
    b.title = `Line width ${w}`;
    b.setAttribute("aria-label", b.title);
    b.setAttribute("aria-pressed", String(w === app.width));
    const dot = document.createElement("span");
    const px = Math.max(3, Math.round(w / 1.2));
    dot.style.width = dot.style.height = `${px}px`;
    b.append(dot);
    b.onclick = () => {
      app.width = w;
      for (const x of wd.children) x.setAttribute("aria-pressed", String(x === b));
    };
    wd.append(b);
  }
  $("clear").onclick = () => {
    if (app.board.strokes.size === 0 && app.pending.size === 0) return;
    if (!confirm("Clear the board for everyone?")) return;
    app.hub.publish(app.room, { kind: "clear", id: Math.random().toString(36).slice(2) }).catch((err) => {
      toast(`Could not clear: ${err.code}`);
    });
  };
}

// ---- wiring -------------------------------------------------------------

function renderPresence() {
  const members = app.hub.members(app.room);
  renderPeople($("people"), members, app.hub.clientId);
  colors = memberColors(members);
  for (const li of $("people").children) {
    li.querySelector(".dot").style.background = colorOf(li.dataset.clientId);
  }
  for (const [cid, c] of cursors) paintCursor(c, colorOf(cid));
  $("people-count").textContent = members.length ? `(${members.length})` : "";
  const present = new Set(members.map((m) => m.client_id));
  for (const cid of [...cursors.keys()]) if (!present.has(cid)) removeCursor(cid);
}

function setNotice(text) {
  const el = $("notice");
  el.hidden = !text;
  el.textContent = text || "";
  fitBoard();
}

function start(name, room) {
  app.name = name;
  app.room = room;
  localStorage.setItem("hub.name", name);
  history.replaceState(null, "", `${location.pathname}${location.search}#${encodeURIComponent(room)}`);
  $("start").hidden = true;
  $("app").hidden = false;
  $("whoami").hidden = false;
  $("my-name").textContent = name;
  $("board-name").textContent = room;
  $("to-chat").href = `/#${encodeURIComponent(room)}`;
  document.title = `${room} · Hub whiteboard`;

  ctx = $("board").getContext("2d");
  redraw();
  buildTools();
  fitBoard();
  new ResizeObserver(fitBoard).observe($("stage"));

  const hub = connect("/ws", { name });
  app.hub = hub;
  bindStateBadge($("conn"), hub);

  app.sync = new BoardSync(hub, room, app.board, {
    onSegment: (seg, author) => {
      drawSegment(ctx, seg);
      const key = `${seg.id}/${seg.i}`;
      if (app.pending.delete(key)) return; // our own, now confirmed
      // While drawing, the author sends no cursor messages: the stroke's
      // newest point is where their pointer is.
      const p = seg.p;
      if (seg.cid && seg.cid !== hub.clientId && p.length >= 2) {
        showCursor(seg.cid, author, p[p.length - 2], p[p.length - 1]);
      }
    },
    onRedraw: () => {
      for (const key of app.pending.keys()) {
        const [id, i] = key.split("/");
        if (app.board.strokes.get(id)?.segs.has(Number(i))) app.pending.delete(key);
      }
      redraw();
    },
    onNotice: setNotice,
  });
  hub.on("message", (m) => {
    const d = m.data;
    // Whose cursor it is comes from the server's client_id, not from the data
    // (which anyone could fill in with another member's id).
    const cid = m.client_id ?? d?.cid;
    if (m.room !== room || d?.kind !== "cursor" || cid === hub.clientId) return;
    if (d.gone) hideCursor(cid);
    else if (Number.isFinite(d.x) && Number.isFinite(d.y)) showCursor(cid, m.from, d.x, d.y);
  });
  hub.on("presence", (p) => p.room === room && renderPresence());
  hub.on("welcome", renderPresence);
  hub.on("state", ({ state }) => {
    // Other people's cursors are not updated while we are away.
    if (state !== "open") for (const cid of [...cursors.keys()]) removeCursor(cid);
  });
  hub.on("error", (e) => {
    if (e.code === "history_gap" && e.epochChanged) {
      setNotice("The server restarted. Your board is kept and handed to the new session.");
      setTimeout(() => setNotice(null), 6000);
    } else if (e.code !== "history_gap" && !e.handled) {
      toast(`Server says: ${e.code}`);
    }
  });
  app.sync.start().catch((err) => toast(`Could not join ${room}: ${err.code}`));

  const canvas = ctx.canvas;
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("pointerleave", () => !stroke && sendCursor(null));
}

$("start").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const room = $("start-room").value.trim();
  if (!ROOM_RE.test(room)) {
    toast("Board names are 1-64 letters, digits or - _ . :");
    return;
  }
  start($("start-name").value.trim(), room);
});

const params = pageParams("board");
$("start-name").value = params.name;
$("start-room").value = params.room;
if (new URLSearchParams(location.search).has("name") && params.name && ROOM_RE.test(params.room)) {
  start(params.name, params.room);
} else {
  $("start-name").focus();
}
