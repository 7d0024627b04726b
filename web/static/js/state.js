// The store: what the agent inbox holds (the list, the open conversation, the live
// connection), the changes that apply to it, and the names by which modules hear of them.
//
// Modules never call each other's views. API answers and live events change the store here
// (upsertConversation) or in the module that owns that data; the change is announced by
// name, and the module that draws that part listens (`on`). A view asks for something done
// by emitting an intent, which its owner handles. Every module imports this one; this one
// imports nothing of ours, so there are no import cycles (tests/web/test_ui_modules.py).
//
//   changes  "list"     the list's data changed: redraw it              (list.js)
//            "header"   the open conversation changed: redraw its head  (thread.js)
//            "meta"     (conversation) its priority, labels, assignee   (conversation-meta.js)
//            "contact"  the open contact or its conversations changed   (contact.js)
//            "thread"   (previousId, id) another conversation is open   (any)
//            "notifications" state.notifications changed: the bell, the list (notifications.js)
//            "search"   state.search changed: the results, their status    (search.js)
//            "event"    (event) a live event, after the core applied it (any)
//   intents  "open" (id), "close"                                       (thread.js)
//            "pane" (name): show one pane on a phone                    (nav.js)
//            "load-contact" (id) -> Promise                             (contact.js)
//
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

export const meId = Number(document.querySelector('meta[name="agent-id"]').content);
export const STATUS_WORDS = { open: "Open", pending: "Pending", snoozed: "Snoozed", resolved: "Resolved" };
export const PAGE = 25;

export const PRIORITY_WORDS = { none: "None", low: "Low", medium: "Medium", high: "High", urgent: "Urgent" };

// ---- changes and intents, by name ----------------------------------------------------

const listeners = new Map(); // name -> [handler]

/** Listen to a change or handle an intent (see the names above). */
export function on(name, handler) {
  if (!listeners.has(name)) listeners.set(name, []);
  listeners.get(name).push(handler);
}

/** Announce a change or ask for an intent; answers what the first handler returned. */
export function emit(name, ...args) {
  let answer;
  for (const handler of listeners.get(name) || []) {
    const result = handler(...args);
    if (answer === undefined) answer = result;
  }
  return answer;
}

/** Feature modules see every live event after the core has applied it. */
export const onEvent = (handler) => on("event", handler);
export const dispatchEvent = (event) => emit("event", event);

// Feature modules redraw their part of the open conversation when its header is drawn again
// (the conversation changed, or the reply mode did).
export const onHeaderRender = (handler) => on("header-drawn", handler);
export const headerRendered = () => emit("header-drawn");

/** Hear that the open conversation changed: (previousId, id), ids or null. */
export const onThreadChange = (handler) => on("thread", handler);

// ---- state -------------------------------------------------------------------------

export const state = {
  // The agent automation rules act as ({id, name}), to name their replies and notes; it is
  // nobody's colleague (never in an assignment menu), so it is not in `agents`.
  automationAgent: null,
  // The bell and the Mentions/All list: changed by API answers and notification events
  // alike, drawn on "notifications".
  notifications: {
    kind: "mention",    // the list shows "mention" or "" (all)
    items: new Map(),   // id -> NotificationView, those listed
    nextCursor: null,
    loaded: false,
    generation: 0,      // the latest list request: older answers are dropped
    unread: 0,          // every kind: the bell
    unreadMentions: 0,  // the Mentions tab
  },
  // The search results shown instead of the list while a search is on (params not null).
  search: {
    params: null,       // the query (URLSearchParams), or null: no search on
    items: [],          // the results so far, pages appended
    nextCursor: null,
    generation: 0,      // the latest search: older answers are dropped
    status: "idle",     // idle | searching | done | failed
    error: null,
    loading: false,
  },
  agents: new Map(),         // id -> name
  inboxes: new Map(),        // id -> {name, channel}
  filter: loadFilter(),
  conversations: new Map(),  // id -> ConversationView, those in the list
  order: [],                 // ids, newest activity first
  nextCursor: null,
  listGeneration: 0,
  // While the list loads: the newest view of each conversation an event brought meanwhile
  // (the page may have been read before it; list.js applies them again on top of the page).
  listPending: null,
  open: null,                // {id, conversation, messages: Map, olderCursor, contact, others}
  mode: "message",
  lastEventId: null,
  socket: null,
  connected: false,
  retry: 0,
  buffer: null,              // events held while a reload is in flight
  loadedOnce: false,
  reloadGeneration: 0,
};

export function loadFilter() {
  const fallback = { view: "all", status: "open", inbox: "", label: "", priority: "", team: "", sla: "" };
  try {
    const saved = JSON.parse(localStorage.getItem("switchboard.filter") || "null");
    if (saved && ["mine", "unassigned", "all"].includes(saved.view)) return { ...fallback, ...saved };
  } catch { /* ignore a broken value */ }
  return fallback;
}

export function saveFilter() {
  try { localStorage.setItem("switchboard.filter", JSON.stringify(state.filter)); } catch { /* private mode */ }
}

export const agentName = (id) => (id === null || id === undefined ? null
  : state.agents.get(id) || (state.automationAgent?.id === id ? state.automationAgent.name : `Agent #${id}`));
