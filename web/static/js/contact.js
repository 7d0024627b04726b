// The contact panel: name and details (editable), every identity, the contact's conversations
// on every channel, attributes, notes, and merging with another contact.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { el, elements, formatTime, toast } from "./dom.js";
import { api } from "./api.js";
import { STATUS_WORDS, agentName, channelName, inboxName, on, onEvent, state, upsertConversation } from "./state.js";

// The page's elements this view works with, found once.
const ui = elements({
  contact: "contact",
  mergeSearch: "merge-search",
  mergeResults: "merge-results",
  mergeSummary: "merge-summary",
  mergeError: "merge-error",
  mergeConfirm: "merge-confirm",
  mergeDialog: "merge-dialog",
  mergeForm: "merge-form",
  mergeCancel: "merge-cancel",
});

// The panel's parts are built once per contact, so a re-render never loses what is being typed.
let view = null;
let reloadSoon = 0;
// Answers can come back out of order: only the newest load (or save) is shown, so a slow
// answer read before a change never replaces what the change showed.
let loads = 0;

/** Load the open conversation's contact (a merged contact answers with the one it became). */
export async function loadContact(contactId) {
  const open = state.open;
  const load = ++loads;
  const contact = await api("GET", `/api/v1/contacts/${contactId}`);
  if (state.open !== open || !open || load !== loads) return;
  open.contact = contact;
  open.others = contact.conversations || [];
  renderContact();
  loadCrmCards(open, contact.id);
}

/** What the connected CRMs know of the contact (owner, stage, deals, a link), when linked. */
async function loadCrmCards(open, contactId) {
  try {
    const cards = await api("GET", `/api/v1/contacts/${contactId}/crm`);
    if (state.open !== open || !open.contact || open.contact.id !== contactId) return;
    open.crm = cards;
    renderContact();
  } catch (error) {
    // The panel works without the CRM; say so only in the card's place.
    if (state.open === open) { open.crm = [{ crm: "CRM", problem: error.message, fields: [], deals: [] }]; renderContact(); }
  }
}

const reload = () => {
  const open = state.open;
  if (open && open.contact) loadContact(open.contact.id).catch((error) => toast(`Could not load the contact: ${error.message}`));
};

export function renderContact() {
  const box = ui.contact;
  const open = state.open;
  if (!open || !open.contact) {
    view = null;
    box.replaceChildren(el("p", { class: "muted" }, open ? "Loading…" : "No conversation open."));
    return;
  }
  if (!view || view.contactId !== open.contact.id || !box.contains(view.root)) {
    view = buildView(open.contact.id);
    box.replaceChildren(view.root);
  }
  fillView(open);
}

// ---- the parts ---------------------------------------------------------------------

