/**
 * The chat page: pick a name and a room, see the room's messages (history
 * included) and who is present, and the connection state. hub.js does the
 * reconnecting and resuming; this module only renders what it reports.
 *
 * For tests and curious developers, the page's model is `window.chatApp`.
 * @module chat
 */
import { connect } from "./hub.js";
import {
  ROOM_RE,
  bindStateBadge,
  colorFor,
  describeGap,
  pageParams,
  renderPeople,
  toast,
} from "./ui.js";

const $ = (id) => document.getElementById(id);

/**
 * @typedef {object} RoomView
 * @property {object[]} items   messages and notices, in arrival order
 * @property {number} unread
 */

const app = {
  /** @type {import("./hub.js").HubClient|null} */
  hub: null,
  name: "",
  /** @type {Map<string, RoomView>} */
  rooms: new Map(),
  current: "",
  /** Every history_gap the client reported, for the page and for tests. */
  gaps: [],
  /**
   * The client_ids this page has had (one per connection): a message is ours
   * when its client_id is one of them, not when its name is ours, since two
   * people may pick the same name.
   */
  myIds: new Set(),
};
window.chatApp = app;

function timeOf(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** @param {object} item a message or a notice @returns {HTMLLIElement} */
function renderItem(item) {
  const li = document.createElement("li");
  if (item.kind === "notice") {
    li.className = "notice";
    li.textContent = item.text;
    return li;
  }
  li.className = "msg";
  if (item.mine) li.classList.add("mine");
  if (item.pending) li.classList.add("pending");
  if (item.failed) li.classList.add("failed");
  if (item.seq != null) li.dataset.seq = String(item.seq);
  const meta = document.createElement("div");
  meta.className = "meta";
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = item.from;
  from.style.color = colorFor(item.from);
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = item.pending ? "sending…" : item.failed ? "not sent" : timeOf(item.ts);
  meta.append(from, time);
  if (item.failed) {
    const retry = document.createElement("button");
    retry.className = "btn retry";
    retry.type = "button";
    retry.textContent = "Retry";
    retry.onclick = () => {
      removeItem(item.room, item);
      send(item.room, item.text);
    };
    meta.append(retry);
  }
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = item.text;
  li.append(meta, text);
  return li;
}

function roomView(room) {
  if (!app.rooms.has(room)) app.rooms.set(room, { items: [], unread: 0 });
  return app.rooms.get(room);
}

function renderMessages() {
  const ol = $("messages");
  const view = app.rooms.get(app.current);
  const items = view ? view.items : [];
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "No messages yet. Say hello!";
    ol.replaceChildren(li);
    return;
  }
  ol.replaceChildren(...items.map(renderItem));
  ol.scrollTop = ol.scrollHeight;
}

function addItem(room, item) {
  const view = roomView(room);
  view.items.push(item);
  if (view.items.length > 500) view.items.splice(0, view.items.length - 500);
  if (room !== app.current) {
    if (item.kind !== "notice") view.unread += 1;
    renderRooms();
    return;
  }
  const ol = $("messages");
  const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
  if (ol.querySelector(".empty")) ol.replaceChildren();
  ol.append(renderItem(item));
  if (atBottom || item.mine) ol.scrollTop = ol.scrollHeight;
}

function removeItem(room, item) {
  const view = app.rooms.get(room);
  if (!view) return;
  const i = view.items.indexOf(item);
  if (i >= 0) view.items.splice(i, 1);
  if (room === app.current) renderMessages();
}

function renderRooms() {
  const ul = $("room-list");
  ul.replaceChildren(
    ...[...app.rooms.keys()].map((room) => {
      const li = document.createElement("li");
      li.dataset.room = room;
      if (room === app.current) li.classList.add("current");
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open";
      open.textContent = room;
      open.onclick = () => switchTo(room);
      li.append(open);
      const unread = app.rooms.get(room).unread;
      if (unread > 0) {
        const badge = document.createElement("span");
        badge.className = "unread";
        badge.textContent = String(unread);
        li.append(badge);
      }
      if (app.rooms.size > 1) {
        const leave = document.createElement("button");
        leave.type = "button";
        leave.className = "leave";
        leave.title = `Leave ${room}`;
        leave.setAttribute("aria-label", `Leave ${room}`);
        leave.textContent = "×";
        leave.onclick = () => leaveRoom(room);
        li.append(leave);
      }
      return li;
    }),
  );
}

