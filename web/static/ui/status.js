// The models and cluster tables, from GET /v1/models and GET /v1/cluster.

import { api } from "./api.js";

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null || text === "" ? "—" : String(text);
  if (className) td.className = className;
  return td;
}

function fill(table, rows, empty) {
  const body = table.tBodies[0];
  if (!rows.length) {
    const td = cell(empty, "empty");
    td.colSpan = table.tHead.rows[0].cells.length;
    const tr = document.createElement("tr");
    tr.append(td);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }));
}

function statusClass(status) {
  const word = String(status).split(" ")[0].toLowerCase();
  return `status status-${word.replace(/[^a-z_]/g, "")}`;
}

export function showModels(doc, tables) {
  fill(tables.summary, doc.models.map((m) => [
    cell(m.name),
    cell(m.active != null ? `v${m.active}`
      : m.versions.length ? `none set: the newest, v${Math.max(...m.versions)}` : ""),
    cell(m.versions.join(", ")),
    cell(Object.entries(m.canaries || {}).map(([bid, v]) => `${bid}: v${v}`).join(", ")),
  ]), "no models in the repository");
  fill(tables.status, doc.rows.map((r) => [
    cell(r.worker), cell(r.model), cell(r.version), cell(r.status, statusClass(r.status)),
    cell(r.device), cell(r.memory),
  ]), "no live worker process");
}

export function showCluster(doc, tables) {
  fill(tables.workers, doc.workers.map((w) => [
    cell(w.name), cell(w.group), cell(w.queues.join(", ")),
    cell(w.draining ? `draining (${w.drained.join(", ")})` : "consuming",
      w.draining ? "status status-draining" : "status status-ready"),
    cell(w.processes.map((p) => `${p.pid} (${p.device})`).join(", ")),
    cell(`${Math.max(0, doc.taken_at - w.ts).toFixed(1)} s ago`),
  ]), "no live worker");
  fill(tables.routing, Object.entries(doc.routing).map(([queue, row]) => [
    cell(queue), cell(row.workers.join(", ")),
    cell(Object.entries(row.models).map(([n, vs]) => `${n} v${vs.join("/v")}`).join(", ")),
  ]), "no queue is consumed");
}

export async function refresh(tables) {
  const [models, cluster] = await Promise.all([api("/v1/models"), api("/v1/cluster")]);
  showModels(models, tables);
  showCluster(cluster, tables);
}
