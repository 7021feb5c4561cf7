/**
 * Small UI helpers shared by the chat and whiteboard pages: the connection
 * badge, the presence list, per-name colours, and reading page parameters.
 * Everything user-supplied goes through textContent, never innerHTML, so a
 * name or message cannot inject markup.
 * @module ui
 */

/** Room names the server accepts: 1-64 of letters, digits and -_.: */
export const ROOM_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * A stable, readable colour for a name, so the same person has the same
 * colour in the presence list, next to messages and on their cursor.
 * @param {string} name
 * @returns {string} CSS colour
 */
export function colorFor(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 65% 42%)`;
}

/**
 * Read ?name=&room= (and the #room hash) so a page can be linked to, and
 * fall back to what the user typed last time.
 * @param {string} defaultRoom
 * @returns {{name: string, room: string}}
 */
export function pageParams(defaultRoom) {
  const q = new URLSearchParams(location.search);
  const hashRoom = decodeURIComponent(location.hash.slice(1));
  return {
    name: q.get("name") || localStorage.getItem("hub.name") || "",
    room: q.get("room") || (ROOM_RE.test(hashRoom) ? hashRoom : "") || defaultRoom,
  };
}

/**
 * Keep a badge element in sync with the client's connection state. The
 * text says what is happening in words a user understands, including a
 * countdown to the next reconnect attempt.
 * @param {HTMLElement} el
 * @param {import("./hub.js").HubClient} hub
 */
export function bindStateBadge(el, hub) {
  let timer = null;
  const render = () => {
    el.dataset.state = hub.state;
    // Lets the page's CSS mark what may be stale while offline (presence).
    document.body.dataset.conn = hub.state;
    clearInterval(timer);
    timer = null;
    if (hub.state === "open") el.textContent = "Connected";
    else if (hub.state === "connecting") el.textContent = "Connecting…";
    else if (hub.state === "closed") el.textContent = "Disconnected";
    else {
      const tick = () => {
        const left = hub.nextRetryAt ? Math.max(0, hub.nextRetryAt - Date.now()) : 0;
        el.textContent = left > 400 ? `Reconnecting in ${Math.ceil(left / 1000)} s…` : "Reconnecting…";
      };
      tick();
      timer = setInterval(tick, 250);
    }
  };
  hub.on("state", render);
  render();
}

/**
 * Render a room's members into a list, the local connection marked "you".
 * @param {HTMLElement} ul
 * @param {{client_id: string, name: string}[]} members
 * @param {string|null} selfId
 */
export function renderPeople(ul, members, selfId) {
  const sorted = [...members].sort((a, b) => a.name.localeCompare(b.name));
  ul.replaceChildren(
    ...sorted.map((m) => {
      const li = document.createElement("li");
      li.dataset.clientId = m.client_id;
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.style.background = colorFor(m.name);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = m.name;
      li.append(dot, name);
      if (m.client_id === selfId) {
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = "(you)";
        li.append(you);
      }
      return li;
    }),
  );
}

/**
 * Show a short message at the bottom of the page for a few seconds.
 * @param {string} text
 */
export function toast(text) {
  let el = document.querySelector(".toast");
  if (!el) {
    el = document.createElement("div");
    el.className = "toast";
    el.setAttribute("role", "status");
    document.body.append(el);
  }
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), 4000);
}

/**
 * Words for a history_gap event, for a notice in the page.
 * @param {{lost: boolean, epochChanged: boolean, oldest_seq?: number, since: number}} gap
 * @returns {string}
 */
export function describeGap(gap) {
  if (gap.epochChanged) {
    return "The server restarted and its history started over: messages sent while you were away may be lost.";
  }
  if (gap.since > 0 && gap.oldest_seq != null) {
    const missing = gap.oldest_seq - gap.since - 1;
    return `You were away too long: ${missing} message${missing === 1 ? "" : "s"} no longer in history.`;
  }
  return "Older messages are no longer in history.";
}
