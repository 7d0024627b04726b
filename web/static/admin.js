// The admin pages' small conveniences; every page works without them.
// - a Copy button copies the text of the field its data-copy names;
// - the website chat's preview follows the greeting and colour fields as they are typed;
// - a search box (data-filter) hides the table rows that do not contain what is typed;
// - a canned response's preview follows its text as it is typed;
// - an automation rule's form gets more condition and action rows on demand.

function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const field = document.getElementById(button.dataset.copy);
    const status = document.getElementById("copy-status");
    button.addEventListener("click", async () => {
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
        if (status) status.textContent = "Copied to the clipboard.";
      } catch {
        if (status) status.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
      }
    });
  }
}

function widgetPreview() {
  const preview = document.getElementById("widget-preview");
  const form = document.getElementById("settings-form");
  if (!preview || !form) return;
  const greeting = form.elements.namedItem("setting.greeting");
  const color = form.elements.namedItem("setting.accent_color");
  const draw = () => {
    if (greeting) document.getElementById("preview-greeting").textContent = greeting.value;
    if (color) preview.style.setProperty("--widget-accent", color.value);
  };
  greeting?.addEventListener("input", draw);
  color?.addEventListener("input", draw);
  draw();
}

function tableFilters() {
  for (const input of document.querySelectorAll("input[data-filter]")) {
    const rows = document.querySelectorAll(`#${input.dataset.filter} tbody tr`);
    const count = document.getElementById(`${input.dataset.filter}-count`);
    input.addEventListener("input", () => {
      const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      let visible = 0;
      for (const row of rows) {
        const text = (row.dataset.search || row.textContent).toLowerCase();
        row.hidden = !words.every((w) => text.includes(w));
        if (!row.hidden) visible += 1;
      }
      if (count) count.textContent = `${visible} of ${rows.length}`;
    });
  }
}

function cannedPreviews() {
  const holder = document.getElementById("canned-samples");
  if (!holder) return;
  const samples = JSON.parse(holder.dataset.samples);
  for (const area of document.querySelectorAll("textarea[data-preview]")) {
    const target = document.getElementById(area.dataset.preview);
    area.addEventListener("input", () => {
      target.textContent = area.value.replace(/\{\{\s*([^{}]*?)\s*\}\}/g, (_, name) => samples[name] ?? "");
    });
  }
}

function addRows() {
  for (const button of document.querySelectorAll("button[data-add-row]")) {
    button.addEventListener("click", () => {
      const rows = button.parentElement.querySelectorAll(`.${button.dataset.addRow}`);
      const last = rows[rows.length - 1];
      const row = last.cloneNode(true);
      for (const field of row.querySelectorAll("select, input")) {
        field.value = "";
        const n = rows.length + 1;
        field.setAttribute("aria-label", field.getAttribute("aria-label").replace(/\d+$/, String(n)));
      }
      last.after(row);
      row.querySelector("select").focus();
    });
  }
}

copyButtons();
addRows();
widgetPreview();
tableFilters();
cannedPreviews();
