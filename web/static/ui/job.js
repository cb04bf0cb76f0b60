// One job: submit the image, poll GET /v1/jobs/<id> with backoff until it ends
// or the deadline passes, then the result document.

import { api, ApiError, sleep } from "./api.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export const POLL = {
  firstDelayMs: 200, // a page takes about a second on a CPU worker
  factor: 1.5,
  maxDelayMs: 1000, // a finished job shows within 2 s (tests/integration/test_ui.py)
  deadlineMs: 5 * 60 * 1000, // then the page stops watching (the job goes on)
};

export function submit(file, tid) {
  const form = new FormData();
  form.append("image", file, file.name || "image");
  if (tid) form.append("tid", tid);
  return api("/v1/jobs", { method: "POST", body: form, auth: true });
}

export function cancel(id) {
  return api(`/v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE", auth: true });
}

// Calls onUpdate(doc, null) on every answer and onUpdate(null, error) on a
// transient failure (no answer, 5xx: polling goes on); a 4xx ends it.
export async function watch(id, onUpdate, signal, poll = POLL) {
  const deadline = performance.now() + poll.deadlineMs;
  let delay = poll.firstDelayMs;
  let seen = "";
  for (;;) {
    try {
      const doc = await api(`/v1/jobs/${encodeURIComponent(id)}`, { auth: true, signal });
      onUpdate(doc, null);
      if (TERMINAL.has(doc.status)) return doc;
      const now = `${doc.status}/${doc.stage}/${doc.progress && doc.progress.batches_done}`;
      if (now !== seen) delay = poll.firstDelayMs; // it moves: look again soon
      seen = now;
    } catch (exc) {
      if (exc.name === "AbortError") throw exc;
      if (exc.status >= 400 && exc.status < 500) throw exc;
      onUpdate(null, exc);
    }
    if (performance.now() + delay > deadline) {
      throw new ApiError(0, "deadline", `job ${id} has not finished after `
        + `${Math.round(poll.deadlineMs / 1000)} s; the page stopped watching it`);
    }
    await sleep(delay, signal);
    delay = Math.min(poll.maxDelayMs, delay * poll.factor);
  }
}

export async function result(doc, signal) {
  if (doc.result) return doc.result;
  return api(`/v1/jobs/${encodeURIComponent(doc.id)}/result`, { auth: true, signal });
}

export function describe(doc, elapsedS) {
  const parts = [doc.status];
  if (doc.stage && doc.status === "running") parts.push(`stage ${doc.stage}`);
  const p = doc.progress || {};
  if (p.batches_total) parts.push(`recognition batches ${p.batches_done} of ${p.batches_total}`);
  parts.push(`${elapsedS.toFixed(1)} s`);
  return `Job ${doc.id}: ${parts.join(" · ")}`;
}
