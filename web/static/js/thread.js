// The open conversation: thread, header, typing, actions.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { channelBadge, el, elements, formatTime, toast } from "./dom.js";
import { api } from "./api.js";
import { STATUS_WORDS, agentName, channelMark, channelName, contactName, emit, headerRendered, inboxName, meId, on, slaState, slaWords, state, upsertConversation } from "./state.js";

export { onThreadChange } from "./state.js";

// The page's elements this view works with, found once.
const ui = elements({
  messageList: "message-list",
  threadEmpty: "thread-empty",
  thread: "thread",
  typing: "typing",
  composerError: "composer-error",
  threadTitle: "thread-title",
  threadMeta: "thread-meta",
  messages: "messages",
  actAssign: "act-assign",
  actStatus: "act-status",
  actSnooze: "act-snooze",
  actMute: "act-mute",
  loadOlder: "load-older",
  composer: "composer",
  reply: "reply",
  send: "send",
  snoozeCustom: "snooze-custom",
  snoozeDialog: "snooze-dialog",
});

// ---- the open conversation -----------------------------------------------------------

function threadChanged(previousId, id) {
  if (previousId !== id) emit("thread", previousId, id);
}

export async function openConversation(id) {
  if (state.open && state.open.id === id) {
    emit("pane", "thread");
    return;
  }
  stopTyping();
  const previousId = state.open ? state.open.id : null;
  state.open = {
    id, conversation: state.conversations.get(id) || null, messages: new Map(),
    olderCursor: null, contact: null, others: [], typing: new Map(),
  };
  threadChanged(previousId, id);
  messageRows.clear();
  ui.messageList.replaceChildren();
  ui.threadEmpty.hidden = true;
  ui.thread.hidden = false;
  ui.typing.hidden = true;
  ui.composerError.textContent = "";
  renderThreadHeader();
  emit("list");
  emit("contact");
  emit("pane", "thread");
  try {
    await loadThread(id);
  } catch (error) {
    if (state.open && state.open.id === id) {
      ui.threadTitle.textContent = error.status === 404 ? "Conversation not found" : "Could not load";
      ui.threadMeta.textContent = error.message;
    }
    return;
  }
  const conversation = state.open && state.open.id === id ? state.open.conversation : null;
  if (!conversation) return;
  Promise.resolve(emit("load-contact", conversation.contact_id)).catch(() => {});
  if (conversation.unread_count > 0) markRead(id);
}

export async function loadThread(id) {
  const [conversation, page] = await Promise.all([
    api("GET", `/api/v1/conversations/${id}`),
    api("GET", `/api/v1/conversations/${id}/messages`),
  ]);
  const open = state.open;
  if (!open || open.id !== id) return;
  open.conversation = conversation;
  for (const message of page.items) open.messages.set(message.id, message);
  if (open.olderCursor === null || open.messages.size === page.items.length) {
    open.olderCursor = page.older_cursor;
  }
  renderThreadHeader();
  renderMessages({ scroll: "bottom" });
}

/** Close the open conversation (back to the list): the thread pane shows its empty state. */
export function closeConversation() {
  stopTyping();
  const previousId = state.open ? state.open.id : null;
  state.open = null;
  ui.thread.hidden = true;
  ui.threadEmpty.hidden = false;
  emit("contact");
  threadChanged(previousId, null);
}

export async function loadOlder() {
  const open = state.open;
  if (!open || !open.olderCursor) return;
  const box = ui.messages;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const page = await api("GET", `/api/v1/conversations/${open.id}/messages?before=${encodeURIComponent(open.olderCursor)}`);
  if (state.open !== open) return;
  for (const message of page.items) open.messages.set(message.id, message);
  open.olderCursor = page.older_cursor;
  renderMessages({});
  box.scrollTop = box.scrollHeight - fromBottom;
}

export function markRead(id) {
  api("POST", `/api/v1/conversations/${id}/read`).then(upsertConversation).catch(() => {});
}

