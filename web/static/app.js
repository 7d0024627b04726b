// Switchboard's agent inbox: a small app on the JSON API (/api/v1) and the agent websocket.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.
"use strict";

(() => {
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const meId = Number(document.querySelector('meta[name="agent-id"]').content);
  const $ = (selector) => document.querySelector(selector);
  const STATUS_WORDS = { open: "Open", pending: "Pending", snoozed: "Snoozed", resolved: "Resolved" };
  const PAGE = 25;

  // ---- small DOM helpers -------------------------------------------------------------

  /** An element with properties and children; strings become text nodes. */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function formatTime(iso) {
    if (!iso) return "";
    const at = new Date(iso);
    const now = new Date();
    const sameDay = at.toDateString() === now.toDateString();
    return sameDay
      ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : at.toLocaleDateString([], { month: "short", day: "numeric" }) + " " +
        at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function randomKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  let toastTimer = null;
  function toast(text) {
    let box = $("#toast");
    if (!box) {
      box = el("div", { id: "toast", class: "toast", role: "status" });
      document.body.append(box);
    }
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
  }

  // ---- the API -----------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrfToken;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      window.location.assign("/login");
      throw new ApiError(401, "unauthenticated", "Your session ended; log in again.");
    }
    if (!response.ok) {
      let error = {};
      try { error = (await response.json()).error || {}; } catch { /* not JSON */ }
      throw new ApiError(response.status, error.code || "error", error.message || response.statusText);
    }
    return response.status === 204 ? null : response.json();
  }

  /** POST with retries on network errors and 5xx; the caller's idempotency key makes it safe. */
  async function postWithRetry(path, body, attempts = 4) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await api("POST", path, body);
      } catch (error) {
        const transient = !(error instanceof ApiError) || error.status >= 500;
        if (!transient || attempt >= attempts) throw error;
        await new Promise((resolve) => setTimeout(resolve, 400 * 2 ** attempt));
      }
    }
  }

  // ---- state -------------------------------------------------------------------------

  const state = {
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

  function loadFilter() {
    const fallback = { view: "all", status: "open", inbox: "" };
    try {
      const saved = JSON.parse(localStorage.getItem("switchboard.filter") || "null");
      if (saved && ["mine", "unassigned", "all"].includes(saved.view)) return { ...fallback, ...saved };
    } catch { /* ignore a broken value */ }
    return fallback;
  }

  function saveFilter() {
    try { localStorage.setItem("switchboard.filter", JSON.stringify(state.filter)); } catch { /* private mode */ }
  }

  const agentName = (id) => (id === null || id === undefined ? null : state.agents.get(id) || `Agent #${id}`);
  const inboxName = (id) => (state.inboxes.get(id) || {}).name || `Inbox #${id}`;
  const contactName = (conversation) => conversation.contact_name || "Unknown contact";
  const newerFirst = (a, b) => Date.parse(b.last_activity_at) - Date.parse(a.last_activity_at) || b.id - a.id;

  function matchesFilter(conversation) {
    const { view, status, inbox } = state.filter;
    if (view === "mine" && conversation.assignee_id !== meId) return false;
    if (view === "unassigned" && conversation.assignee_id !== null) return false;
    if (status && conversation.status !== status) return false;
    if (inbox && conversation.inbox_id !== Number(inbox)) return false;
    return true;
  }

  function listQuery(cursor) {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (state.filter.view === "mine") params.set("assignee", "me");
    if (state.filter.view === "unassigned") params.set("assignee", "none");
    if (state.filter.status) params.set("status", state.filter.status);
    if (state.filter.inbox) params.set("inbox_id", state.filter.inbox);
    if (cursor) params.set("cursor", cursor);
    return `/api/v1/conversations?${params}`;
  }

  // ---- the conversation list ---------------------------------------------------------

  async function loadList() {
    const generation = ++state.listGeneration;
    const page = await api("GET", listQuery(null));
    if (generation !== state.listGeneration) return;
    state.conversations = new Map(page.items.map((c) => [c.id, c]));
    state.order = page.items.map((c) => c.id);
    state.nextCursor = page.next_cursor;
    renderList();
  }

  async function loadMore() {
    if (!state.nextCursor) return;
    const generation = state.listGeneration;
    const button = $("#load-more");
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

  function sortList() {
    state.order.sort((a, b) => newerFirst(state.conversations.get(a), state.conversations.get(b)));
  }

  /** Apply a conversation's new state to the list, the open thread and the contact panel. */
  function upsertConversation(conversation) {
    const open = state.open;
    if (open && open.id === conversation.id) {
      open.conversation = conversation;
      renderThreadHeader();
    }
    if (open && open.others.some((c) => c.id === conversation.id)) {
      open.others = open.others.map((c) => (c.id === conversation.id ? conversation : c));
      renderContact();
    }
    const listed = state.conversations.has(conversation.id);
    if (matchesFilter(conversation)) {
      // With more pages to load, an older conversation belongs to a page not fetched yet.
      const lastId = state.order[state.order.length - 1];
      const last = lastId === undefined ? null : state.conversations.get(lastId);
      if (!listed && state.nextCursor && last && newerFirst(conversation, last) > 0) return;
      if (!listed) state.order.push(conversation.id);
      state.conversations.set(conversation.id, conversation);
      sortList();
    } else if (listed) {
      state.conversations.delete(conversation.id);
      state.order = state.order.filter((id) => id !== conversation.id);
    } else {
      return;
    }
    renderList();
  }

  const rows = new Map(); // id -> {li, parts}

  function makeRow(id) {
    const parts = {
      name: el("span", { class: "name" }),
      time: el("time", { class: "time" }),
      preview: el("span", { class: "preview" }),
      inbox: el("span", { class: "inbox" }),
      assignee: el("span", { class: "assignee" }),
      status: el("span", { class: "status-chip" }),
      badge: el("span", { class: "badge", "aria-label": "unread messages" }),
    };
    // Open at once on click; the hashchange that follows finds it already open.
    const link = el("a", { class: "conversation", href: `#/conversations/${id}`, onclick: () => openConversation(id) },
      el("div", { class: "row-top" }, parts.name, parts.badge, parts.time),
      el("div", { class: "row-preview" }, parts.preview),
      el("div", { class: "row-meta" }, parts.inbox, parts.assignee, parts.status));
    const li = el("li", { class: "conversation-row", dataset: { id: String(id) } }, link);
    return { li, parts };
  }

  function fillRow(row, conversation) {
    const { parts, li } = row;
    parts.name.textContent = contactName(conversation);
    parts.time.textContent = formatTime(conversation.last_activity_at);
    parts.time.setAttribute("datetime", conversation.last_activity_at);
    parts.preview.textContent = conversation.last_message_preview || conversation.subject || "";
    parts.inbox.textContent = inboxName(conversation.inbox_id);
    const assignee = agentName(conversation.assignee_id);
    parts.assignee.textContent = assignee ? `· ${assignee}` : "· Unassigned";
    parts.status.textContent = conversation.status === "open" ? "" : STATUS_WORDS[conversation.status] || conversation.status;
    parts.status.hidden = conversation.status === "open";
    parts.status.className = `status-chip status-${conversation.status}`;
    parts.badge.textContent = conversation.unread_count > 99 ? "99+" : String(conversation.unread_count);
    parts.badge.hidden = conversation.unread_count === 0;
    li.classList.toggle("unread", conversation.unread_count > 0);
    li.classList.toggle("selected", state.open !== null && state.open.id === conversation.id);
    li.dataset.status = conversation.status;
  }

  function renderList() {
    const list = $("#conversation-list");
    const keep = new Set(state.order);
    for (const [id, row] of rows) {
      if (!keep.has(id)) {
        row.li.remove();
        rows.delete(id);
      }
    }
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
    $("#list-empty").hidden = state.order.length > 0;
    $("#load-more").hidden = !state.nextCursor;
    const unread = state.order.filter((id) => state.conversations.get(id).unread_count > 0).length;
    document.title = unread ? `(${unread}) Inbox · Switchboard` : "Inbox · Switchboard";
  }

  function renderFilters() {
    for (const button of document.querySelectorAll(".tabs [data-view]")) {
      const active = button.dataset.view === state.filter.view;
      button.classList.toggle("active", active);
      button.setAttribute("aria-pressed", String(active));
    }
    $("#status-filter").value = state.filter.status;
    $("#inbox-filter").value = state.filter.inbox;
  }

  function setFilter(change) {
    state.filter = { ...state.filter, ...change };
    saveFilter();
    renderFilters();
    state.order = [];
    state.conversations = new Map();
    state.nextCursor = null;
    renderList();
    loadList().catch((error) => toast(`Could not load conversations: ${error.message}`));
  }

  // ---- the open conversation -----------------------------------------------------------

  async function openConversation(id) {
    if (state.open && state.open.id === id) {
      showPane("thread");
      return;
    }
    stopTyping();
    state.open = {
      id, conversation: state.conversations.get(id) || null, messages: new Map(),
      olderCursor: null, contact: null, others: [], typing: new Map(),
    };
    messageRows.clear();
    $("#message-list").replaceChildren();
    $("#thread-empty").hidden = true;
    $("#thread").hidden = false;
    $("#typing").hidden = true;
    $("#composer-error").textContent = "";
    renderThreadHeader();
    renderList();
    renderContact();
    showPane("thread");
    try {
      await loadThread(id);
    } catch (error) {
      if (state.open && state.open.id === id) {
        $("#thread-title").textContent = error.status === 404 ? "Conversation not found" : "Could not load";
        $("#thread-meta").textContent = error.message;
      }
      return;
    }
    const conversation = state.open && state.open.id === id ? state.open.conversation : null;
    if (!conversation) return;
    loadContact(conversation.contact_id).catch(() => {});
    if (conversation.unread_count > 0) markRead(id);
  }

  async function loadThread(id) {
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

  async function loadOlder() {
    const open = state.open;
    if (!open || !open.olderCursor) return;
    const box = $("#messages");
    const fromBottom = box.scrollHeight - box.scrollTop;
    const page = await api("GET", `/api/v1/conversations/${open.id}/messages?before=${encodeURIComponent(open.olderCursor)}`);
    if (state.open !== open) return;
    for (const message of page.items) open.messages.set(message.id, message);
    open.olderCursor = page.older_cursor;
    renderMessages({});
    box.scrollTop = box.scrollHeight - fromBottom;
  }

  async function loadContact(contactId) {
    const open = state.open;
    const [contact, others] = await Promise.all([
      api("GET", `/api/v1/contacts/${contactId}`),
      api("GET", `/api/v1/conversations?contact_id=${contactId}&limit=20`),
    ]);
    if (state.open !== open) return;
    open.contact = contact;
    open.others = others.items;
    renderContact();
  }

  function markRead(id) {
    api("POST", `/api/v1/conversations/${id}/read`).then(upsertConversation).catch(() => {});
  }

  function renderThreadHeader() {
    const open = state.open;
    const conversation = open && open.conversation;
    if (!conversation) {
      $("#thread-title").textContent = "Loading…";
      $("#thread-meta").replaceChildren();
      return;
    }
    $("#thread-title").textContent = contactName(conversation);
    const assignee = agentName(conversation.assignee_id);
    const meta = [
      el("span", { class: `status-chip status-${conversation.status}`, id: "thread-status" },
        STATUS_WORDS[conversation.status] || conversation.status),
      el("span", {}, ` ${inboxName(conversation.inbox_id)} · ${conversation.channel} · `),
      el("span", { id: "thread-assignee" }, assignee ? `Assigned to ${assignee}` : "Unassigned"),
    ];
    if (conversation.status === "snoozed" && conversation.snoozed_until) {
      meta.push(el("span", {}, ` · until ${new Date(conversation.snoozed_until).toLocaleString()}`));
    }
    $("#thread-meta").replaceChildren(...meta);
    const mine = conversation.assignee_id === meId;
    const assign = $("#act-assign");
    assign.textContent = mine ? "Unassign" : "Assign to me";
    const reopen = conversation.status === "resolved" || conversation.status === "snoozed";
    const statusButton = $("#act-status");
    statusButton.textContent = reopen ? "Reopen" : "Resolve";
    statusButton.classList.toggle("primary", !reopen);
    $("#act-snooze").disabled = conversation.status === "resolved";
  }

  const messageRows = new Map(); // id -> li

  function messageElement(message) {
    const when = el("time", { datetime: message.accepted_at }, formatTime(message.accepted_at));
    if (message.kind === "activity") {
      return el("li", { class: "activity", dataset: { id: String(message.id), kind: "activity" } },
        el("span", { class: "text" }, message.text), " ", when);
    }
    const open = state.open;
    const author = message.direction === "in"
      ? contactName((open && open.conversation) || {})
      : agentName(message.agent_id) || "Switchboard";
    const label = message.kind === "note" ? `Note · ${author}` : author;
    const meta = el("div", { class: "meta" }, when);
    if (message.kind === "message" && message.direction === "out" && message.status) {
      meta.append(" · ", el("span", { class: `delivery delivery-${message.status}` }, message.status));
      if (message.status_reason) {
        meta.append(" ", el("span", { class: "delivery-reason" }, `(${message.status_reason})`));
      }
    }
    const files = (message.attachments || []).map((file) =>
      el("li", {}, el("a", { href: `/api/v1/attachments/${encodeURIComponent(file.id)}`, target: "_blank", rel: "noopener" },
        file.filename || "attachment")));
    const classes = ["msg", message.direction === "in" ? "in" : "out"];
    if (message.kind === "note") classes.push("note");
    return el("li", { class: classes.join(" "), dataset: { id: String(message.id), kind: message.kind } },
      el("div", { class: "bubble" },
        el("div", { class: "author" }, label),
        el("div", { class: "text" }, message.text),
        files.length ? el("ul", { class: "files" }, files) : null),
      meta);
  }

  function renderMessages({ scroll }) {
    const open = state.open;
    if (!open) return;
    const box = $("#messages");
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    const list = $("#message-list");
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
    $("#load-older").hidden = !open.olderCursor;
    if (scroll === "bottom" || nearBottom) box.scrollTop = box.scrollHeight;
  }

  const messageVersion = (message) => `${message.status}|${message.status_reason}|${message.text.length}`;

  function addMessage(message) {
    const open = state.open;
    if (!open || open.id !== message.conversation_id) return;
    const known = open.messages.get(message.id);
    // A status update may overtake the creation event: never go back to "queued".
    if (known && known.status && message.status === "queued") return;
    open.messages.set(message.id, message);
    renderMessages({});
  }

  function renderContact() {
    const box = $("#contact");
    const open = state.open;
    if (!open || !open.contact) {
      box.replaceChildren(el("p", { class: "muted" }, open ? "Loading…" : "No conversation open."));
      return;
    }
    const contact = open.contact;
    const facts = el("dl", { class: "facts" });
    for (const [label, value] of [["Email", contact.email], ["Phone", contact.phone]]) {
      if (value) facts.append(el("dt", {}, label), el("dd", {}, value));
    }
    const identities = el("ul", { class: "identities" }, contact.identities.map((identity) =>
      el("li", {}, el("span", { class: "identity-kind" }, identity.kind), " ",
        el("span", { class: "identity-value" }, identity.value),
        identity.display_name ? el("span", { class: "muted" }, ` (${identity.display_name})`) : null)));
    const others = open.others.filter((c) => c.id !== open.id);
    const otherList = el("ul", { class: "other-conversations", id: "other-conversations" }, others.map((c) =>
      el("li", {}, el("a", { href: `#/conversations/${c.id}` },
        el("span", { class: "inbox" }, `${inboxName(c.inbox_id)} · ${c.channel}`), " ",
        el("span", { class: `status-chip status-${c.status}` }, STATUS_WORDS[c.status] || c.status),
        el("div", { class: "preview" }, c.last_message_preview || ""),
        el("time", { datetime: c.last_activity_at }, formatTime(c.last_activity_at))))));
    box.replaceChildren(
      el("h3", { class: "contact-name" }, contact.name || "Unknown contact"),
      facts,
      el("h4", {}, "Identities"),
      identities,
      el("h4", {}, "Other conversations"),
      others.length ? otherList : el("p", { class: "muted" }, "None."),
    );
  }

  // ---- typing indicators -------------------------------------------------------------

  let typingSentAt = 0;
  let typingStop = null;

  function signalTyping() {
    const open = state.open;
    if (!open) return;
    const mode = state.mode === "note" ? "note" : "reply";
    const now = Date.now();
    if (now - typingSentAt > 3000) {
      typingSentAt = now;
      api("POST", `/api/v1/conversations/${open.id}/typing`, { mode, typing: true }).catch(() => {});
    }
    clearTimeout(typingStop);
    typingStop = setTimeout(stopTyping, 4000);
  }

  function stopTyping() {
    clearTimeout(typingStop);
    if (!typingSentAt || !state.open) return;
    typingSentAt = 0;
    const mode = state.mode === "note" ? "note" : "reply";
    api("POST", `/api/v1/conversations/${state.open.id}/typing`, { mode, typing: false }).catch(() => {});
  }

  function showTyping(event) {
    const open = state.open;
    if (!open || open.id !== event.conversation_id || event.by_agent_id === meId) return;
    const who = event.by_agent_id === null ? contactName(open.conversation || {}) : agentName(event.by_agent_id);
    setTyping(open, who, event.typing);
  }

  function setTyping(open, who, typing) {
    clearTimeout(open.typing.get(who));
    open.typing.delete(who);
    if (typing) {
      open.typing.set(who, setTimeout(() => { open.typing.delete(who); renderTyping(); }, 6000));
    }
    renderTyping();
  }

  function renderTyping() {
    const open = state.open;
    const names = open ? Array.from(open.typing.keys()) : [];
    const box = $("#typing");
    box.textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
    box.hidden = names.length === 0;
  }

  // ---- actions -----------------------------------------------------------------------

  function setMode(mode) {
    state.mode = mode;
    $("#composer").dataset.mode = mode;
    for (const button of document.querySelectorAll("#composer [data-mode]")) {
      button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
    }
    $("#reply").placeholder = mode === "note"
      ? "Internal note, only agents see it… (Enter to save)"
      : "Reply… (Enter to send, Shift+Enter for a new line)";
    $("#send").textContent = mode === "note" ? "Add note" : "Send";
  }

  async function send() {
    const open = state.open;
    const textarea = $("#reply");
    const text = textarea.value;
    if (!open || !text.trim() || textarea.readOnly) return;
    const kind = state.mode;
    textarea.readOnly = true;
    $("#send").disabled = true;
    $("#composer-error").textContent = "";
    try {
      const message = await postWithRetry(`/api/v1/conversations/${open.id}/messages`,
        { text, kind, idempotency_key: randomKey() });
      textarea.value = "";
      addMessage(message);
      stopTyping();
      renderMessages({ scroll: "bottom" });
    } catch (error) {
      $("#composer-error").textContent = `Not sent: ${error.message}`;
    } finally {
      textarea.readOnly = false;
      $("#send").disabled = false;
    }
  }

  async function act(path, body, failure) {
    const open = state.open;
    if (!open) return;
    try {
      upsertConversation(await api("POST", `/api/v1/conversations/${open.id}/${path}`, body));
    } catch (error) {
      toast(`${failure}: ${error.message}`);
    }
  }

  const currentStatus = () => (state.open && state.open.conversation ? state.open.conversation.status : null);
  const resolve = () => currentStatus() && currentStatus() !== "resolved" && act("status", { status: "resolved" }, "Could not resolve");
  const reopen = () => currentStatus() && currentStatus() !== "open" && act("status", { status: "open" }, "Could not reopen");
  const assignMe = () => act("assignment", { assignee_id: meId }, "Could not assign");
  const unassign = () => act("assignment", { assignee_id: null }, "Could not unassign");

  function snoozeUntil(choice) {
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

  function openSnooze() {
    if (!state.open || !state.open.conversation || currentStatus() === "resolved") return;
    const input = $("#snooze-custom");
    const soon = new Date(Date.now() + 60 * 60 * 1000);
    const local = new Date(soon.getTime() - soon.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    input.min = local.slice(0, 16);
    input.value = local;
    $("#snooze-dialog").showModal();
  }

  function snooze(at) {
    if (!at || Number.isNaN(at.getTime()) || at.getTime() <= Date.now()) {
      toast("Pick a time in the future.");
      return;
    }
    $("#snooze-dialog").close();
    act("status", { status: "snoozed", snoozed_until: at.toISOString() }, "Could not snooze");
  }

  function move(step) {
    if (!state.order.length) return;
    const index = state.open ? state.order.indexOf(state.open.id) : -1;
    const next = index === -1 ? 0 : Math.min(state.order.length - 1, Math.max(0, index + step));
    window.location.hash = `#/conversations/${state.order[next]}`;
    const row = rows.get(state.order[next]);
    if (row) row.li.scrollIntoView({ block: "nearest" });
  }

  function focusReply(mode) {
    if (!state.open) return;
    setMode(mode);
    showPane("thread");
    $("#reply").focus();
  }

  // ---- navigation (hash routes, and one pane at a time on a phone) -------------------

  function showPane(name) {
    $("#columns").dataset.pane = name;
  }

  function route() {
    const match = /^#\/conversations\/(\d+)$/.exec(window.location.hash);
    if (match) {
      openConversation(Number(match[1]));
      return;
    }
    stopTyping();
    state.open = null;
    $("#thread").hidden = true;
    $("#thread-empty").hidden = false;
    renderContact();
    renderList();
    showPane("list");
  }

  // ---- live: the agent websocket -----------------------------------------------------

  let reconnectTimer = null;
  let pingTimer = null;
  let pongDeadline = null;

  function setOnline(online) {
    state.connected = online;
    $("#offline").hidden = online;
    document.body.classList.toggle("offline", !online);
    document.body.dataset.live = String(online);
  }

  function connect() {
    clearTimeout(reconnectTimer);
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    let url = `${scheme}//${window.location.host}/api/v1/ws`;
    if (state.lastEventId) url += `?last_event_id=${encodeURIComponent(state.lastEventId)}`;
    const socket = new WebSocket(url);
    state.socket = socket;
    socket.addEventListener("message", (message) => {
      clearTimeout(pongDeadline);
      if (state.socket !== socket) return;
      let frame;
      try { frame = JSON.parse(message.data); } catch { return; }
      handleFrame(frame);
    });
    socket.addEventListener("close", (closed) => {
      if (state.socket !== socket) return;
      state.socket = null;
      clearInterval(pingTimer);
      clearTimeout(pongDeadline);
      setOnline(false);
      // A refused handshake or an ended session: if the session is gone, go to the login page.
      if (!socket.wasReady || closed.code === 1008 || closed.code === 4401) {
        api("GET", "/api/v1/me").catch(() => {});
      }
      if (!state.loadedOnce) reloadAll();
      const delay = Math.min(10000, 500 * 2 ** state.retry) * (0.5 + Math.random() / 2);
      state.retry = Math.min(state.retry + 1, 5);
      reconnectTimer = setTimeout(connect, delay);
    });
  }

  function handleFrame(frame) {
    if (frame.type === "event") {
      state.lastEventId = frame.id;
      if (state.buffer) state.buffer.push(frame.event);
      else applyEvent(frame.event);
    } else if (frame.type === "ready") {
      if (state.socket) state.socket.wasReady = true;
      const resumed = state.lastEventId !== null;
      state.lastEventId = frame.last_event_id;
      state.retry = 0;
      setOnline(true);
      clearInterval(pingTimer);
      pingTimer = setInterval(ping, 25000);
      if (!resumed) reloadAll();
    } else if (frame.type === "resync") {
      reloadAll();
    }
  }

  function ping() {
    const socket = state.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send('{"type":"ping"}');
    clearTimeout(pongDeadline);
    pongDeadline = setTimeout(() => socket.close(), 10000); // a silent connection is a dead one
  }

  /** Reload the list and the open thread; events arriving meanwhile apply afterwards. */
  async function reloadAll() {
    const generation = ++state.reloadGeneration;
    if (!state.buffer) state.buffer = [];
    try {
      const open = state.open;
      await Promise.all([loadList(), open ? loadThread(open.id) : null]);
      state.loadedOnce = true;
    } catch (error) {
      toast(`Could not load: ${error.message}`);
    }
    if (generation !== state.reloadGeneration) return;
    const held = state.buffer || [];
    state.buffer = null;
    for (const event of held) applyEvent(event);
  }

  function applyEvent(event) {
    switch (event.type) {
      case "message.created": {
        upsertConversation(event.conversation);
        const open = state.open;
        if (open && open.id === event.message.conversation_id) {
          addMessage(event.message);
          const who = event.message.direction === "in" ? contactName(event.conversation) : agentName(event.message.agent_id);
          if (open.typing.has(who)) setTyping(open, who, false);
          if (event.message.direction === "in" && event.conversation.unread_count > 0 &&
              document.visibilityState === "visible") {
            markRead(open.id);
          }
        }
        break;
      }
      case "message.status_changed":
        addMessage(event.message);
        break;
      case "conversation.created":
      case "conversation.assigned":
      case "conversation.status_changed":
      case "conversation.read":
        upsertConversation(event.conversation);
        break;
      case "conversation.typing":
        showTyping(event);
        break;
      default:
        break;
    }
  }

  // ---- keyboard ----------------------------------------------------------------------

  function isTypingTarget(target) {
    return target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }

  function onKey(event) {
    if (event.key === "Escape" && isTypingTarget(event.target)) {
      event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || isTypingTarget(event.target)) return;
    if (document.querySelector("dialog[open]")) return;
    const actions = {
      "?": () => $("#help-dialog").showModal(),
      j: () => move(1),
      k: () => move(-1),
      r: () => focusReply("message"),
      n: () => focusReply("note"),
      e: resolve,
      o: reopen,
      z: openSnooze,
      a: assignMe,
      u: unassign,
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  }

  // ---- start -------------------------------------------------------------------------

  function bind() {
    for (const button of document.querySelectorAll(".tabs [data-view]")) {
      button.addEventListener("click", () => setFilter({ view: button.dataset.view }));
    }
    $("#status-filter").addEventListener("change", (e) => setFilter({ status: e.target.value }));
    $("#inbox-filter").addEventListener("change", (e) => setFilter({ inbox: e.target.value }));
    $("#load-more").addEventListener("click", loadMore);
    $("#load-older").addEventListener("click", () => loadOlder().catch((e) => toast(e.message)));
    $("#act-assign").addEventListener("click", () =>
      (state.open && state.open.conversation && state.open.conversation.assignee_id === meId ? unassign() : assignMe()));
    $("#act-status").addEventListener("click", () =>
      (["resolved", "snoozed"].includes(currentStatus()) ? reopen() : resolve()));
    $("#act-snooze").addEventListener("click", openSnooze);
    for (const button of document.querySelectorAll("[data-go]")) {
      button.addEventListener("click", () => {
        if (button.dataset.go === "list") window.location.hash = "#/";
        else showPane(button.dataset.go);
      });
    }
    for (const button of document.querySelectorAll("#composer [data-mode]")) {
      button.addEventListener("click", () => { setMode(button.dataset.mode); $("#reply").focus(); });
    }
    const textarea = $("#reply");
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.ctrlKey && !event.altKey && !event.metaKey) {
        event.preventDefault();
        send();
      }
    });
    textarea.addEventListener("input", signalTyping);
    textarea.addEventListener("blur", stopTyping);
    $("#composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
    for (const button of document.querySelectorAll("[data-snooze]")) {
      button.addEventListener("click", () => snooze(snoozeUntil(button.dataset.snooze)));
    }
    $("#snooze-apply").addEventListener("click", () => snooze(new Date($("#snooze-custom").value)));
    $("#snooze-cancel").addEventListener("click", () => $("#snooze-dialog").close());
    $("#help-button").addEventListener("click", () => $("#help-dialog").showModal());
    $("#help-close").addEventListener("click", () => $("#help-dialog").close());
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

  async function start() {
    bind();
    setMode("message");
    renderFilters();
    renderContact();
    const [agents, inboxes] = await Promise.all([
      api("GET", "/api/v1/agents").catch(() => []),
      api("GET", "/api/v1/inboxes").catch(() => []),
    ]);
    for (const agent of agents) state.agents.set(agent.id, agent.name);
    for (const inbox of inboxes) {
      state.inboxes.set(inbox.id, inbox);
      $("#inbox-filter").append(el("option", { value: String(inbox.id) }, inbox.name));
    }
    if (state.filter.inbox && !state.inboxes.has(Number(state.filter.inbox))) state.filter.inbox = "";
    renderFilters();
    connect();
    route();
    document.body.dataset.ready = "true";
  }

  start();
})();
