// turbohooks UI: the little JavaScript the pages need (charts, live events, the form's integration switch).
"use strict";

function showIntegrationConfig() {
  const select = document.getElementById("integration");
  if (!select) return;
  for (const box of document.querySelectorAll("[data-config-for]")) {
    const on = box.dataset.configFor === select.value;
    box.hidden = !on;
    for (const input of box.querySelectorAll("input, textarea")) input.disabled = !on;
  }
}

function drawCharts() {
  const source = document.getElementById("chart-data");
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const labels = data.labels.map((s) => new Date(s).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }));
  const common = { responsive: true, maintainAspectRatio: false, animation: false, interaction: { mode: "index", intersect: false } };
  const make = (id, config) => { const el = document.getElementById(id); if (el) new Chart(el, config); };
  make("chart-outcomes", {
    type: "bar",
    data: { labels, datasets: [
      { label: "success", data: data.success, backgroundColor: "#16a34a", stack: "s" },
      { label: "failed", data: data.failed, backgroundColor: "#dc2626", stack: "s" },
      { label: "pending", data: data.pending, backgroundColor: "#ca8a04", stack: "s" },
    ] },
    options: { ...common, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "deliveries" } } } },
  });
  make("chart-latency", {
    type: "line",
    data: { labels, datasets: [
      { label: "p50 ms", data: data.p50, borderColor: "#2563eb", spanGaps: true },
      { label: "p95 ms", data: data.p95, borderColor: "#9333ea", spanGaps: true },
      { label: "p99 ms", data: data.p99, borderColor: "#dc2626", spanGaps: true },
    ] },
    options: { ...common, scales: { y: { beginAtZero: true, title: { display: true, text: "ms" } } } },
  });
  const bars = (id, pairs, color, label) => make(id, {
    type: "bar",
    data: { labels: pairs.map((p) => p[0]), datasets: [{ label, data: pairs.map((p) => p[1]), backgroundColor: color }] },
    options: { ...common, indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } },
  });
  bars("chart-codes", data.codes, "#dc2626", "failed attempts");
  bars("chart-kinds", data.kinds, "#ea580c", "failed attempts");
  bars("chart-types", data.event_types, "#2563eb", "deliveries");
  bars("chart-published", data.published, "#0891b2", "events");
  make("chart-busiest", {
    type: "bar",
    data: { labels: data.busiest.map((b) => b[0]), datasets: [
      { label: "success", data: data.busiest.map((b) => b[1]), backgroundColor: "#16a34a", stack: "s" },
      { label: "failed", data: data.busiest.map((b) => b[2]), backgroundColor: "#dc2626", stack: "s" },
    ] },
    options: { ...common, indexAxis: "y", scales: { x: { stacked: true, beginAtZero: true }, y: { stacked: true } } },
  });
}

function startLive() {
  const root = document.getElementById("live");
  if (!root) return;
  const list = document.getElementById("live-list");
  const status = document.getElementById("live-status");
  const pauseButton = document.getElementById("live-pause");
  const form = document.getElementById("live-form");
  let source = null;
  let paused = false;
  let held = [];
  const add = (event) => {
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = new Date(event.timestamp).toLocaleTimeString();
    const link = document.createElement("a");
    link.href = "/settings/webhooks/events/" + event.event_id;
    link.textContent = event.event_type;
    const entity = document.createElement("span");
    entity.textContent = event.entity_type + " " + event.entity_id;
    const actor = document.createElement("span");
    actor.className = "muted";
    actor.textContent = "by " + event.actor;
    li.append(time, link, entity, actor);
    list.prepend(li);
    while (list.children.length > 200) list.lastChild.remove();
    document.getElementById("live-empty")?.remove();
  };
  const connect = () => {
    if (source) source.close();
    const pattern = document.getElementById("pattern").value || "*";
    source = new EventSource(root.dataset.stream + "?pattern=" + encodeURIComponent(pattern));
    status.textContent = "connecting…";
    source.addEventListener("ready", (e) => { status.textContent = "listening on " + e.data; });
    source.addEventListener("turbo-event", (e) => {
      const event = JSON.parse(e.data);
      if (paused) { held.push(event); status.textContent = "paused: " + held.length + " held"; } else add(event);
    });
    source.onerror = () => { status.textContent = "disconnected; retrying…"; };
  };
  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", String(paused));
    if (!paused) { held.forEach(add); held = []; status.textContent = "listening"; }
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); connect(); });
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  const select = document.getElementById("integration");
  if (select) { select.addEventListener("change", showIntegrationConfig); showIntegrationConfig(); }
  drawCharts();
  startLive();
});
