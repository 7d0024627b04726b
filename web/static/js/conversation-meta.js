// The open conversation's header controls: priority, labels and the assign picker (agents and
// teams). Changes come back as API answers and as live events, applied by the same code.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { $, el, elements, toast } from "./dom.js";
import { api } from "./api.js";
import { PRIORITY_WORDS, meId, on, onEvent, onThreadChange, state, upsertConversation } from "./state.js";

// The page's elements this view works with, found once.
const ui = elements({
  priority: "priority",
  threadMeta: "thread-meta",
  actAssign: "act-assign",
  labels: "labels",
  labelAdd: "label-add",
  assignTo: "assign-to",
});

const meta = {
  role: "agent",      // from GET /api/v1/me: agents only take or drop a conversation themselves
  labels: new Map(),  // name -> {id, name, color}
  teams: [],          // [{id, name, member_ids, inbox_ids}]
};
const inboxAgentCache = new Map(); // inbox id -> Promise of [{id, name}]

/** Agents who may see an inbox: whom a note may mention, whom a lead may assign there. */
export function inboxAgents(inboxId) {
  if (!inboxAgentCache.has(inboxId)) {
    const found = api("GET", `/api/v1/agents?inbox_id=${inboxId}`).catch((error) => {
      inboxAgentCache.delete(inboxId); // ask again next time
      throw error;
    });
    inboxAgentCache.set(inboxId, found);
  }
  return inboxAgentCache.get(inboxId);
}

const isLead = () => meta.role === "admin" || meta.role === "lead";
const openConversation = () => (state.open && state.open.conversation) || null;

/** Apply a change through the API; the answer (a ConversationView) updates every view of it. */
async function change(method, path, body, failure) {
  const conversation = openConversation();
  if (!conversation) return;
  try {
    upsertConversation(await api(method, `/api/v1/conversations/${conversation.id}/${path}`, body));
  } catch (error) {
    toast(`${failure}: ${error.message}`);
    renderMeta(openConversation()); // back to what is true
  }
}

// ---- rendering ---------------------------------------------------------------------

