// The conversation list: load, page, apply changes, render.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { $, channelBadge, el, elements, formatTime, toast } from "./dom.js";
import { api } from "./api.js";
import { PRIORITY_WORDS, STATUS_WORDS, agentName, channelMark, channelName, contactName, emit, inboxName, listQuery, on, saveFilter, slaState, slaWords, sortList, state, upsertConversation } from "./state.js";

// The page's elements this view works with, found once.
const ui = elements({
  loadMore: "load-more",
  conversationList: "conversation-list",
  listEmpty: "list-empty",
  statusFilter: "status-filter",
  inboxFilter: "inbox-filter",
  labelFilter: "label-filter",
  priorityFilter: "priority-filter",
  slaFilter: "sla-filter",
  teamFilter: "team-filter",
  moreFiltersToggle: "more-filters-toggle",
  moreFilters: "more-filters",
});

// ---- the conversation list ---------------------------------------------------------

export async function loadList() {
  const generation = ++state.listGeneration;
  const pending = new Map();
  state.listPending = pending;
  let page;
  try {
    page = await api("GET", listQuery(null));
  } finally {
    if (state.listPending === pending) state.listPending = null;
  }
  if (generation !== state.listGeneration) return;
  state.conversations = new Map(page.items.map((c) => [c.id, c]));
  state.order = page.items.map((c) => c.id);
  state.nextCursor = page.next_cursor;
  // What changed while the page was read, newest view of each, on top of it: an event that
  // came meanwhile is never lost to a page read before it.
  for (const { conversation, sla } of pending.values()) upsertConversation(conversation, { sla });
  renderList();
}