export const inboxName = (id) => (state.inboxes.get(id) || {}).name || `Inbox #${id}`;
// Channels as people name them (the API says "webchat"; an agent reads "Website chat").
const CHANNEL_NAMES = {
  api: "API", email: "Email", sms: "SMS", whatsapp: "WhatsApp", webchat: "Website chat",
  telegram: "Telegram", messenger: "Messenger", instagram: "Instagram",
};
export const channelName = (kind) => CHANNEL_NAMES[kind] || kind;
// The short mark of a channel on every conversation and message (coloured by app.css).
const CHANNEL_MARKS = {
  api: "API", email: "@", sms: "SMS", whatsapp: "WA", webchat: "Web",
  telegram: "TG", messenger: "FB", instagram: "IG",
};
export const channelMark = (kind) => CHANNEL_MARKS[kind] || String(kind || "?").slice(0, 3).toUpperCase();
export const contactName = (conversation) => conversation.contact_name || "Unknown contact";
export const newerFirst = (a, b) => Date.parse(b.last_activity_at) - Date.parse(a.last_activity_at) || b.id - a.id;

export function matchesFilter(conversation) {
  const { view, status, inbox, label, priority, team, sla } = state.filter;
  if (view === "mine" && conversation.assignee_id !== meId) return false;
  if (view === "unassigned" && conversation.assignee_id !== null) return false;
  if (status && conversation.status !== status) return false;
  if (inbox && conversation.inbox_id !== Number(inbox)) return false;
  if (label && !(conversation.labels || []).includes(label)) return false;
  if (priority && conversation.priority !== priority) return false;
  if (team && conversation.team_id !== Number(team)) return false;
  if (sla && !(SLA_FILTERS[sla] || []).includes(conversation.sla_status)) return false;
  return true;
}

// The SLA filter's choices: which states each shows (soonest due first).
const SLA_FILTERS = { running: ["ok", "at_risk", "breached"], at_risk: ["at_risk"], breached: ["breached"] };

/** An SLA's state in a few words ("2h 5m left", "overdue 4m", "paused"), or "" for none. */
export function slaWords(conversation, now = Date.now()) {
  const status = conversation.sla_status;
  if (!status || status === "met") return "";
  if (status === "paused") return "SLA paused";
  if (!conversation.sla_due_at) return "";
  const left = Date.parse(conversation.sla_due_at) - now;
  const span = (ms) => {
    const minutes = Math.max(0, Math.round(Math.abs(ms) / 60000));
    if (minutes < 1) return "<1m";
    const days = Math.floor(minutes / 1440), hours = Math.floor((minutes % 1440) / 60), rest = minutes % 60;
    return days ? `${days}d ${hours}h` : hours ? `${hours}h ${rest}m` : `${rest}m`;
  };
  return left <= 0 || status === "breached" ? `SLA overdue ${span(left)}` : `SLA ${span(left)} left`;
}

/** How urgent an SLA looks right now: "breached", "at_risk", "ok", or "" (none shown). */
export function slaState(conversation, now = Date.now()) {
  const status = conversation.sla_status;
  if (!status || status === "met" || status === "paused") return status === "paused" ? "paused" : "";
  if (status === "breached" || (conversation.sla_due_at && Date.parse(conversation.sla_due_at) <= now)) return "breached";
  return status;
}

export function listQuery(cursor) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (state.filter.view === "mine") params.set("assignee", "me");
  if (state.filter.view === "unassigned") params.set("assignee", "none");
  if (state.filter.status) params.set("status", state.filter.status);
  if (state.filter.inbox) params.set("inbox_id", state.filter.inbox);
  if (state.filter.label) params.set("label", state.filter.label);
  if (state.filter.priority) params.set("priority", state.filter.priority);
  if (state.filter.team) params.set("team_id", state.filter.team);
  if (state.filter.sla) {
    params.set("sla", state.filter.sla);
    params.set("sort", "sla_due");
  }
  if (cursor) params.set("cursor", cursor);
  return `/api/v1/conversations?${params}`;
}

// ---- changes to the store ------------------------------------------------------------

const soonestDue = (a, b) => Date.parse(a.sla_due_at || 0) - Date.parse(b.sla_due_at || 0) || a.id - b.id;

export function sortList() {
  const order = state.filter.sla ? soonestDue : newerFirst;
  state.order.sort((a, b) => order(state.conversations.get(a), state.conversations.get(b)));
}

/** Apply a conversation's new state (an API answer or a live event) to the list, the open
 * thread and the contact panel's conversations; each view that shows it redraws. */
export function upsertConversation(conversation, { sla = false } = {}) {
  if (state.listPending) state.listPending.set(conversation.id, { conversation, sla });
  const open = state.open;
  // Only the SLA clocks' own news (and the API) say what the SLA is: other events may carry
  // none, and then what is known stays.
  const known = state.conversations.get(conversation.id)
    || (open && open.id === conversation.id ? open.conversation : null);
  if (!sla && known && conversation.sla_status == null && known.sla_status != null) {
    conversation = { ...conversation, sla_status: known.sla_status, sla_due_at: known.sla_due_at };
  }
  if (open && open.id === conversation.id) {
    open.conversation = conversation;
    emit("header");
  }
  if (open && open.others.some((c) => c.id === conversation.id)) {
    open.others = open.others.map((c) => (c.id === conversation.id ? conversation : c));
    emit("contact");
  }
  const listed = state.conversations.has(conversation.id);
  if (matchesFilter(conversation)) {
    // With more pages to load, an older conversation belongs to a page not fetched yet.
    const lastId = state.order[state.order.length - 1];
    const last = lastId === undefined ? null : state.conversations.get(lastId);
    const order = state.filter.sla ? soonestDue : newerFirst;
    if (!listed && state.nextCursor && last && order(conversation, last) > 0) return;
    if (!listed) state.order.push(conversation.id);
    state.conversations.set(conversation.id, conversation);
    sortList();
  } else if (listed) {
    state.conversations.delete(conversation.id);
    state.order = state.order.filter((id) => id !== conversation.id);
  } else {
    return;
  }
  emit("list");
}
