// The analyst's page: the current picture of a subject, its history and its sources.
// Reads only this server's /v1 API; its state (subject, as_of, seq) lives in the URL.

import {
  ApiError,
  LONGEST_WAIT_S,
  RATE_LIMIT_WAITS,
  enc,
  getAll,
  getJson,
  getToken,
  onRateLimit,
  setToken,
} from "./api.js";
import { ClaimantStyles, estimateChart, fitCharts, legendMarker } from "./chart.js";
import { h, safeHref } from "./dom.js";
import {
  credibilityText,
  directionControls,
  estimateText,
  firstInstant,
  num,
  plural,
  range,
  reliabilityText,
  valueText,
} from "./format.js";
import { follow } from "./live.js";

const $ = (id) => document.getElementById(id);
const SLIDE_PAUSE_MS = 1500; // slider steps closer than this make one history entry

const state = {
  subject: null, // chosen subject, or null for the first one
  asOf: "", // statement-time cutoff as typed, "" for everything
  seq: null, // log position, or null to follow the latest
  head: 0, // the log's size as last seen
  headHash: null, // the hash of its last event, when the page read it (see `start`)
  landed: false, // the first view was drawn, and the link's #fragment gone to
  shown: null, // the seq the views last answered at (less than head while they catch up)
  subjects: [],
  sources: new Map(),
  seen: new Map(), // subject -> ids of the assertions already shown (to mark new ones)
  claimantsShown: new Set(), // the sources the view names, whose changes are announced
  statedTimes: new Set(),
  statedTimesOf: null, // the subject whose statement times are suggested
  stopLive: null,
  generation: 0,
  urlSeqProblem: "", // what was wrong with the link's seq, said once the head is known
  knownAt: "", // a link's known_at, until the head is known and it is read as a seq
};
const styles = new ClaimantStyles();

// ---------------------------------------------------------------- the URL

function readUrl() {
  const query = new URLSearchParams(location.search);
  const seq = query.get("seq");
  const good = seq !== null && /^[0-9]+$/.test(seq) && Number.isSafeInteger(Number(seq));
  return {
    subject: query.get("subject") || null,
    asOf: (query.get("as_of") || "").trim(), // as the box takes it
    seq: good ? Number(seq) : null,
    // a link's seq that is no log position: said beside the box, the latest shown
    urlSeqProblem: seq !== null && !good ? `the link's seq=${seq}` : "",
    // a link's known_at (as the API takes it): turned into the log position it names
    knownAt: seq === null ? (query.get("known_at") || "").trim() : "",
  };
}

/** `{seq}`: the log position of a link's `known_at`, as the server reads it (every list
 * says the seq it was read at); `{problem}`: what to say beside the box when it reads no
 * time there; null when the read failed otherwise (said, and tried again if it may pass). */
async function seqKnownAt(knownAt) {
  try {
    return { seq: (await getJson("/v1/subjects", { known_at: knownAt, limit: 1 })).seq };
  } catch (err) {
    const message = err instanceof ApiError && err.status === 422 ? err.fieldMessage("known_at") : null;
    if (message) {
      return { problem: `The link's known_at=${knownAt} is not a time the ledger reads: ${message}. The latest is shown.` };
    }
    reportError(err);
    if (passing(err)) retryLater();
    return null;
  }
}

function knownAtProblem(text) {
  $("seq-error").textContent = text;
  $("seq").setAttribute("aria-invalid", "true");
}

function urlFor({ subject, asOf, seq }) {
  const query = new URLSearchParams();
  if (subject) query.set("subject", subject);
  if (asOf) query.set("as_of", asOf);
  if (seq !== null && seq !== undefined) query.set("seq", String(seq));
  const text = query.toString();
  return `${location.pathname}${text ? `?${text}` : ""}`;
}

function writeUrl(push) {
  const target = urlFor(state);
  if (target === `${location.pathname}${location.search}`) return;
  if (push) history.pushState(null, "", target);
  else history.replaceState(null, "", target);
}

// ---------------------------------------------------------------- messages

function announce(text) {
  $("notice").textContent = text;
  delete $("notice").dataset.waiting;
}

function showError(text) {
  $("error").textContent = text || "";
}

function problemText(err) {
  if (err instanceof ApiError) {
    if (!err.status) return UNREACHABLE;
    if (err.status === 429) {
      const wait = Math.max(1, Math.ceil(err.retryAfter || 0));
      const limit = `The server limits how often a reader may ask (${err.problem.detail || "too many requests"})`;
      return wait > LONGEST_WAIT_S
        ? `${limit}: try again in ${wait} s.`
        : `${limit}, and still refused after this page waited ${RATE_LIMIT_WAITS} times: try again in ${wait} s.`;
    }
    return `${err.problem.detail || err.problem.title || err.message} (HTTP ${err.status})`;
  }
  return String((err && err.message) || err);
}

const UNREACHABLE = "The server cannot be reached; the view is as it was, and updates when it is back.";

/** While reads wait out the server's rate limit, say so (the view is not stuck), until the
 * last of them asks again; `until` is that time (ms), or null once none waits. */
function waitingForLimit(until) {
  const notice = $("notice");
  if (until !== null) {
    const seconds = Math.max(1, Math.ceil((until - Date.now()) / 1000));
    notice.textContent = `The server limits how often a reader may ask: reading again in ${seconds} s.`;
    notice.dataset.waiting = "true";
  } else if (notice.dataset.waiting) {
    notice.textContent = "";
    delete notice.dataset.waiting;
  }
}

function needsToken(err) {
  return err instanceof ApiError && (err.status === 401 || err.status === 403);
}

