// The reply box: sending (with the send-collision check), attached files, @mentions in notes
// and /shortcut canned responses. Each conversation keeps its own draft while the agent moves on.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { el, elements, randomKey } from "./dom.js";
import { ApiError, api, postWithRetry } from "./api.js";
import { agentName, meId, onHeaderRender, state } from "./state.js";
import { addMessage, loadThread, onThreadChange, renderMessages, signalTyping, stopTyping } from "./thread.js";
import { inboxAgents } from "./conversation-meta.js";

// The page's elements this view works with, found once.
const ui = elements({
  composerError: "composer-error",
  reply: "reply",
  send: "send",
  cc: "cc",
  ccList: "cc-list",
  conflictText: "conflict-text",
  conflict: "conflict",
  conflictSend: "conflict-send",
  attachments: "attachments",
  suggestions: "suggestions",
  composer: "composer",
  attach: "attach",
  attachInput: "attach-input",
  thread: "thread",
  conflictCancel: "conflict-cancel",
});

const MAX_BYTES = Number((document.querySelector('meta[name="attachment-max-bytes"]') || {}).content || 0);
const MENU_SIZE = 8;

// The open conversation's draft: its files and the agents picked from the @ menu.
// Drafts of other conversations wait in `drafts` (text too) until the agent comes back.
let draft = emptyDraft();
const drafts = new Map(); // conversation id -> {text, files, mentions}
let conflict = null;      // {conversationId}: a reply refused because a colleague just replied

function emptyDraft() {
  return { text: "", files: [], mentions: new Map() };
}

const showError = (text) => { ui.composerError.textContent = text; };

// ---- sending -----------------------------------------------------------------------

/** The newest message shown: a colleague's reply after it makes the server ask first (409). */
function newestMessageId(open) {
  let newest = null;
  for (const id of open.messages.keys()) if (newest === null || id > newest) newest = id;
  return newest;
}

/** The agents still @mentioned in the text (a mention deleted from the text is dropped). */
function mentionedIds(text) {
  return Array.from(draft.mentions).filter(([, name]) => text.includes(`@${name}`)).map(([id]) => id);
}

/** Send the reply or save the note, with its files and mentions; `force` sends despite a collision. */
export async function send({ force = false } = {}) {
  const open = state.open;
  const textarea = ui.reply;
  const text = textarea.value;
  if (!open || textarea.readOnly) return;
  if (draft.files.some((file) => file.status === "uploading")) {
    showError("Wait until the files are uploaded.");
    return;
  }
  const files = draft.files.filter((file) => file.status === "ready");
  if (!text.trim() && !files.length) return;
  const kind = state.mode;
  const body = { text, kind, idempotency_key: randomKey() };
  const copied = ccFor(open);
  if (kind === "message" && copied.removed) body.cc = copied.kept;
  if (files.length) body.attachment_ids = files.map((file) => file.id);
  if (kind === "note") {
    const mentions = mentionedIds(text);
    if (mentions.length) body.mention_ids = mentions;
  } else {
    body.after_message_id = newestMessageId(open);
    if (force) body.force = true;
  }
  closeSuggestions();
  hideConflict();
  textarea.readOnly = true;
  ui.send.disabled = true;
  showError("");
  try {
    const message = await postWithRetry(`/api/v1/conversations/${open.id}/messages`, body);
    if (state.open === open) {
      textarea.value = "";
      draft = emptyDraft();
      renderFiles();
      addMessage(message);
      stopTyping();
      renderMessages({ scroll: "bottom" });
    } else {
      drafts.delete(open.id);
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 409 && error.code === "conflict") {
      showConflict(open, body.after_message_id, error.message);
    } else {
      showError(`Not sent: ${error.message}`);
    }
  } finally {
    textarea.readOnly = false;
    ui.send.disabled = false;
  }
}

// ---- people on copy (email) ---------------------------------------------------------

/** Addresses the agent took off this conversation's next reply, by conversation id. */
const uncopied = new Map();

/** Who the next reply copies: the conversation's other participants bar those removed. */
function ccFor(open) {
  const all = ((open.conversation && open.conversation.cc) || []).map((p) => p.value);
  const removed = uncopied.get(open.id) || new Set();
  return { kept: all.filter((value) => !removed.has(value)), removed: removed.size > 0 };
}

onHeaderRender(() => renderCc());