export function renderThreadHeader() {
  const open = state.open;
  const conversation = open && open.conversation;
  if (!conversation) {
    ui.threadTitle.textContent = "Loading…";
    ui.threadMeta.replaceChildren();
    emit("meta", null);
    return;
  }
  ui.threadTitle.textContent = contactName(conversation);
  const assignee = agentName(conversation.assignee_id);
  const meta = [
    el("span", { class: `status-chip status-${conversation.status}`, id: "thread-status" },
      STATUS_WORDS[conversation.status] || conversation.status),
    el("span", {}, ` ${inboxName(conversation.inbox_id)} · ${channelName(conversation.channel)} · `),
    el("span", { id: "thread-assignee" }, assignee ? `Assigned to ${assignee}` : "Unassigned"),
  ];
  if (conversation.muted) {
    meta.push(el("span", {}, " · "), el("span", { id: "thread-muted", class: "muted-chip",
      title: "The customer's new messages do not reopen it" }, "Muted"));
  }
  if (conversation.status === "snoozed" && conversation.snoozed_until) {
    meta.push(el("span", {}, ` · until ${new Date(conversation.snoozed_until).toLocaleString()}`));
  }
  const sla = slaWords(conversation);
  if (sla) {
    meta.push(el("span", {}, " · "), el("span", {
      id: "thread-sla", class: `sla-chip sla-${slaState(conversation)}`,
      title: conversation.sla_due_at ? `SLA due ${new Date(conversation.sla_due_at).toLocaleString()}` : "",
    }, sla));
  }
  ui.threadMeta.replaceChildren(...meta);
  ui.threadMeta.title = ui.threadMeta.textContent;
  emit("meta", conversation);
  const mine = conversation.assignee_id === meId;
  const assign = ui.actAssign;
  assign.textContent = mine ? "Unassign" : "Assign to me";
  const reopen = conversation.status === "resolved" || conversation.status === "snoozed";
  const statusButton = ui.actStatus;
  statusButton.textContent = reopen ? "Reopen" : "Resolve";
  statusButton.classList.toggle("primary", !reopen);
  ui.actSnooze.disabled = conversation.status === "resolved";
  ui.actMute.textContent = conversation.muted ? "Unmute" : "Mute";
  ui.actMute.setAttribute("aria-pressed", String(Boolean(conversation.muted)));
  if (conversation.merged_into_id) {
    ui.threadMeta.append(" · ", el("a", { href: `#/conversations/${conversation.merged_into_id}` },
      `Merged into #${conversation.merged_into_id}`));
  }
  headerRendered();
}

export const messageRows = new Map(); // id -> li
const INLINE_IMAGES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

export function messageElement(message) {
  const when = el("time", { datetime: message.accepted_at }, formatTime(message.accepted_at));
  if (message.kind === "activity") {
    return el("li", { class: "activity", dataset: { id: String(message.id), kind: "activity" } },
      el("span", { class: "text" }, message.text), " ", when);
  }
  const open = state.open;
  const author = message.direction === "in"
    ? contactName((open && open.conversation) || {})
    : agentName(message.agent_id) || (message.sent_elsewhere ? "Sent outside Switchboard" : "Switchboard");
  const label = message.kind === "note" ? `Note · ${author}` : author;
  const conversation = (open && open.conversation) || {};
  const meta = el("div", { class: "meta" }, when);
  if (message.kind === "message" && conversation.channel) {
    meta.prepend(channelBadge(conversation.channel, channelMark(conversation.channel),
      channelName(conversation.channel)), " ");
  }
  if (message.edited_at) {
    meta.append(" · ", el("span", { class: "edited", title: `Changed by the customer ${new Date(message.edited_at).toLocaleString()}` }, "edited"));
  }
  if (message.kind === "message" && message.direction === "in") {
    meta.append(" · ", el("button", {
      type: "button", class: "link split-message", title: "Move this message into a conversation of its own",
      onclick: () => splitMessage(message),
    }, "Split"));
  }
  if (message.kind === "message" && message.direction === "out" && message.status) {
    meta.append(" · ", el("span", { class: `delivery delivery-${message.status}` }, message.status));
    if (message.status_reason) {
      meta.append(" ", el("span", { class: "delivery-reason" }, `(${message.status_reason})`));
    }
  }
  const files = (message.attachments || []).map((file) => {
    const href = `/api/v1/attachments/${encodeURIComponent(file.id)}`;
    const name = file.filename || "attachment";
    // Plain images are shown (the server serves only these inline); anything else is a link.
    const shown = INLINE_IMAGES.has(file.content_type)
      ? el("img", { src: href, alt: name, loading: "lazy", class: "attachment-image" })
      : name;
    return el("li", {}, el("a", { href, target: "_blank", rel: "noopener", title: name }, shown));
  });
  const classes = ["msg", message.direction === "in" ? "in" : "out"];
  if (message.kind === "note") classes.push("note");
  const formatted = Boolean(message.html) && message.direction === "in";
  if (formatted) classes.push("formatted");
  return el("li", { class: classes.join(" "), dataset: { id: String(message.id), kind: message.kind } },
    el("div", { class: "bubble" },
      el("div", { class: "author" }, label),
      formatted ? mailFrame(message) : el("div", { class: "text" }, message.text),
      files.length ? el("ul", { class: "files" }, files) : null),
    meta);
}

