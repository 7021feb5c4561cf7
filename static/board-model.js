/**
 * The whiteboard's drawing as data, independent of the canvas and of the
 * network, so it can be merged from three sources that overlap: live
 * stroke messages, history replayed after a (re)join, and snapshots handed
 * over by other participants.
 *
 * A stroke is cut into numbered segments (one per batch the author sent).
 * Applying a segment twice is a no-op, which is what makes replays,
 * retried publishes and overlapping snapshots safe to combine.
 *
 * Coordinates are in a fixed logical space (WIDTH x HEIGHT) so that
 * participants with differently sized windows see the same picture.
 * @module board-model
 */

export const WIDTH = 1600;
export const HEIGHT = 1000;

/**
 * @typedef {object} Segment
 * @property {string} id   stroke id, unique per stroke
 * @property {number} i    segment number within the stroke, from 0
 * @property {string} c    CSS colour
 * @property {number} w    line width in logical pixels
 * @property {number[]} p  flat [x0, y0, x1, y1, ...]; segment i > 0 starts
 *                         at the last point of segment i - 1, so each can
 *                         be drawn on its own
 */

/**
 * Draw one segment on a 2D context in logical coordinates.
 * @param {CanvasRenderingContext2D} ctx
 * @param {{c: string, w: number, p: number[]}} seg
 */
export function drawSegment(ctx, seg) {
  const p = seg.p;
  if (!p || p.length < 2) return;
  ctx.strokeStyle = seg.c;
  ctx.fillStyle = seg.c;
  ctx.lineWidth = seg.w;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (p.length === 2) {
    // A tap: a dot rather than nothing.
    ctx.beginPath();
    ctx.arc(p[0], p[1], seg.w / 2, 0, Math.PI * 2);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(p[0], p[1]);
  for (let k = 2; k < p.length; k += 2) ctx.lineTo(p[k], p[k + 1]);
  ctx.stroke();
}

export class Board {
  constructor() {
    /** @type {Map<string, {id: string, c: string, w: number, a: string, segs: Map<number, number[]>}>} */
    this.strokes = new Map();
    /** Id of the last clear known to this board (sent along in snapshots). */
    this.clearId = null;
    /** True when clearId came from a clear message rather than a snapshot. */
    this.clearSeen = false;
  }

  /**
   * Add a segment. Returns true when it was new (the caller draws it).
   * @param {Segment} seg
   * @param {string} author
   * @returns {boolean}
   */
  applySegment(seg, author) {
    if (typeof seg.id !== "string" || !Array.isArray(seg.p) || !Number.isInteger(seg.i)) return false;
    let s = this.strokes.get(seg.id);
    if (!s) {
      s = { id: seg.id, c: String(seg.c), w: Number(seg.w) || 4, a: author, segs: new Map() };
      this.strokes.set(seg.id, s);
    }
    if (s.segs.has(seg.i)) return false;
    s.segs.set(seg.i, seg.p);
    return true;
  }

  /**
   * Wipe the board.
   * @param {string} clearId
   */
  clear(clearId) {
    this.strokes.clear();
    this.clearId = clearId;
    this.clearSeen = true;
  }

  /** Number of points in the drawing (a cheap fingerprint for tests). */
  pointCount() {
    let n = 0;
    for (const s of this.strokes.values()) for (const p of s.segs.values()) n += p.length / 2;
    return n;
  }

  /**
   * Redraw everything on a context sized WIDTH x HEIGHT.
   * @param {CanvasRenderingContext2D} ctx
   */
  drawAll(ctx) {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    for (const s of this.strokes.values()) {
      const order = [...s.segs.keys()].sort((x, y) => x - y);
      for (const i of order) drawSegment(ctx, { c: s.c, w: s.w, p: s.segs.get(i) });
    }
  }

  /**
   * Cut the drawing into snapshot parts whose JSON stays under `maxChars`,
   * because one message per drawing could exceed the server's frame limit.
   * Always returns at least one part, so an empty board can be handed over
   * too ("there is nothing to miss" is an answer).
   * @param {number} [maxChars=16000]
   * @returns {{clear: string|null, strokes: object[]}[]}
   */
  toSnapshotParts(maxChars = 16000) {
    const parts = [];
    let cur = [];
    let size = 0;
    const flush = () => {
      parts.push({ clear: this.clearId, strokes: cur });
      cur = [];
      size = 0;
    };
    for (const s of this.strokes.values()) {
      let entry = null;
      for (const [i, p] of s.segs) {
        const cost = 12 + JSON.stringify(p).length;
        if (entry && size + cost > maxChars) {
          flush();
          entry = null;
        }
        if (!entry) {
          entry = { id: s.id, c: s.c, w: s.w, a: s.a, g: [] };
          cur.push(entry);
          size += 60 + s.id.length + s.a.length;
        }
        entry.g.push([i, p]);
        size += cost;
      }
    }
    if (cur.length || parts.length === 0) flush();
    return parts;
  }

  /**
   * Merge a snapshot part. A snapshot made before a clear this board has
   * seen would resurrect wiped strokes, so it is ignored.
   * @param {{clear: string|null, strokes: object[]}} part
   * @returns {boolean} whether anything changed
   */
  mergeSnapshot(part) {
    if (this.clearSeen && part.clear !== this.clearId) return false;
    if (!this.clearId && part.clear) this.clearId = part.clear;
    let changed = false;
    for (const e of part.strokes || []) {
      for (const [i, p] of e.g || []) {
        if (this.applySegment({ id: e.id, i, c: e.c, w: e.w, p }, e.a || "?")) changed = true;
      }
    }
    return changed;
  }
}