/** Show the Cc chips of the open conversation (email replies copy them; × leaves one out). */
export function renderCc() {
  const open = state.open;
  const people = (open && open.conversation && open.conversation.cc) || [];
  const row = ui.cc;
  row.hidden = !people.length || state.mode !== "message";
  if (row.hidden) return;
  const removed = uncopied.get(open.id) || new Set();
  ui.ccList.replaceChildren(...people.filter((p) => !removed.has(p.value)).map((p) =>
    el("li", { class: "cc-chip" },
      el("span", {}, p.display_name ? `${p.display_name} <${p.value}>` : p.value),
      el("button", {
        type: "button", class: "ghost", "aria-label": `Do not copy ${p.value}`,
        onclick: () => {
          removed.add(p.value);
          uncopied.set(open.id, removed);
          renderCc();
        },
      }, "×"))));
}

/** "Bob just replied — send anyway?": the text stays; the colleague's reply is loaded to read first. */
function showConflict(open, afterId, serverMessage) {
  if (state.open !== open) return;
  conflict = { conversationId: open.id };
  const replied = /^(.+?) replied\b/.exec(serverMessage);
  const setText = () => {
    const theirs = Array.from(open.messages.values())
      .filter((m) => m.kind === "message" && m.direction === "out" && m.agent_id !== meId &&
        (afterId === null || m.id > afterId))
      .sort((a, b) => b.id - a.id)[0];
    const name = theirs ? agentName(theirs.agent_id) : replied ? replied[1] : null;
    ui.conflictText.textContent = name
      ? `${name} just replied — send anyway?`
      : `${serverMessage} — send anyway?`;
  };
  setText();
  ui.conflict.hidden = false;
  ui.conflictSend.focus();
  loadThread(open.id).then(() => { if (conflict && state.open === open) setText(); }).catch(() => {});
}

function hideConflict() {
  conflict = null;
  ui.conflict.hidden = true;
}

// ---- attached files ----------------------------------------------------------------

