// Live updates: the agent websocket, resume and resync, applying events.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { elements, toast } from "./dom.js";
import { api } from "./api.js";
import { agentName, contactName, dispatchEvent, state, upsertConversation } from "./state.js";
import { loadList } from "./list.js";
import { addMessage, loadThread, markRead, setTyping, showTyping } from "./thread.js";

// The page's elements this view works with, found once.
const ui = elements({
  offline: "offline",
});

// ---- live: the agent websocket -----------------------------------------------------

let reconnectTimer = null;
let pingTimer = null;
let pongDeadline = null;

export function setOnline(online) {
  state.connected = online;
  ui.offline.hidden = online;
  document.body.classList.toggle("offline", !online);
  document.body.dataset.live = String(online);
}

export function connect() {
  clearTimeout(reconnectTimer);
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  let url = `${scheme}//${window.location.host}/api/v1/ws`;
  if (state.lastEventId) url += `?last_event_id=${encodeURIComponent(state.lastEventId)}`;
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.addEventListener("message", (message) => {
    clearTimeout(pongDeadline);
    if (state.socket !== socket) return;
    let frame;
    try { frame = JSON.parse(message.data); } catch { return; }
    handleFrame(frame);
  });
  socket.addEventListener("close", (closed) => {
    if (state.socket !== socket) return;
    state.socket = null;
    clearInterval(pingTimer);
    clearTimeout(pongDeadline);
    setOnline(false);
    // A refused handshake or an ended session: if the session is gone, go to the login page.
    if (!socket.wasReady || closed.code === 1008 || closed.code === 4401) {
      api("GET", "/api/v1/me").catch(() => {});
    }
    if (!state.loadedOnce) reloadAll();
    const delay = Math.min(10000, 500 * 2 ** state.retry) * (0.5 + Math.random() / 2);
    state.retry = Math.min(state.retry + 1, 5);
    reconnectTimer = setTimeout(connect, delay);
  });
}

export function handleFrame(frame) {
  if (frame.type === "event") {
    state.lastEventId = frame.id;
    if (state.buffer) state.buffer.push(frame.event);
    else applyEvent(frame.event);
  } else if (frame.type === "ready") {
    if (state.socket) state.socket.wasReady = true;
    const resumed = state.lastEventId !== null;
    state.lastEventId = frame.last_event_id;
    state.retry = 0;
    setOnline(true);
    clearInterval(pingTimer);
    pingTimer = setInterval(ping, 25000);
    if (!resumed) reloadAll();
  } else if (frame.type === "resync") {
    reloadAll();
  }
}

export function ping() {
  const socket = state.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send('{"type":"ping"}');
  clearTimeout(pongDeadline);
  pongDeadline = setTimeout(() => socket.close(), 10000); // a silent connection is a dead one
}

/** Reload the list and the open thread; events arriving meanwhile apply afterwards. */
export async function reloadAll() {
  const generation = ++state.reloadGeneration;
  if (!state.buffer) state.buffer = [];
  try {
    const open = state.open;
    await Promise.all([loadList(), open ? loadThread(open.id) : null]);
    state.loadedOnce = true;
  } catch (error) {
    toast(`Could not load: ${error.message}`);
  }
  if (generation !== state.reloadGeneration) return;
  const held = state.buffer || [];
  state.buffer = null;
  for (const event of held) applyEvent(event);
}

export function applyEvent(event) {
  switch (event.type) {
    case "message.created": {
      upsertConversation(event.conversation);
      const open = state.open;
      if (open && open.id === event.message.conversation_id) {
        addMessage(event.message);
        const who = event.message.direction === "in" ? contactName(event.conversation) : agentName(event.message.agent_id);
        if (open.typing.has(who)) setTyping(open, who, false);
        if (event.message.direction === "in" && event.conversation.unread_count > 0 &&
            document.visibilityState === "visible") {
          markRead(open.id);
        }
      }
      break;
    }
    case "message.status_changed":
    case "message.edited":
      addMessage(event.message);
      break;
    case "conversation.created":
    case "conversation.assigned":
    case "conversation.status_changed":
    case "conversation.read":
      upsertConversation(event.conversation);
      break;
    case "conversation.updated": {
      upsertConversation(event.conversation, { sla: (event.changes || []).includes("sla") });
      const open = state.open;
      // Messages moved in (a merge) or out (a split): read the thread again.
      if (open && open.id === event.conversation.id &&
          (event.changes || []).some((c) => c === "merged" || c === "messages")) {
        loadThread(open.id).catch(() => {});
      }
      break;
    }
    case "conversation.typing":
      showTyping(event);
      break;
    default:
      break;
  }
  dispatchEvent(event);
}
