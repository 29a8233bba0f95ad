// ollamapy dashboard: polls /api/ps and /dashboard/stats, renders with textContent only
// (model names come from users), counts expiries down every second between polls.
"use strict";

(function () {
  const pollMs = Number(document.body.dataset.pollMs) || 2000;
  const FOREVER_YEAR = 2200; // ollamapy reports "kept forever" as an expiry in 2286
  let expiries = new Map(); // model -> expiry (ms since epoch) or null for forever

  function byId(id) { return document.getElementById(id); }

  function bytes(n) {
    if (!n) return "0 B";
    const units = ["B", "KB", "MB", "GB", "TB"];
    const i = Math.min(Math.floor(Math.log(n) / Math.log(1000)), units.length - 1);
    return (n / Math.pow(1000, i)).toFixed(i ? 1 : 0) + " " + units[i];
  }

  function percent(x) { return (100 * x).toFixed(1) + "%"; }
  function rate(x) { return x.toFixed(1); }
  function seconds(x) { return x === null || x === undefined ? "–" : (x < 1 ? (1000 * x).toFixed(0) + " ms" : x.toFixed(2) + " s"); }

  function parseTime(text) {
    // RFC 3339 with up to nanoseconds: keep milliseconds for Date.
    return Date.parse(text.replace(/(\.\d{3})\d+/, "$1"));
  }

  function processor(entry) {
    if (entry.placement && entry.placement.processor) return entry.placement.processor;
    if (!entry.size) return "–";
    const gpu = Math.round((100 * entry.size_vram) / entry.size);
    if (gpu >= 100) return "100% GPU";
    if (gpu <= 0) return "100% CPU";
    return (100 - gpu) + "%/" + gpu + "% CPU/GPU";
  }

  function countdown(expiry) {
    if (expiry === null) return "forever";
    let left = Math.max(0, Math.round((expiry - Date.now()) / 1000));
    const h = Math.floor(left / 3600); left -= 3600 * h;
    const m = Math.floor(left / 60); const s = left - 60 * m;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
  }

  function cell(row, field, text, value) {
    const td = document.createElement("td");
    td.dataset.field = field;
    if (value !== undefined) td.dataset.value = String(value);
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function fillBar(fraction) {
    const wrap = document.createDocumentFragment();
    const bar = document.createElement("span");
    bar.className = "bar" + (fraction > 0.85 ? " high" : "");
    const inner = document.createElement("span");
    inner.style.width = percent(Math.min(1, fraction));
    bar.appendChild(inner);
    wrap.appendChild(bar);
    wrap.appendChild(document.createTextNode(percent(fraction)));
    return wrap;
  }

  function chart(svg, points) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const values = points.filter((p) => p.y !== null && p.y !== undefined);
    if (values.length < 2) return;
    const t0 = values[0].x, t1 = values[values.length - 1].x;
    const top = Math.max.apply(null, values.map((p) => p.y)) || 1;
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", values.map((p) => {
      const x = t1 > t0 ? (300 * (p.x - t0)) / (t1 - t0) : 0;
      return x.toFixed(1) + "," + (58 - (56 * p.y) / top).toFixed(1);
    }).join(" "));
    svg.appendChild(line);
  }

  function renderSummary(stats) {
    const recent = stats.recent;
    byId("queued").textContent = String(stats.queued);
    byId("running").textContent = String(stats.running);
    byId("kv").textContent = percent(stats.kv_cache_utilization);
    byId("tps").textContent = rate(recent.tokens_per_second);
    byId("ttft").textContent = seconds(recent.ttft_seconds);
    const minutes = Math.max(1, Math.round(recent.window_seconds / 60));
    for (const el of document.querySelectorAll(".window")) el.textContent = "(" + minutes + " min)";
    chart(byId("chart-tps"), recent.series.map((p) => ({ x: p.at, y: p.tokens_per_second })));
    chart(byId("chart-ttft"), recent.series.map((p) => ({ x: p.at, y: p.ttft_seconds })));
  }

  function renderModels(ps, stats) {
    const usage = new Map(stats.runners.map((r) => [r.model, r]));
    const recent = stats.recent.models;
    const body = document.querySelector("#models tbody");
    const rows = [];
    expiries = new Map();
    for (const entry of ps.models) {
      const row = document.createElement("tr");
      row.dataset.model = entry.name;
      const use = usage.get(entry.name);
      const rates = recent[entry.name];
      const expiry = parseTime(entry.expires_at);
      expiries.set(entry.name, new Date(expiry).getUTCFullYear() > FOREVER_YEAR ? null : expiry);
      cell(row, "name", entry.name);
      cell(row, "processor", processor(entry));
      cell(row, "size", bytes(entry.size), entry.size);
      cell(row, "size_vram", bytes(entry.size_vram), entry.size_vram);
      cell(row, "context_length", String(entry.context_length), entry.context_length);
      cell(row, "expires", countdown(expiries.get(entry.name)), entry.expires_at);
      if (use) {
        cell(row, "slots", use.slots_used + " / " + use.slots, use.slots_used);
        cell(row, "kv", fillBar(use.kv_utilization), use.kv_utilization);
        cell(row, "queued", String(use.queued), use.queued);
      } else {
        for (const field of ["slots", "kv", "queued"]) cell(row, field, "–");
      }
      cell(row, "tps", rates ? rate(rates.tokens_per_second) : "–");
      cell(row, "ttft", rates ? seconds(rates.ttft_seconds) : "–");
      rows.push(row);
    }
    if (!rows.length) {
      const row = document.createElement("tr");
      row.className = "empty";
      const td = cell(row, "empty", "No model is loaded.");
      td.colSpan = 11;
      rows.push(row);
    }
    body.replaceChildren.apply(body, rows);
  }

  function tick() {
    for (const td of document.querySelectorAll('#models td[data-field="expires"]')) {
      const model = td.parentElement.dataset.model;
      if (expiries.has(model)) td.textContent = countdown(expiries.get(model));
    }
  }

  async function getJson(path) {
    const response = await fetch(path, { cache: "no-store" });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  async function poll() {
    const status = byId("status");
    try {
      const [ps, stats] = await Promise.all([getJson("/api/ps"), getJson("/dashboard/stats")]);
      renderSummary(stats);
      renderModels(ps, stats);
      byId("loaded").textContent = String(ps.models.length);
      status.textContent = "updated " + new Date().toLocaleTimeString();
      status.className = "status";
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    } catch (err) {
      status.textContent = "server unreachable";
      status.className = "status error";
    } finally {
      setTimeout(poll, pollMs);
    }
  }

  setInterval(tick, 1000);
  poll();
})();
