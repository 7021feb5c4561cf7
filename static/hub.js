/**
 * hub.js — a dependency-free browser client for the WebSocket hub.
 *
 * Load it as an ES module, no bundler needed:
 *
 *   import { connect } from "/static/hub.js";
 *   const hub = connect("/ws", { name: "ada" });
 *   hub.on("message", (m) => console.log(m.room, m.from, m.data));
 *   await hub.join("lobby", { since: 0 });
 *   const { seq } = await hub.publish("lobby", { text: "hello" });
 *
 * What it does for the app, and why:
 * - Reconnects by itself with exponential backoff and jitter, so that a
 *   server restart does not see every browser hammer it in the same
 *   millisecond.
 * - Remembers, per room, the last seq and epoch it delivered, and re-joins
 *   every room with `since`/`epoch` after a reconnect, so a client that
 *   dropped for a few seconds gets exactly the messages it missed, once.
 * - Never hides loss: when the server answers a join with `history_gap`
 *   (history too short, or a restarted server with a new epoch), the app
 *   gets an "error" event saying so, with a `lost` flag it can show.
 * - Exposes one visible connection state ("connecting", "open",
 *   "reconnecting", "unauthorized", "closed") through the "state" event.
 * - With connection tokens, `token` may be a function: it is called for
 *   every (re)connect and again before the token expires, to refresh it
 *   in-band without dropping the connection.
 *
 * The wire protocol is documented in docs/client.md.
 *
 * @module hub
 */

/** @typedef {{client_id: string, name: string}} Member */

/**
 * @typedef {object} HubMessage
 * @property {string} room
 * @property {number} [seq]      absent for ephemeral messages
 * @property {string} from       the sender's display name ("server", or the name
 *   the backend gave, for messages from the backend API)
 * @property {string} [client_id] the sending connection; absent for backend messages
 * @property {string} [user]     the sender's user id, set by the server from its token
 * @property {*} data            whatever the sender published
 * @property {number} ts         server time, ms since the epoch
 * @property {boolean} [ephemeral]
 * @property {boolean} replayed  true when it came from history after a (re)join
 */

/**
 * @typedef {object} ConnectOptions
 * @property {string} name             shown to other members
 * @property {string|(() => string|Promise<string>)} [token] connection token
 *   (a JWT from the app's backend), sent as `?token=`. A function is called
 *   for every (re)connect and before expiry, for a fresh one.
 * @property {number} [refreshMargin=30000] refresh this long before the
 *   token expires (at most half its remaining life), ms
 * @property {number} [minDelay=500]   first reconnect delay, ms
 * @property {number} [maxDelay=15000] cap for the reconnect delay, ms
 * @property {number} [ackTimeout=10000] a publish/join not answered by then rejects
 * @property {number} [ephemeralBufferLimit=65536] skip ephemeral sends while
 *   the socket already has this many bytes queued (the lossy lane is lossy on
 *   our side too: a stale cursor is worth nothing)
 * @property {typeof WebSocket} [WebSocketImpl] for tests
 */

/** Connection states, in the order a healthy client goes through them. */
export const STATES = Object.freeze(["connecting", "open", "reconnecting", "unauthorized", "closed"]);

const CLOSE_UNAUTHORIZED = 4003;
const CLOSE_TOKEN_EXPIRED = 4004;

/** Error used to reject promises; `code` mirrors the server's error codes. */
export class HubError extends Error {
  /**
   * @param {string} code  server code, or "connection_lost" / "timeout" / "closed"
   * @param {string} [detail]
   * @param {object} [frame] the server frame that caused it, if any
   */
  constructor(code, detail, frame) {
    super(detail ? `${code}: ${detail}` : code);
    this.name = "HubError";
    this.code = code;
    this.detail = detail;
    this.frame = frame;
  }
}

/**
 * Turn "/ws", "ws://host/ws" or "http://host/ws" into an absolute ws(s) URL,
 * because pages usually know only their own path, and the socket must use
 * wss: exactly when the page uses https:.
 * @param {string} url
 * @returns {URL}
 */
function toSocketUrl(url) {
  const base = typeof location !== "undefined" ? location.href : "http://localhost/";
  const u = new URL(url, base);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  return u;
}