function formatSize(bytes) {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(bytes >= 10 * 1024 * 1024 ? 0 : 1)} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} bytes`;
}

function uploadError(error) {
  if (error instanceof ApiError && error.status === 413) {
    const limit = /(\d+) bytes/.exec(error.message);
    return limit ? `too large (the limit is ${formatSize(Number(limit[1]))})` : "too large";
  }
  return error.message;
}

/** Upload each file to the open conversation at once; the chips show progress and errors. */
export function addFiles(list) {
  const open = state.open;
  if (!open) return;
  for (const file of Array.from(list)) {
    const item = { key: randomKey(), name: file.name || "pasted-file", size: file.size,
      status: "uploading", id: null, error: "" };
    draft.files.push(item);
    if (MAX_BYTES && file.size > MAX_BYTES) fail(item, `too large (the limit is ${formatSize(MAX_BYTES)})`);
    else if (!file.size) fail(item, "the file is empty");
    else upload(open.id, item, file);
  }
  renderFiles();
}

async function upload(conversationId, item, file) {
  try {
    const path = `/api/v1/conversations/${conversationId}/attachments?filename=${encodeURIComponent(item.name)}`;
    const uploaded = await api("POST", path, file);
    item.id = uploaded.id;
    item.status = "ready";
  } catch (error) {
    fail(item, uploadError(error));
  }
  renderFiles();
}

function fail(item, reason) {
  item.status = "failed";
  item.error = reason;
  if (draft.files.includes(item)) showError(`${item.name}: ${reason}`);
}

function removeFile(item) {
  draft.files = draft.files.filter((file) => file !== item);
  if (item.status === "failed") showError("");
  renderFiles();
  ui.reply.focus();
}

function renderFiles() {
  const list = ui.attachments;
  list.replaceChildren(...draft.files.map((item) => {
    const note = item.status === "uploading" ? "uploading…" : item.status === "failed" ? item.error : "";
    return el("li", { class: "attachment-chip", dataset: { status: item.status } },
      el("span", { class: "attachment-name" }, item.name),
      el("span", { class: "attachment-size" }, formatSize(item.size)),
      note ? el("span", { class: "attachment-state" }, note) : null,
      el("button", { type: "button", class: "ghost attachment-remove", "aria-label": `Remove ${item.name}`,
        title: "Remove", onclick: () => removeFile(item) }, "×"));
  }));
  list.hidden = draft.files.length === 0;
}

// ---- suggestions: @mentions (notes) and /shortcuts -----------------------------------

// pending: suggestions asked for and not arrived; pickWhenReady: Enter was pressed meanwhile.
const menu = { kind: null, items: [], active: 0, start: 0, end: 0, seq: 0, pending: false, pickWhenReady: false };
let cannedTimer = null;

function updateSuggestions() {
  const textarea = ui.reply;
  const caret = textarea.selectionStart;
  if (caret !== textarea.selectionEnd || textarea.readOnly) return closeSuggestions();
  const before = textarea.value.slice(0, caret);
  const slash = /(?:^|\n)\/([\w-]{0,60})$/.exec(before);
  if (slash) return suggestCanned(slash[1], caret - slash[1].length - 1, caret);
  if (state.mode === "note") {
    const at = /(?:^|\s)@([^\s@]{0,40})$/.exec(before);
    if (at) return suggestAgents(at[1], caret - at[1].length - 1, caret);
  }
  return closeSuggestions();
}

async function suggestAgents(query, start, end) {
  const open = state.open;
  if (!open || !open.conversation) return;
  const seq = ++menu.seq;
  menu.pending = true;
  let agents;
  try {
    agents = await inboxAgents(open.conversation.inbox_id);
  } catch (error) {
    if (seq === menu.seq) {
      closeSuggestions();
      showError(`Could not list the agents: ${error.message}`);
    }
    return;
  }
  if (seq !== menu.seq || state.open !== open) return;
  const q = query.toLowerCase();
  const items = agents
    .filter((agent) => agent.id !== meId && agent.name.toLowerCase().split(/\s+/).some((word) => word.startsWith(q)))
    .slice(0, MENU_SIZE)
    .map((agent) => ({ value: agent, parts: [el("span", { class: "suggestion-name" }, agent.name)] }));
  showSuggestions("mention", items, start, end);
}

function suggestCanned(query, start, end) {
  const seq = ++menu.seq;
  menu.pending = true;
  clearTimeout(cannedTimer);
  cannedTimer = setTimeout(async () => {
    let found;
    try {
      found = await api("GET", `/api/v1/canned-responses?q=${encodeURIComponent(query)}`);
    } catch (error) {
      if (seq === menu.seq) {
        closeSuggestions();
        showError(`Canned responses: ${error.message}`);
      }
      return;
    }
    if (seq !== menu.seq) return;
    // Shortcuts that start with what was typed first, then matches in titles and texts.
    const typed = query.toLowerCase();
    const list = found.slice().sort((a, b) => Number(!a.shortcut.startsWith(typed)) - Number(!b.shortcut.startsWith(typed)));
    const items = list.slice(0, MENU_SIZE).map((canned) => ({
      value: canned,
      parts: [
        el("span", { class: "suggestion-shortcut" }, `/${canned.shortcut}`),
        el("span", { class: "suggestion-name" }, canned.title || ""),
        el("span", { class: "suggestion-preview" }, canned.text || ""),
      ],
    }));
    showSuggestions("canned", items, start, end);
  }, 120);
}

function showSuggestions(kind, items, start, end) {
  const pick = menu.pickWhenReady;
  Object.assign(menu, { kind, items, start, end, active: 0, pending: false, pickWhenReady: false });
  if (!items.length) {
    renderSuggestions(kind === "canned" ? "No canned response matches." : "No agent of this inbox matches.");
    return;
  }
  renderSuggestions(null);
  if (pick) {
    // Enter came first: an exact /shortcut wins, else the first match.
    const typed = ui.reply.value.slice(start + 1, end).toLowerCase();
    const exact = items.findIndex((item) => (kind === "canned" ? item.value.shortcut : item.value.name).toLowerCase() === typed);
    choose(exact === -1 ? 0 : exact);
  }
}

function renderSuggestions(emptyText) {
  const list = ui.suggestions;
  const textarea = ui.reply;
  if (emptyText) {
    list.replaceChildren(el("li", { class: "suggestion-empty", "aria-disabled": "true" }, emptyText));
  } else {
    list.replaceChildren(...menu.items.map((item, index) => el("li", {
      id: `suggestion-${index}`, role: "option", class: "suggestion",
      "aria-selected": String(index === menu.active), dataset: { kind: menu.kind },
      // mousedown, not click: the reply box keeps the focus (and its caret).
      onmousedown: (event) => { event.preventDefault(); choose(index); },
    }, ...item.parts)));
  }
  list.dataset.kind = menu.kind;
  list.hidden = false;
  textarea.setAttribute("aria-expanded", "true");
  if (menu.items.length) textarea.setAttribute("aria-activedescendant", `suggestion-${menu.active}`);
  else textarea.removeAttribute("aria-activedescendant");
}

export function closeSuggestions() {
  menu.seq++;
  clearTimeout(cannedTimer);
  Object.assign(menu, { kind: null, items: [], pending: false, pickWhenReady: false });
  const list = ui.suggestions;
  list.hidden = true;
  list.replaceChildren();
  const textarea = ui.reply;
  textarea.setAttribute("aria-expanded", "false");
  textarea.removeAttribute("aria-activedescendant");
}

function moveActive(step) {
  if (!menu.items.length) return;
  menu.active = (menu.active + step + menu.items.length) % menu.items.length;
  renderSuggestions(null);
  const active = document.getElementById(`suggestion-${menu.active}`);
  if (active) active.scrollIntoView({ block: "nearest" });
}

async function choose(index) {
  const item = menu.items[index];
  if (!item) return;
  const { kind, start, end } = menu;
  const textarea = ui.reply;
  const typed = textarea.value.slice(start, end);
  closeSuggestions();
  if (kind === "mention") {
    draft.mentions.set(item.value.id, item.value.name);
    textarea.setRangeText(`@${item.value.name} `, start, end, "end");
    textarea.focus();
    return;
  }
  const open = state.open;
  if (!open) return;
  try {
    const { text } = await api("POST", `/api/v1/conversations/${open.id}/canned-responses/${item.value.id}/render`);
    if (state.open !== open) return;
    // The agent may have typed on meanwhile: replace the /shortcut only if it is still there.
    if (textarea.value.slice(start, end) === typed) textarea.setRangeText(text, start, end, "end");
    else textarea.setRangeText(text, textarea.selectionStart, textarea.selectionEnd, "end");
    textarea.focus();
    signalTyping();
  } catch (error) {
    showError(`Could not insert /${item.value.shortcut}: ${error.message}`);
  }
}

/** Keys for the menu, caught before the reply box's own Enter (send) and Escape (leave). */
function onMenuKey(event) {
  if (event.target !== ui.reply || event.isComposing || event.ctrlKey || event.altKey || event.metaKey) return;
  const pick = (event.key === "Enter" && !event.shiftKey) || event.key === "Tab";
  if (menu.pending) {
    // Enter before the suggestions arrived: pick when they do; never send a bare "/shortcut".
    if (!pick) return;
    menu.pickWhenReady = true;
  } else if (ui.suggestions.hidden) {
    return;
  } else if (event.key === "Escape") {
    closeSuggestions();
  } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    moveActive(event.key === "ArrowDown" ? 1 : -1);
  } else if (pick && menu.items.length) {
    choose(menu.active);
  } else {
    if (event.key === "Enter") closeSuggestions(); // nothing to pick: Enter sends as usual
    return;
  }
  event.preventDefault();
  event.stopPropagation();
}

// ---- drafts per conversation --------------------------------------------------------

function switchDraft(previousId, id) {
  const textarea = ui.reply;
  if (previousId !== null) {
    drafts.set(previousId, { ...draft, text: textarea.value });
  }
  const next = id === null ? null : drafts.get(id);
  if (id !== null) drafts.delete(id);
  draft = next || emptyDraft();
  textarea.value = draft.text;
  closeSuggestions();
  hideConflict();
  showError("");
  renderFiles();
}

// ---- wiring ------------------------------------------------------------------------

export function init() {
  const textarea = ui.reply;
  const composer = ui.composer;
  composer.addEventListener("keydown", onMenuKey, { capture: true });
  textarea.addEventListener("input", updateSuggestions);
  textarea.addEventListener("click", updateSuggestions);
  textarea.addEventListener("blur", closeSuggestions);
  textarea.addEventListener("paste", (event) => {
    const files = event.clipboardData && event.clipboardData.files;
    if (files && files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
  for (const button of document.querySelectorAll("#composer [data-mode]")) {
    button.addEventListener("click", closeSuggestions);
  }
  ui.attach.addEventListener("click", () => ui.attachInput.click());
  ui.attachInput.addEventListener("change", (event) => {
    addFiles(event.target.files);
    event.target.value = "";
  });
  const thread = ui.thread;
  const hasFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
  thread.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    composer.classList.add("dropping");
  });
  thread.addEventListener("dragleave", (event) => {
    if (!thread.contains(event.relatedTarget)) composer.classList.remove("dropping");
  });
  thread.addEventListener("drop", (event) => {
    composer.classList.remove("dropping");
    if (!hasFiles(event)) return;
    event.preventDefault();
    addFiles(event.dataTransfer.files);
  });
  ui.conflictSend.addEventListener("click", () => send({ force: true }));
  ui.conflictCancel.addEventListener("click", () => { hideConflict(); textarea.focus(); });
  onThreadChange(switchDraft);
}
