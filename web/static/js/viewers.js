// Collision detection: tell colleagues which conversation this agent has open, and show who
// else has it open (typing is shown by the thread's typing line).
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { el, elements } from "./dom.js";
import { api } from "./api.js";
import { agentName, meId, onEvent, state } from "./state.js";
import { onThreadChange } from "./thread.js";

// The page's elements this view works with, found once.
const ui = elements({
  viewers: "viewers",
});

const REPEAT_MS = 20000; // the server forgets a viewer not heard from for 60 s
const GONE_MS = 60000;

let viewing = null;          // the conversation id this agent said it is viewing
let repeatTimer = null;
const viewers = new Map();   // agent id -> {name, timer}

function say(id, on, options) {
  return api("POST", `/api/v1/conversations/${id}/viewing`, { viewing: on }, options).catch(() => {});
}

function startViewing(id) {
  viewing = id;
  say(id, true);
  clearInterval(repeatTimer);
  repeatTimer = setInterval(() => say(id, true), REPEAT_MS);
  loadViewers(id);
}

function stopViewing() {
  clearInterval(repeatTimer);
  if (viewing !== null) say(viewing, false);
  viewing = null;
  for (const { timer } of viewers.values()) clearTimeout(timer);
  viewers.clear();
  renderViewers();
}

async function loadViewers(id) {
  let found;
  try {
    found = await api("GET", `/api/v1/conversations/${id}/viewers`);
  } catch {
    return;
  }
  if (viewing !== id) return;
  for (const viewer of found) {
    if (viewer.agent_id !== meId) seen(viewer.agent_id, viewer.name);
  }
  renderViewers();
}

/** A colleague said they view the conversation: show them until they leave or go quiet. */
function seen(agentId, name) {
  const known = viewers.get(agentId);
  if (known) clearTimeout(known.timer);
  const timer = setTimeout(() => { viewers.delete(agentId); renderViewers(); }, GONE_MS);
  viewers.set(agentId, { name: name || agentName(agentId), timer });
}

function left(agentId) {
  const known = viewers.get(agentId);
  if (!known) return;
  clearTimeout(known.timer);
  viewers.delete(agentId);
}

const initials = (name) => name.split(/\s+/).filter(Boolean).slice(0, 2).map((word) => word[0].toUpperCase()).join("") || "?";

function renderViewers() {
  const box = ui.viewers;
  const people = Array.from(viewers, ([id, { name }]) => ({ id, name })).sort((a, b) => a.name.localeCompare(b.name));
  if (!people.length) {
    box.replaceChildren();
    box.hidden = true;
    return;
  }
  const names = people.map((p) => p.name);
  const sentence = `${names.join(", ")} ${names.length > 1 ? "are" : "is"} viewing this conversation`;
  box.replaceChildren(
    el("ul", { class: "viewer-list", "aria-label": "Also viewing" }, people.map((person) =>
      el("li", { class: "viewer", dataset: { agentId: String(person.id) }, title: `${person.name} is viewing` },
        el("span", { class: `avatar avatar-${person.id % 6}`, "aria-hidden": "true" }, initials(person.name)),
        el("span", { class: "viewer-name" }, person.name)))),
    el("span", { class: "viewers-label" }, names.length > 1 ? "are viewing" : "is viewing"),
  );
  box.title = sentence;
  box.hidden = false;
}

export function init() {
  onThreadChange((previousId, id) => {
    stopViewing();
    if (id !== null) startViewing(id);
  });
  onEvent((event) => {
    if (event.type !== "conversation.viewing" || event.conversation_id !== viewing || event.by_agent_id === meId) return;
    if (event.viewing) seen(event.by_agent_id, null);
    else left(event.by_agent_id);
    renderViewers();
  });
  // Leaving the page: say so with a request that outlives it; coming back from the cache: say it again.
  window.addEventListener("pagehide", () => {
    if (viewing === null) return;
    clearInterval(repeatTimer);
    say(viewing, false, { keepalive: true });
  });
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted || !state.open) return;
    viewing = null; // pagehide already said goodbye
    stopViewing();
    startViewing(state.open.id);
  });
  document.addEventListener("visibilitychange", () => {
    // Background tabs run timers late; a tab coming back renews at once.
    if (document.visibilityState === "visible" && viewing !== null) say(viewing, true);
  });
  if (state.open) startViewing(state.open.id);
}
