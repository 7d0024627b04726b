// Notifications: the bell and its unread count, the Mentions view, desktop notifications
// and a notification sound (both optional, remembered in localStorage).
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { el, elements, formatTime, toast } from "./dom.js";
import { api } from "./api.js";
import { agentName, contactName, emit, meId, on, onEvent, state } from "./state.js";
import { openConversation } from "./thread.js";

// The page's elements this view works with, found once.
const ui = elements({
  bellCount: "bell-count",
  bell: "bell",
  notificationList: "notification-list",
  notificationsEmpty: "notifications-empty",
  notificationsMore: "notifications-more",
  notificationsPanel: "notifications-panel",
  desktopToggle: "desktop-toggle",
  desktopState: "desktop-state",
  soundToggle: "sound-toggle",
  notificationsReadAll: "notifications-read-all",
});

const DESKTOP_KEY = "switchboard.desktop-notifications";
const SOUND_KEY = "switchboard.sound";

// The data lives in the store (state.notifications); every change is announced as
// "notifications" and drawn by draw() below, whether a click or a live event made it.
const view = state.notifications;
const changed = () => emit("notifications");
const TAB_WORDS = { mention: "Mentions", "": "All" };

// ---- the bell ------------------------------------------------------------------------

function renderCount() {
  const count = ui.bellCount;
  count.textContent = view.unread > 99 ? "99+" : String(view.unread);
  count.hidden = view.unread === 0;
  ui.bell.setAttribute("aria-label", view.unread ? `Notifications (${view.unread} unread)` : "Notifications");
  for (const button of document.querySelectorAll("[data-notifications]")) {
    const kind = button.dataset.notifications;
    const unread = kind === "mention" ? view.unreadMentions : view.unread;
    button.textContent = unread ? `${TAB_WORDS[kind]} (${unread})` : TAB_WORDS[kind];
  }
}

export async function refreshCount() {
  try {
    const [all, mentions] = await Promise.all([
      api("GET", "/api/v1/notifications?unread=1&limit=1"),
      api("GET", "/api/v1/notifications?unread=1&limit=1&kind=mention"),
    ]);
    view.unread = all.unread_count;
    view.unreadMentions = mentions.unread_count;
    changed();
  } catch { /* the next event or reconnect tries again */ }
}

// ---- the list (Mentions / All) -------------------------------------------------------

function describe(notification) {
  const by = agentName(notification.by_agent_id);
  const conversation = state.conversations.get(notification.conversation_id);
  const where = conversation ? ` · ${contactName(conversation)}` : ` · conversation #${notification.conversation_id}`;
  if (notification.kind === "mention") return `${by || "Someone"} mentioned you${where}`;
  // SLA warnings and rules' notices say it all in their text.
  if (notification.kind === "sla" || notification.kind === "rule") return `${notification.text}${where}`;
  // No author: the assignment rules gave it to me.
  return by ? `${by} assigned you a conversation${where}` : `A conversation came to you${where}`;
}

function notificationRow(notification) {
  const unread = !notification.read_at;
  return el("li", {
    class: unread ? "notification unread" : "notification",
    dataset: { id: String(notification.id), kind: notification.kind },
  }, el("a", {
    href: `#/conversations/${notification.conversation_id}`,
    onclick: () => openNotification(notification),
  },
  el("div", { class: "notification-top" },
    el("span", { class: "notification-title" }, describe(notification)),
    el("time", { datetime: notification.created_at }, formatTime(notification.created_at))),
  notification.text ? el("div", { class: "notification-text" }, notification.text) : null));
}

function renderList() {
  const ordered = [...view.items.values()].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at) || b.id - a.id);
  ui.notificationList.replaceChildren(...ordered.map(notificationRow));
  ui.notificationsEmpty.hidden = !view.loaded || ordered.length > 0;
  ui.notificationsEmpty.textContent = view.kind === "mention" ? "No mentions yet." : "No notifications yet.";
  ui.notificationsMore.hidden = !view.nextCursor;
  for (const button of document.querySelectorAll("[data-notifications]")) {
    button.setAttribute("aria-pressed", String(button.dataset.notifications === view.kind));
  }
}