function askForToken(err) {
  // nothing is read until a token is given (which starts again): the live feed stops too,
  // so no event redraws a view the header calls not connected
  if (state.stopLive) state.stopLive();
  state.stopLive = null;
  clearTimeout(pendingTimer);
  pending = { subjects: false, subject: false, events: [] };
  const box = $("token-box");
  box.open = true;
  const has = Boolean(getToken());
  showError(
    has
      ? `The token was refused: ${problemText(err)}. Paste another under “Access token”.`
      : "This ledger needs a token to read: paste one under “Access token”.",
  );
  if (has && err.status === 401) {
    setToken(""); // unknown or revoked: not kept for the next load, nor called "in use"
    tokenLabel();
    announce("The token was refused.");
  }
  $("live-state").textContent = "Not connected: reads need a token";
  $("live-state").dataset.state = "down";
  // nothing read with a token no longer taken stays on screen
  state.subjects = [];
  renderSubjects();
  $("subjects-empty").hidden = true; // not "no subjects": none can be read
  suggestTimesOf(null);
  fillStatedTimes();
  $("subject").replaceChildren(h("h2", { id: "subject-heading", tabindex: "-1" }, "Reads need a token"));
  $("token").focus();
}

function tokenLabel() {
  $("token-box").querySelector("summary").textContent = getToken() ? "Access token (in use)" : "Access token";
}

// ---------------------------------------------------------------- controls

function params() {
  return { as_of: state.asOf || null, seq: state.seq };
}

/** Put the state into the controls; the as-of text only when asked (it may be mid-edit).
 * A focused seq box is left alone (the reader may be typing) unless `force`: after
 * Back/Forward or an applied value it must show the view. */
function syncControls({ asOf = true, force = false } = {}) {
  if (asOf) $("as-of").value = state.asOf;
  const range = $("seq-range");
  const max = Math.max(state.head, state.seq || 0);
  const shown = state.seq === null ? state.head : state.seq;
  range.max = String(max);
  range.value = String(shown);
  const number = $("seq");
  if (force || document.activeElement !== number) {
    number.value = String(shown);
    seqProblem(""); // what the box holds now is a position the view shows
  }
  seqText(shown);
}

function seqText(value) {
  const latest = state.seq === null && value === state.head;
  $("seq-text").textContent = latest
    ? `${value} of ${state.head} (the latest: new events show as they arrive)`
    : `${value} of ${state.head}`;
  $("seq-range").setAttribute("aria-valuetext", latest ? `event ${value}, the latest` : `event ${value} of ${state.head}`);
}

/** Start the as-of suggestions over, for `subject`'s claims only (null: none). */
function suggestTimesOf(subject) {
  state.statedTimes = new Set();
  state.statedTimesOf = subject;
}

function fillStatedTimes() {
  const list = $("as-of-choices");
  const values = [...state.statedTimes].sort((a, b) => (firstInstant(a) ?? 0) - (firstInstant(b) ?? 0));
  list.replaceChildren(...values.map((v) => h("option", { value: v })));
}

/** What the seq box holds: `value` null when it is empty (the latest), or a `problem`
 * when it is not a whole number of events (the server would refuse it). */
function readSeqBox() {
  const text = $("seq").value.trim();
  if (text === "") return { value: null };
  if (!/^[0-9]+$/.test(text)) return { problem: `${text} is not a whole number of events` };
  const value = Number(text);
  // past the head is refused (applyControls), a number too long to hold exactly too
  return Number.isSafeInteger(value) ? { value } : { problem: pastTheEnd(text) };
}

const pastTheEnd = (what) => `${what} is past the log's last event`;

/** Show (or, with no text, clear) what is wrong with the seq box, beside it. */
function seqProblem(text, { focus = false } = {}) {
  const box = $("seq");
  $("seq-error").textContent = text ? `Not a log position: ${text}. Give 0 or a whole number up to ${state.head}.` : "";
  if (text) box.setAttribute("aria-invalid", "true");
  else box.removeAttribute("aria-invalid");
  if (text && focus) box.focus();
}

let applying = Promise.resolve();

/** Apply the controls' values: re-query, and keep them in the URL when the server took
 * them. One at a time, in order (Enter in a box fires both its change and the form's
 * submit): each compares with the view the one before it left. */
function applyControls(wanted) {
  return inTurn(() => applyNow(wanted));
}

/** Run `work` once what was queued before it is done: changes to the point in time (the
 * controls, Back and Forward) one at a time, in order. One that fails for a reason of its
 * own must not stop every later one. */
function inTurn(work) {
  applying = applying.then(work).catch(reportError);
  return applying;
}

async function applyNow({ asOf, seq, replace = false }) {
  seqProblem("");
  if (seq !== null && seq !== undefined && !Number.isNaN(seq) && seq > state.head) {
    // the box keeps what was typed, beside what is wrong with it, whatever had the focus
    seqProblem(pastTheEnd(seq), { focus: true });
    return;
  }
  // a position is kept as given, the head too (the view then stays there as events
  // arrive), but for the head the box shows while following the latest: that goes on
  const following = state.seq === null && seq === state.head;
  const wantSeq =
    seq === null || seq === undefined || Number.isNaN(seq) || following ? null : Math.max(0, seq);
  const wantAsOf = (asOf || "").trim();
  if (wantAsOf === state.asOf && wantSeq === state.seq) {
    $("as-of-error").textContent = ""; // what the box holds is what the view shows
    $("as-of").removeAttribute("aria-invalid");
    syncControls({ force: true });
    return;
  }
  const before = { asOf: state.asOf, seq: state.seq };
  state.asOf = wantAsOf;
  state.seq = wantSeq;
  state.shown = null;
  const ok = await refreshAll();
  if (!ok) {
    // the server refused the values: keep the last good view and its URL; when it could
    // not be reached at all, the controls go back to that view too (nothing was wrong
    // with what was typed)
    state.asOf = before.asOf;
    state.seq = before.seq;
    $("seq-range").value = String(state.seq === null ? state.head : state.seq);
    // a failure that may pass (read again later): the controls go back to the view shown
    if (retryTimer !== null) syncControls({ force: true });
    return;
  }
  writeUrl(!replace);
  syncControls({ force: true });
  announce(describePoint());
  goLive(); // the first load may have failed on these controls: the feed starts now
}

function describePoint() {
  const said = state.asOf ? `claims stated by ${state.asOf}` : "every claim";
  return `Showing ${said}, as known from ${knownFrom(state.seq ?? state.shown ?? state.head)}.`;
}

/** Which part of the log a view answered at `seq` reflects. Following the latest, the
 * views can be behind the log's head (an import is appending): say so, never "whole". */
