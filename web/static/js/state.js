// What the agent inbox holds: the list, the open conversation, the live connection.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

export const meId = Number(document.querySelector('meta[name="agent-id"]').content);
export const STATUS_WORDS = { open: "Open", pending: "Pending", snoozed: "Snoozed", resolved: "Resolved" };
export const PAGE = 25;

/** Feature modules register here to see every live event after the core has applied it. */
const eventHandlers = [];
export const onEvent = (handler) => eventHandlers.push(handler);
export const dispatchEvent = (event) => { for (const handler of eventHandlers) handler(event); };

// Feature modules redraw their part of the open conversation when its header is drawn again
// (the conversation changed, or the reply mode did).
const headerHandlers = [];
export const onHeaderRender = (handler) => headerHandlers.push(handler);
export const headerRendered = () => { for (const handler of headerHandlers) handler(); };

// ---- state -------------------------------------------------------------------------

export const state = {
  agents: new Map(),         // id -> name
  inboxes: new Map(),        // id -> {name, channel}
  filter: loadFilter(),
  conversations: new Map(),  // id -> ConversationView, those in the list
  order: [],                 // ids, newest activity first
  nextCursor: null,
  listGeneration: 0,
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
  const fallback = { view: "all", status: "open", inbox: "", label: "", priority: "", team: "" };
  try {
    const saved = JSON.parse(localStorage.getItem("switchboard.filter") || "null");
    if (saved && ["mine", "unassigned", "all"].includes(saved.view)) return { ...fallback, ...saved };
  } catch { /* ignore a broken value */ }
  return fallback;
}

export function saveFilter() {
  try { localStorage.setItem("switchboard.filter", JSON.stringify(state.filter)); } catch { /* private mode */ }
}

export const agentName = (id) => (id === null || id === undefined ? null : state.agents.get(id) || `Agent #${id}`);
export const inboxName = (id) => (state.inboxes.get(id) || {}).name || `Inbox #${id}`;
export const contactName = (conversation) => conversation.contact_name || "Unknown contact";
export const newerFirst = (a, b) => Date.parse(b.last_activity_at) - Date.parse(a.last_activity_at) || b.id - a.id;

export function matchesFilter(conversation) {
  const { view, status, inbox, label, priority, team } = state.filter;
  if (view === "mine" && conversation.assignee_id !== meId) return false;
  if (view === "unassigned" && conversation.assignee_id !== null) return false;
  if (status && conversation.status !== status) return false;
  if (inbox && conversation.inbox_id !== Number(inbox)) return false;
  if (label && !(conversation.labels || []).includes(label)) return false;
  if (priority && conversation.priority !== priority) return false;
  if (team && conversation.team_id !== Number(team)) return false;
  return true;
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
  if (cursor) params.set("cursor", cursor);
  return `/api/v1/conversations?${params}`;
}
