/**
 * Keeps a whiteboard {@link Board} in step with the room, including the
 * cases history alone cannot cover:
 *
 * - A late joiner first replays the room's history (join with since: 0).
 *   If history no longer reaches the room's first message (the room keeps
 *   only the server's history_size messages), it asks the participants
 *   already present for a snapshot ("sync-request"); one of them answers
 *   with the drawing in parts.
 * - After a reconnect hub.js replays what was missed. If even that fell out
 *   of history, the same request is made.
 * - After a server restart (new epoch) the new history is empty, so the
 *   participants coming back re-seed it with a snapshot of their board:
 *   later joiners then find the drawing in history again.
 *
 * Stroke segments are idempotent, so snapshots overlapping history or each
 * other cost bandwidth but never corrupt the picture.
 * @module board-sync
 */

/**
 * @typedef {object} SyncEvents
 * @property {(seg: object, author: string) => void} onSegment a new segment to draw
 * @property {() => void} onRedraw the board changed wholesale (clear, snapshot)
 * @property {(text: string|null) => void} onNotice a message for the user, or null to hide it
 */

const rand = (lo, hi) => lo + Math.random() * (hi - lo);
const newId = () => Math.random().toString(36).slice(2, 10) + Date.now().toString(36).slice(-4);

export class BoardSync {
  /**
   * @param {import("./hub.js").HubClient} hub
   * @param {string} room
   * @param {import("./board-model.js").Board} board
   * @param {SyncEvents} events
   */
  constructor(hub, room, board, events) {
    this.hub = hub;
    this.room = room;
    this.board = board;
    this.events = events;
    /** Whether this board believes it holds the whole drawing. */
    this.complete = true;
    /** Nonce of our outstanding sync-request, if any. */
    this.asking = null;
    /** Nonces of sync-requests someone already answered (so we stay quiet). */
    this.answered = new Set();
    this.reseedTimer = null;
    this.askTimer = null;
    /** Counters for the page and for tests. */
    this.stats = { requests: 0, snapshotsSent: 0, snapshotsSeen: 0, snapshotsMerged: 0, reseeds: 0 };

    hub.on("message", (m) => m.room === room && this._onMessage(m));
    hub.on("error", (e) => e.code === "history_gap" && e.room === room && this._onGap(e));
  }

  /** Join the room and replay whatever history it still holds. */
  start() {
    return this.hub.join(this.room, { since: 0 });
  }

  _onMessage(m) {
    const d = m.data;
    if (!d || typeof d !== "object") return;
    switch (d.kind) {
      case "stroke":
        if (this.board.applySegment(d, m.from)) this.events.onSegment(d, m.from);
        break;
      case "clear":
        this.board.clear(String(d.id));
        this.events.onRedraw();
        break;
      case "sync-request":
        if (d.cid !== this.hub.clientId) this._maybeAnswer(d.nonce);
        break;
      case "snapshot":
        this._onSnapshot(d);
        break;
      default:
        break;
    }
  }

  _onSnapshot(d) {
    this.stats.snapshotsSeen += 1;
    if (d.for) this.answered.add(d.for);
    if (d.reseed) clearTimeout(this.reseedTimer); // someone re-seeded already
    if (this.board.mergeSnapshot(d)) {
      this.stats.snapshotsMerged += 1;
      this.events.onRedraw();
    }
    if (d.for && d.for === this.asking && d.part === d.parts - 1) {
      this.asking = null;
      this.complete = true;
      clearTimeout(this.askTimer);
      this.events.onNotice(null);
    }
  }

  _onGap(gap) {
    if (gap.epochChanged) {
      // Server restarted: its history is gone, ours is not. Re-seed after a
      // random pause so that, of several returning participants, usually
      // only one sends the drawing.
      clearTimeout(this.reseedTimer);
      this.reseedTimer = setTimeout(() => this._reseed(), rand(200, 1200));
      return;
    }
    if (gap.lost) {
      this.complete = false;
      this._ask();
    }
  }

  _ask() {
    const nonce = newId();
    this.asking = nonce;
    this.stats.requests += 1;
    this.hub
      .publish(this.room, { kind: "sync-request", nonce, cid: this.hub.clientId })
      .catch(() => {}); // a later reconnect's gap asks again
    clearTimeout(this.askTimer);
    this.askTimer = setTimeout(() => {
      if (this.asking === nonce) {
        this.events.onNotice(
          "Part of the drawing is older than the server's history and nobody present could hand it over.",
        );
      }
    }, 4000);
  }

  _maybeAnswer(nonce) {
    if (!this.complete || !nonce) return;
    // Random pause: the first to answer wins, the others see its snapshot
    // (the room delivers messages in order) and stay quiet.
    setTimeout(() => {
      if (this.answered.has(nonce)) return;
      this.answered.add(nonce);
      this._sendSnapshot({ for: nonce });
    }, rand(30, 400));
  }

  _reseed() {
    if (this.board.strokes.size === 0) return; // nothing worth keeping
    this.stats.reseeds += 1;
    this._sendSnapshot({ reseed: true });
  }

  _sendSnapshot(extra) {
    const parts = this.board.toSnapshotParts();
    this.stats.snapshotsSent += 1;
    parts.forEach((part, k) => {
      this.hub
        .publish(this.room, { kind: "snapshot", ...extra, part: k, parts: parts.length, ...part })
        .catch(() => {});
    });
  }
}