function knownFrom(seq) {
  if (state.seq === null && seq >= state.head) return `the whole log (${seq} events)`;
  const lag = state.seq === null ? ", while the views catch up" : "";
  return `the log up to event ${seq} of ${state.head}${lag}`;
}

function bindControls() {
  let resized = null;
  window.addEventListener("resize", () => {
    clearTimeout(resized);
    resized = setTimeout(fitLayout, 150);
  });
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    const seq = readSeqBox();
    if (seq.problem) seqProblem(seq.problem, { focus: true });
    else applyControls({ asOf: $("as-of").value, seq: seq.value });
  });
  $("as-of").addEventListener("change", () => {
    applyControls({ asOf: $("as-of").value, seq: state.seq });
  });
  $("seq-range").addEventListener("input", () => {
    $("seq").value = $("seq-range").value;
    seqText(Number($("seq-range").value));
  });
  let lastSlide = -Infinity;
  $("seq-range").addEventListener("change", () => {
    const value = Number($("seq-range").value); // the slider's end is the latest
    // steps of the slider in a row (arrow keys) are one entry of the history, not one each
    const again = Date.now() - lastSlide < SLIDE_PAUSE_MS;
    lastSlide = Date.now();
    applyControls({ asOf: state.asOf, seq: value >= state.head ? null : value, replace: again });
  });
  $("seq").addEventListener("change", () => {
    const seq = readSeqBox();
    if (seq.problem) seqProblem(seq.problem);
    else applyControls({ asOf: state.asOf, seq: seq.value });
  });
  $("seq-latest").addEventListener("click", () => applyControls({ asOf: state.asOf, seq: null }));
  $("reset").addEventListener("click", () => applyControls({ asOf: "", seq: null }));

  $("token-box").addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !$("token-box").open) return;
    $("token-box").open = false; // as a dialog closes: the focus goes back to its opener
    $("token-box").querySelector("summary").focus();
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    setToken(value);
    $("token").value = "";
    $("token-box").open = false;
    tokenLabel();
    $("token-box").querySelector("summary").focus(); // the box closed around the focus
    announce("Token in use for this tab.");
    start();
  });
  $("token-forget").addEventListener("click", () => {
    setToken("");
    $("token").value = "";
    tokenLabel();
    announce("Token forgotten.");
    start();
  });

  window.addEventListener("popstate", () => {
    // in turn with the controls' changes: the point it reads is the one it then shows
    inTurn(async () => {
      const { urlSeqProblem, knownAt, ...wanted } = readUrl();
      if (knownAt) {
        const found = await seqKnownAt(knownAt);
        if (!found) return;
        if (found.problem) return knownAtProblem(found.problem); // the view stays
        wanted.seq = found.seq;
      }
      if (wanted.subject === state.subject && wanted.asOf === state.asOf && wanted.seq === state.seq) return;
      Object.assign(state, wanted, { shown: null }); // what the views reach is read anew
      syncControls({ force: true });
      seqProblem(urlSeqProblem);
      announce(describePoint());
      if (await refreshAll()) goLive();
    });
  });
}

// ---------------------------------------------------------------- loading

let retryTimer = null;
let retryWait = 0;

/** Whether a failed read may pass by itself: the server out of reach or failing (5xx). */
function passing(err) {
  return err instanceof ApiError && (err.status === 0 || err.status >= 500);
}

/** After a read that may pass failed, read again: 2 s later, then twice as long each time
 * up to 30 s, or at once when the live feed comes back. Until then the view shown (and
 * what the URL and controls say, which may be ahead of it) is not left as it is for good. */
function retryLater() {
  clearTimeout(retryTimer);
  retryWait = Math.min(30000, retryWait ? retryWait * 2 : 2000);
  retryTimer = setTimeout(retryNow, retryWait);
}

function retryNow() {
  if (retryTimer === null) return;
  clearTimeout(retryTimer);
  retryTimer = null;
  inTurn(async () => {
    if (!state.stopLive) return start(); // it never got going: begin again
    await refreshAll();
  });
}

function readAgainDone() {
  clearTimeout(retryTimer);
  retryTimer = null;
  retryWait = 0;
}

async function start() {
  if (state.stopLive) state.stopLive();
  state.stopLive = null;
  showError("");
  let head;
  let size = 0;
  try {
    // the log's size (health says it, whatever its Merkle tree, which a broken stored
    // tree has refused while every view still reads), then its last event, whose hash
    // the live feed holds the log to (read with the token, if one is needed)
    size = (await getJson("/v1/health")).seq;
    head = size > 0 ? (await getJson("/v1/events", { after: size - 1, limit: 1 })).items[0] : null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 422 && err.fieldMessage("after") !== null) {
      setTimeout(start, 1000); // the log was replaced by a shorter one between the two reads
      return;
    }
    if (needsToken(err)) askForToken(err);
    else showError(`Cannot read the ledger: ${problemText(err)}`);
    if (passing(err)) retryLater();
    return;
  }
  if (size > 0 && !head) {
    setTimeout(start, 1000); // the same, leaving one event fewer: read it again
    return;
  }
  state.head = head ? head.seq : 0;
  state.headHash = head ? head.hash : null;
  let problem = state.urlSeqProblem;
  state.urlSeqProblem = "";
  if (state.seq !== null && state.seq > state.head) {
    problem = pastTheEnd(`the link's seq=${state.seq}`);
    state.seq = null;
  }
  let found = {};
  if (state.knownAt) {
    found = await seqKnownAt(state.knownAt);
    if (!found) return;
    state.knownAt = ""; // the URL gives the seq from now on
    if (!found.problem) state.seq = found.seq; // fixed: what is recorded later is not seen
  }
  syncControls();
  // after syncControls, which clears them
  if (found.problem) knownAtProblem(found.problem);
  else seqProblem(problem);
  if (!(await refreshAll())) return; // the feed starts with the first view that loads
  writeUrl(false);
  goLive();
  // the browser looked for a link's #fragment before the view was drawn: go there now
  // (once: start() runs again on a token or a replaced log, and the reader has moved on)
  if (!state.landed) {
    state.landed = true;
    let id = "";
    try {
      id = decodeURIComponent(location.hash.slice(1));
    } catch {
      id = ""; // a fragment that is not percent-encoded text names nothing here
    }
    const target = id ? document.getElementById(id) : null;
    if (target) target.scrollIntoView();
  }
}

