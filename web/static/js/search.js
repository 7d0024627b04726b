// Search above the list: messages, notes, subjects and contacts, with filters; the results
// replace the list until the search is cleared.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { $, el, elements, formatTime, toast } from "./dom.js";
import { api } from "./api.js";
import { STATUS_WORDS, channelName, contactName, emit, inboxName, newerFirst, on, state } from "./state.js";
import { fillOptions, labels, loadDirectory } from "./list.js";
import { openConversation } from "./thread.js";

// The page's elements this view works with, found once.
const ui = elements({
  searchInput: "search-input",
  searchFrom: "search-from",
  searchTo: "search-to",
  searchResults: "search-results",
  searchStatus: "search-status",
  searchMore: "search-more",
  searchHead: "search-head",
  searchFilters: "search-filters",
  searchFiltersToggle: "search-filters-toggle",
  searchInbox: "search-inbox",
  searchChannel: "search-channel",
  searchAssignee: "search-assignee",
  searchLabel: "search-label",
  searchForm: "search-form",
  searchClear: "search-clear",
});

const KIND_WORDS = { message: "Message", note: "Note", conversation: "Subject", contact: "Contact" };
const FILTERS = [ // form field -> query parameter
  ["#search-inbox", "inbox_id"],
  ["#search-status-filter", "status"],
  ["#search-assignee", "assignee"],
  ["#search-label", "label"],
  ["#search-channel", "channel"],
];

// The results live in the store (state.search); every change is announced as "search" and
// drawn by drawSearch() below.
const search = state.search;
const changed = () => emit("search");

// ---- querying ------------------------------------------------------------------------

/** A date input's day as the start of that day, or (`end`) the start of the next, in local time. */
function dayBound(value, end) {
  if (!value) return null;
  const [year, month, day] = value.split("-").map(Number);
  return new Date(year, month - 1, day + (end ? 1 : 0)).toISOString();
}

function currentParams() {
  const params = new URLSearchParams();
  const q = ui.searchInput.value.trim();
  if (q) params.set("q", q);
  for (const [field, name] of FILTERS) {
    const value = $(field).value;
    if (value) params.set(name, value);
  }
  const from = dayBound(ui.searchFrom.value, false);
  const to = dayBound(ui.searchTo.value, true);
  if (from) params.set("from", from);
  if (to) params.set("to", to);
  return params;
}

export async function runSearch() {
  const params = currentParams();
  if (!params.get("q")) { // the filters narrow a search; words are what it looks for
    if (search.params) clearSearch();
    else ui.searchInput.focus();
    return;
  }
  const generation = ++search.generation;
  Object.assign(search, { params, items: [], nextCursor: null, status: "searching", error: null });
  changed();
  await loadPage(generation, null);
}

async function loadPage(generation, cursor) {
  const params = new URLSearchParams(search.params);
  params.set("limit", "25");
  if (cursor) params.set("cursor", cursor);
  search.loading = true;
  changed();
  try {
    const page = await api("GET", `/api/v1/search?${params}`);
    if (generation !== search.generation) return;
    search.items.push(...page.items);
    search.nextCursor = page.next_cursor;
    search.status = "done";
  } catch (error) {
    if (generation !== search.generation) return;
    Object.assign(search, { status: "failed", error: error.message });
  } finally {
    if (generation === search.generation) {
      search.loading = false;
      changed();
    }
  }
}

/** Leave the results (and reset the query and filters): the live list is back, as it is now. */
export function clearSearch() {
  search.generation += 1;
  Object.assign(search, { params: null, items: [], nextCursor: null, status: "idle", error: null,
    loading: false });
  ui.searchInput.value = "";
  for (const [field] of FILTERS) $(field).value = "";
  ui.searchFrom.value = "";
  ui.searchTo.value = "";
  changed();
}

/** Draw the results as the store holds them. */
function drawSearch() {
  const shown = search.params !== null;
  $(".list-pane").classList.toggle("searching", shown);
  ui.searchResults.hidden = !shown;
  ui.searchHead.hidden = !shown;
  ui.searchMore.hidden = !shown || !search.nextCursor || search.loading;
  ui.searchMore.disabled = search.loading;
  const drawn = ui.searchResults.children.length;
  if (!shown || drawn > search.items.length) ui.searchResults.replaceChildren();
  // Rows already drawn stay (a second page appends): focus and scroll are kept.
  ui.searchResults.append(...search.items.slice(ui.searchResults.children.length).map(resultRow));
  if (!shown) return;
  const q = search.params.get("q");
  const what = q ? ` for “${q}”` : "";
  const count = search.items.length;
  ui.searchStatus.textContent = search.status === "failed" ? `Search failed: ${search.error}`
    : search.status === "searching" ? "Searching…"
    : count === 0 ? `Nothing found${what}.`
    : `${count}${search.nextCursor ? "+" : ""} ${count === 1 ? "result" : "results"}${what}`;
}