function query(cursor) {
  const params = new URLSearchParams({ limit: "20" });
  if (view.kind) params.set("kind", view.kind);
  if (cursor) params.set("cursor", cursor);
  return `/api/v1/notifications?${params}`;
}

async function loadList(cursor = null) {
  const generation = cursor ? view.generation : ++view.generation;
  try {
    const page = await api("GET", query(cursor));
    if (generation !== view.generation) return;
    if (!cursor) view.items.clear();
    for (const item of page.items) view.items.set(item.id, item);
    view.nextCursor = page.next_cursor;
    // With a kind, the count is of that kind only.
    if (view.kind === "mention") view.unreadMentions = page.unread_count;
    else view.unread = page.unread_count;
    view.loaded = true;
    changed();
  } catch (error) {
    toast(`Could not load notifications: ${error.message}`);
  }
}

function setKind(kind) {
  view.kind = kind;
  view.items.clear();
  view.loaded = false;
  changed();
  loadList();
}

function isPanelOpen() {
  return !ui.notificationsPanel.hidden;
}

function showPanel(show) {
  ui.notificationsPanel.hidden = !show;
  ui.bell.setAttribute("aria-expanded", String(show));
  if (show) {
    renderSettings();
    loadList();
  }
}

/** Open the conversation a notification is about, and mark it read. */
async function openNotification(notification) {
  showPanel(false);
  openConversation(notification.conversation_id);
  if (!notification.read_at) await markRead({ ids: [notification.id] });
}

async function markRead(body) {
  try {
    const answer = await api("POST", "/api/v1/notifications/read", body);
    const now = new Date().toISOString();
    for (const item of view.items.values()) {
      if (body.all || body.ids.includes(item.id)) item.read_at = item.read_at || now;
    }
    if (answer && typeof answer.unread_count === "number") view.unread = answer.unread_count;
    if (body.all) view.unreadMentions = 0;
    changed();
    if (!body.all) await refreshCount();
  } catch (error) {
    toast(`Could not mark as read: ${error.message}`);
  }
}

// ---- desktop notifications and the sound ---------------------------------------------

const stored = (key) => { try { return localStorage.getItem(key) === "on"; } catch { return false; } };
const store = (key, on) => { try { localStorage.setItem(key, on ? "on" : "off"); } catch { /* private mode */ } };
const desktopSupported = () => "Notification" in window;
const desktopOn = () => desktopSupported() && Notification.permission === "granted" && stored(DESKTOP_KEY);

function renderSettings() {
  const button = ui.desktopToggle;
  const note = ui.desktopState;
  if (!desktopSupported()) {
    button.hidden = true;
    note.textContent = "This browser has no desktop notifications.";
    return;
  }
  const permission = Notification.permission;
  button.hidden = permission === "denied";
  button.textContent = desktopOn() ? "Disable desktop notifications" : "Enable desktop notifications";
  button.setAttribute("aria-pressed", String(desktopOn()));
  note.textContent = permission === "denied" ? "Desktop notifications are blocked in the browser's settings." : "";
  ui.soundToggle.checked = stored(SOUND_KEY);
}

async function toggleDesktop() {
  if (desktopOn()) {
    store(DESKTOP_KEY, false);
  } else {
    // Asked only now, after the agent clicked: never on page load.
    const permission = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
    store(DESKTOP_KEY, permission === "granted");
  }
  renderSettings();
}

let audio = null;
let lastBeep = 0;

/** The AudioContext may only start after a click; create or resume it on one. */
function readyAudio() {
  if (!stored(SOUND_KEY) || !("AudioContext" in window)) return;
  if (!audio) audio = new AudioContext();
  if (audio.state === "suspended") audio.resume().catch(() => {});
}