/** Follow the log's tail from the last head seen, unless already following: one feed at a time. */
function goLive() {
  if (state.stopLive) return;
  state.stopLive = follow({
    after: state.head,
    afterHash: state.headHash,
    useToken: Boolean(getToken()),
    onEvent: onLiveEvent,
    onState: liveState,
  });
}

/** The subject list, then the chosen subject; false when the server refused. */
async function refreshAll() {
  try {
    await refreshSubjects();
    return await refreshSubject();
  } catch (err) {
    reportError(err);
    return false;
  }
}

function reportError(err) {
  if (needsToken(err)) {
    askForToken(err);
    return;
  }
  if (err instanceof ApiError && err.status === 422) {
    const message = err.fieldMessage("as_of");
    if (message) {
      $("as-of-error").textContent = `Not a time the ledger reads: ${message}`;
      $("as-of").setAttribute("aria-invalid", "true");
      showError("");
      noViewYet("The link's “as stated by” time is not one the ledger reads: correct it above, or clear it for every claim.");
      return;
    }
    const seqMessage = err.fieldMessage("seq");
    if (seqMessage) {
      seqProblem(seqMessage);
      showError("");
      return;
    }
    const subjectMessage = err.fieldMessage("subject");
    if (subjectMessage) {
      // a mistyped link or an old bookmark: no subject could have that name
      showError(`No subject can be named “${state.subject}”: ${subjectMessage}. Choose one from the list.`);
      noViewYet("The link's subject is not one the ledger can hold: choose one from the list.");
      return;
    }
  }
  showError(problemText(err));
  if (passing(err)) retryLater();
}

/** What stands in for the view when a link's values were refused before any view was
 * shown: why, and that the live feed waits for the first view (it starts with it). */
function noViewYet(why) {
  if ($("subject-heading").textContent !== "Loading…") return;
  $("subject").replaceChildren(
    h("h2", { id: "subject-heading", tabindex: "-1" }, "No view yet"),
    h("p", { class: "muted" }, why),
  );
  if (!state.stopLive) $("live-state").textContent = "Not following the log yet: no view is shown.";
}

async function refreshSubjects() {
  state.subjects = await getAll("/v1/subjects", { seq: state.seq });
  if (!state.subject && state.subjects.length) state.subject = state.subjects[0].subject;
  renderSubjects();
}

async function refreshSubject({ markNew = false } = {}) {
  const generation = ++state.generation;
  const subject = state.subject;
  if (!subject) {
    $("subject").replaceChildren(
      h("h2", { id: "subject-heading", tabindex: "-1" }, "No subject chosen"),
      h("p", { class: "muted" }, state.seq === null ? "The ledger holds no assertions yet." : `The ledger held no assertions at event ${state.seq}.`),
    );
    readAgainDone();
    return true;
  }
  const at = params();
  const row = state.subjects.find((item) => item.subject === subject);
  const [timeline, assertions, sources] = await Promise.all([
    getJson(`/v1/subjects/${enc(subject)}/timeline`, at),
    getAll("/v1/assertions", { subject, ...at }),
    getAll("/v1/sources", { seq: state.seq }),
  ]);
  const kinds = propertyKinds(row, timeline, assertions);
  const properties = Object.keys(kinds).sort();
  const views = await Promise.all(
    properties.map((prop) =>
      getJson(`/v1/subjects/${enc(subject)}/${kinds[prop] === "status" ? "statuses" : "estimates"}/${enc(prop)}`, at),
    ),
  );
  if (generation !== state.generation) return true; // a later load is on its way
  if ($("as-of").value.trim() === state.asOf) {
    // (a refused time still in the box keeps its message: the view is not at it)
    $("as-of-error").textContent = "";
    $("as-of").removeAttribute("aria-invalid");
  }
  showError("");
  state.sources = new Map(sources.map((src) => [src.id, src]));
  state.shown = timeline.seq;
  if (state.statedTimesOf !== subject) suggestTimesOf(subject);
  for (const a of assertions) state.statedTimes.add(a.stated_at);
  fillStatedTimes();
  renderSubject({ subject, row, timeline, assertions, views, kinds, markNew });
  readAgainDone();
  return true;
}

function propertyKinds(row, timeline, assertions) {
  const kinds = {};
  if (row && row.property_kinds) Object.assign(kinds, row.property_kinds);
  else if (row) for (const prop of row.properties) kinds[prop] = null;
  for (const item of timeline.items) kinds[item.property] = item.kind;
  for (const a of assertions) if (!kinds[a.property]) kinds[a.property] = a.value.status ? "status" : "quantity";
  for (const prop of Object.keys(kinds)) if (!kinds[prop]) kinds[prop] = "quantity";
  return kinds;
}

// ---------------------------------------------------------------- live

let pending = { subjects: false, subject: false, events: [] };
let pendingTimer = null;
let lastReplaced = 0; // when the server last said the log was replaced (ms)
let feedLost = false; // said when the live feed comes back

function liveState(status, how, error) {
  if (status === "refused") {
    askForToken(error); // a key revoked while the page is open: ask, do not retry forever
    return;
  }
  if (status === "replaced") {
    // the server's log is shorter than what this page saw: read everything again
    state.stopLive = null;
    feedLost = false; // what is said is that it was replaced, not that it is back
    announce(
      how === "differs"
        ? `The ledger's event ${state.head} is not the one this page read: its log was replaced. Reading it again.`
        : `The ledger's log no longer reaches event ${state.head}: it was replaced. Reading it again.`,
    );
    // events of the old log not yet shown are dropped: start() reads the new one whole
    clearTimeout(pendingTimer);
    pending = { subjects: false, subject: false, events: [] };
    // at most once in 10 s: a server whose head and log disagreed would otherwise loop
    const wait = Math.max(0, lastReplaced + 10000 - Date.now());
    lastReplaced = Date.now() + wait;
    setTimeout(start, wait);
    return;
  }
  const el = $("live-state");
  const was = el.dataset.state;
  el.dataset.state = status;
  if (status === "live") {
    el.textContent = how === "polling" ? "Live: checking for new events every 2 s" : "Live: new events show as they arrive";
    if ($("error").textContent === UNREACHABLE) showError(""); // the server is back
    if (feedLost) announce("The live feed is back.");
    feedLost = false;
    retryNow(); // a read that failed while it was away
  } else if (status === "connecting") {
    el.textContent = "Connecting to the live feed…";
  } else {
    el.textContent = "Live feed lost: reconnecting…";
    // said once when it goes (the state line changes at each try, and is not announced);
    // a first connection that fails was never there to lose
    if (was === "live") {
      announce("The live feed was lost: reconnecting.");
      feedLost = true;
    }
  }
}