// ---- a result ------------------------------------------------------------------------

/**
 * A plain-text snippet as text nodes, the words found wrapped in <mark>. The server says
 * where they are (`highlights`: [start, end) in code points, phrases and word starts
 * included), so a word is marked only where search matched it as a word.
 */
export function snippetNodes(snippet, highlights) {
  const chars = Array.from(snippet); // code points, as the server counts
  const nodes = [];
  let at = 0;
  for (const [start, end] of [...(highlights || [])].sort((a, b) => a[0] - b[0])) {
    if (start < at || end > chars.length || start >= end) continue; // overlapping or stale
    if (start > at) nodes.push(chars.slice(at, start).join(""));
    nodes.push(el("mark", {}, chars.slice(start, end).join("")));
    at = end;
  }
  if (at < chars.length) nodes.push(chars.slice(at).join(""));
  return nodes;
}

/** A contact found by name or address: open their newest conversation (their panel shows the rest). */
async function openContact(contact) {
  try {
    const found = await api("GET", `/api/v1/contacts/${contact.id}`);
    const conversations = [...(found.conversations || [])].sort(newerFirst);
    if (!conversations.length) {
      toast("This contact has no conversation you can see.");
      return;
    }
    window.location.hash = `#/conversations/${conversations[0].id}`;
  } catch (error) {
    toast(`Could not open the contact: ${error.message}`);
  }
}

function resultRow(item) {
  const { conversation, contact, message } = item;
  const kind = el("span", { class: `match-kind match-${item.kind}` }, KIND_WORDS[item.kind] || item.kind);
  const name = conversation ? contactName(conversation) : (contact && (contact.name || contact.email || contact.phone)) || "Unknown contact";
  const when = (message && message.accepted_at) || (conversation && conversation.last_activity_at) || null;
  const meta = conversation
    ? el("div", { class: "row-meta" }, inboxName(conversation.inbox_id), " · ",
      STATUS_WORDS[conversation.status] || conversation.status)
    : null;
  const body = [
    el("div", { class: "row-top" }, el("span", { class: "name" }, name), kind,
      when ? el("time", { class: "time", datetime: when }, formatTime(when)) : null),
    el("div", { class: "snippet" }, snippetNodes(item.snippet || "", item.highlights)),
    meta,
  ];
  const dataset = { kind: item.kind };
  if (!conversation) {
    if (!contact) return el("li", { class: "search-result", dataset }, el("div", { class: "conversation" }, body));
    dataset.contactId = String(contact.id);
    return el("li", { class: "search-result", dataset },
      el("a", { class: "conversation", href: "#", onclick: (event) => { event.preventDefault(); openContact(contact); } }, body));
  }
  dataset.conversationId = String(conversation.id);
  return el("li", { class: "search-result", dataset },
    el("a", { class: "conversation", href: `#/conversations/${conversation.id}`, onclick: () => openConversation(conversation.id) }, body));
}

// ---- the form ------------------------------------------------------------------------

export function focusSearch() {
  const input = ui.searchInput;
  input.focus();
  input.select();
}

function showFilters(show) {
  ui.searchFilters.hidden = !show;
  ui.searchFiltersToggle.setAttribute("aria-expanded", String(show));
}

function fillSearchOptions() {
  const inboxes = [...state.inboxes.values()].sort((a, b) => a.name.localeCompare(b.name));
  fillOptions(ui.searchInbox, 1, inboxes.map((inbox) => [inbox.id, inbox.name]));
  const channels = [...new Set(inboxes.map((inbox) => inbox.channel))].sort();
  fillOptions(ui.searchChannel, 1, channels.map((channel) => [channel, channelName(channel)]));
  const agents = [...state.agents].sort((a, b) => a[1].localeCompare(b[1]));
  fillOptions(ui.searchAssignee, 3, agents);
  fillOptions(ui.searchLabel, 1, labels.map((label) => [label, label]));
}

export function init() {
  const input = ui.searchInput;
  ui.searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch().catch((error) => toast(error.message));
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && (input.value || search.params)) clearSearch();
  });
  // The browser's own clear button (×) of a search field empties it: back to the list.
  input.addEventListener("search", () => { if (!input.value && search.params) runSearch(); });
  ui.searchClear.addEventListener("click", () => { clearSearch(); showFilters(false); });
  ui.searchMore.addEventListener("click", () => loadPage(search.generation, search.nextCursor));
  ui.searchFiltersToggle.addEventListener("click", () => showFilters(ui.searchFilters.hidden));
  fillSearchOptions();
  loadDirectory().then(fillSearchOptions);
  on("search", drawSearch);
}
