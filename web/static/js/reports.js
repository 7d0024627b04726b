// The reports page (leads and admins): the live load ("Now") and the activity report with its
// charts (Chart.js, vendored), tables and CSV links.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

import { api } from "./api.js";
import { el, elements } from "./dom.js";

const ui = elements({
  liveState: "live-state",
  nowFigures: "now-figures",
  nowAgents: "now-agents",
  nowWaiting: "now-waiting",
  form: "range",
  start: "range-start",
  end: "range-end",
  group: "range-group",
  error: "report-error",
  totals: "totals",
  chartDays: "chart-days",
  chartGroups: "chart-groups",
  groupsCaption: "groups-caption",
  groupsTitle: "groups-title",
  groupsTable: "groups-table",
  daysTable: "days-table",
  csvGroups: "csv-groups",
  csvDays: "csv-days",
});

const GROUP_TITLES = { agent: "agent", team: "team", inbox: "inbox", channel: "channel", label: "label" };

// ---- formatting ----------------------------------------------------------------------

/** Seconds as people read them: 45 s, 12 min, 3 h 20 min, 2 d 4 h. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
  const days = Math.floor(hours / 24);
  return hours % 24 ? `${days} d ${hours % 24} h` : `${days} d`;
}

const percent = (share) => (share === null || share === undefined ? "–" : `${Math.round(share * 100)}%`);
const decimal = (value) => (value === null || value === undefined ? "–" : value.toFixed(1));

function tile(label, figure, name) {
  return el("div", { class: "tile", dataset: { figure: name } },
    el("div", { class: "figure" }, figure), el("div", { class: "label" }, label));
}

function isoDay(date) {
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 10);
}

// ---- now: the live load --------------------------------------------------------------

function agentState(agent) {
  if (!agent.online) return "Offline";
  return agent.availability === "online" ? "Online" : "Away";
}

function waitedFor(since) {
  return duration((Date.now() - new Date(since).getTime()) / 1000);
}

async function refreshNow() {
  let load;
  try {
    load = await api("GET", "/api/v1/reports/load");
  } catch (error) {
    ui.nowFigures.replaceChildren(el("p", { class: "error" }, `Could not load: ${error.message}`));
    return;
  }
  const sum = (key) => load.inboxes.reduce((total, inbox) => total + inbox[key], 0);
  const online = load.agents.filter((agent) => agent.online && agent.availability === "online");
  ui.nowFigures.replaceChildren(
    tile("Open", String(sum("open")), "open"),
    tile("Unassigned", String(sum("unassigned")), "unassigned"),
    tile("In the queue", String(sum("waiting")), "waiting"),
    tile("Agents online", `${online.length} of ${load.agents.length}`, "online"),
  );
  ui.nowAgents.replaceChildren(el("table", { class: "report-table", id: "now-agents-table" },
    el("caption", { class: "muted" }, "Agents"),
    el("thead", {}, el("tr", {}, ["Agent", "State", "Open", "Capacity"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, load.agents.map((agent) => el("tr", {},
      el("th", { scope: "row" }, agent.name), el("td", {}, agentState(agent)), el("td", {}, String(agent.open)),
      el("td", {}, agent.capacity === null ? "No limit" : String(agent.capacity)))))));
  const waiting = load.waiting_longest || [];
  ui.nowWaiting.replaceChildren(
    el("h3", {}, "Waiting longest, nobody on it"),
    waiting.length
      ? el("ol", { class: "waiting-list", id: "waiting-list" }, waiting.map((item) => el("li", {},
        el("a", { href: `/#/conversations/${item.id}` }, item.title), el("span", { class: "muted" }, waitedFor(item.since)))))
      : el("p", { class: "muted", id: "waiting-list" }, "Nobody waits."));
}

// At most one refresh every half second however busy the inboxes are (a timer that restarted
// on each event would never fire while events keep coming).
let nowTimer = null;
function nowChanged() {
  if (nowTimer) return;
  nowTimer = setTimeout(() => { nowTimer = null; refreshNow(); }, 500);
}
const MOVES_LOAD = new Set(["conversation.created", "conversation.assigned", "conversation.status_changed",
  "conversation.updated", "agent.updated", "message.created"]);

let socketRetry = 1000;
function connect() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  // presence=0: watching the load does not make this lead online (nor a target of the queue).
  const socket = new WebSocket(`${scheme}//${window.location.host}/api/v1/ws?presence=0`);
  socket.addEventListener("message", (message) => {
    let frame;
    try { frame = JSON.parse(message.data); } catch { return; }
    if (frame.type === "ready") {
      socketRetry = 1000;
      ui.liveState.textContent = "Live";
      document.body.dataset.live = "true";
      refreshNow();
    } else if (frame.type === "event" && frame.event) {
      const type = frame.event.type || "";
      if (MOVES_LOAD.has(type)) nowChanged();
    }
  });
  socket.addEventListener("close", () => {
    ui.liveState.textContent = "Offline — reconnecting…";
    document.body.dataset.live = "false";
    setTimeout(connect, socketRetry);
    socketRetry = Math.min(socketRetry * 2, 30000);
  });
}

// ---- activity ------------------------------------------------------------------------

const charts = {};

function drawChart(name, canvas, config) {
  if (!window.Chart) return; // the library did not load: the tables still say everything
  if (charts[name]) charts[name].destroy();
  charts[name] = new window.Chart(canvas, config);
}

function query() {
  const params = new URLSearchParams({ start: ui.start.value, end: ui.end.value, group: ui.group.value });
  return params.toString();
}

const COLUMNS = [
  ["Created", (row) => String(row.created)],
  ["Resolved", (row) => String(row.resolved)],
  ["Reopened", (row) => String(row.reopened)],
  ["Replies", (row) => String(row.replies)],
  ["Replies / conv.", (row) => decimal(row.replies_per_conversation)],
  ["First response (median)", (row) => duration(row.first_response_median)],
  ["First response (p90)", (row) => duration(row.first_response_p90)],
  ["Resolution (median)", (row) => duration(row.resolution_median)],
  ["Resolution (p90)", (row) => duration(row.resolution_p90)],
  ["SLA met", (row) => percent(row.sla_attainment)],
  ["CSAT", (row) => percent(row.csat_score)],
  ["CSAT answers", (row) => (row.csat_asked ? `${row.csat_responses} of ${row.csat_asked}` : "–")],
];

function renderTables(report) {
  const title = GROUP_TITLES[report.group];
  ui.groupsTitle.textContent = `By ${title}`;
  ui.groupsCaption.textContent = `Resolved and first response by ${title}`;
  const line = (row, head) => el("tr", { dataset: { key: row.key } },
    el(head ? "th" : "td", { scope: head ? "row" : null }, row.name),
    COLUMNS.map(([, value]) => el("td", {}, value(row))));
  ui.groupsTable.replaceChildren(
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, title[0].toUpperCase() + title.slice(1)),
      COLUMNS.map(([heading]) => el("th", { scope: "col" }, heading)))),
    el("tbody", {}, report.rows.length ? report.rows.map((row) => line(row, true))
      : el("tr", {}, el("td", { colspan: String(COLUMNS.length + 1), class: "muted" }, "Nothing in this range."))),
    el("tfoot", {}, line(report.total, true)));
  ui.daysTable.replaceChildren(
    el("thead", {}, el("tr", {}, ["Day", "Created", "Resolved", "First response (median)", "CSAT"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, report.days.map((day) => el("tr", {},
      el("th", { scope: "row" }, day.day), el("td", {}, String(day.created)), el("td", {}, String(day.resolved)),
      el("td", {}, duration(day.first_response_median)), el("td", {}, percent(day.csat_score))))));
  const total = report.total;
  ui.totals.replaceChildren(
    tile("Created", String(total.created), "created"),
    tile("Resolved", String(total.resolved), "resolved"),
    tile("First response, median", duration(total.first_response_median), "first_response"),
    tile("Resolution, median", duration(total.resolution_median), "resolution"),
    tile("SLA met", percent(total.sla_attainment), "sla"),
    tile("CSAT (4–5 of 5)", percent(total.csat_score), "csat"),
  );
}

function renderCharts(report) {
  drawChart("days", ui.chartDays, {
    type: "line",
    data: {
      labels: report.days.map((day) => (report.days.length > 1 && day.day.slice(0, 4) === report.end.slice(0, 4) ? day.day.slice(5) : day.day)),
      datasets: [
        { label: "Created", data: report.days.map((day) => day.created), borderColor: "#3b5bdb", backgroundColor: "#3b5bdb" },
        { label: "Resolved", data: report.days.map((day) => day.resolved), borderColor: "#2b8a3e", backgroundColor: "#2b8a3e" },
      ],
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      elements: { point: { radius: report.days.length > 60 ? 0 : 2 } },
      scales: { x: { ticks: { maxRotation: 0, autoSkip: true } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
  const rows = report.rows.slice(0, 15);
  drawChart("groups", ui.chartGroups, {
    type: "bar",
    data: {
      labels: rows.map((row) => row.name),
      datasets: [
        { label: "Resolved", data: rows.map((row) => row.resolved), backgroundColor: "#2b8a3e", yAxisID: "y" },
        { label: "First response median (min)", data: rows.map((row) => (row.first_response_median === null ? null : Math.round(row.first_response_median / 6) / 10)),
          backgroundColor: "#f08c00", yAxisID: "minutes" },
      ],
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      scales: { y: { beginAtZero: true, ticks: { precision: 0 }, position: "left" },
        minutes: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } },
    },
  });
}

async function loadReport() {
  ui.error.hidden = true;
  const params = query();
  history.replaceState(null, "", `?${params}`);
  ui.csvGroups.href = `/api/v1/reports/activity.csv?${params}&table=groups`;
  ui.csvDays.href = `/api/v1/reports/activity.csv?${params}&table=days`;
  let report;
  try {
    report = await api("GET", `/api/v1/reports/activity?${params}`);
  } catch (error) {
    ui.error.textContent = error.message;
    ui.error.hidden = false;
    return;
  }
  renderTables(report);
  renderCharts(report);
  document.body.dataset.report = params;
}

function setRange(days) {
  const end = new Date();
  const start = new Date(end.getTime() - (days - 1) * 86400000);
  ui.start.value = isoDay(start);
  ui.end.value = isoDay(end);
}

function init() {
  const given = new URLSearchParams(window.location.search);
  setRange(30);
  if (given.get("start")) ui.start.value = given.get("start");
  if (given.get("end")) ui.end.value = given.get("end");
  if (given.get("group")) ui.group.value = given.get("group");
  ui.form.addEventListener("submit", (event) => { event.preventDefault(); loadReport(); });
  ui.group.addEventListener("change", loadReport);
  for (const button of document.querySelectorAll(".presets [data-days]")) {
    button.addEventListener("click", () => { setRange(Number(button.dataset.days)); loadReport(); });
  }
  if (document.readyState === "complete" || window.Chart) loadReport();
  else window.addEventListener("load", loadReport, { once: true });
  connect();
}

init();