/**
 * A mail's sanitised HTML in a sandboxed frame: the page never parses it, the frame runs no
 * script (no allow-scripts; its document's own policy says the same) and loads only this
 * site's images. Same-origin, so its height can be read here and its pictures load.
 */
export function mailFrame(message) {
  const frame = el("iframe", {
    class: "mail-html",
    title: "Formatted message",
    sandbox: "allow-same-origin allow-popups allow-popups-to-escape-sandbox",
    referrerpolicy: "no-referrer",
    src: `/api/v1/messages/${encodeURIComponent(message.id)}/html`,
  });
  frame.addEventListener("load", () => {
    const root = frame.contentDocument && frame.contentDocument.documentElement;
    if (root) frame.style.height = `${Math.min(root.scrollHeight + 2, 3000)}px`;
  });
  return frame;
}

/** Move a customer's message out into a new conversation, and open that one. */
async function splitMessage(message) {
  if (!window.confirm("Move this message into a new conversation of its own, assigned to you?")) return;
  try {
    const created = await api("POST", `/api/v1/messages/${message.id}/split`);
    const open = state.open;
    if (open) {
      open.messages.delete(message.id);
      messageRows.get(message.id)?.remove();
      messageRows.delete(message.id);
    }
    upsertConversation(created);
    window.location.hash = `#/conversations/${created.id}`;
  } catch (error) {
    toast(`Not split: ${error.message}`);
  }
}

export function renderMessages({ scroll }) {
  const open = state.open;
  if (!open) return;
  const box = ui.messages;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const list = ui.messageList;
  const sorted = Array.from(open.messages.values()).sort(
    (a, b) => Date.parse(a.accepted_at) - Date.parse(b.accepted_at) || a.id - b.id);
  let previous = null;
  for (const message of sorted) {
    const version = messageVersion(message);
    let row = messageRows.get(message.id);
    if (!row || row.dataset.version !== version) {
      const fresh = messageElement(message);
      fresh.dataset.version = version;
      if (row) row.replaceWith(fresh);
      row = fresh;
      messageRows.set(message.id, row);
    }
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (expected !== row) list.insertBefore(row, expected);
    previous = row;
  }
  ui.loadOlder.hidden = !open.olderCursor;
  if (scroll === "bottom" || nearBottom) box.scrollTop = box.scrollHeight;
}

export const messageVersion = (message) =>
  `${message.status}|${message.status_reason}|${message.text.length}|${message.edited_at || ""}`;

export function addMessage(message) {
  const open = state.open;
  if (!open || open.id !== message.conversation_id) return;
  const known = open.messages.get(message.id);
  // A status update may overtake the creation event: never go back to "queued".
  if (known && known.status && message.status === "queued") return;
  open.messages.set(message.id, message);
  renderMessages({});
}

// ---- typing indicators -------------------------------------------------------------

let typingSentAt = 0;
let typingMode = null; // what colleagues were last told this agent is writing
let typingStop = null;