/** A short two-tone beep generated in JS: no sound file to ship. */
export function beep({ sample = false } = {}) {
  if (!stored(SOUND_KEY) || !audio || audio.state !== "running") return;
  if (!sample) {
    const now = Date.now();
    if (now - lastBeep < 1500) return; // a burst of events makes one sound
    lastBeep = now;
  }
  const start = audio.currentTime;
  const gain = audio.createGain();
  gain.connect(audio.destination);
  gain.gain.setValueAtTime(0.0001, start);
  gain.gain.exponentialRampToValueAtTime(0.15, start + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.35);
  for (const [frequency, at] of [[880, 0], [1320, 0.12]]) {
    const tone = audio.createOscillator();
    tone.type = "sine";
    tone.frequency.setValueAtTime(frequency, start + at);
    tone.connect(gain);
    tone.start(start + at);
    tone.stop(start + at + 0.22);
  }
}

function desktop(title, body, conversationId) {
  if (!desktopOn()) return;
  try {
    const shown = new Notification(title, { body: body.slice(0, 200), tag: `conversation-${conversationId}` });
    shown.addEventListener("click", () => {
      window.focus();
      window.location.hash = `#/conversations/${conversationId}`;
      shown.close();
    });
  } catch { /* some browsers only allow notifications from a service worker */ }
}

/** Someone is looking at this conversation right now: no need to ring. */
function watching(conversationId) {
  return document.visibilityState === "visible" && document.hasFocus() &&
    state.open !== null && state.open.id === conversationId;
}

function ring(title, body, conversationId) {
  if (watching(conversationId)) return;
  beep();
  desktop(title, body, conversationId);
}

// ---- live events -----------------------------------------------------------------------

function onLive(event) {
  if (event.type === "notification.created") {
    const notification = event.notification;
    if (notification.agent_id !== meId || notification.by_agent_id === meId) return;
    if (!notification.read_at) {
      view.unread += 1;
      if (notification.kind === "mention") view.unreadMentions += 1;
    }
    if (view.loaded && (!view.kind || view.kind === notification.kind)) {
      view.items.set(notification.id, notification);
    }
    changed();
    ring(describe(notification), notification.text || "", notification.conversation_id);
  } else if (event.type === "message.created") {
    const { message, conversation } = event;
    // New customer messages, and replies or notes by colleagues, in conversations assigned to me.
    if (conversation.assignee_id !== meId || message.kind === "activity") return;
    if (message.direction === "out" && (message.agent_id === meId || message.agent_id === null)) return;
    // A note that mentions me rings through its notification.created instead.
    if (message.kind === "note") return;
    const who = message.direction === "in" ? contactName(conversation) : agentName(message.agent_id);
    ring(`New message from ${who}`, message.text || "", conversation.id);
  }
}

// ---- start -------------------------------------------------------------------------

export function toggleNotifications() {
  showPanel(!isPanelOpen());
}

export function init() {
  ui.bell.addEventListener("click", toggleNotifications);
  for (const button of document.querySelectorAll("[data-notifications]")) {
    button.addEventListener("click", () => setKind(button.dataset.notifications));
  }
  ui.notificationsReadAll.addEventListener("click", () => markRead({ all: true }));
  ui.notificationsMore.addEventListener("click", () => loadList(view.nextCursor));
  ui.desktopToggle.addEventListener("click", toggleDesktop);
  ui.soundToggle.addEventListener("change", (event) => {
    store(SOUND_KEY, event.target.checked);
    readyAudio();
    beep({ sample: true }); // let the agent hear what it sounds like
  });
  document.addEventListener("click", readyAudio, { capture: true });
  document.addEventListener("keydown", readyAudio, { capture: true });
  // Close the panel on a click elsewhere or Escape.
  document.addEventListener("click", (event) => {
    if (isPanelOpen() && !event.target.closest("#notifications-panel, #bell")) showPanel(false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && isPanelOpen()) showPanel(false);
  });
  onEvent(onLive);
  on("notifications", () => { renderCount(); renderList(); });
  // Each time the live connection (re)starts, catch up on what happened while it was down.
  new MutationObserver(() => {
    if (document.body.dataset.live === "true") {
      refreshCount();
      if (isPanelOpen()) loadList();
    }
  }).observe(document.body, { attributes: true, attributeFilter: ["data-live"] });
  renderSettings();
  refreshCount();
}
