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

export async function getJson(path, params = {}, { signal } = {}) {
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
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText };
    }
    throw new ApiError(response.status, problem);
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