function buildView(contactId) {
  const v = { contactId };
  v.name = el("h3", { class: "contact-name" });
  v.editButton = el("button", { type: "button", class: "ghost small", id: "contact-edit", onclick: () => toggleEdit(true) }, "Edit");
  v.editName = el("input", { id: "contact-edit-name", maxlength: "200", autocomplete: "off" });
  v.editEmail = el("input", { id: "contact-edit-email", type: "email", maxlength: "320", autocomplete: "off" });
  v.editPhone = el("input", { id: "contact-edit-phone", type: "tel", maxlength: "40", autocomplete: "off" });
  v.editError = el("p", { class: "error", role: "alert" });
  v.editForm = el("form", { class: "contact-edit", hidden: true, onsubmit: (event) => { event.preventDefault(); saveDetails(); } },
    el("label", {}, "Name", v.editName),
    el("label", {}, "Email", v.editEmail),
    el("label", {}, "Phone", v.editPhone),
    v.editError,
    el("div", { class: "row-actions" },
      el("button", { type: "button", class: "ghost", onclick: () => toggleEdit(false) }, "Cancel"),
      el("button", { type: "submit", class: "primary" }, "Save")));
  v.facts = el("dl", { class: "facts" });
  v.crm = el("div", { class: "crm-cards", id: "contact-crm" });
  v.identities = el("ul", { class: "identities" });
  v.visitTitle = el("h4", {}, "On the website");
  v.visit = el("dl", { class: "facts visit", id: "contact-visit" });
  v.conversations = el("div", { class: "contact-conversations" });
  v.attributes = el("dl", { class: "attributes", id: "contact-attributes" });
  v.attrKey = el("input", { id: "attribute-key", maxlength: "100", placeholder: "Name", autocomplete: "off", "aria-label": "Attribute name" });
  v.attrValue = el("input", { id: "attribute-value", maxlength: "1000", placeholder: "Value", autocomplete: "off", "aria-label": "Attribute value" });
  v.attrForm = el("form", { class: "attribute-form", onsubmit: (event) => { event.preventDefault(); saveAttribute(); } },
    v.attrKey, v.attrValue, el("button", { type: "submit" }, "Save"));
  v.notes = el("ul", { class: "contact-notes", id: "contact-notes" });
  v.noteText = el("textarea", { id: "contact-note-text", rows: "2", maxlength: "5000", placeholder: "A note about this contact…", "aria-label": "Note about this contact" });
  v.noteForm = el("form", { class: "contact-note-form", onsubmit: (event) => { event.preventDefault(); addNote(); } },
    v.noteText, el("button", { type: "submit", id: "contact-note-add" }, "Add note"));
  v.root = el("div", { class: "contact-card", dataset: { contactId: String(contactId) } },
    el("div", { class: "contact-title" }, v.name, v.editButton),
    v.editForm,
    v.facts,
    v.crm,
    v.visitTitle, v.visit,
    el("h4", {}, "Identities"), v.identities,
    el("h4", {}, "Other conversations"), v.conversations,
    el("h4", {}, "Attributes"), v.attributes, v.attrForm,
    el("h4", {}, "Notes"), v.notes, v.noteForm,
    el("button", { type: "button", class: "merge-button", id: "contact-merge", onclick: openMerge }, "Merge with another contact…"),
  );
  return v;
}

function fillView(open) {
  const contact = open.contact;
  view.name.textContent = contact.name || "Unknown contact";
  const facts = [];
  for (const [label, value] of [["Email", contact.email], ["Phone", contact.phone]]) {
    if (value) facts.push(el("dt", {}, label), el("dd", {}, value));
  }
  view.facts.replaceChildren(...facts);
  view.facts.hidden = facts.length === 0;
  view.identities.replaceChildren(...contact.identities.map((identity) =>
    el("li", {}, el("span", { class: "identity-kind" }, identity.kind), " ",
      el("span", { class: "identity-value" }, identity.value),
      identity.display_name ? el("span", { class: "muted" }, ` (${identity.display_name})`) : null)));

  fillVisit(contact.visits || []);
  fillCrm(open.crm || []);

  const others = open.others.filter((c) => c.id !== open.id && !c.merged_into_id);
  const here = open.conversation;
  view.conversations.replaceChildren(others.length
    ? el("ul", { class: "other-conversations", id: "other-conversations" }, others.map((c) =>
      el("li", {}, el("a", { href: `#/conversations/${c.id}` },
        el("span", { class: "inbox" }, `${inboxName(c.inbox_id)} · ${channelName(c.channel)}`), " ",
        el("span", { class: `status-chip status-${c.status}` }, STATUS_WORDS[c.status] || c.status),
        el("div", { class: "preview" }, c.last_message_preview || c.subject || ""),
        el("time", { datetime: c.last_activity_at }, formatTime(c.last_activity_at))),
        here && here.inbox_id === c.inbox_id && !here.merged_into_id
          ? el("button", {
            type: "button", class: "link merge-conversation", dataset: { id: String(c.id) },
            title: "Move its messages into the conversation open here",
            onclick: () => mergeInto(open, c),
          }, "Merge into this one")
          : null)))
    : el("p", { class: "muted" }, "None."));

  const attributes = Object.entries(contact.attributes || {}).sort(([a], [b]) => a.localeCompare(b));
  view.attributes.replaceChildren(...attributes.flatMap(([key, value]) => {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return [
      el("dt", {}, key),
      el("dd", {}, el("span", { class: "attribute-value" }, text),
        el("button", { type: "button", class: "ghost small", "aria-label": `Edit ${key}`,
          onclick: () => { view.attrKey.value = key; view.attrValue.value = text; view.attrValue.focus(); } }, "Edit"),
        el("button", { type: "button", class: "ghost small", "aria-label": `Remove ${key}`,
          onclick: () => patchContact({ attributes: { [key]: null } }, "Could not remove the attribute") }, "×")),
    ];
  }));
  if (!attributes.length) view.attributes.append(el("dd", { class: "muted" }, "None."));

  const notes = (contact.notes || []).slice().sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
  view.notes.replaceChildren(...notes.map((note) =>
    el("li", { class: "contact-note" },
      el("div", { class: "text" }, note.text),
      el("div", { class: "meta" }, `${agentName(note.agent_id) || "Switchboard"} · `,
        el("time", { datetime: note.created_at }, formatTime(note.created_at))))));
}

