// Formatting and the contract's reduced-precision times.

const numbers = new Intl.NumberFormat("en-US");

export function num(value) {
  return value === null || value === undefined ? "—" : numbers.format(value);
}

/** A count and what it counts, e.g. "1 assertion", "1,200 assertions". */
export function plural(count, one, many = `${one}s`) {
  return `${num(count)} ${count === 1 ? one : many}`;
}

/** `low–high` (one figure when they are equal). */
export function range(low, high) {
  return low === high ? num(low) : `${num(low)}–${num(high)}`;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$/;

/** The first instant (ms since the epoch, UTC) of a contract time: `2024` is 2024-01-01. */
export function firstInstant(text) {
  if (!text) return null;
  let m = /^(\d{4})$/.exec(text);
  if (m) return Date.UTC(Number(m[1]), 0, 1);
  m = /^(\d{4})-(\d{2})$/.exec(text);
  if (m) return Date.UTC(Number(m[1]), Number(m[2]) - 1, 1);
  m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (m) return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  m = RFC3339.exec(text);
  if (m) {
    // values without an offset are UTC
    const iso = m[8] ? text : `${text}Z`;
    const ms = Date.parse(iso.replace(" ", "T"));
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}

/** The last instant of a contract time's period: `2024-02` ends at the end of February. */
export function lastInstant(text) {
  if (!text) return null;
  let m = /^(\d{4})$/.exec(text);
  if (m) return Date.UTC(Number(m[1]) + 1, 0, 1) - 1;
  m = /^(\d{4})-(\d{2})$/.exec(text);
  if (m) return Date.UTC(Number(m[1]), Number(m[2]), 1) - 1;
  m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (m) return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + 1) - 1;
  return firstInstant(text);
}

const RELIABILITY = {
  A: "completely reliable",
  B: "usually reliable",
  C: "fairly reliable",
  D: "not usually reliable",
  E: "unreliable",
  F: "reliability cannot be judged",
};

export function reliabilityText(grade) {
  if (!grade) return "reliability not graded";
  return `${grade}: ${RELIABILITY[grade] || "unknown grade"}`;
}

const CREDIBILITY = {
  1: "confirmed by other sources",
  2: "probably true",
  3: "possibly true",
  4: "doubtful",
  5: "improbable",
  6: "truth cannot be judged",
};

export function credibilityText(value) {
  if (value === null || value === undefined) return "not graded";
  return `${value}: ${CREDIBILITY[value] || "unknown"}`;
}

/** An assertion's value as words: `about 10,000–12,000 (total)` or `confirmed`. */
export function valueText(assertion) {
  const v = assertion.value || {};
  if (v.status) return v.status;
  const qualifier = assertion.qualifier && assertion.qualifier !== "exactly" ? `${assertion.qualifier} ` : "";
  const best = v.best !== undefined && v.best !== null && (v.low !== v.best || v.high !== v.best)
    ? `, best ${num(v.best)}`
    : "";
  const sign = assertion.mode === "increment" ? "+" : "";
  const mode = assertion.mode === "increment" ? " more (an increment)" : " in all";
  return `${qualifier}${sign}${range(v.low, v.high)}${best}${mode}`;
}

export function estimateText(estimate) {
  if (!estimate) return "no estimate";
  if (typeof estimate === "string") return estimate;
  const best = estimate.best === null || estimate.best === undefined ? "" : ` (best ${num(estimate.best)})`;
  return `${range(estimate.low, estimate.high)}${best}`;
}

// the embeddings, overrides and isolates that turn the direction of the text after them
const DIRECTION_CONTROLS = /[\u202a-\u202e\u2066-\u2069]/gu;

/** The direction controls `text` holds, as "U+202E" each, once, in order of first use:
 * a quote may hold them (it is the document's own words), but on screen they make it read
 * other than the characters it holds, so the page says so beside it. */
export function directionControls(text) {
  const found = new Set((text || "").match(DIRECTION_CONTROLS) || []);
  return [...found].map((c) => `U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`);
}
