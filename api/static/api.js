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
const LONGEST_WAIT_S = 60;
let rateLimitListener = () => {};

/** `listener(seconds)` is told when a read waits out a 429 before trying again, and
 * `listener(0)` when a read that waited goes through. */
export function onRateLimit(listener) {
  rateLimitListener = listener;
}

/** Seconds a 429 asks to wait: its Retry-After (seconds or an HTTP date), at most a minute. */
export function retryAfterSeconds(response) {
  const text = response.headers.get("Retry-After");
  if (text !== null && /^\s*\d+\s*$/.test(text)) return Math.min(Number(text), LONGEST_WAIT_S);
  const when = Date.parse(text || "");
  if (!Number.isNaN(when)) return Math.min(Math.max(0, (when - Date.now()) / 1000), LONGEST_WAIT_S);
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

export async function getJson(path, params = {}, { signal } = {}) {
  let response;
  for (let waits = 0; ; waits += 1) {
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
    if (response.status !== 429 || waits === RATE_LIMIT_WAITS) {
      if (waits && response.status !== 429) rateLimitListener(0);
      break;
    }
    const seconds = retryAfterSeconds(response);
    rateLimitListener(seconds);
    await pause(seconds, signal);
  }
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
