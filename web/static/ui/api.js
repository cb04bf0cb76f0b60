// The JSON API, as the page calls it: the API key on /v1/jobs, and the API's
// error body ({"error": {"code", "message"}}) turned into an ApiError.

const ROOT = document.body.dataset.root || "";
const KEY = "ocrq.apiKey"; // sessionStorage: this tab only, gone when it closes

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0: no answer from the server
    this.code = code;
  }
}

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY) || "";
  } catch {
    return ""; // storage disabled: the key lives in the field only
  }
}

export function setApiKey(value) {
  try {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage disabled */
  }
}

// fetch + JSON; with auth, "Authorization: Bearer <key>" when a key was pasted.
export async function api(path, { method = "GET", body = null, auth = false, signal } = {}) {
  const headers = { Accept: "application/json" };
  const key = auth ? apiKey().trim() : "";
  if (key) headers.Authorization = `Bearer ${key}`;
  let resp;
  try {
    resp = await fetch(ROOT + path, { method, body, headers, signal, cache: "no-store" });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network_error", `the server did not answer (${exc.message})`);
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null; // not JSON (a proxy's error page, say)
  }
  if (!resp.ok) {
    const error = data && data.error;
    if (error && typeof error.code === "string") {
      throw new ApiError(resp.status, error.code, String(error.message || error.code));
    }
    throw new ApiError(resp.status, `http_${resp.status}`,
      `HTTP ${resp.status} ${resp.statusText}`.trim());
  }
  if (data === null) throw new ApiError(resp.status, "bad_response", "the answer was not JSON");
  return data;
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(new DOMException("aborted", "AbortError"));
      return;
    }
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      }, { once: true });
    }
  });
}
