// The page: wires the API key field, the upload (file input, drop, paste), the
// job's progress, the reader and the status tables together.

import { apiKey, setApiKey } from "./api.js";
import * as job from "./job.js";
import { Reader } from "./reader.js";
import { refresh } from "./status.js";

const $ = (id) => document.getElementById(id);
const MAX_BYTES = Number(document.body.dataset.maxBytes) || Infinity;
const STATUS_EVERY_MS = 15000;

const reader = new Reader({ svg: $("boxes"), list: $("lines"), plain: $("plain-text"),
  raw: $("raw-json"), caption: $("page-caption") });
const tables = { summary: $("model-summary"), status: $("model-status"),
  workers: $("cluster-workers"), routing: $("cluster-routing") };
let current = null; // { controller, id } of the job on screen
let imageUrl = null;

function showError(el, exc) {
  el.hidden = !exc;
  el.textContent = exc ? `${exc.message}${exc.code ? ` (${exc.code})` : ""}` : "";
}

function setProgress(doc) {
  const bar = $("job-progress");
  const p = (doc && doc.progress) || {};
  if (doc && doc.status === "succeeded") bar.value = 1;
  else if (p.batches_total) bar.value = p.batches_done / p.batches_total;
  else if (doc && doc.status !== "queued" && doc.status !== "running") bar.value = 0;
  else bar.removeAttribute("value"); // indeterminate: under way, no batch count yet
}

function showImage(file) {
  if (imageUrl) URL.revokeObjectURL(imageUrl);
  imageUrl = URL.createObjectURL(file);
  const img = $("page-image");
  img.hidden = false;
  $("canvas").classList.remove("blank");
  img.src = imageUrl;
}

// Browsers cannot show every format ocrq reads (TIFF): draw the boxes on a blank page.
$("page-image").addEventListener("error", () => {
  if (!imageUrl) return;
  $("page-image").hidden = true;
  $("canvas").classList.add("blank");
});

async function read(file) {
  if (current) current.controller.abort();
  const controller = new AbortController();
  const mine = { controller, id: null };
  current = mine;
  showError($("error"), null);
  $("result").hidden = true;
  if (!file.size || file.size > MAX_BYTES) {
    const what = file.size ? `larger than ${MAX_BYTES} bytes` : "empty";
    showError($("error"), { message: `${file.name} is ${what}`, code: "invalid_image" });
    $("job").hidden = true;
    return;
  }
  $("job").hidden = false;
  delete $("job").dataset.id;
  $("job-label").textContent = file.name || "image";
  $("job-status").textContent = `Uploading ${file.name}…`;
  setProgress(null);
  showImage(file);
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  try {
    const submitted = await job.submit(file, $("tid").value.trim());
    mine.id = submitted.id;
    $("job").dataset.id = submitted.id;
    $("job-cancel").hidden = false;
    const doc = await job.watch(submitted.id, (d, transient) => {
      if (current !== mine) return;
      if (d) {
        setProgress(d);
        $("job-status").textContent = job.describe(d, elapsed());
      } else {
        $("job-status").textContent = `${transient.message}; trying again…`;
      }
    }, controller.signal);
    await finish(doc, mine);
  } catch (exc) {
    if (exc.name === "AbortError" || current !== mine) return;
    if (mine.id) $("job-progress").value = 0; // the page stopped watching
    else $("job").hidden = true; // refused: there is no job
    showError($("error"), exc);
    if (exc.status === 401) askForKey();
  } finally {
    if (current === mine) $("job-cancel").hidden = true;
  }
}

async function finish(doc, mine) {
  if (doc.status === "succeeded") {
    const page = await job.result(doc, mine.controller.signal);
    if (current !== mine) return;
    $("result").hidden = false;
    const blank = $("canvas").classList.contains("blank");
    reader.show(page, blank ? "this browser cannot show the image: boxes on a blank page" : "");
    loadStatus();
  } else if (doc.status === "failed") {
    const error = doc.error || {};
    showError($("error"), { message: `the job failed: ${error.message || "no reason given"}`,
      code: error.code });
  }
}

function askForKey() {
  $("key-box").open = true;
  $("api-key").focus();
}

async function loadStatus() {
  try {
    await refresh(tables);
    showError($("status-error"), null);
    $("status-time").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (exc) {
    showError($("status-error"), exc);
  }
}

function firstImage(list) {
  return [...(list || [])].find((f) => f.kind === undefined || f.kind === "file");
}

function wire() {
  const key = $("api-key");
  key.value = apiKey();
  key.addEventListener("input", () => setApiKey(key.value.trim()));
  $("key-forget").addEventListener("click", () => { key.value = ""; setApiKey(""); key.focus(); });

  $("upload").addEventListener("submit", (e) => e.preventDefault());
  $("file").addEventListener("change", (e) => {
    if (!e.target.files.length) return;
    read(e.target.files[0]);
    e.target.value = ""; // the same file can be chosen again (after pasting a key, say)
  });
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = firstImage(e.dataTransfer.files);
    if (file) read(file);
  });
  // A file dropped next to the zone must not make the browser leave the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  document.addEventListener("paste", (e) => {
    const item = [...e.clipboardData.items].find((i) => i.kind === "file");
    if (item) read(item.getAsFile());
  });
  $("job-cancel").addEventListener("click", async () => {
    if (!current || !current.id) return;
    try {
      await job.cancel(current.id);
    } catch (exc) {
      showError($("error"), exc);
    }
  });
  $("refresh-status").addEventListener("click", loadStatus);
  setInterval(() => { if (document.visibilityState === "visible") loadStatus(); },
    STATUS_EVERY_MS);
  loadStatus();
}

wire();