function renderPresence() {
  const members = app.hub.members(app.current);
  const count = app.hub.memberCount(app.current);
  renderPeople($("people"), members, app.hub.clientId);
  $("people-count").textContent = count ? `(${count})` : "";
  $("room-count").textContent = count ? `${count} online` : "";
}

function switchTo(room) {
  app.current = room;
  roomView(room).unread = 0;
  history.replaceState(null, "", `#${encodeURIComponent(room)}`);
  $("room-title").textContent = room;
  document.title = `#${room} · Hub chat`;
  $("to-board").href = `/whiteboard#${encodeURIComponent(room)}`;
  renderRooms();
  renderMessages();
  renderPresence();
  $("text").focus();
}

function joinRoom(room) {
  if (!ROOM_RE.test(room)) {
    toast("Room names are 1-64 letters, digits or - _ . :");
    return;
  }
  if (!app.rooms.has(room)) {
    roomView(room);
    // since: 0 asks for whatever history the room still holds.
    app.hub.join(room, { since: 0 }).catch((err) => toast(`Could not join ${room}: ${err.code}`));
  }
  switchTo(room);
}

function leaveRoom(room) {
  app.hub.leave(room).catch(() => {});
  app.rooms.delete(room);
  if (app.current === room) switchTo(app.rooms.keys().next().value);
  else renderRooms();
}

function send(room, text) {
  const item = { kind: "msg", room, from: app.name, mine: true, text, pending: true, ts: Date.now() };
  addItem(room, item);
  if (app.hub.state !== "open") toast("Offline: the message will be sent when the connection is back.");
  app.hub.publish(room, { text }).then(
    () => removeItem(room, item), // the room's copy (with its seq) is shown instead
    (err) => {
      item.pending = false;
      item.failed = true;
      if (room === app.current) renderMessages();
      toast(
        err.code === "connection_lost"
          ? "Connection dropped while sending; the message may not have arrived."
          : `Message not sent: ${err.code}`,
      );
    },
  );
}

function start(name, room) {
  app.name = name;
  localStorage.setItem("hub.name", name);
  $("start").hidden = true;
  $("app").hidden = false;
  $("whoami").hidden = false;
  $("my-name").textContent = name;

  const hub = connect("/ws", { name });
  app.hub = hub;
  bindStateBadge($("conn"), hub);

  hub.on("message", (m) => {
    if (!app.rooms.has(m.room) || m.ephemeral) return;
    const text = typeof m.data?.text === "string" ? m.data.text : JSON.stringify(m.data);
    const mine = m.client_id != null && app.myIds.has(m.client_id);
    addItem(m.room, { kind: "msg", room: m.room, seq: m.seq, from: m.from, mine, ts: m.ts, text });
  });
  hub.on("presence", (p) => {
    if (p.room === app.current) renderPresence();
  });
  hub.on("welcome", (w) => {
    app.myIds.add(w.client_id);
    renderPresence();
  });
  hub.on("error", (e) => {
    if (e.code === "history_gap") {
      app.gaps.push(e);
      if (e.lost) addItem(e.room, { kind: "notice", text: describeGap(e) });
    } else if (!e.handled) {
      toast(`Server says: ${e.code}${e.detail ? ` (${e.detail})` : ""}`);
    }
  });

  joinRoom(room);
}

$("join-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("join-room");
  const room = input.value.trim();
  if (!room) return;
  input.value = "";
  joinRoom(room);
});

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("text");
  const text = input.value.trim();
  if (!text || !app.current) return;
  input.value = "";
  send(app.current, text);
});

$("start").addEventListener("submit", (ev) => {
  ev.preventDefault();
  start($("start-name").value.trim(), $("start-room").value.trim());
});

const params = pageParams("lobby");
$("start-name").value = params.name;
$("start-room").value = params.room;
if (new URLSearchParams(location.search).has("name") && params.name && ROOM_RE.test(params.room)) {
  start(params.name, params.room); // a link with ?name= goes straight in
} else {
  $("start-name").focus();
}
