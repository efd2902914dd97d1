// The API client: the key from sessionStorage as a bearer token on every call, the contract's error body as
// ApiError, uploads with progress (XHR), authenticated downloads, and the job event stream over fetch().

const KEY = "taas.apiKey";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

/** An error answer: status plus the contract's {code, message, details}. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || (status ? `http_${status}` : "network_error");
    this.details = e.details || {};
  }
}

function authHeaders(extra = {}, key = session.key) {
  return key ? {...extra, Authorization: `Bearer ${key}`} : {...extra};
}

// A 401 after signing in means the key was revoked (or the session lost it): main.js signs out.
function unauthorized(status, path) {
  if (status === 401) window.dispatchEvent(new CustomEvent("taas:unauthorized", {detail: {path}}));
}

async function parse(resp) {
  if (resp.status === 204) return null;
  const text = await resp.text();
  try { return text ? JSON.parse(text) : null; } catch { return {error: {code: `http_${resp.status}`, message: text}}; }
}

/** JSON call; throws ApiError on a non-2xx answer or a network failure. */
export async function api(path, {method = "GET", body, headers = {}, signal, key, quiet = false} = {}) {
  const init = {method, headers: authHeaders({Accept: "application/json", ...headers}, key ?? session.key), signal};
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, {error: {code: "network_error", message: `the API did not answer (${err.message})`}});
  }
  const data = await parse(resp);
  if (!resp.ok) {
    if (!quiet) unauthorized(resp.status, path);
    throw new ApiError(resp.status, data);
  }
  return data;
}

/** Multipart POST with upload progress (fetch cannot report it): onProgress(loaded, total). */
export function upload(path, form, {onProgress, headers = {}} = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [k, v] of Object.entries(authHeaders({Accept: "application/json", ...headers}))) {
      xhr.setRequestHeader(k, v);
    }
    xhr.upload.addEventListener("progress", (e) => onProgress && onProgress(e.loaded, e.lengthComputable ? e.total : 0));
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else {
        unauthorized(xhr.status, path);
        reject(new ApiError(xhr.status, data || {error: {message: xhr.statusText}}));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, {error: {code: "network_error",
      message: "the upload was interrupted"}})));
    xhr.addEventListener("abort", () => reject(new ApiError(0, {error: {code: "aborted", message: "upload cancelled"}})));
    xhr.send(form);
  });
}

/** Download an authenticated file: fetch the blob, then save it through an object URL and a temporary link. */
export async function download(path, filename) {
  const resp = await fetch(path, {headers: authHeaders()});
  if (!resp.ok) {
    unauthorized(resp.status, path);
    throw new ApiError(resp.status, await parse(resp));
  }
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return blob.size;
}

/** A random v4 UUID; crypto.randomUUID exists only in secure contexts, getRandomValues everywhere. */
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Follow a job's Server-Sent Events with fetch() (EventSource cannot send an Authorization header).
 * Frames are parsed by hand (id:, event:, data:, comments); after a dropped connection it reconnects with
 * Last-Event-ID, so nothing is missed or repeated. The server closes the stream once the job has finished and
 * answers 204 when nothing is left: then onEnd() runs. Returns {close()}.
 */
export function followEvents(jobId, {onEvent, onEnd, onState}) {
  const ctrl = new AbortController();
  let lastId = null;
  let retryMs = 1000;
  let closed = false;

  const dispatch = (frame) => {
    if (frame.id !== null) lastId = frame.id;
    if (!frame.data.length) return;
    let data;
    try { data = JSON.parse(frame.data.join("\n")); } catch { return; }
    onEvent(frame.event || "message", data);
  };

  async function once() {
    const headers = authHeaders({Accept: "text/event-stream"});
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    const resp = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {headers, signal: ctrl.signal,
      cache: "no-store"});
    if (resp.status === 204) return "done";
    if (!resp.ok) {
      unauthorized(resp.status);
      throw new ApiError(resp.status, await parse(resp));
    }
    onState && onState("live");
    retryMs = 1000;
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let frame = {id: null, event: null, data: []};
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop(); // an incomplete line waits for the next chunk
      for (const line of lines) {
        if (line === "") { dispatch(frame); frame = {id: null, event: null, data: []}; continue; }
        if (line.startsWith(":")) continue; // keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") frame.data.push(value);
        else if (field === "event") frame.event = value;
        else if (field === "id" && !value.includes("\0")) frame.id = value;
        else if (field === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
      }
    }
    return "closed"; // the server ends the stream when the job finishes; the reconnect then gets 204
  }

  (async () => {
    while (!closed) {
      try {
        if ((await once()) === "done") { closed = true; onState && onState("ended"); onEnd && onEnd(); return; }
        await new Promise((r) => setTimeout(r, 250)); // closed by the server: the job finished, or a proxy cut it
      } catch (err) {
        if (closed || err.name === "AbortError") return;
        if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
          closed = true; onState && onState("error", err); return;
        }
        onState && onState("reconnecting", err);
        await new Promise((r) => setTimeout(r, retryMs));
        retryMs = Math.min(retryMs * 2, 15000);
      }
    }
  })();

  return {close() { closed = true; ctrl.abort(); }};
}

/** Run fn now and then every ms while the page is visible (and once more as soon as it becomes visible). */
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  let running = false;
  const tick = async () => {
    timer = null;
    if (stopped || document.visibilityState !== "visible" || running) return;
    running = true;
    try { await fn(); } catch (err) { if (!(err instanceof ApiError)) console.error(err); } finally { running = false; }
    if (!stopped && document.visibilityState === "visible") timer = setTimeout(tick, ms);
  };
  const onVisible = () => { if (document.visibilityState === "visible" && !timer) tick(); };
  document.addEventListener("visibilitychange", onVisible);
  tick();
  return {
    stop() { stopped = true; clearTimeout(timer); document.removeEventListener("visibilitychange", onVisible); },
    now() { clearTimeout(timer); timer = null; tick(); },
  };
}
