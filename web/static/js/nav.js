// Navigation: hash routes, and one pane at a time on a phone.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { elements } from "./dom.js";
import { emit, on } from "./state.js";

// The page's elements this view works with, found once.
const ui = elements({
  columns: "columns",
});

// ---- navigation (hash routes, and one pane at a time on a phone) -------------------

export function showPane(name) {
  ui.columns.dataset.pane = name;
}

export function route() {
  const match = /^#\/conversations\/(\d+)$/.exec(window.location.hash);
  if (match) {
    emit("open", Number(match[1]));
    return;
  }
  emit("close");
  emit("list");
  showPane("list");
}

on("pane", showPane);