export function signalTyping() {
  const open = state.open;
  if (!open) return;
  const mode = state.mode === "note" ? "note" : "reply";
  const now = Date.now();
  // Repeated at most every 3 s, and at once when the agent switched between reply and note.
  if (now - typingSentAt > 3000 || mode !== typingMode) {
    typingSentAt = now;
    typingMode = mode;
    api("POST", `/api/v1/conversations/${open.id}/typing`, { mode, typing: true }).catch(() => {});
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(stopTyping, 4000);
}

export function stopTyping() {
  clearTimeout(typingStop);
  if (!typingSentAt || !state.open) return;
  typingSentAt = 0;
  typingMode = null;
  const mode = state.mode === "note" ? "note" : "reply";
  api("POST", `/api/v1/conversations/${state.open.id}/typing`, { mode, typing: false }).catch(() => {});
}

export function showTyping(event) {
  const open = state.open;
  if (!open || open.id !== event.conversation_id || event.by_agent_id === meId) return;
  const contact = event.by_agent_id === null;
  const who = contact ? contactName(open.conversation || {}) : agentName(event.by_agent_id);
  // A colleague says which: a reply goes to the customer, a note stays among agents.
  const doing = contact ? "typing" : event.mode === "note" ? "writing a note" : "replying";
  setTyping(open, who, event.typing, doing);
}

/** Show (or stop showing) that `who` is typing; `doing` says what ("typing", "replying", "writing a note"). */
export function setTyping(open, who, typing, doing = "typing") {
  const known = open.typing.get(who);
  if (known) clearTimeout(known.timer);
  open.typing.delete(who);
  if (typing) {
    const timer = setTimeout(() => { open.typing.delete(who); renderTyping(); }, 6000);
    open.typing.set(who, { timer, doing });
  }
  renderTyping();
}

export function renderTyping() {
  const open = state.open;
  const byDoing = new Map(); // "replying" -> [names]
  for (const [who, { doing }] of open ? open.typing : []) {
    byDoing.set(doing, [...(byDoing.get(doing) || []), who]);
  }
  const phrases = Array.from(byDoing, ([doing, names]) =>
    `${names.join(", ")} ${names.length > 1 ? "are" : "is"} ${doing}…`);
  const box = ui.typing;
  box.textContent = phrases.join(" · ");
  box.hidden = phrases.length === 0;
}

// ---- actions -----------------------------------------------------------------------

export function setMode(mode) {
  state.mode = mode;
  ui.composer.dataset.mode = mode;
  for (const button of document.querySelectorAll("#composer [data-mode]")) {
    button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  }
  ui.reply.placeholder = mode === "note"
    ? "Internal note, only agents see it… (Enter to save)"
    : "Reply… (Enter to send, Shift+Enter for a new line)";
  ui.send.textContent = mode === "note" ? "Add note" : "Send";
  headerRendered();
}

export async function act(path, body, failure) {
  const open = state.open;
  if (!open) return;
  try {
    upsertConversation(await api("POST", `/api/v1/conversations/${open.id}/${path}`, body));
  } catch (error) {
    toast(`${failure}: ${error.message}`);
  }
}

export const currentStatus = () => (state.open && state.open.conversation ? state.open.conversation.status : null);
export const resolve = () => currentStatus() && currentStatus() !== "resolved" && act("status", { status: "resolved" }, "Could not resolve");
export const reopen = () => currentStatus() && currentStatus() !== "open" && act("status", { status: "open" }, "Could not reopen");
export const toggleMute = () => state.open && state.open.conversation &&
  act("mute", { muted: !state.open.conversation.muted }, "Could not change the mute");
export const assignMe = () => act("assignment", { assignee_id: meId }, "Could not assign");
export const unassign = () => act("assignment", { assignee_id: null }, "Could not unassign");

export function snoozeUntil(choice) {
  const at = new Date();
  if (choice === "tomorrow") {
    at.setDate(at.getDate() + 1);
  } else if (choice === "next-week") {
    at.setDate(at.getDate() + ((8 - at.getDay()) % 7 || 7));
  } else {
    return null;
  }
  at.setHours(9, 0, 0, 0);
  return at;
}

export function openSnooze() {
  if (!state.open || !state.open.conversation || currentStatus() === "resolved") return;
  const input = ui.snoozeCustom;
  const soon = new Date(Date.now() + 60 * 60 * 1000);
  const local = new Date(soon.getTime() - soon.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  input.min = local.slice(0, 16);
  input.value = local;
  ui.snoozeDialog.showModal();
}

export function snooze(at) {
  if (!at || Number.isNaN(at.getTime()) || at.getTime() <= Date.now()) {
    toast("Pick a time in the future.");
    return;
  }
  ui.snoozeDialog.close();
  act("status", { status: "snoozed", snoozed_until: at.toISOString() }, "Could not snooze");
}

export function focusReply(mode) {
  if (!state.open) return;
  setMode(mode);
  emit("pane", "thread");
  ui.reply.focus();
}

on("open", openConversation);
on("close", closeConversation);
on("header", renderThreadHeader);
