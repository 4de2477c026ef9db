// Reads the ledger's /v1 API from the same origin, with the reader's token when one is set.

const TOKEN_KEY = "ledger.token";
let memoryToken = "";

/** The token typed into the page: in sessionStorage only, so it dies with the tab. */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || memoryToken;
  } catch {
    return memoryToken;
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts as long as this page does
  }
  memoryToken = token;
}

export function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** A failed request: the HTTP status and the RFC 9457 problem the server sent. */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
  /** The message for one field of a 422 (e.g. `as_of`), if the server named it. */
  fieldMessage(field) {
    const errors = this.problem.errors || [];
    const hit = errors.find((e) => e.field === field);
    return hit ? hit.message : null;
  }
}

export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** Reads refused with 429 are tried again after the server's Retry-After, this many times. */
export const RATE_LIMIT_WAITS = 3;
/** A read asked to wait longer than this does not wait: it fails at once, saying how long. */
export const LONGEST_WAIT_S = 60;
let rateLimitListener = () => {};
const waiting = new Map(); // each read waiting out a 429 -> when it asks again (ms)

/** `listener(until)` is told, as reads start and stop waiting out a 429, the time (ms) at
 * which the last of them asks again, or null once none is waiting. */
export function onRateLimit(listener) {
  rateLimitListener = listener;
}

function waitsChanged() {
  rateLimitListener(waiting.size ? Math.max(...waiting.values()) : null);
}

/** Seconds a 429 asks to wait: its Retry-After in whole seconds or as an HTTP date; 5 when
 * it gives neither, and never less than one. */
export function retryAfterSeconds(response) {
  const text = (response.headers.get("Retry-After") || "").trim();
  if (/^\d+$/.test(text)) return Math.max(1, Number(text));
  if (/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text)) {
    const when = Date.parse(text);
    if (!Number.isNaN(when)) return Math.max(1, Math.ceil((when - Date.now()) / 1000));
  }
  return 5;
}

function pause(seconds, signal) {
  return new Promise((resolve, reject) => {
    const aborted = () => new DOMException("The read was stopped", "AbortError");
    if (signal && signal.aborted) {
      reject(aborted());
      return;
    }
    const stop = () => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      if (signal) signal.removeEventListener("abort", stop);
      resolve();
    }, seconds * 1000);
    if (signal) signal.addEventListener("abort", stop, { once: true });
  });
}

async function fetchWaitingOutLimits(path, params, signal) {
  const read = {};
  try {
    for (let waits = 0; ; waits += 1) {
      let response;
      try {
        response = await fetch(url(path, params), {
          headers: { Accept: "application/json", ...authHeaders() },
          cache: "no-store",
          signal,
        });
      } catch (err) {
        if (err.name === "AbortError") throw err;
        throw new ApiError(0, { title: "The server cannot be reached", detail: String(err.message || err) });
      }
      if (response.status !== 429 || waits === RATE_LIMIT_WAITS) return response;
      const seconds = retryAfterSeconds(response);
      if (seconds > LONGEST_WAIT_S) return response; // not worth holding the page for
      waiting.set(read, Date.now() + seconds * 1000);
      waitsChanged();
      await pause(seconds, signal);
    }
  } finally {
    if (waiting.delete(read)) waitsChanged();
  }
}

export async function getJson(path, params = {}, { signal } = {}) {
  const response = await fetchWaitingOutLimits(path, params, signal);
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText };
    }
    const err = new ApiError(response.status, problem);
    if (response.status === 429) err.retryAfter = retryAfterSeconds(response);
    throw err;
  }
  return response.json();
}

/** Every item of a paged list (`{items, next}`), following `cursor` to the end. */
export async function getAll(path, params = {}, options = {}) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < 1000; page += 1) {
    const body = await getJson(path, { ...params, limit: 1000, cursor }, options);
    items.push(...body.items);
    if (!body.next) break;
    cursor = body.next;
  }
  return items;
}

export const enc = encodeURIComponent;