/** Show the conversation's priority, labels, team and who may be picked as its assignee. */
export function renderMeta(conversation) {
  const priority = ui.priority;
  const bar = $(".thread-bar");
  bar.hidden = !conversation;
  if (!conversation) return;
  priority.value = conversation.priority || "none";
  priority.dataset.priority = priority.value;
  renderLabels(conversation);
  if (conversation.team_id !== null && conversation.team_id !== undefined) {
    const team = meta.teams.find((t) => t.id === conversation.team_id);
    ui.threadMeta.append(el("span", { id: "thread-team" }, ` · Team ${team ? team.name : `#${conversation.team_id}`}`));
  }
  // An agent may take an unassigned conversation or drop their own, not take a colleague's.
  const assign = ui.actAssign;
  const othersConversation = conversation.assignee_id !== null && conversation.assignee_id !== meId;
  assign.disabled = !isLead() && othersConversation;
  assign.title = assign.disabled ? "Assigned to a colleague: a team lead can reassign it" : "Assign to me (a) / unassign (u)";
  renderAssignPicker(conversation);
}

function renderLabels(conversation) {
  const names = conversation.labels || [];
  ui.labels.replaceChildren(...names.map((name) => {
    const label = meta.labels.get(name);
    const chip = el("li", { class: "label-chip", dataset: { label: name } },
      el("span", { class: "label-name" }, name),
      el("button", { type: "button", class: "label-remove", "aria-label": `Remove label ${name}`, title: "Remove",
        onclick: () => setLabels(names.filter((n) => n !== name)) }, "×"));
    // Colors come from leads; only a plain #rrggbb reaches the style (through the CSSOM, CSP-safe).
    if (label && /^#[0-9a-fA-F]{6}$/.test(label.color || "")) chip.style.setProperty("--label-color", label.color);
    return chip;
  }));
  const add = ui.labelAdd;
  const free = Array.from(meta.labels.keys()).filter((name) => !names.includes(name)).sort((a, b) => a.localeCompare(b));
  add.replaceChildren(
    el("option", { value: "" }, names.length ? "+ Label" : "+ Add a label"),
    ...free.map((name) => el("option", { value: name, title: (meta.labels.get(name) || {}).description || "" }, name)));
  if (!free.length) add.append(el("option", { value: "", disabled: true }, meta.labels.size ? "All labels are on" : "No labels yet"));
  add.value = "";
}

function setLabels(names) {
  change("PUT", "labels", { labels: names }, "Could not change the labels");
}

async function renderAssignPicker(conversation) {
  const picker = ui.assignTo;
  if (!isLead()) {
    picker.hidden = true;
    return;
  }
  let agents = [];
  try {
    agents = await inboxAgents(conversation.inbox_id);
  } catch {
    agents = Array.from(state.agents, ([id, name]) => ({ id, name }));
  }
  const current = openConversation();
  if (!current || current.id !== conversation.id || document.activeElement === picker) return;
  const teams = meta.teams.filter((team) => team.inbox_ids.includes(conversation.inbox_id));
  const mark = (yes) => (yes ? " ✓" : "");
  picker.replaceChildren(
    el("option", { value: "" }, "Reassign…"),
    el("optgroup", { label: "Agents" }, agents.map((agent) =>
      el("option", { value: `agent:${agent.id}` }, `${agent.name}${agent.id === meId ? " (me)" : ""}${mark(agent.id === conversation.assignee_id)}`))),
    teams.length ? el("optgroup", { label: "Teams" }, teams.map((team) =>
      el("option", { value: `team:${team.id}` }, `${team.name}${mark(team.id === conversation.team_id)}`))) : null,
    conversation.assignee_id !== null ? el("option", { value: "none" }, "Unassign") : null,
  );
  picker.value = "";
  picker.hidden = false;
}

function onAssignPick(event) {
  const value = event.target.value;
  event.target.value = "";
  if (!value) return;
  const [kind, id] = value.split(":");
  const body = kind === "agent" ? { assignee_id: Number(id) } : kind === "team" ? { team_id: Number(id) } : { assignee_id: null };
  change("POST", "assignment", body, "Could not assign");
}

// ---- data --------------------------------------------------------------------------

async function loadLabels() {
  let labels;
  try {
    labels = await api("GET", "/api/v1/labels");
  } catch {
    return;
  }
  const before = JSON.stringify(Array.from(meta.labels.values()));
  meta.labels = new Map(labels.map((label) => [label.name, label]));
  const conversation = openConversation();
  if (conversation && JSON.stringify(labels) !== before) renderLabels(conversation);
}

export async function init() {
  ui.priority.addEventListener("change", (event) =>
    change("PUT", "priority", { priority: event.target.value }, "Could not change the priority"));
  ui.labelAdd.addEventListener("change", (event) => {
    const name = event.target.value;
    const conversation = openConversation();
    if (!name || !conversation) return;
    setLabels([...(conversation.labels || []), name]);
  });
  // Leads add labels elsewhere: look again when a conversation opens and when the agent reaches for the list.
  ui.labelAdd.addEventListener("focus", loadLabels);
  onThreadChange((previousId, id) => { if (id !== null) loadLabels(); });
  ui.assignTo.addEventListener("change", onAssignPick);
  onEvent((event) => {
    if (event.type === "agent.updated") inboxAgentCache.clear(); // memberships may have changed
  });
  const [me, teams] = await Promise.all([
    api("GET", "/api/v1/me").catch(() => ({ role: "agent" })),
    api("GET", "/api/v1/teams").catch(() => []),
    loadLabels(),
  ]);
  meta.role = me.role;
  meta.teams = teams;
  renderMeta(openConversation());
}

on("meta", renderMeta);
