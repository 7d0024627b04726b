// Who I am (role, availability), the online/away toggle, and the team load view for leads.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { el, elements, formatTime, toast } from "./dom.js";
import { api } from "./api.js";
import { meId, onEvent } from "./state.js";

// The page's elements this view works with, found once.
const ui = elements({
  availability: "availability",
  availabilityText: "availability-text",
  loadButton: "load-button",
  adminLink: "admin-link",
  reportsLink: "reports-link",
  loadBody: "load-body",
  loadDialog: "load-dialog",
  loadRefresh: "load-refresh",
  loadClose: "load-close",
});

// ---- me: role and availability, kept current by agent.updated events ----------------

export const me = { role: null, availability: null };
const meHandlers = [];
let meLoading = null;

/** Call `handler()` whenever my role or availability changes (and once loaded). */
export const onMeChange = (handler) => meHandlers.push(handler);

/** Admins and team leads steer the load: bulk reassignment, the team load view. */
export const isLead = () => me.role === "admin" || me.role === "lead";

function setMe(change) {
  Object.assign(me, change);
  for (const handler of meHandlers) handler();
}

/** GET /api/v1/me once; every module waiting for my role shares the answer. */
export function loadMe() {
  if (!meLoading) {
    meLoading = api("GET", "/api/v1/me").then((agent) => {
      setMe({ role: agent.role, availability: agent.availability });
      return me;
    });
  }
  return meLoading;
}

// ---- the online / away toggle --------------------------------------------------------

function renderAvailability() {
  const button = ui.availability;
  const online = me.availability === "online";
  button.dataset.availability = me.availability || "";
  button.setAttribute("aria-pressed", String(online));
  ui.availabilityText.textContent = me.availability === null ? "…" : online ? "Online" : "Away";
  button.title = online
    ? "You are online: new conversations may be assigned to you. Click to go away."
    : "You are away: nothing new is assigned to you. Click to go online.";
  ui.loadButton.hidden = !isLead();
  ui.adminLink.hidden = !isLead(); // leads manage labels and canned responses
  ui.reportsLink.hidden = !isLead();
}

async function toggleAvailability() {
  const button = ui.availability;
  const next = me.availability === "online" ? "away" : "online";
  button.disabled = true;
  try {
    const agent = await api("PUT", "/api/v1/me/availability", { availability: next });
    setMe({ availability: agent.availability });
  } catch (error) {
    toast(`Could not change your availability: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

// ---- team load (leads): open conversations per agent, team and inbox -----------------

let loadTimer = null;

function table(caption, headings, rowsData) {
  return el("table", { class: "load-table" },
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, headings.map((heading) => el("th", { scope: "col" }, heading)))),
    el("tbody", {}, rowsData.length
      ? rowsData.map((cells) => el("tr", {}, cells.map((cell, i) => (i === 0 ? el("th", { scope: "row" }, cell) : el("td", {}, cell)))))
      : el("tr", {}, el("td", { colspan: String(headings.length), class: "muted" }, "None"))));
}

function agentState(agent) {
  if (!agent.online) return "Offline";
  return agent.availability === "online" ? "Online" : "Away";
}

export async function refreshLoad() {
  const body = ui.loadBody;
  try {
    const load = await api("GET", "/api/v1/reports/load");
    body.replaceChildren(
      table("Agents", ["Agent", "State", "Open", "Capacity"], (load.agents || []).map((agent) => [
        agent.name, agentState(agent), String(agent.open),
        agent.capacity === null || agent.capacity === undefined ? "No limit" : String(agent.capacity),
      ])),
      table("Teams", ["Team", "Open", "Waiting"], (load.teams || []).map((team) => [
        team.name, String(team.open), String(team.waiting),
      ])),
      table("Inboxes", ["Inbox", "Open", "Waiting", "Unassigned"], (load.inboxes || []).map((inbox) => [
        inbox.name, String(inbox.open), String(inbox.waiting), String(inbox.unassigned),
      ])),
      table("Waiting longest, nobody on it", ["Conversation", "Since"], (load.waiting_longest || []).map((item) => [
        item.title, formatTime(item.since),
      ])),
    );
  } catch (error) {
    body.replaceChildren(el("p", { class: "error" }, `Could not load: ${error.message}`));
  }
}

function openLoad() {
  ui.loadBody.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  ui.loadDialog.showModal();
  refreshLoad();
}

/** While the view is open, follow the changes that move the load (a little later, once). */
function loadChanged() {
  if (!ui.loadDialog.open) return;
  clearTimeout(loadTimer);
  loadTimer = setTimeout(refreshLoad, 800);
}

// ---- start -------------------------------------------------------------------------

export function init() {
  ui.availability.addEventListener("click", toggleAvailability);
  ui.loadButton.addEventListener("click", openLoad);
  ui.loadRefresh.addEventListener("click", refreshLoad);
  ui.loadClose.addEventListener("click", () => ui.loadDialog.close());
  onMeChange(renderAvailability);
  onEvent((event) => {
    if (event.type === "agent.updated") {
      if (event.agent_id === meId) setMe({ role: event.role, availability: event.availability });
      loadChanged();
    } else if (["conversation.created", "conversation.assigned", "conversation.status_changed"].includes(event.type)) {
      loadChanged();
    }
  });
  loadMe().catch((error) => toast(`Could not load your profile: ${error.message}`));
}
