// Small DOM helpers of the agent inbox.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

export const $ = (selector) => document.querySelector(selector);

/** The page's elements a view works with, by name, found once by id when the view's module
 * loads (a missing one fails at once, not on first use). */
export function elements(ids) {
  const found = {};
  for (const [name, id] of Object.entries(ids)) {
    const node = document.getElementById(id);
    if (!node) throw new Error(`the page has no #${id}`);
    found[name] = node;
  }
  return found;
}

// ---- small DOM helpers -------------------------------------------------------------

/** An element with properties and children; strings become text nodes. */
export function el(tag, props = {}, ...children) {
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

/** A channel's mark: a small coloured badge, its name said to screen readers and on hover. */
export function channelBadge(kind, mark, name) {
  return el("span", { class: `channel-mark channel-${kind}`, title: name, role: "img", "aria-label": name }, mark);
}

export function formatTime(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  const now = new Date();
  const sameDay = at.toDateString() === now.toDateString();
  return sameDay
    ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : at.toLocaleDateString([], { month: "short", day: "numeric" }) + " " +
      at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

let toastTimer = null;
export function toast(text) {
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