export async function loadMore() {
  if (!state.nextCursor) return;
  const generation = state.listGeneration;
  const button = ui.loadMore;
  button.disabled = true;
  try {
    const page = await api("GET", listQuery(state.nextCursor));
    if (generation !== state.listGeneration) return;
    for (const conversation of page.items) {
      if (!state.conversations.has(conversation.id)) state.order.push(conversation.id);
      state.conversations.set(conversation.id, conversation);
    }
    state.nextCursor = page.next_cursor;
    sortList();
    renderList();
  } catch (error) {
    toast(`Could not load more: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

export const rows = new Map(); // id -> {li, parts}

// ---- multi-select (leads reassign many at once; bulk.js acts on the selection) -------

export const selection = new Set(); // ids of checked rows
const selectionHandlers = [];
let anchorId = null; // the row a shift-click range starts from

/** Call `handler()` whenever the selection changes. */
export const onSelectionChange = (handler) => selectionHandlers.push(handler);

function selectionChanged() {
  for (const [id, row] of rows) {
    row.parts.check.checked = selection.has(id);
    row.li.classList.toggle("checked", selection.has(id));
  }
  for (const handler of selectionHandlers) handler();
}

/** Check or uncheck one row; with `range`, every row between the last one clicked and it. */
export function selectRow(id, checked, { range = false } = {}) {
  const from = range && anchorId !== null ? state.order.indexOf(anchorId) : -1;
  const to = state.order.indexOf(id);
  if (from !== -1 && to !== -1) {
    for (const other of state.order.slice(Math.min(from, to), Math.max(from, to) + 1)) {
      if (checked) selection.add(other);
      else selection.delete(other);
    }
  } else if (checked) {
    selection.add(id);
  } else {
    selection.delete(id);
  }
  anchorId = id;
  selectionChanged();
}

/** Select every conversation loaded in the list, or none. */
export function selectAll(checked) {
  selection.clear();
  if (checked) for (const id of state.order) selection.add(id);
  anchorId = null;
  selectionChanged();
}

/** Drop ids from the selection (done with, or gone from the list). */
export function unselect(ids) {
  for (const id of ids) selection.delete(id);
  selectionChanged();
}

export function makeRow(id) {
  const parts = {
    channel: el("span", { class: "channel-slot" }),
    name: el("span", { class: "name" }),
    time: el("time", { class: "time" }),
    preview: el("span", { class: "preview" }),
    inbox: el("span", { class: "inbox" }),
    assignee: el("span", { class: "assignee" }),
    status: el("span", { class: "status-chip" }),
    priority: el("span", { class: "priority-chip" }),
    sla: el("span", { class: "sla-chip" }),
    labels: el("span", { class: "row-labels" }),
    badge: el("span", { class: "badge", "aria-label": "unread messages" }),
    check: el("input", {
      type: "checkbox", class: "row-select", "aria-label": "Select this conversation",
      onclick: (event) => selectRow(id, event.target.checked, { range: event.shiftKey }),
    }),
  };
  // Open at once on click; the hashchange that follows finds it already open.
  const link = el("a", { class: "conversation", href: `#/conversations/${id}`, onclick: () => emit("open", id) },
    el("div", { class: "row-top" }, parts.channel, parts.name, parts.badge, parts.time),
    el("div", { class: "row-preview" }, parts.preview),
    el("div", { class: "row-meta" }, parts.inbox, parts.assignee, parts.status, parts.priority, parts.sla, parts.labels));
  const li = el("li", { class: "conversation-row", dataset: { id: String(id) } }, parts.check, link);
  return { li, parts };
}

/** An SLA chip: its countdown and how urgent it is (hidden without a running SLA). */
export function fillSla(chip, conversation) {
  const words = slaWords(conversation);
  chip.textContent = words;
  chip.hidden = !words;
  chip.className = `sla-chip sla-${slaState(conversation) || "none"}`;
  if (conversation.sla_due_at) chip.title = `SLA due ${new Date(conversation.sla_due_at).toLocaleString()}`;
}

export function fillRow(row, conversation) {
  const { parts, li } = row;
  parts.name.textContent = contactName(conversation);
  if (parts.channel.dataset.kind !== conversation.channel) {
    parts.channel.dataset.kind = conversation.channel;
    parts.channel.replaceChildren(channelBadge(conversation.channel, channelMark(conversation.channel),
      channelName(conversation.channel)));
  }
  parts.time.textContent = formatTime(conversation.last_activity_at);
  parts.time.setAttribute("datetime", conversation.last_activity_at);
  parts.preview.textContent = conversation.last_message_preview || conversation.subject || "";
  parts.inbox.textContent = inboxName(conversation.inbox_id);
  parts.inbox.title = parts.inbox.textContent; // the whole name when it is cut short
  const assignee = agentName(conversation.assignee_id);
  parts.assignee.textContent = assignee ? `· ${assignee}` : "· Unassigned";
  parts.assignee.title = assignee || "Unassigned";
  parts.status.textContent = conversation.status === "open" ? "" : STATUS_WORDS[conversation.status] || conversation.status;
  parts.status.hidden = conversation.status === "open";
  parts.status.className = `status-chip status-${conversation.status}`;
  const priority = conversation.priority || "none";
  parts.priority.textContent = priority === "none" ? "" : PRIORITY_WORDS[priority] || priority;
  parts.priority.hidden = priority === "none";
  parts.priority.className = `priority-chip priority-${priority}`;
  fillSla(parts.sla, conversation);
  const labels = conversation.labels || [];
  if (parts.labels.dataset.value !== labels.join("\n")) {
    parts.labels.dataset.value = labels.join("\n");
    parts.labels.replaceChildren(...labels.map((name) => el("span", { class: "label-chip", title: name }, name)));
    parts.labels.title = labels.join(", ");
  }
  parts.badge.textContent = conversation.unread_count > 99 ? "99+" : String(conversation.unread_count);
  parts.badge.hidden = conversation.unread_count === 0;
  li.classList.toggle("unread", conversation.unread_count > 0);
  li.classList.toggle("selected", state.open !== null && state.open.id === conversation.id);
  parts.check.checked = selection.has(conversation.id);
  li.classList.toggle("checked", parts.check.checked);
  parts.check.setAttribute("aria-label", `Select the conversation with ${contactName(conversation)}`);
  li.dataset.status = conversation.status;
}

export function renderList() {
  const list = ui.conversationList;
  const keep = new Set(state.order);
  for (const [id, row] of rows) {
    if (!keep.has(id)) {
      row.li.remove();
      rows.delete(id);
    }
  }
  const gone = [...selection].filter((id) => !keep.has(id));
  if (gone.length) unselect(gone); // what left the list is no longer selected
  let previous = null;
  for (const id of state.order) {
    let row = rows.get(id);
    if (!row) {
      row = makeRow(id);
      rows.set(id, row);
    }
    fillRow(row, state.conversations.get(id));
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (expected !== row.li) list.insertBefore(row.li, expected);
    previous = row.li;
  }
  ui.listEmpty.hidden = state.order.length > 0;
  ui.loadMore.hidden = !state.nextCursor;
  const unread = state.order.filter((id) => state.conversations.get(id).unread_count > 0).length;
  document.title = unread ? `(${unread}) Inbox · Switchboard` : "Inbox · Switchboard";
}

export function renderFilters() {
  for (const button of document.querySelectorAll(".tabs [data-view]")) {
    const active = button.dataset.view === state.filter.view;
    button.classList.toggle("active", active);
    button.setAttribute("aria-pressed", String(active));
  }
  ui.statusFilter.value = state.filter.status;
  ui.inboxFilter.value = state.filter.inbox;
  ui.labelFilter.value = state.filter.label;
  ui.priorityFilter.value = state.filter.priority;
  ui.slaFilter.value = state.filter.sla || "";
  ui.teamFilter.value = state.filter.team;
  ui.moreFiltersToggle.classList.toggle("active", Boolean(state.filter.label || state.filter.priority || state.filter.team || state.filter.sla));
}

export function setFilter(change) {
  state.filter = { ...state.filter, ...change };
  saveFilter();
  renderFilters();
  state.order = [];
  state.conversations = new Map();
  state.nextCursor = null;
  renderList();
  loadList().catch((error) => toast(`Could not load conversations: ${error.message}`));
}

// ---- label, priority and team filters ----------------------------------------------

export const teams = new Map(); // id -> name
export const labels = [];       // label names, sorted
let directoryLoading = null;

/** Teams and labels, fetched once: filter options, the reassign picker, search filters. */
export function loadDirectory() {
  if (!directoryLoading) {
    directoryLoading = Promise.all([
      api("GET", "/api/v1/teams").catch(() => []),
      api("GET", "/api/v1/labels").catch(() => []),
    ]).then(([foundTeams, foundLabels]) => {
      for (const team of foundTeams) teams.set(team.id, team.name);
      labels.splice(0, labels.length, ...foundLabels.map((label) => label.name).sort((a, b) => a.localeCompare(b)));
    });
  }
  return directoryLoading;
}

/** Replace a select's options after its first `fixed` ones with [value, text] pairs; keep its value. */
export function fillOptions(select, fixed, pairs) {
  const value = select.value;
  const kept = [...select.children].slice(0, fixed);
  select.replaceChildren(...kept, ...pairs.map(([optionValue, text]) => el("option", { value: String(optionValue) }, text)));
  select.value = value;
  if (select.selectedIndex === -1) select.selectedIndex = 0; // what was chosen is gone
}

const byName = (a, b) => a[1].localeCompare(b[1]);

function fillFilterOptions() {
  fillOptions(ui.labelFilter, 1, labels.map((name) => [name, name]));
  const teamSelect = ui.teamFilter;
  fillOptions(teamSelect, 1, [...teams].sort(byName));
  teamSelect.hidden = teams.size === 0;
  // A saved filter on a label or team that no longer exists would hide everything.
  const stale = {};
  if (state.filter.label && !labels.includes(state.filter.label)) stale.label = "";
  if (state.filter.team && !teams.has(Number(state.filter.team))) stale.team = "";
  if (Object.keys(stale).length) setFilter(stale);
  else renderFilters();
}

function showMoreFilters(show) {
  ui.moreFilters.hidden = !show;
  ui.moreFiltersToggle.setAttribute("aria-expanded", String(show));
}

/** j / k: open the next or previous conversation of the list, and keep its row in sight. */
export function move(step) {
  if (!state.order.length) return;
  const index = state.open ? state.order.indexOf(state.open.id) : -1;
  const next = index === -1 ? 0 : Math.min(state.order.length - 1, Math.max(0, index + step));
  window.location.hash = `#/conversations/${state.order[next]}`;
  const row = rows.get(state.order[next]);
  if (row) row.li.scrollIntoView({ block: "nearest" });
}

on("list", () => renderList());

export function init() {
  for (const [id, key] of [["#label-filter", "label"], ["#priority-filter", "priority"], ["#sla-filter", "sla"], ["#team-filter", "team"]]) {
    $(id).addEventListener("change", (event) => setFilter({ [key]: event.target.value }));
  }
  ui.moreFiltersToggle.addEventListener("click", () => showMoreFilters(ui.moreFilters.hidden));
  const { label, priority, team, sla } = state.filter;
  showMoreFilters(Boolean(label || priority || team || sla));
  // The countdowns move on by themselves.
  setInterval(() => {
    for (const id of state.order) {
      const row = rows.get(id);
      const conversation = state.conversations.get(id);
      if (row && conversation && conversation.sla_due_at) fillSla(row.parts.sla, conversation);
    }
  }, 15_000);
  loadDirectory().then(fillFilterOptions);
}