function onLiveEvent(event) {
  if (event.seq >= state.head) {
    // the feed may start again from here (after a token is asked for): with its hash
    state.head = event.seq;
    state.headHash = typeof event.hash === "string" ? event.hash : null;
  }
  pending.subjects = true;
  const stream = event.stream || "";
  if (stream === `subject:${state.subject}` || stream.startsWith("source:")) pending.subject = true;
  pending.events.push(event);
  clearTimeout(pendingTimer);
  pendingTimer = setTimeout(applyLive, 120);
}

async function applyLive() {
  const batch = pending;
  pending = { subjects: false, subject: false, events: [] };
  syncControls({ asOf: false });
  if (state.seq !== null) {
    for (const el of document.querySelectorAll(".known-from")) el.textContent = knownFrom(Number(el.dataset.seq));
    announce(`The log now holds ${state.head} events; this view stays at event ${state.seq}. Choose “Latest” to follow.`);
    return;
  }
  try {
    const shown = state.subject;
    if (batch.subjects) await refreshSubjects();
    // the first subject of an empty ledger is chosen as it arrives: show it too
    if (batch.subject || state.subject !== shown) {
      await refreshSubject({ markNew: true });
      if (state.subject !== shown) writeUrl(false); // the link gives what is shown
    } else {
      // no event of the batch touched this subject or a source: its view is the same at
      // the new head, so it is known from there
      for (const el of document.querySelectorAll(".known-from")) {
        el.dataset.seq = String(state.head);
        el.textContent = knownFrom(state.head);
      }
    }
  } catch (err) {
    reportError(err);
    return;
  }
  // only what changes the view in front of the reader is announced: an event on one of
  // the assertions it lists (one stated after its as_of is not among them)
  const shownIds = state.seen.get(state.subject) || new Set();
  const mine = batch.events.filter(
    (e) => e.stream === `subject:${state.subject}` && (!e.data || !e.data.assertion_id || shownIds.has(e.data.assertion_id)),
  );
  const last = mine[mine.length - 1];
  const said = [];
  if (mine.length) {
    const props = [...new Set(mine.map((e) => e.data && e.data.property).filter(Boolean))];
    said.push(
      `Updated: ${plural(mine.length, "new event")} on ${state.subject}` +
        `${props.length ? ` (${props.join(", ")})` : ""}, up to event ${last.seq}.`,
    );
  }
  // and a change to a source the view names (a new grade changes how a claim reads)
  for (const e of batch.events) {
    if (e.type !== "SourceUpdated" || !e.data || !state.claimantsShown.has(e.data.id)) continue;
    const fields = [...Object.keys(e.data).filter((k) => k !== "id" && k !== "cleared"), ...(e.data.cleared || [])];
    said.push(`Source ${sourceName(e.data.id)} changed${fields.length ? ` (${fields.join(", ")})` : ""} at event ${e.seq}.`);
  }
  if (said.length) announce(said.join(" "));
}

// ---------------------------------------------------------------- rendering

/** A property as part of an element id, one-to-one: `troops.deployed` and
 * `troops-deployed` must not share an id. */
function idPart(text) {
  return text.replace(/[^a-z0-9-]/g, (c) => `_${c.charCodeAt(0).toString(16)}`);
}

function sourceName(id) {
  const src = state.sources.get(id);
  return src ? src.name : id;
}

function claimantNode(id) {
  const src = state.sources.get(id);
  return h(
    "span",
    { class: "claimant" },
    h("bdi", {}, src ? src.name : id),
    " ",
    h("span", { class: "rel" }, `(${id}; ${src && src.reliability ? `reliability ${reliabilityText(src.reliability)}` : reliabilityText(null)})`),
  );
}

/** A warning beside text that holds direction controls (see `directionControls`), or null. */
function directionNote(text, what) {
  const found = directionControls(text);
  if (!found.length) return null;
  return h(
    "p",
    { class: "direction-note" },
    `This ${what} holds ${found.length === 1 ? "a character" : "characters"} (${found.join(", ")}) ` +
      `that ${found.length === 1 ? "turns" : "turn"} the direction of the text after ${found.length === 1 ? "it" : "them"}: ` +
      "on screen it may read other than the characters it holds.",
  );
}

function joinNodes(nodes, sep = "; ") {
  const out = [];
  nodes.forEach((node, i) => {
    if (i) out.push(sep);
    out.push(node);
  });
  return out;
}

function entryLink(id) {
  return h("a", { href: `#a-${id}` }, id);
}

/** An assertion's id where its entry is not on the page (stated after the point shown). */
function entryName(id) {
  return h("span", { class: "entry-id" }, id);
}

// ---- keeping the reader's place when a part is drawn again

const ANCHORS = "[id],[data-assertion],[data-subject],[data-property]";

function anchorSelector(el) {
  if (el.id) return `#${CSS.escape(el.id)}`;
  // with its tag: a property's section and its row in the statuses table share a key
  const tag = el.tagName.toLowerCase();
  for (const name of ["assertion", "subject", "property"]) {
    if (el.dataset[name] !== undefined) return `${tag}[data-${name}="${CSS.escape(el.dataset[name])}"]`;
  }
  return null;
}

/** Where `el` is under `root`, in terms that survive drawing the same data again: its id,
 * or its place among its kind under the nearest element with an id or a data key. */
