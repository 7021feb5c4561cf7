/**
 * Colours that tell the people on a board apart (their cursors and presence dots).
 *
 * A colour hashed from each name lets two people land on nearly the same hue.
 * Instead, the members of the room, in client-id order (the same list on every
 * page), take the palette's colours in turn: up to its length, no two share a
 * colour, and every page shows each person in the same one.
 * @module board-colors
 */

/**
 * Readable under white text; ordered so that any first few are far apart
 * (CIE76 distance at least 35 between any two of them).
 */
export const PALETTE = ["#e03131", "#1971c2", "#2f9e44", "#f08c00", "#9c36b5", "#0c8599", "#c2255c"];

/**
 * @param {{client_id: string}[]} members the room's members
 * @returns {Map<string, string>} client id -> colour
 */
export function memberColors(members) {
  const ids = members.map((m) => m.client_id).sort();
  return new Map(ids.map((id, k) => [id, PALETTE[k % PALETTE.length]]));
}