function fillCrm(cards) {
  view.crm.hidden = cards.length === 0;
  view.crm.replaceChildren(...cards.map((card) => {
    const safeLink = typeof card.link === "string" && card.link.startsWith("https://");
    return el("section", { class: "crm-card" },
      el("h4", {}, card.crm, safeLink
        ? el("a", { href: card.link, target: "_blank", rel: "noopener noreferrer", class: "crm-link" }, ` Open in ${card.crm}`)
        : null),
      card.problem ? el("p", { class: "muted" }, card.problem) : null,
      el("dl", { class: "facts" }, ...card.fields.flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value)])),
      card.deals.length
        ? el("ul", { class: "crm-deals" }, card.deals.map(([name, detail]) =>
          el("li", {}, el("span", {}, name), detail ? el("span", { class: "muted" }, ` ${detail}`) : null)))
        : null);
  }));
}

/** The visitor's local time now, in their time zone ("14:05 Europe/Zurich"). */
function localTime(zone) {
  try {
    return `${new Date().toLocaleTimeString([], { timeZone: zone, hour: "2-digit", minute: "2-digit" })} (${zone})`;
  } catch {
    return zone;
  }
}

/** What the website chat knows of the visitor: the latest visit. */
function fillVisit(visits) {
  const visit = visits[0];
  view.visitTitle.hidden = view.visit.hidden = !visit;
  if (!visit) return view.visit.replaceChildren();
  const rows = [];
  const add = (label, ...value) => rows.push(el("dt", {}, label), el("dd", {}, ...value));
  if (visit.page_url) {
    add("Page", el("a", { href: visit.page_url, target: "_blank", rel: "noopener noreferrer", class: "visit-page", title: visit.page_url },
      visit.page_title || visit.page_url));
  }
  if (visit.referrer) add("Came from", el("span", { class: "visit-referrer", title: visit.referrer }, new URL(visit.referrer).host));
  const device = [visit.browser, visit.os].filter(Boolean).join(" on ");
  if (device) add("Browser", device);
  if (visit.language) add("Language", visit.language);
  if (visit.time_zone) add("Local time", el("span", { class: "visit-time" }, localTime(visit.time_zone)));
  add("First seen", el("time", { datetime: visit.first_seen_at }, formatTime(visit.first_seen_at)));
  add("Last seen", el("time", { datetime: visit.last_seen_at }, formatTime(visit.last_seen_at)));
  if (visit.verified) add("Identity", el("span", { class: "chip ok visit-verified" }, "Verified by your site"));
  view.visit.replaceChildren(...rows);
}

// ---- changes -----------------------------------------------------------------------

function toggleEdit(on) {
  const contact = state.open && state.open.contact;
  if (!view || !contact) return;
  view.editForm.hidden = !on;
  view.editButton.hidden = on;
  view.editError.textContent = "";
  if (on) {
    view.editName.value = contact.name || "";
    view.editEmail.value = contact.email || "";
    view.editPhone.value = contact.phone || "";
    view.editName.focus();
  }
}