function placeOf(el, root) {
  if (!el || el === root || !root.contains(el)) return null;
  const own = anchorSelector(el); // its id or its own data key (a subject's link)
  if (own) return { anchor: own, tag: null, index: 0 };
  const anchor = el.parentElement && el.parentElement.closest(ANCHORS);
  if (!anchor || !root.contains(anchor)) return null;
  return { anchor: anchorSelector(anchor), tag: el.tagName, index: [...anchor.querySelectorAll(el.tagName)].indexOf(el) };
}

function atPlace(place, root) {
  const anchor = root.matches(place.anchor) ? root : root.querySelector(place.anchor);
  if (!anchor || !place.tag) return anchor;
  return anchor.querySelectorAll(place.tag)[place.index] || null;
}

/** Draw `root` again with `draw()`, keeping the panels that were open and the focus: a
 * live update must not close what the reader opened or drop a keyboard user's place. */
function keepingPlace(root, draw) {
  const open = [...root.querySelectorAll("details[open]")].map((d) => placeOf(d, root)).filter(Boolean);
  const focused = placeOf(document.activeElement, root);
  draw();
  for (const place of open) {
    const panel = atPlace(place, root);
    if (panel) panel.open = true;
  }
  if (focused) {
    const el = atPlace(focused, root);
    if (el && el !== document.activeElement) el.focus({ preventScroll: true });
  }
}

function renderSubjects() {
  keepingPlace($("subjects"), drawSubjects);
}

function drawSubjects() {
  const list = $("subjects");
  $("subjects-empty").hidden = state.subjects.length > 0;
  $("subjects-empty").textContent = state.seq === null ? "No subjects yet." : `No subjects at event ${state.seq}.`;
  list.replaceChildren(
    ...state.subjects.map((item) => {
      const href = urlFor({ ...state, subject: item.subject });
      const link = h(
        "a",
        { href, "aria-current": item.subject === state.subject ? "page" : null, "data-subject": item.subject },
        item.subject,
        h("span", { class: "count" }, `${plural(item.assertions, "assertion")}, ${plural(item.properties.length, "property", "properties")}`),
      );
      link.addEventListener("click", (event) => {
        if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
        event.preventDefault();
        chooseSubject(item.subject);
      });
      return h("li", {}, link);
    }),
  );
}

async function chooseSubject(subject) {
  if (subject === state.subject) return;
  const before = state.subject;
  state.subject = subject;
  renderSubjects();
  try {
    await refreshSubject();
  } catch (err) {
    // not shown (the server is down, say): the list and the URL stay with what is
    state.subject = before;
    renderSubjects();
    reportError(err);
    return;
  }
  writeUrl(true);
  goLive();
  const heading = $("subject-heading");
  if (heading) heading.focus();
}

function renderSubject({ subject, row, timeline, assertions, views, kinds, markNew }) {
  // the tab and the history say which subject and point in time they hold
  const point = [timeline.as_of && `stated by ${timeline.as_of}`, state.seq !== null && `at event ${state.seq}`];
  document.title = [subject, ...point.filter(Boolean), "OSINT ledger"].join(" · ");
  const quantities = views.filter((v) => kinds[v.property] !== "status");
  const statuses = views.filter((v) => kinds[v.property] === "status");
  const liveIds = new Set(timeline.items.map((item) => item.assertion.assertion_id));
  const previous = markNew ? state.seen.get(subject) : null;
  state.seen.set(subject, new Set(assertions.map((a) => a.assertion_id)));
  state.claimantsShown = new Set(assertions.flatMap((a) => a.claimants));

  const notCounted = assertions.filter((a) => !liveIds.has(a.assertion_id)).length;
  const meta = [
    knownFrom(timeline.seq),
    timeline.as_of ? `claims stated by ${timeline.as_of}` : "every claim",
    `${plural(assertions.length, "assertion")}${notCounted ? `, ${notCounted} not counted` : ""}`,
  ];
  const parts = [
    h("h2", { id: "subject-heading", tabindex: "-1" }, subject),
    h(
      "p",
      { class: "meta" },
      "As known from ",
      // said again as the log grows under a view kept at a position (applyLive)
      h("span", { class: "known-from", "data-seq": String(timeline.seq) }, meta[0]),
      ` · ${meta.slice(1).join(" · ")}.`,
    ),
    row || assertions.length ? null : h("p", { class: "muted" }, "Nothing on this subject at this point."),
    quantities.length ? renderEstimates(quantities, timeline) : null,
    statuses.length ? renderStatuses(statuses, assertions) : null,
    renderTimeline(assertions, timeline, previous),
  ];
  const draw = () => {
    $("subject").replaceChildren(...parts.filter(Boolean));
    fitLayout();
  };
  if (markNew) keepingPlace($("subject"), draw); // the same subject, drawn again
  else draw();
}

function renderEstimates(quantities, timeline) {
  return h(
    "section",
    { "aria-labelledby": "estimates-heading" },
    h("h3", { id: "estimates-heading" }, "Estimates"),
    quantities.map((view) => {
      const items = timeline.items.filter((item) => item.property === view.property && item.kind === "quantity");
      // a server without `changes`: the band as the live items give it
      const changes = (timeline.changes ?? items.map((i) => ({ property: i.property, stated_at: i.assertion.stated_at, value: i.after })))
        .filter((change) => change.property === view.property);
      const slug = idPart(view.property);
      const est = view.estimate;
      const headingId = `q-${slug}`;
      return h(
        "section",
        { class: "property", "data-property": view.property, "aria-labelledby": headingId },
        h("h4", { id: headingId }, view.property),
        h(
          "dl",
          { class: "figures" },
          h(
            "div",
            {},
            h("dt", {}, "Estimate (low–high)"),
            h("dd", { class: "estimate" }, est ? range(est.low, est.high) : "none"),
          ),
          h("div", {}, h("dt", {}, "Best"), h("dd", { class: "best-figure" }, est && est.best !== null ? num(est.best) : "not given")),
          h(
            "div",
            {},
            h("dt", {}, "Spread between claimants"),
            h("dd", { class: "spread" }, view.spread ? range(view.spread.low, view.spread.high) : "none"),
          ),
        ),
        est
          ? h(
              "div",
              { class: "basis-block" },
              h("p", { class: "basis-label" }, "Rests on:"),
              h(
                "ul",
                { class: "basis" },
                view.basis.map((id, i) => {
                  const a = items.find((item) => item.assertion.assertion_id === id);
                  const what = a ? `${valueText(a.assertion)}, stated ${a.assertion.stated_at}` : "";
                  return h("li", {}, i === 0 ? "baseline " : "plus ", entryLink(id), what ? ` — ${what}` : "");
                }),
              ),
            )
          : h("p", { class: "muted" }, "No estimate: no total figure has been stated by this point."),
        estimateChart({ id: `chart-${slug}`, property: view.property, items, changes, styles, nameOf: sourceName, asOf: view.as_of }),
        claimantTable(view),
      );
    }),
  );
}