/**
 * Delay before reconnect attempt number `attempt` (0-based): exponential
 * growth capped at `max`, with "equal jitter" — half fixed, half random — so
 * the delay never collapses to zero yet clients spread out after an outage.
 * @param {number} attempt
 * @param {number} min
 * @param {number} max
 * @param {() => number} [random]
 * @returns {number} ms
 */
export function backoffDelay(attempt, min, max, random = Math.random) {
  const ceiling = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * A connection to the hub. Create it with {@link connect}.
 */
export class HubClient {
  /**
   * @param {string} url
   * @param {ConnectOptions} options
   */
  constructor(url, options) {
    if (!options || !options.name) throw new TypeError("connect(url, {name}) needs a name");
    this.options = {
      minDelay: 500,
      maxDelay: 15000,
      ackTimeout: 10000,
      ephemeralBufferLimit: 65536,
      refreshMargin: 30000,
      ...options,
    };
    this.url = toSocketUrl(url);
    this.url.searchParams.set("name", options.name);

    /** @type {string} one of STATES */
    this.state = "connecting";
    /** @type {string|null} the server's id for this connection (changes on reconnect) */
    this.clientId = null;
    /** @type {string|null} the user id the server read from the token (null without tokens) */
    this.user = null;
    /** Number of reconnect attempts since the last successful open. */
    this.attempt = 0;
    /** Epoch ms of the next reconnect attempt while "reconnecting", else null. */
    this.nextRetryAt = null;

    /**
     * Rooms the app asked to be in. Kept across reconnects: this is what
     * lets the client re-join with since/epoch.
     * @type {Map<string, {epoch: string|null, lastSeq: number, members: Map<string, Member>, joined: boolean, wantHistory: boolean}>}
     */
    this.rooms = new Map();

    this._handlers = new Map();
    this._pending = new Map(); // request id -> {resolve, reject, timer, kind, room}
    this._outbox = []; // publish frames made while not open, sent after re-join
    this._nextId = 1;
    this._ws = null;
    this._retryTimer = null;
    this._refreshTimer = null;
    this._closedByApp = false;
    this._opening = false; // waiting for the token function
    this._token = null; // the token of the current connection
    this._refusedToken = null; // the last token the server refused (4003)

    this._onOnline = () => {
      // The OS says the network is back: don't sit out a long backoff.
      if (this.state === "reconnecting") this._reconnectNow();
    };
    if (typeof window !== "undefined") window.addEventListener("online", this._onOnline);

    this._open();
  }

  /**
   * Subscribe to "message", "presence", "state", "error", "joined" or "welcome".
   * @param {string} event
   * @param {(payload: any) => void} fn
   * @returns {() => void} call it to unsubscribe
   */
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this._handlers.get(event).delete(fn);
  }

  /**
   * Join a room. Resolves with the server's `joined` frame.
   *
   * Pass `since: 0` to also receive what the room's history still holds
   * (the server reports a `history_gap` only when history no longer reaches
   * back to the room's first message). Pass the seq and epoch you saved
   * earlier to resume after a page reload.
   *
   * @param {string} room
   * @param {{since?: number, epoch?: string}} [opts]
   * @returns {Promise<object>}
   */
  join(room, opts = {}) {
    if (this.state === "closed") return Promise.reject(new HubError("closed", "client closed"));
    let r = this.rooms.get(room);
    if (!r) {
      r = { epoch: null, lastSeq: 0, members: new Map(), joined: false, wantHistory: false };
      this.rooms.set(room, r);
    }
    if (opts.since != null) {
      r.lastSeq = opts.since;
      r.wantHistory = true;
      if (opts.epoch != null) r.epoch = opts.epoch;
    }
    const wait = () =>
      // Sent by _rejoinAll() once the socket is (re)opened.
      new Promise((resolve, reject) => {
        r.waiters = r.waiters || [];
        r.waiters.push({ resolve, reject });
      });
    if (this.state !== "open") return wait();
    // A drop before `joined` is not the app's problem: the room stays in
    // this.rooms and is joined again after the reconnect.
    return this._sendJoin(room).catch((err) => {
      if (err.code === "connection_lost" && this.rooms.has(room)) return wait();
      this._forgetRefused(room, err);
      throw err;
    });
  }

  /**
   * Leave a room; the client stops re-joining it.
   * @param {string} room
   * @returns {Promise<object>} resolves with the `left` frame (or at once when offline)
   */
  leave(room) {
    const r = this.rooms.get(room);
    for (const w of r?.waiters || []) w.reject(new HubError("left", `left ${room} before joining`));
    this.rooms.delete(room);
    if (this.state !== "open") return Promise.resolve({ type: "left", room });
    return this._request({ type: "leave", room }, "leave", room);
  }

  /**
   * Publish to a room. Resolves with the ack: `{seq}` (no seq for ephemeral).
   *
   * While the connection is down, durable publishes wait in an outbox and go
   * out after the rooms are re-joined. A publish that was already on the wire
   * when the connection dropped rejects with code "connection_lost": the
   * server may or may not have taken it, and only the app knows whether a
   * retry is safe.
   *
   * Ephemeral publishes (live cursors, typing indicators) are never queued:
   * offline or with a full send buffer they resolve with `{dropped: true}`.
   *
   * @param {string} room
   * @param {*} data any JSON value
   * @param {{ephemeral?: boolean, ack?: boolean}} [opts] `ack: false` skips
   *   the ack round-trip (useful for high-rate ephemeral traffic)
   * @returns {Promise<{seq?: number, dropped?: boolean}>}
   */
  publish(room, data, opts = {}) {
    if (this.state === "closed") return Promise.reject(new HubError("closed", "client closed"));
    const frame = { type: "publish", room, data };
    if (opts.ephemeral) {
      frame.ephemeral = true;
      const ws = this._ws;
      if (this.state !== "open" || ws.bufferedAmount > this.options.ephemeralBufferLimit) {
        return Promise.resolve({ dropped: true });
      }
    }
    if (opts.ack === false) {
      if (this.state === "open") {
        this._send(frame);
        return Promise.resolve({});
      }
      this._outbox.push({ frame });
      return Promise.resolve({ queued: true });
    }
    if (this.state !== "open") {
      return new Promise((resolve, reject) => this._outbox.push({ frame, resolve, reject }));
    }
    return this._request(frame, "publish", room);
  }

  /**
   * Members of a room as last reported by the server.
   * @param {string} room
   * @returns {Member[]}
   */
  members(room) {
    const r = this.rooms.get(room);
    return r ? [...r.members.values()] : [];
  }

  /**
   * How many are in the room, on every node. In a room over the server's
   * presence limit, members() lists only some of them and this number is
   * kept current by "count" presence events (at most one a second).
   * @param {string} room
   * @returns {number}
   */
  memberCount(room) {
    const r = this.rooms.get(room);
    return r ? (r.memberCount ?? r.members.size) : 0;
  }

  /**
   * The resume point of a room: save it (e.g. in sessionStorage) and pass it
   * back to join() after a page reload to get what happened meanwhile.
   * @param {string} room
   * @returns {{since: number, epoch: string|null}|null}
   */
  position(room) {
    const r = this.rooms.get(room);
    return r ? { since: r.lastSeq, epoch: r.epoch } : null;
  }

  /** Close for good: no reconnect, pending promises reject. */
  close() {
    this._closedByApp = true;
    clearTimeout(this._retryTimer);
    clearTimeout(this._refreshTimer);
    if (typeof window !== "undefined") window.removeEventListener("online", this._onOnline);
    if (this._ws) this._ws.close(1000, "bye");
    this._failPending("closed");
    this._setState("closed");
  }

  // ---- internals -------------------------------------------------------

  _emit(event, payload) {
    const fns = this._handlers.get(event);
    if (!fns) return;
    for (const fn of [...fns]) {
      try {
        fn(payload);
      } catch (err) {
        // One broken handler must not stop the others or the protocol.
        console.error(`hub.js: "${event}" handler failed`, err);
      }
    }
  }

  _setState(state, info = {}) {
    if (this.state === state && state !== "reconnecting") return;
    this.state = state;
    this._emit("state", { state, attempt: this.attempt, nextRetryAt: this.nextRetryAt, ...info });
  }

  _open() {
    const token = this.options.token;
    if (typeof token !== "function") {
      this._openWith(token);
      return;
    }
    // Ask the app for a token on every (re)connect: the last one may have expired.
    this._opening = true;
    let pending;
    try {
      pending = Promise.resolve(token());
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (fresh) => {
        this._opening = false;
        this._openWith(fresh);
      },
      (err) => {
        this._opening = false;
        if (!this._closedByApp) this._scheduleReconnect({ reason: `token: ${err}` });
      },
    );
  }

  _openWith(token) {
    if (this._closedByApp || this._ws) return;
    if (token != null && token === this._refusedToken) {
      // The server refused exactly this token: sending it again cannot help.
      this._setState("unauthorized", { code: CLOSE_UNAUTHORIZED });
      return;
    }
    const url = new URL(this.url.href);
    if (token != null) url.searchParams.set("token", token);
    this._token = token ?? null;
    const WS = this.options.WebSocketImpl || WebSocket;
    let ws;
    try {
      ws = new WS(url.href);
    } catch (err) {
      this._scheduleReconnect({ reason: String(err) });
      return;
    }
    this._ws = ws;
    ws.onmessage = (ev) => this._onFrame(ev.data);
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._onDisconnect({ code: ev.code, reason: ev.reason });
    };
    // "open" is declared on `welcome`, not on the socket's open event: only
    // then does the server know us and will answer joins.
  }

  _onDisconnect(info) {
    this.clientId = null;
    clearTimeout(this._refreshTimer);
    for (const r of this.rooms.values()) r.joined = false;
    // Requests on the wire may or may not have been processed: say so.
    this._failPending("connection_lost", "connection dropped before the server answered");
    if (this._closedByApp) return;
    // Server full (1013), rate limit (1008) or too slow to read (4001):
    // coming straight back would meet the same answer, so start further
    // up the backoff curve.
    // The same for a server that disconnected us on the backend's request (4005).
    if ([1008, 1013, 4001, 4005].includes(info.code)) this.attempt = Math.max(this.attempt, 3);
    if (info.code === CLOSE_UNAUTHORIZED) {
      this._refusedToken = this._token;
      this._setState("unauthorized", info);
      // A fixed token stays refused; a token function may give a better one.
      if (typeof this.options.token !== "function") return;
    }
    if (info.code === CLOSE_TOKEN_EXPIRED) this.attempt = 0; // a fresh token, at once
    this._scheduleReconnect(info);
  }

  _scheduleReconnect(info) {
    const delay = backoffDelay(this.attempt, this.options.minDelay, this.options.maxDelay);
    this.attempt += 1;
    this.nextRetryAt = Date.now() + delay;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._reconnectNow(), delay);
    this._setState("reconnecting", { delay, ...info });
  }

  _reconnectNow() {
    clearTimeout(this._retryTimer);
    this.nextRetryAt = null;
    if (this._closedByApp || this._ws || this._opening) return;
    this._open();
  }

  /** Refresh the token in-band before `exp` (Unix seconds), when `token` is a function. */
  _scheduleRefresh(exp) {
    clearTimeout(this._refreshTimer);
    if (exp == null || typeof this.options.token !== "function") return;
    const left = exp * 1000 - Date.now();
    const margin = Math.min(this.options.refreshMargin, left / 2);
    this._refreshTimer = setTimeout(() => this._refresh(), Math.max(0, left - margin));
  }

  async _refresh() {
    if (this.state !== "open") return;
    let token;
    try {
      token = await this.options.token();
    } catch (err) {
      this._emit("error", { code: "token_refresh_failed", detail: String(err) });
      return;
    }
    if (this.state !== "open") return;
    try {
      const answer = await this._request({ type: "refresh", token }, "refresh");
      this._token = token;
      this._scheduleRefresh(answer.exp);
    } catch {
      // Reported through the "error" event; at expiry the server closes
      // with 4004 and the reconnect asks for a new token.
    }
  }

  _send(frame) {
    this._ws.send(JSON.stringify(frame));
  }

  _request(frame, kind, room) {
    const id = `h${this._nextId++}`;
    frame.id = id;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new HubError("timeout", `no answer to ${kind} within ${this.options.ackTimeout} ms`));
      }, this.options.ackTimeout);
      this._pending.set(id, { resolve, reject, timer, kind, room });
      this._send(frame);
    });
  }

  _settle(id, ok, value) {
    const p = this._pending.get(id);
    if (!p) return false;
    this._pending.delete(id);
    clearTimeout(p.timer);
    (ok ? p.resolve : p.reject)(value);
    return true;
  }

  _failPending(code, detail) {
    for (const [id, p] of [...this._pending]) this._settle(id, false, new HubError(code, detail));
    if (code === "closed") {
      for (const item of this._outbox.splice(0)) item.reject?.(new HubError(code, detail));
      for (const r of this.rooms.values()) {
        for (const w of r.waiters || []) w.reject(new HubError(code, detail));
        r.waiters = [];
      }
    }
  }

  /**
   * A join the server refused (too_many_rooms, bad_request, a timeout) must
   * not be retried on every reconnect: forget the room unless it had been
   * joined before, in which case the next reconnect tries again.
   */
  _forgetRefused(room, err) {
    const r = this.rooms.get(room);
    if (r && r.joinedSeq === undefined && err.code !== "timeout") this.rooms.delete(room);
  }

  _sendJoin(room, attempt = 0) {
    const r = this.rooms.get(room);
    const frame = { type: "join", room };
    if (r.wantHistory) {
      frame.since = r.lastSeq;
      if (r.epoch) frame.epoch = r.epoch;
    }
    r.sentSince = frame.since;
    r.sentEpoch = frame.epoch ?? null;
    return this._request(frame, "join", room).catch((err) => {
      if (err.code !== "unavailable" || !this.rooms.has(room)) throw err;
      // The server cannot reach its broker (Redis) right now: try again, with backoff.
      const delay = backoffDelay(attempt, this.options.minDelay, this.options.maxDelay);
      return new Promise((resolve) => setTimeout(resolve, delay)).then(() => {
        if (this.state !== "open") throw new HubError("connection_lost", "dropped before joining");
        if (!this.rooms.has(room)) throw err;
        return this._sendJoin(room, attempt + 1);
      });
    });
  }

  async _rejoinAll() {
    const joins = [];
    for (const [room, r] of this.rooms) {
      const p = this._sendJoin(room);
      const waiters = r.waiters || [];
      r.waiters = [];
      joins.push(
        p.then(
          (joined) => waiters.forEach((w) => w.resolve(joined)),
          (err) => {
            if (err.code === "connection_lost") {
              r.waiters = waiters.concat(r.waiters || []); // next connection answers them
              return;
            }
            this._forgetRefused(room, err);
            waiters.forEach((w) => w.reject(err));
          },
        ),
      );
    }
    // Queued publishes go out right after the joins on the same socket; the
    // server handles frames in order, so they land after the re-join.
    for (const item of this._outbox.splice(0)) {
      if (!item.resolve) {
        this._send(item.frame);
      } else {
        this._request(item.frame, "publish", item.frame.room).then(item.resolve, item.reject);
      }
    }
    await Promise.allSettled(joins);
  }

  _onFrame(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      this._emit("error", { code: "bad_frame", detail: "server sent invalid JSON" });
      return;
    }
    switch (m.type) {
      case "welcome":
        this.clientId = m.client_id;
        this.user = m.user ?? null;
        this.attempt = 0;
        this._refusedToken = null;
        this._scheduleRefresh(m.exp);
        this._setState("open");
        this._emit("welcome", m);
        this._rejoinAll();
        break;
      case "joined":
        this._onJoined(m);
        break;
      case "left":
        this._settle(m.id, true, m); // the leave's own id, echoed by the server
        break;
      case "ack":
        this._settle(m.id, true, m.seq != null ? { seq: m.seq } : {});
        break;
      case "refreshed":
        this._settle(m.id, true, m);
        break;
      case "message":
        this._onMessage(m);
        break;
      case "presence":
        this._onPresence(m);
        break;
      case "error":
        this._onError(m);
        break;
      default:
        // Newer servers may add frame types; ignoring them keeps old pages working.
        break;
    }
  }

  _onJoined(m) {
    const id = m.id; // the join's own id, echoed by the server
    const r = this.rooms.get(m.room);
    if (!r) {
      this._settle(id, true, m); // left meanwhile
      return;
    }
    const previousEpoch = r.epoch;
    const resumed = r.wantHistory && r.sentEpoch != null && r.sentEpoch === m.epoch;
    if (previousEpoch && previousEpoch !== m.epoch) {
      // The room's numbering started over (restarted server): our lastSeq
      // means nothing in the new epoch.
      r.lastSeq = 0;
    }
    r.epoch = m.epoch;
    r.joined = true;
    r.joinedSeq = m.seq;
    // From now on, resume with since/epoch; also for rooms joined without
    // history, so a later drop misses nothing either.
    if (!r.wantHistory) {
      r.wantHistory = true;
      r.lastSeq = m.seq;
    }
    r.members = new Map((m.members || []).map((x) => [x.client_id, x]));
    r.memberCount = m.member_count ?? r.members.size;
    r.truncated = Boolean(m.members_truncated);
    const payload = { ...m, previousEpoch, resumed };
    this._settle(id, true, payload);
    this._emit("joined", payload);
    this._emit("presence", {
      room: m.room,
      event: "sync",
      members: [...r.members.values()],
      memberCount: r.memberCount,
    });
  }

  _onMessage(m) {
    const r = this.rooms.get(m.room);
    if (!r) return; // left the room; late frames are not the app's business
    if (m.seq != null) {
      // Replays after a reconnect can overlap what we already delivered.
      if (m.seq <= r.lastSeq) return;
      r.lastSeq = m.seq;
    }
    this._emit("message", m);
  }

  _onPresence(m) {
    const r = this.rooms.get(m.room);
    if (!r) return;
    if (m.event === "join" && !r.members.has(m.member.client_id)) {
      r.members.set(m.member.client_id, m.member);
      r.memberCount += 1;
    } else if (m.event === "leave" && r.members.delete(m.member.client_id)) {
      r.memberCount -= 1;
    } else if (m.event === "count") {
      r.memberCount = m.member_count; // a room over the presence limit
    }
    this._emit("presence", {
      ...m,
      members: [...r.members.values()],
      memberCount: r.memberCount,
    });
  }

  _onError(m) {
    if (m.code === "history_gap") {
      this._emit("error", this._describeGap(m));
      return;
    }
    const err = new HubError(m.code, m.detail, m);
    if (m.id != null && this._settle(m.id, false, err)) {
      // Also surface it: the app may log errors centrally.
      this._emit("error", { ...m, handled: true });
      return;
    }
    this._emit("error", m);
  }

  /**
   * Explain a history_gap: `lost` is true when messages the app has not
   * seen may be gone for good (history too short, or an epoch change after
   * we had seen messages); false for a first "give me what you have" join
   * whose history still reaches the room's first message.
   */
  _describeGap(m) {
    const r = this.rooms.get(m.room);
    const since = r ? (r.sentSince ?? 0) : 0;
    const sentEpoch = r ? r.sentEpoch : null;
    const epochChanged = sentEpoch != null && sentEpoch !== m.epoch;
    let lost;
    if (epochChanged) {
      lost = true; // whatever we had not seen of the old epoch is gone
    } else if (sentEpoch == null && since > 0) {
      lost = true; // we claimed a position without an epoch: can't tell
    } else {
      lost = m.oldest_seq != null && m.oldest_seq > since + 1 && m.oldest_seq > 1;
    }
    if (r && (epochChanged || sentEpoch == null || since > (r.joinedSeq ?? 0))) {
      // Our position means nothing in what the server holds now (new epoch,
      // no epoch given, or beyond the room's end): take all of the replay.
      r.lastSeq = 0;
    }
    return { ...m, since, previousEpoch: sentEpoch, epochChanged, lost };
  }
}

/**
 * Connect to a hub. Returns at once; watch the "state" event.
 * @param {string} url e.g. "/ws" or "wss://example.org/ws"
 * @param {ConnectOptions} options
 * @returns {HubClient}
 */
export function connect(url, options) {
  return new HubClient(url, options);
}