/** PATCH the contact; apply the answer here, in the conversation's title and in the list. */
async function patchContact(change, failure) {
  const open = state.open;
  if (!open || !open.contact) return false;
  let updated;
  try {
    updated = await api("PATCH", `/api/v1/contacts/${open.contact.id}`, change);
  } catch (error) {
    if (view && failure) view.editError.textContent = `${failure}: ${error.message}`;
    toast(`${failure}: ${error.message}`);
    return false;
  }
  loads += 1;  // a load started before this change answers with what it replaced
  if (state.open !== open) return true;
  open.contact = { ...open.contact, ...updated };
  renameConversations(updated.id, updated.id, updated.name);
  renderContact();
  return true;
}

/** Merge another conversation of the contact into the open one (its messages move here). */
async function mergeInto(open, other) {
  const about = other.subject || other.last_message_preview || `conversation #${other.id}`;
  if (!window.confirm(`Move every message of “${about}” into this conversation?`)) return;
  try {
    const merged = await api("POST", `/api/v1/conversations/${open.id}/merge`,
      { other_conversation_id: other.id });
    upsertConversation(merged);
    await loadContact(merged.contact_id);
  } catch (error) {
    toast(`Not merged: ${error.message}`);
  }
}

/** The contact's conversations as the list and the thread show them: its name, its id. */
function renameConversations(fromId, toId, name) {
  const open = state.open;
  const touched = [];
  for (const conversation of state.conversations.values()) {
    if (conversation.contact_id === fromId) touched.push(conversation);
  }
  if (open && open.conversation && open.conversation.contact_id === fromId && !touched.some((c) => c.id === open.id)) {
    touched.push(open.conversation);
  }
  for (const conversation of touched) upsertConversation({ ...conversation, contact_id: toId, contact_name: name });
}

async function saveDetails() {
  const blank = (value) => (value.trim() ? value.trim() : null);
  const ok = await patchContact({
    name: blank(view.editName.value), email: blank(view.editEmail.value), phone: blank(view.editPhone.value),
  }, "Could not save");
  if (ok) toggleEdit(false);
}

async function saveAttribute() {
  const key = view.attrKey.value.trim();
  if (!key) {
    view.attrKey.focus();
    return;
  }
  if (await patchContact({ attributes: { [key]: view.attrValue.value } }, "Could not save the attribute")) {
    view.attrKey.value = "";
    view.attrValue.value = "";
  }
}

async function addNote() {
  const open = state.open;
  const text = view.noteText.value;
  if (!open || !open.contact || !text.trim()) return;
  try {
    const note = await api("POST", `/api/v1/contacts/${open.contact.id}/notes`, { text });
    if (state.open !== open) return;
    open.contact = { ...open.contact, notes: [...(open.contact.notes || []), note] };
    view.noteText.value = "";
    renderContact();
  } catch (error) {
    toast(`Could not add the note: ${error.message}`);
  }
}

// ---- merging -----------------------------------------------------------------------

const merge = { other: null, seq: 0, timer: null };

function openMerge() {
  const contact = state.open && state.open.contact;
  if (!contact) return;
  merge.other = null;
  ui.mergeSearch.value = "";
  ui.mergeResults.replaceChildren();
  ui.mergeSummary.hidden = true;
  ui.mergeError.textContent = "";
  ui.mergeConfirm.disabled = true;
  ui.mergeDialog.showModal();
  ui.mergeSearch.focus();
}

function searchContacts() {
  clearTimeout(merge.timer);
  const seq = ++merge.seq;
  const q = ui.mergeSearch.value.trim();
  merge.timer = setTimeout(async () => {
    if (!q) {
      ui.mergeResults.replaceChildren();
      return;
    }
    let found;
    try {
      found = await api("GET", `/api/v1/contacts?q=${encodeURIComponent(q)}`);
    } catch (error) {
      if (seq === merge.seq) ui.mergeError.textContent = `Could not search: ${error.message}`;
      return;
    }
    const open = state.open;
    if (seq !== merge.seq || !open || !open.contact) return;
    const items = (Array.isArray(found) ? found : found.items || []).filter((c) => c.id !== open.contact.id);
    ui.mergeError.textContent = "";
    ui.mergeResults.replaceChildren(...(items.length ? items.map((contact) =>
      el("li", {}, el("button", { type: "button", class: "merge-candidate", dataset: { contactId: String(contact.id) },
        onclick: () => pickMerge(contact) },
        el("span", { class: "merge-name" }, contact.name || "Unknown contact"),
        el("span", { class: "muted" }, [contact.email, contact.phone].filter(Boolean).join(" · ") ||
          (contact.identities || []).map((i) => i.value).join(", "))))) : [el("li", { class: "muted" }, "No contact found.")]));
  }, 200);
}