/** A table in a box that scrolls sideways on a narrow screen instead of widening the page
 * (see `markScrollable`). */
function scrollable(table) {
  return h("div", { class: "table-scroll" }, table);
}

/** What depends on the width the subject is shown at: charts drawn at that width, and
 * table boxes that take the focus only while they scroll. After a drawing and a resize. */
function fitLayout() {
  fitCharts($("subject"));
  markScrollable();
}

/** A table box that does scroll becomes a region named by its caption that the keyboard
 * can reach and scroll; one that fits is neither (no tab stop for nothing to scroll). */
function markScrollable() {
  for (const box of document.querySelectorAll(".table-scroll")) {
    const caption = box.querySelector("caption");
    if (box.scrollWidth > box.clientWidth) {
      box.setAttribute("role", "region");
      box.setAttribute("tabindex", "0");
      box.setAttribute("aria-label", caption ? caption.textContent : "Table");
    } else {
      for (const name of ["role", "tabindex", "aria-label"]) box.removeAttribute(name);
    }
  }
}

function claimantTable(view) {
  if (!view.claimants.length) return h("p", { class: "muted" }, "No claimant has given a total.");
  return scrollable(h(
    "table",
    { class: "claimants" },
    h("caption", {}, `Each claimant's latest total for ${view.property}`),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Claimant"),
        h("th", { scope: "col" }, "Reliability"),
        h("th", { scope: "col", class: "num" }, "Low"),
        h("th", { scope: "col", class: "num" }, "High"),
        h("th", { scope: "col", class: "num" }, "Best"),
        h("th", { scope: "col" }, "Stated"),
        h("th", { scope: "col" }, "Assertion"),
      ),
    ),
    h(
      "tbody",
      {},
      view.claimants.map((c) => {
        const src = state.sources.get(c.claimant);
        return h(
          "tr",
          {},
          h("th", { scope: "row" }, legendMarker(styles.of(c.claimant)), " ", h("bdi", {}, sourceName(c.claimant))),
          h("td", {}, reliabilityText(src && src.reliability)),
          h("td", { class: "num" }, num(c.low)),
          h("td", { class: "num" }, num(c.high)),
          h("td", { class: "num" }, c.best === null ? "—" : num(c.best)),
          h("td", {}, h("time", {}, c.stated_at)),
          h("td", {}, entryLink(c.assertion_id)),
        );
      }),
    ),
  ));
}

/** Who a status rests on; for a dispute, on which side each stands. */
function byNodes(view, assertions) {
  if (!view.by.length) return "—";
  if (view.status !== "disputed") return joinNodes(view.by.map(claimantNode));
  const basis = new Set(view.basis);
  const sides = ["confirmed", "denied"].map((value) => {
    const who = new Set();
    for (const a of assertions) {
      if (basis.has(a.assertion_id) && a.value.status === value) for (const c of a.claimants) who.add(c);
    }
    return who.size ? h("span", { class: "side" }, `${value}: `, joinNodes([...who].sort().map(claimantNode))) : null;
  });
  return joinNodes(sides.filter(Boolean), "; ");
}

function renderStatuses(statuses, assertions) {
  return h(
    "section",
    { "aria-labelledby": "statuses-heading" },
    h("h3", { id: "statuses-heading" }, "Statuses"),
    scrollable(h(
      "table",
      { class: "statuses" },
      h("caption", {}, "Each status property: where it stands, since when, and on whose word"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Property"),
          h("th", { scope: "col" }, "Status"),
          h("th", { scope: "col" }, "Since"),
          h("th", { scope: "col" }, "By"),
          h("th", { scope: "col" }, "History"),
        ),
      ),
      h(
        "tbody",
        {},
        statuses.map((view) =>
          h(
            "tr",
            { "data-property": view.property },
            h("th", { scope: "row" }, view.property),
            h("td", {}, h("span", { class: `status-value status-${view.status}` }, view.status)),
            h("td", { class: "since" }, view.since ? h("time", {}, view.since) : "—"),
            h("td", { class: "by" }, byNodes(view, assertions)),
            h(
              "td",
              {},
              view.history.length
                ? joinNodes(
                    view.history.map((change) => h("span", {}, `${change.status} from ${change.since} (`, entryLink(change.assertion_id), ")")),
                    " → ",
                  )
                : "—",
            ),
          ),
        ),
      ),
    )),
  );
}

function renderTimeline(assertions, timeline, previous) {
  const live = new Map(timeline.items.map((item) => [item.assertion.assertion_id, item]));
  const all = new Map(assertions.map((a) => [a.assertion_id, a]));
  for (const item of timeline.items) if (!all.has(item.assertion.assertion_id)) all.set(item.assertion.assertion_id, item.assertion);
  // what each assertion's first retracted or deprecated correction is, found once
  const judgedAway = new Map();
  for (const b of all.values()) {
    if (b.supersedes && (b.retracted || (b.rank && b.rank.rank === "deprecated")) && !judgedAway.has(b.supersedes)) {
      judgedAway.set(b.supersedes, b);
    }
  }
  const ordered = [...all.values()].sort(
    (a, b) => (firstInstant(a.stated_at) ?? 0) - (firstInstant(b.stated_at) ?? 0) || a.recorded_seq - b.recorded_seq,
  );
  return h(
    "section",
    { "aria-labelledby": "timeline-heading" },
    h("h3", { id: "timeline-heading" }, "Timeline"),
    h(
      "p",
      { class: "muted" },
      "Every assertion on the subject, by when it was stated. Retracted, superseded and deprecated ones are marked and do not count.",
    ),
    ordered.length
      ? h(
          "ol",
          { class: "timeline" },
          ordered.map((a) => renderEntry(a, live, all, judgedAway, previous && !previous.has(a.assertion_id))),
        )
      : h("p", {}, "No assertions at this point."),
  );
}

