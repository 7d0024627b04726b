// The reply window of channels that have one (WhatsApp, Messenger, Instagram): how long the
// agent may still answer with free text, counted down while the conversation is open, and
// renewed when the customer writes again. The server refuses a reply beyond it anyway; this
// says so before anyone types.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { elements } from "./dom.js";
import { api } from "./api.js";
import { onEvent, onHeaderRender, state } from "./state.js";

// The page's elements this view works with, found once.
const ui = elements({
  replyWindow: "reply-window",
});

const TICK_MS = 30000;
const closing = new Map(); // conversation id -> when its window closes (ms), as the server said

function remember(conversation) {
  if (conversation && conversation.reply_window_closes_at) {
    closing.set(conversation.id, Date.parse(conversation.reply_window_closes_at));
  }
}

function left(ms) {
  const minutes = Math.max(1, Math.floor(ms / 60000)); // never more than is left
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} days ${hours % 24} h`;
}

function render() {
  const open = state.open;
  const closesAt = open ? closing.get(open.id) : undefined;
  const chip = ui.replyWindow;
  if (closesAt === undefined) {
    chip.hidden = true;
    return;
  }
  const remaining = closesAt - Date.now();
  chip.hidden = false;
  chip.classList.toggle("closed", remaining <= 0);
  chip.classList.toggle("closing", remaining > 0 && remaining < 3600000);
  chip.textContent = remaining > 0 ? `Reply window: ${left(remaining)} left` : "Reply window closed";
  chip.title = remaining > 0
    ? `Free text can be sent until ${new Date(closesAt).toLocaleString()}`
    : "Only an approved template can go out until the customer writes again; notes still work";
}

async function refresh(id) {
  try {
    const conversation = await api("GET", `/api/v1/conversations/${id}`);
    remember(conversation);
  } catch { /* the header keeps what it knew */ }
  render();
}

export function init() {
  onHeaderRender(() => {
    if (state.open) remember(state.open.conversation);
    render();
  });
  onEvent((event) => {
    const open = state.open;
    if (event.type !== "message.created" || !open || event.conversation.id !== open.id) return;
    if (event.message.direction === "in" && closing.has(open.id)) refresh(open.id);
  });
  setInterval(render, TICK_MS);
}