async function pickMerge(other) {
  const open = state.open;
  if (!open || !open.contact) return;
  ui.mergeConfirm.disabled = true;
  let detail;
  try {
    detail = await api("GET", `/api/v1/contacts/${other.id}`);
  } catch (error) {
    ui.mergeError.textContent = `Could not load that contact: ${error.message}`;
    return;
  }
  merge.other = detail;
  for (const button of document.querySelectorAll("#merge-results .merge-candidate")) {
    button.setAttribute("aria-pressed", String(button.dataset.contactId === String(other.id)));
  }
  const keep = open.contact.name || "this contact";
  const gone = detail.name || "the other contact";
  const count = (n, one, many, more = false) => `${n}${more ? "+" : ""} ${n === 1 && !more ? one : many}`;
  const identities = count((detail.identities || []).length, "identity", "identities");
  const conversations = count((detail.conversations || []).length, "conversation", "conversations",
    Boolean(detail.conversations_next_cursor));
  ui.mergeSummary.textContent =
    `“${gone}” will be merged into “${keep}”: its ${identities}, ${conversations} and notes move to ` +
    `“${keep}”, which also takes the details it lacks (email, phone, attributes). ` +
    `“${gone}” will no longer appear on its own. This cannot be undone.`;
  ui.mergeSummary.hidden = false;
  ui.mergeConfirm.disabled = false;
  ui.mergeConfirm.focus();
}

async function confirmMerge() {
  const open = state.open;
  const other = merge.other;
  if (!open || !open.contact || !other) return;
  ui.mergeConfirm.disabled = true;
  try {
    const survivor = await api("POST", `/api/v1/contacts/${open.contact.id}/merge`, { other_contact_id: other.id });
    ui.mergeDialog.close();
    toast(`Merged “${other.name || "the other contact"}” into “${survivor.name || "this contact"}”.`);
    renameConversations(other.id, survivor.id, survivor.name);
    if (state.open === open) reload();
  } catch (error) {
    ui.mergeError.textContent = `Could not merge: ${error.message}`;
    ui.mergeConfirm.disabled = false;
  }
}

// ---- wiring ------------------------------------------------------------------------

export function init() {
  ui.mergeSearch.addEventListener("input", searchContacts);
  ui.mergeForm.addEventListener("submit", (event) => event.preventDefault());
  ui.mergeCancel.addEventListener("click", () => ui.mergeDialog.close());
  ui.mergeConfirm.addEventListener("click", confirmMerge);
  onEvent((event) => {
    if (event.type === "conversation.updated" && (event.changes || []).includes("contact")) {
      // The contact changed (an agent, or the CRM): the panel shows it now.
      const open = state.open;
      if (open && open.contact && open.contact.id === event.conversation.contact_id) {
        // One change reaches every conversation of the contact: reload once for them all.
        clearTimeout(reloadSoon);
        reloadSoon = setTimeout(reload, 150);
      }
      return;
    }
    if (event.type !== "contact.merged") return;
    // Conversations of the merged contact now belong to the survivor, here and in the list.
    renameConversations(event.merged_contact_id, event.contact.id, event.contact.name);
    const open = state.open;
    const shown = open && open.contact && open.contact.id;
    if (shown === event.contact.id || shown === event.merged_contact_id) {
      loadContact(event.contact.id).catch(() => {});
    }
  });
}

on("contact", () => renderContact());
on("load-contact", loadContact);
