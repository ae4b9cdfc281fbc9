// curfew console: sortable tables, times in the viewer's zone, live operation progress.
// Plain JavaScript, no build step; every page reads without it.
"use strict";

// Times: the markup carries UTC (shown without JS); show the viewer's local time, UTC on hover.
function localizeTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const t = new Date(el.getAttribute("datetime"));
    if (isNaN(t)) continue;
    el.textContent = t.toLocaleString(undefined, {
      weekday: "short", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", hour12: false,
    });
    el.title = el.getAttribute("datetime").replace("T", " ").replace("Z", " UTC");
  }
}

// Sorting: click a header to sort by that column, again to reverse. Numbers (and sizes such
// as 2/6/4, by their desired count) sort as numbers, times by their instant.
function cellKey(cell) {
  const time = cell.querySelector("time[datetime]");
  if (time) return Date.parse(time.getAttribute("datetime"));
  const text = cell.textContent.trim();
  const sizes = /^(\d+)\/(\d+)\/(\d+)$/.exec(text);
  if (sizes) return Number(sizes[3]);
  const n = Number(text);
  return text !== "" && !isNaN(n) ? n : text.toLowerCase();
}

function makeSortable(table) {
  const heads = table.tHead ? table.tHead.rows[0].cells : [];
  for (let i = 0; i < heads.length; i++) {
    const th = heads[i];
    th.tabIndex = 0;
    const sort = () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      for (const other of heads) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = cellKey(a.cells[i]), y = cellKey(b.cells[i]);
        const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return ascending ? order : -order;
      });
      for (const row of rows) body.appendChild(row);
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
  }
}

// Live progress of a running operation (Server-Sent Events); the page reloads once it ends,
// to show every task's final state.
function followOperation(box) {
  const source = new EventSource(box.dataset.live);
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    for (const id of ["done", "total", "succeeded", "skipped", "failed"]) {
      const el = document.getElementById(id);
      if (el) el.textContent = p[id];
    }
    const bar = document.getElementById("progress");
    if (bar) { bar.max = p.total || 1; bar.value = p.done; }
    const status = document.getElementById("op-status");
    if (status) status.textContent = p.status;
    if (p.final) { source.close(); window.location.reload(); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  localizeTimes(document);
  for (const table of document.querySelectorAll("table.sortable")) makeSortable(table);
  const live = document.querySelector("[data-live]");
  if (live) followOperation(live);
});
