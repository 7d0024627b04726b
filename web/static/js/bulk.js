// The bulk bar: leads and admins reassign, unassign or resolve many conversations at once.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { el, elements, toast } from "./dom.js";
import { api } from "./api.js";
import { contactName, emit, state, upsertConversation } from "./state.js";
import { loadDirectory, onSelectionChange, rows, selectAll, selectRow, selection, teams, unselect } from "./list.js";
import { inboxAgents } from "./conversation-meta.js";
import { isLead, loadMe, onMeChange } from "./availability.js";

// The page's elements this view works with, found once.
const ui = elements({
  selectBar: "select-bar",
  selectAll: "select-all",
  bulkBar: "bulk-bar",
  bulkCount: "bulk-count",
  bulkTarget: "bulk-target",
  bulkAgents: "bulk-agents",
  bulkTeams: "bulk-teams",
  bulkErrors: "bulk-errors",
  bulkCancel: "bulk-cancel",
  bulkAssign: "bulk-assign",
  bulkUnassign: "bulk-unassign",
  bulkResolve: "bulk-resolve",
  conversationList: "conversation-list",
});

const MAX_BULK = 100; // what POST /conversations/bulk-assign takes at once
const assignable = new Map(); // id -> name: agents who may see one of my inboxes

// ---- selection -----------------------------------------------------------------------

/** `x`: check or uncheck the focused row (the one with keyboard focus, else the open one). */
export function toggleFocusedRow() {
  if (!isLead()) return;
  const focused = document.activeElement && document.activeElement.closest
    ? document.activeElement.closest(".conversation-row") : null;
  const id = focused ? Number(focused.dataset.id) : state.open ? state.open.id : null;
  if (id === null || !rows.has(id)) return;
  selectRow(id, !selection.has(id));
}

function renderBar() {
  const lead = isLead();
  document.body.classList.toggle("can-select", lead);
  ui.selectBar.hidden = !lead || state.order.length === 0;
  const all = ui.selectAll;
  all.checked = selection.size > 0 && selection.size === state.order.length;
  all.indeterminate = selection.size > 0 && selection.size < state.order.length;
  ui.bulkBar.hidden = !lead || selection.size === 0;
  ui.bulkCount.textContent = selection.size === 1 ? "1 conversation selected" : `${selection.size} conversations selected`;
  if (selection.size === 0) showErrors([]);
}

/** Whom a lead may pick: every agent who may see one of the lead's inboxes (teams included). */
async function loadAssignable() {
  const found = await Promise.all([...state.inboxes.keys()].map((id) => inboxAgents(id).catch(() => [])));
  let named = false;
  for (const agent of found.flat()) {
    assignable.set(agent.id, agent.name);
    if (!state.agents.has(agent.id)) {
      state.agents.set(agent.id, agent.name); // a name the list could not show yet
      named = true;
    }
  }
  if (named) emit("list");  // the list draws the names it could not show yet
  fillTargets();
}

function fillTargets() {
  const agents = [...(assignable.size ? assignable : state.agents)].sort((a, b) => a[1].localeCompare(b[1]));
  const target = ui.bulkTarget;
  const chosen = target.value;
  ui.bulkAgents.replaceChildren(...agents.map(([id, name]) => el("option", { value: `agent:${id}` }, name)));
  const sorted = [...teams].sort((a, b) => a[1].localeCompare(b[1]));
  ui.bulkTeams.replaceChildren(...sorted.map(([id, name]) => el("option", { value: `team:${id}` }, name)));
  ui.bulkTeams.hidden = teams.size === 0;
  target.value = chosen;
  if (target.selectedIndex === -1) target.selectedIndex = 0;
}

// ---- acting on the selection ---------------------------------------------------------

function showErrors(errors) {
  const box = ui.bulkErrors;
  box.replaceChildren(...errors.map(({ id, error }) => {
    const conversation = state.conversations.get(id);
    const who = conversation ? contactName(conversation) : `Conversation #${id}`;
    return el("li", { dataset: { id: String(id) } }, `${who}: ${error}`);
  }));
  box.hidden = errors.length === 0;
}

const errorText = (error) => (typeof error === "string" ? error : (error && error.message) || "failed");

/** Run `request(ids)` over the selection in chunks; apply what changed, keep failures selected. */
async function runBulk(request, verb) {
  const ids = state.order.filter((id) => selection.has(id));
  if (!ids.length) return;
  const bar = ui.bulkBar;
  bar.setAttribute("aria-busy", "true");
  for (const button of bar.querySelectorAll("button, select")) button.disabled = true;
  const errors = [];
  let done = 0;
  try {
    for (let start = 0; start < ids.length; start += MAX_BULK) {
      const chunk = ids.slice(start, start + MAX_BULK);
      try {
        const answer = await request(chunk);
        for (const conversation of answer.items) upsertConversation(conversation);
        done += answer.items.length;
        errors.push(...answer.errors.map((item) => ({ id: item.id, error: errorText(item.error) })));
      } catch (error) {
        errors.push(...chunk.map((id) => ({ id, error: error.message })));
      }
    }
  } finally {
    bar.removeAttribute("aria-busy");
    for (const button of bar.querySelectorAll("button, select")) button.disabled = false;
  }
  const failed = new Set(errors.map((item) => item.id));
  unselect(ids.filter((id) => !failed.has(id)));
  showErrors(errors);
  if (done) toast(`${verb} ${done === 1 ? "1 conversation" : `${done} conversations`}.`);
}

function assignTo(target) {
  const [kind, value] = target ? target.split(":") : [null, null];
  const body = { assignee_id: kind === "agent" ? Number(value) : null };
  if (kind === "team") body.team_id = Number(value);
  const verb = kind === "agent" ? `Assigned to ${state.agents.get(Number(value))}`
    : kind === "team" ? `Assigned to ${teams.get(Number(value))}` : "Unassigned";
  return runBulk((ids) => api("POST", "/api/v1/conversations/bulk-assign", { conversation_ids: ids, ...body }), verb);
}

/** No bulk endpoint for status: one request each, a few at a time, failures collected. */
async function resolveEach(ids) {
  const items = [];
  const errors = [];
  const queue = [...ids];
  const worker = async () => {
    while (queue.length) {
      const id = queue.shift();
      try {
        items.push(await api("POST", `/api/v1/conversations/${id}/status`, { status: "resolved" }));
      } catch (error) {
        errors.push({ id, error: error.message });
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return { items, errors };
}

// ---- start -------------------------------------------------------------------------

export function init() {
  ui.selectAll.addEventListener("change", (event) => selectAll(event.target.checked));
  ui.bulkCancel.addEventListener("click", () => selectAll(false));
  ui.bulkAssign.addEventListener("click", () => {
    const target = ui.bulkTarget.value;
    if (!target) {
      toast("Pick an agent or a team to reassign to.");
      ui.bulkTarget.focus();
      return;
    }
    assignTo(target);
  });
  ui.bulkUnassign.addEventListener("click", () => assignTo(null));
  ui.bulkResolve.addEventListener("click", () => runBulk(resolveEach, "Resolved"));
  onSelectionChange(renderBar);
  let wasLead = false;
  onMeChange(() => {
    if (isLead() && !wasLead) {
      loadDirectory().then(fillTargets);
      loadAssignable().catch(() => {});
    }
    wasLead = isLead();
    if (!wasLead && selection.size) selectAll(false);
    renderBar();
  });
  // The list changes under the bar (live events, filters): keep "select all" honest.
  new MutationObserver(renderBar).observe(ui.conversationList, { childList: true });
  fillTargets();
  loadMe().catch(() => {});
}
