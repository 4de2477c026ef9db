// Follows the log's tail: new events as they are appended.
//
// Without a token: EventSource on /v1/events/stream. EventSource cannot send headers, so
// with a token the same stream is read through fetch(); where that fails before a single
// event arrives, /v1/events is polled every two seconds instead.

import { ApiError, authHeaders, getJson, retryAfterSeconds, url } from "./api.js";

const EVENT_TYPES = [
  "SourceRegistered",
  "SourceUpdated",
  "AssertionRecorded",
  "AssertionRetracted",
  "AssertionRanked",
  "PayloadErased",
];
const RETRY_MS = 2000;
const POLL_MS = 2000;

/**
 * Calls `onEvent(event)` for each event after `after` (whose hash, `afterHash`, the log
 * must still hold there), in seq order, once each, and
 * `onState(state, how, error)` as the connection changes (`live`, `connecting`, `down`,
 * `refused` with the error when the token is no longer taken, or `replaced` when the log
 * holds fewer events than the last one followed, or another event in its place (`how` is
 * then "differs"): the ledger is not the one read so far. Following stops on either,
 * since retrying cannot help). Returns a function that stops following.
 */
export function follow({ after, afterHash = null, useToken, onEvent, onState }) {
  let last = after;
  let lastHash = afterHash; // the hash of event `last` (null: learnt on the first check)
  let stopped = false;
  let source = null;
  let controller = null;
  let timer = null;
  let streamedOnce = false;

  const deliver = (event) => {
    if (stopped || !event || typeof event.seq !== "number" || event.seq <= last) return;
    last = event.seq;
    lastHash = typeof event.hash === "string" ? event.hash : null;
    onEvent(event);
  };

  // The server refuses to resume past its head (a 422 naming `after`): the page's ledger
  // was replaced, by an older backup or another file. Following it would skip events.
  const replacedBy = (err) => err instanceof ApiError && err.status === 422 && err.fieldMessage("after") !== null;
  const replaced = (err, how = "stream") => {
    if (stopped) return;
    stopped = true;
    onState("replaced", how, err);
  };

  // Whether the log still holds, at `last`, the event followed there: one restored from
  // another ledger may be as long or longer, and only the event's hash tells it apart.
  // Asked on starting and right before each reconnection, so that no event of another
  // log is taken in; true when it cannot tell (the server is away: the reconnection then
  // fails, and asks again before the next).
  const sameLog = async () => {
    const at = last;
    if (at === 0) return true;
    let event;
    try {
      event = (await getJson("/v1/events", { after: at - 1, limit: 1 })).items[0];
    } catch (err) {
      if (replacedBy(err)) {
        replaced(err);
        return false;
      }
      return !stopped;
    }
    if (stopped) return false;
    if (last !== at) return true; // events came meanwhile: they were this log's
    return holds(event);
  };
  // Whether `event`, read from the log at `last`, is the event followed there; if not,
  // the log was replaced (said, and following stops). Learns its hash when none is held.
  const holds = (event) => {
    if (!event || event.seq !== last) {
      replaced(null);
      return false;
    }
    if (lastHash !== null && event.hash !== lastHash) {
      replaced(null, "differs");
      return false;
    }
    lastHash = event.hash;
    return true;
  };
  const whenSame = (open) => async () => {
    if (await sameLog()) open();
  };

  const later = (fn, ms) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (!stopped) fn();
    }, ms);
  };

  // ---- EventSource (public reads) ----
  const openEventSource = () => {
    onState("connecting", "stream");
    source = new EventSource(url("/v1/events/stream", { after: last }));
    const handler = (message) => {
      if (!message.data) return;
      try {
        deliver(JSON.parse(message.data));
      } catch {
        // not an event: ignore it
      }
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, handler);
    source.addEventListener("message", handler);
    source.onopen = () => onState("live", "stream");
    source.onerror = () => {
      // reopen ourselves, so the stream resumes after the last event we saw; EventSource
      // hides why it failed, so ask the log whether it still reaches that far
      source.close();
      source = null;
      onState("down", "stream");
      later(whenSame(openEventSource), RETRY_MS);
    };
  };

  // ---- fetch() streaming (with the Authorization header) ----
  const openFetchStream = async () => {
    onState("connecting", "stream");
    controller = new AbortController();
    let response;
    try {
      response = await fetch(url("/v1/events/stream", { after: last }), {
        headers: { Accept: "text/event-stream", ...authHeaders() },
        cache: "no-store",
        signal: controller.signal,
      });
      if (response.status === 401 || response.status === 403) {
        // the key was revoked (or never was): retrying cannot help, the reader must act
        const problem = await response.json().catch(() => ({}));
        onState("refused", "stream", new ApiError(response.status, problem));
        return;
      }
      if (response.status === 422) {
        const err = new ApiError(422, await response.json().catch(() => ({})));
        if (replacedBy(err)) {
          replaced(err);
          return;
        }
      }
      if (response.status === 429) {
        // over the rate limit (on the first open too, right after the page's own reads):
        // open the stream again when the server says; polling would spend more of it
        onState("down", "stream");
        later(whenSame(openFetchStream), retryAfterSeconds(response) * 1000);
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    } catch (err) {
      if (stopped) return;
      if (!streamedOnce) {
        startPolling();
        return;
      }
      onState("down", "stream");
      later(whenSame(openFetchStream), RETRY_MS);
      return;
    }
    streamedOnce = true;
    onState("live", "stream");
    try {
      await readEvents(response.body, (data) => {
        try {
          deliver(JSON.parse(data));
        } catch {
          // not an event: ignore it
        }
      });
    } catch {
      // the connection broke: reconnect below
    }
    if (stopped) return;
    onState("down", "stream");
    later(whenSame(openFetchStream), RETRY_MS);
  };

  // ---- polling /v1/events ----
  const startPolling = () => {
    onState("live", "polling");
    const poll = async () => {
      try {
        for (;;) {
          // from the last event followed, which must be the same one (a log replaced
          // between two polls shows there)
          const page = await getJson("/v1/events", { after: Math.max(0, last - 1), limit: 1000 });
          if (last > 0 && !holds(page.items[0])) return;
          for (const event of page.items) deliver(event);
          if (!page.next || stopped) break;
        }
        onState("live", "polling");
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          onState("refused", "polling", err);
          return;
        }
        if (replacedBy(err)) {
          replaced(err);
          return;
        }
        onState("down", "polling");
      }
      later(poll, POLL_MS);
    };
    poll();
  };

  const open = useToken ? openFetchStream : typeof EventSource === "function" ? openEventSource : startPolling;
  whenSame(open)(); // first: is event `after` still the one the page read?

  return () => {
    stopped = true;
    clearTimeout(timer);
    if (source) source.close();
    if (controller) controller.abort();
  };
}

/** Parses a text/event-stream body, calling `onData(data)` for each dispatched event. */
async function readEvents(body, onData) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (data.length) onData(data.join("\n"));
        data = [];
      } else if (line.startsWith("data:")) {
        data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      }
      // comments (":"), id:, event: and retry: lines need nothing here: the data holds the seq
    }
  }
}
