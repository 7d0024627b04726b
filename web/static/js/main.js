// The agent inbox: keyboard shortcuts, wiring, start.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { el, elements, toast } from "./dom.js";
import { api } from "./api.js";
import { meId, state } from "./state.js";
import { init as initList, loadMore, move, renderFilters, setFilter } from "./list.js";
import { init as initBulk, toggleFocusedRow } from "./bulk.js";
import { init as initAvailability } from "./availability.js";
import { init as initNotifications } from "./notifications.js";
import { focusSearch, init as initSearch } from "./search.js";
import { assignMe, currentStatus, focusReply, loadOlder, markRead, openSnooze, reopen, resolve, setMode, signalTyping, snooze, snoozeUntil, stopTyping, toggleMute, unassign } from "./thread.js";
import { init as initComposer, send } from "./composer.js";
import { init as initViewers } from "./viewers.js";
import { init as initReplyWindow } from "./reply-window.js";
import { init as initConversationMeta } from "./conversation-meta.js";
import { init as initContact, renderContact } from "./contact.js";
import { route, showPane } from "./nav.js";
import { connect } from "./live.js";

// The page's elements this view works with, found once.
const ui = elements({
  helpDialog: "help-dialog",
  statusFilter: "status-filter",
  inboxFilter: "inbox-filter",
  loadMore: "load-more",
  loadOlder: "load-older",
  actAssign: "act-assign",
  actStatus: "act-status",
  actSnooze: "act-snooze",
  actMute: "act-mute",
  reply: "reply",
  composer: "composer",
  snoozeApply: "snooze-apply",
  snoozeCustom: "snooze-custom",
  snoozeCancel: "snooze-cancel",
  snoozeDialog: "snooze-dialog",
  helpButton: "help-button",
  helpClose: "help-close",
});

// ---- keyboard ----------------------------------------------------------------------

export function isTypingTarget(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

export function onKey(event) {
  if (event.key === "Escape" && isTypingTarget(event.target)) {
    event.target.blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || isTypingTarget(event.target)) return;
  if (document.querySelector("dialog[open]")) return;
  const actions = {
    "?": () => ui.helpDialog.showModal(),
    j: () => move(1),
    k: () => move(-1),
    r: () => focusReply("message"),
    n: () => focusReply("note"),
    e: resolve,
    o: reopen,
    z: openSnooze,
    a: assignMe,
    u: unassign,
    "/": focusSearch,
    x: toggleFocusedRow,
  };
  const action = actions[event.key];
  if (!action) return;
  event.preventDefault();
  action();
}

// ---- start -------------------------------------------------------------------------

export function bind() {
  for (const button of document.querySelectorAll(".tabs [data-view]")) {
    button.addEventListener("click", () => setFilter({ view: button.dataset.view }));
  }
  ui.statusFilter.addEventListener("change", (e) => setFilter({ status: e.target.value }));
  ui.inboxFilter.addEventListener("change", (e) => setFilter({ inbox: e.target.value }));
  ui.loadMore.addEventListener("click", loadMore);
  ui.loadOlder.addEventListener("click", () => loadOlder().catch((e) => toast(e.message)));
  ui.actAssign.addEventListener("click", () =>
    (state.open && state.open.conversation && state.open.conversation.assignee_id === meId ? unassign() : assignMe()));
  ui.actStatus.addEventListener("click", () =>
    (["resolved", "snoozed"].includes(currentStatus()) ? reopen() : resolve()));
  ui.actSnooze.addEventListener("click", openSnooze);
  ui.actMute.addEventListener("click", toggleMute);
  for (const button of document.querySelectorAll("[data-go]")) {
    button.addEventListener("click", () => {
      if (button.dataset.go === "list") window.location.hash = "#/";
      else showPane(button.dataset.go);
    });
  }
  for (const button of document.querySelectorAll("#composer [data-mode]")) {
    button.addEventListener("click", () => { setMode(button.dataset.mode); ui.reply.focus(); });
  }
  const textarea = ui.reply;
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.ctrlKey && !event.altKey && !event.metaKey) {
      event.preventDefault();
      send();
    }
  });
  textarea.addEventListener("input", signalTyping);
  textarea.addEventListener("blur", stopTyping);
  ui.composer.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  for (const button of document.querySelectorAll("[data-snooze]")) {
    button.addEventListener("click", () => snooze(snoozeUntil(button.dataset.snooze)));
  }
  ui.snoozeApply.addEventListener("click", () => snooze(new Date(ui.snoozeCustom.value)));
  ui.snoozeCancel.addEventListener("click", () => ui.snoozeDialog.close());
  ui.helpButton.addEventListener("click", () => ui.helpDialog.showModal());
  ui.helpClose.addEventListener("click", () => ui.helpDialog.close());
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", route);
  window.addEventListener("online", () => { if (!state.socket) connect(); });
  document.addEventListener("visibilitychange", () => {
    const open = state.open;
    if (document.visibilityState === "visible" && open && open.conversation && open.conversation.unread_count > 0) {
      markRead(open.id);
    }
  });
}

export async function start() {
  bind();
  setMode("message");
  renderFilters();
  renderContact();
  const [agents, inboxes, automation] = await Promise.all([
    api("GET", "/api/v1/agents").catch(() => []),
    api("GET", "/api/v1/inboxes").catch(() => []),
    api("GET", "/api/v1/automation-vocabulary").catch(() => null),
  ]);
  for (const agent of agents) state.agents.set(agent.id, agent.name);
  if (automation?.agent_id) state.automationAgent = { id: automation.agent_id, name: automation.agent_name };
  for (const inbox of inboxes) {
    state.inboxes.set(inbox.id, inbox);
    ui.inboxFilter.append(el("option", { value: String(inbox.id) }, inbox.name));
  }
  if (state.filter.inbox && !state.inboxes.has(Number(state.filter.inbox))) state.filter.inbox = "";
  renderFilters();
  initAvailability();
  initList();
  initBulk();
  initNotifications();
  initSearch();
  initComposer();
  initViewers();
  initReplyWindow();
  initConversationMeta();
  initContact();
  connect();
  route();
  document.body.dataset.ready = "true";
}

start();