/** The mark of an assertion that counts although a correction names it (`superseded_by`
 * leaves out retracted and deprecated ones): the correction is stated after this point,
 * or, by the contract's rule (superseded only by an assertion that counts), it was itself
 * corrected, which brings this one back. */
function correctionMark(id, correction) {
  if (!correction) return h("span", { class: "mark mark-later" }, "Corrected by ", entryName(id), ", stated after this point");
  const why = correction.superseded_by
    ? ["was itself corrected by ", entryLink(correction.superseded_by)]
    : "does not count at this point";
  return h("span", { class: "mark mark-restored" }, "Counts again: its correction ", entryLink(id), " ", why);
}

function renderEntry(a, live, all, judgedAway, isNew) {
  const item = live.get(a.assertion_id);
  // superseded at this point only by an assertion that counts here: before a correction's
  // statement time (or once it is retracted or deprecated) the original holds
  const supersededBy = a.superseded_by && live.has(a.superseded_by) ? a.superseded_by : null;
  const marks = [];
  if (isNew) marks.push(h("span", { class: "mark mark-new" }, "New"));
  if (a.retracted) {
    marks.push(h("span", { class: "mark mark-retracted" }, `Retracted at event ${a.retracted.seq}: ${a.retracted.reason}`));
  }
  if (supersededBy) {
    marks.push(h("span", { class: "mark mark-superseded" }, "Superseded by ", entryLink(supersededBy)));
  } else if (a.superseded_by && item) {
    marks.push(correctionMark(a.superseded_by, all.get(a.superseded_by)));
  } else if (item) {
    // a correction that no longer counts by a judgement (`superseded_by` names none such)
    const dropped = judgedAway.get(a.assertion_id);
    if (dropped) {
      const how = dropped.retracted ? "was retracted" : "is deprecated";
      marks.push(h("span", { class: "mark mark-restored" }, "Counts: its correction ", entryLink(dropped.assertion_id), ` ${how}`));
    }
  }
  if (a.rank && a.rank.rank === "deprecated") {
    marks.push(h("span", { class: "mark mark-deprecated" }, `Deprecated${a.rank.reason ? `: ${a.rank.reason}` : ""}`));
  }
  if (a.rank && a.rank.rank === "preferred") {
    marks.push(h("span", { class: "mark mark-preferred" }, `Preferred${a.rank.reason ? `: ${a.rank.reason}` : ""}`));
  }
  if (!item && !a.retracted && !supersededBy && !(a.rank && a.rank.rank === "deprecated")) {
    marks.push(h("span", { class: "mark mark-not-counted" }, "Not counted at this point"));
  }
  const headingId = `h-${a.assertion_id}`;
  const what = item ? (item.kind === "status" ? "Status" : "Estimate") : null;
  return h(
    "li",
    { class: `entry${item ? "" : " not-live"}`, id: `a-${a.assertion_id}`, "data-assertion": a.assertion_id },
    h(
      "article",
      { "aria-labelledby": headingId },
      h(
        "h4",
        { id: headingId },
        h("time", {}, a.stated_at),
        " · ",
        a.property,
        ": ",
        h("span", { class: "value" }, valueText(a)),
      ),
      marks.length ? h("p", { class: "marks" }, marks) : null,
      item
        ? h("p", { class: "change" }, `${what}: ${estimateText(item.before ?? null)} → ${estimateText(item.after ?? null)}`)
        : null,
      h("blockquote", {}, a.quote),
      directionNote(a.quote, "quote"),
      h("p", { class: "claimants-line" }, "Claimed by: ", joinNodes(a.claimants.map(claimantNode))),
      h("p", { class: "document" }, "Document: ", documentNode(a.document)),
      directionNote(a.document && a.document.title, "document's title"),
      h(
        "details",
        {},
        h("summary", {}, "More about this assertion", h("span", { class: "visually-hidden" }, ` ${a.assertion_id}`)),
        h(
          "dl",
          {},
          h("dt", {}, "Id"),
          h("dd", {}, a.assertion_id),
          h("dt", {}, "About the period"),
          h("dd", {}, a.valid_from || a.valid_to ? `${a.valid_from || "…"} to ${a.valid_to || "…"}` : "not given"),
          h("dt", {}, "Credibility"),
          h("dd", {}, credibilityText(a.credibility)),
          a.supersedes ? [h("dt", {}, "Supersedes"), h("dd", {}, entryLink(a.supersedes))] : null,
          h("dt", {}, "Recorded"),
          h("dd", {}, `event ${a.recorded_seq}, ${a.recorded_at}`),
          a.note ? [h("dt", {}, "Note"), h("dd", {}, a.note, directionNote(a.note, "note"))] : null,
          a.document && a.document.sha256 ? [h("dt", {}, "Document SHA-256"), h("dd", {}, h("code", {}, a.document.sha256))] : null,
        ),
      ),
    ),
  );
}

function documentNode(doc) {
  if (!doc) return "not given";
  const href = doc.url ? safeHref(doc.url) : null;
  const title = doc.title || doc.url || "untitled";
  const parts = [];
  // the title is the document's own (it may hold direction controls): kept apart
  if (href) parts.push(h("a", { href, rel: "noopener noreferrer" }, h("bdi", {}, title)));
  else parts.push(doc.title ? ["“", h("bdi", {}, doc.title), "”"] : doc.url || "untitled");
  parts.push(`, ${doc.publisher}, published ${doc.published_at}`);
  if (!href && doc.url) parts.push(" (link not shown: not an http(s) address)");
  return h("cite", {}, parts);
}

// ---------------------------------------------------------------- go

Object.assign(state, readUrl());
bindControls();
onRateLimit(waitingForLimit);
tokenLabel();
start();
