// The estimate over statement time, drawn as inline SVG: the band (low–high) as it stood
// from each statement time at which it changed, the best figure where there is one, and
// each claimant's figures.

import { h, s } from "./dom.js";
import { estimateText, firstInstant, lastInstant, num, plural, range } from "./format.js";

// drawn at the width the page gives it (see `fitCharts`), so its text stays 12 px on a phone
const DRAWN_WIDTH = 760; // until `fitCharts` knows better
const MIN_WIDTH = 280;
const MAX_WIDTH = 900;
const LABEL_ROOM = 72; // px a time label needs, "Mar 2025" and a gap
const M = { left: 70, right: 20, top: 16, bottom: 40 };
const DAY = 86400000;

// at least 3:1 against white, told apart by shape as well as colour; a mark is hollow only
// where there is no best figure (the caption says so), never to tell claimants apart
const COLORS = ["#1f5fa8", "#b43f0c", "#15803d", "#7e22ce", "#be123c", "#0f766e", "#854d0e", "#334155"];
const SHAPES = ["circle", "square", "diamond", "triangle", "triangle-down", "hexagon", "pentagon", "star"];

/** A style (colour and shape) per claimant, stable for the page's life. */
export class ClaimantStyles {
  constructor() {
    this.known = new Map();
  }
  of(claimant) {
    if (!this.known.has(claimant)) {
      const i = this.known.size;
      this.known.set(claimant, { color: COLORS[i % COLORS.length], shape: SHAPES[(i + Math.floor(i / COLORS.length)) % SHAPES.length] });
    }
    return this.known.get(claimant);
  }
}

function marker(shape, color, x, y, r = 5) {
  const open = shape.endsWith("-open");
  const kind = shape.replace("-open", "");
  const attrs = { fill: open ? "#ffffff" : color, stroke: color, "stroke-width": 2, "data-shape": kind };
  if (kind === "square") return s("rect", { x: x - r, y: y - r, width: 2 * r, height: 2 * r, ...attrs });
  if (kind === "diamond") {
    return s("polygon", { points: `${x},${y - r - 1} ${x + r + 1},${y} ${x},${y + r + 1} ${x - r - 1},${y}`, ...attrs });
  }
  if (kind === "triangle") return s("polygon", { points: `${x},${y - r - 1} ${x + r + 1},${y + r} ${x - r - 1},${y + r}`, ...attrs });
  if (kind === "triangle-down") return s("polygon", { points: `${x},${y + r + 1} ${x + r + 1},${y - r} ${x - r - 1},${y - r}`, ...attrs });
  if (kind === "hexagon") return s("polygon", { points: corners(x, y, Array(6).fill(r + 1), 0), ...attrs });
  if (kind === "pentagon") return s("polygon", { points: corners(x, y, Array(5).fill(r + 1), -Math.PI / 2), ...attrs });
  if (kind === "star") {
    // five points `r + 2` from the centre, the notches between them nearer
    const radii = Array.from({ length: 10 }, (_, i) => (i % 2 ? (r + 2) / 2.2 : r + 2));
    return s("polygon", { points: corners(x, y, radii, -Math.PI / 2), ...attrs });
  }
  return s("circle", { cx: x, cy: y, r, ...attrs });
}

/** A polygon's corners around (x, y), one a radius of `radii`, evenly turned from `start`. */
function corners(x, y, radii, start) {
  return radii
    .map((r, i) => {
      const a = start + (2 * Math.PI * i) / radii.length;
      return `${(x + r * Math.cos(a)).toFixed(2)},${(y + r * Math.sin(a)).toFixed(2)}`;
    })
    .join(" ");
}

export function legendMarker(style) {
  return s("svg", { viewBox: "0 0 14 14", width: 14, height: 14, class: "marker", "aria-hidden": "true", focusable: "false" }, marker(style.shape, style.color, 7, 7, 4.5));
}

function niceStep(max, count) {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 2.5, 5, 10]) {
    if (raw <= factor * power) return factor * power;
  }
  return 10 * power;
}

/** Labels on the time axis: at most `most` of them (about eight on a wide chart), a month
 * apart or 2, 3 or 6 months, then 1, 2, 5, 10... years apart: never a run of them. */
function timeTicks(start, end, most) {
  const span = end - start;
  const spanMonths = span / (30.44 * DAY);
  const monthStep = MONTH_STEPS.find((step) => spanMonths / step <= most);
  const years = span / (365.25 * DAY);
  const yearStep = monthStep ? 0 : YEAR_STEPS.find((step) => years / step <= most) || 1000;
  const months = yearStep ? 12 * yearStep : monthStep;
  const ticks = [];
  const first = new Date(start);
  let year = first.getUTCFullYear();
  let month = Math.ceil(first.getUTCMonth() / months) * months;
  if (yearStep) {
    year = Math.ceil(year / yearStep) * yearStep; // one before the start is skipped below
    month = 0;
  }
  for (let n = 0; n < 60; n += 1) {
    if (month >= 12) {
      year += Math.floor(month / 12);
      month %= 12;
    }
    const t = Date.UTC(year, month, 1);
    if (t > end) break;
    if (t >= start) ticks.push({ t, label: month === 0 ? String(year) : `${MONTHS[month]} ${year}` });
    month += months;
  }
  return ticks;
}

const MONTH_STEPS = [1, 2, 3, 6];
const YEAR_STEPS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500];

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** How each chart on the page was asked for, to draw it again at another width. */
const asked = new WeakMap();

/**
 * `items`: the timeline's items for one quantity property, in statement-time order;
 * `width`: the width to draw at, in CSS pixels (`fitCharts` gives the one the page has).
 * Returns a <figure>, or null when there is nothing to draw.
 */
export function estimateChart(args) {
  const figure = drawChart(args);
  if (figure) asked.set(figure, args);
  return figure;
}

/** Draws each chart under `root` again at the width it is shown at, when that is not
 * the width it was drawn at: a chart scaled down to a phone would have text ~4 px tall. */
export function fitCharts(root) {
  for (const figure of root.querySelectorAll("figure.chart")) {
    const args = asked.get(figure);
    const svg = figure.querySelector("svg[role=img]");
    if (!args || !svg) continue;
    const shown = svg.getBoundingClientRect().width;
    const width = Math.round(Math.min(Math.max(shown, MIN_WIDTH), MAX_WIDTH));
    if (shown > 0 && width !== Number(figure.dataset.width)) figure.replaceWith(estimateChart({ ...args, width }));
  }
}

function drawChart({ id, property, items, changes, styles, nameOf, asOf = null, width = DRAWN_WIDTH }) {
  // the band: the estimate from each statement time at which it changed (the timeline's
  // `changes`, which keep what a correction stated later replaced while it held)
  const steps = changes
    .map((change) => ({ t: firstInstant(change.stated_at), after: change.value, stated_at: change.stated_at }))
    .filter((step) => step.t !== null);
  // the points: the live assertions' own figures
  const points = items
    .map((item) => ({ t: firstInstant(item.assertion.stated_at), a: item.assertion }))
    .filter((point) => point.t !== null);
  if (!steps.length && !points.length) return null;

  const totals = [];
  const increments = [];
  for (const { t, a } of points) {
    if (a.mode === "increment") increments.push({ t, a });
    else a.claimants.forEach((claimant, j) => totals.push({ t, a, claimant, j, k: a.claimants.length }));
  }

  // from the first statement to the as-of cutoff (or the last statement), padded
  const times = [...steps, ...points].map((x) => x.t);
  const t0 = Math.min(...times);
  const cutoff = asOf ? lastInstant(asOf) : null;
  const t1 = Math.max(...times, cutoff ?? -Infinity);
  const span = Math.max(t1 - t0, 180 * DAY);
  const xmin = t0 - span * 0.05;
  const xmax = t1 + span * (cutoff === null ? 0.12 : 0.02);
  let ymax = 0;
  for (const step of steps) if (step.after) ymax = Math.max(ymax, step.after.high);
  for (const p of totals) ymax = Math.max(ymax, p.a.value.high);
  ymax = ymax || 1;
  const yStep = Math.max(1, niceStep(ymax, 5)); // figures are whole numbers
  const yTop = Math.ceil((ymax * 1.05) / yStep) * yStep;

  const W = Math.round(Math.min(Math.max(width, MIN_WIDTH), MAX_WIDTH));
  const H = Math.round(Math.min(300, Math.max(220, W * 0.6)));
  // room at the left for the longest figure on the axis (a fixed margin cut large ones)
  const left = Math.max(M.left, 16 + 9 * num(yTop).length);
  const x = (t) => left + ((t - xmin) / (xmax - xmin)) * (W - left - M.right);
  const y = (v) => H - M.bottom - (v / yTop) * (H - M.top - M.bottom);

  const titleId = `title-${id}`;
  const descId = `desc-${id}`;
  const latest = steps.length ? steps[steps.length - 1].after : null;
  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": titleId, "aria-describedby": descId },
    s("title", { id: titleId }, `${property}: the estimate over statement time`),
    s(
      "desc",
      { id: descId },
      `The band shows the estimate (low to high) from each of the ${plural(steps.length, "statement time")} ` +
        `at which it changed; it ends at ${estimateText(latest)}. ` +
        `${plural(totals.length, "claimant figure")} ${totals.length === 1 ? "is" : "are"} drawn as points.`,
    ),
  );

  // grid and axes
  const grid = s("g", { class: "grid" });
  const yAxis = s("g", { class: "axis" });
  for (let v = 0; v <= yTop + 1e-9; v += yStep) {
    grid.append(s("line", { x1: left, x2: W - M.right, y1: y(v), y2: y(v) }));
    yAxis.append(s("text", { x: left - 8, y: y(v) + 4, "text-anchor": "end" }, num(v)));
  }
  const xAxis = s("g", { class: "axis time-axis" });
  xAxis.append(s("line", { x1: left, x2: W - M.right, y1: y(0), y2: y(0) }));
  const most = Math.max(2, Math.min(8, Math.floor((W - left - M.right) / LABEL_ROOM)));
  for (const tick of timeTicks(xmin, xmax, most)) {
    grid.append(s("line", { x1: x(tick.t), x2: x(tick.t), y1: M.top, y2: y(0) }));
    xAxis.append(s("line", { x1: x(tick.t), x2: x(tick.t), y1: y(0), y2: y(0) + 5 }));
    xAxis.append(s("text", { x: x(tick.t), y: y(0) + 20, "text-anchor": "middle" }, tick.label));
  }
  svg.append(grid, yAxis, xAxis);

  // the band, step by step; and the best figure where there is one
  const band = s("g", { class: "bands" });
  const best = s("g", {});
  steps.forEach((step, i) => {
    if (!step.after || typeof step.after !== "object") return;
    const start = x(step.t);
    const end = i + 1 < steps.length ? x(steps[i + 1].t) : x(xmax);
    const top = y(step.after.high);
    const height = Math.max(1.5, y(step.after.low) - top);
    band.append(
      s(
        "rect",
        { class: "band", x: start, y: top, width: Math.max(1, end - start), height },
        s("title", {}, `From ${step.stated_at}: ${estimateText(step.after)}`),
      ),
    );
    if (step.after.best !== null && step.after.best !== undefined) {
      best.append(s("line", { class: "best", x1: start, x2: end, y1: y(step.after.best), y2: y(step.after.best) }));
    }
  });
  svg.append(band, best);

  // increments: a mark on the time axis
  for (const inc of increments) {
    const cx = x(inc.t);
    const base = y(0);
    svg.append(
      s(
        "polygon",
        { class: "increment", points: `${cx},${base - 11} ${cx + 6},${base - 1} ${cx - 6},${base - 1}` },
        s("title", {}, `${inc.a.stated_at}: +${range(inc.a.value.low, inc.a.value.high)} (${inc.a.claimants.map(nameOf).join(", ")})`),
      ),
    );
  }

  // each claimant's figures: a bar from low to high, a mark at best (or mid-range, hollow),
  // kept to the plot (off the axis labels, however many share one time)
  const clipId = `plot-${id}`;
  const plotted = s("g", { "clip-path": `url(#${clipId})` });
  svg.append(
    s("defs", {}, s("clipPath", { id: clipId }, s("rect", { x: left, y: 0, width: W - left, height: y(0) + 1 }))),
    plotted,
  );
  for (const p of totals) {
    const style = styles.of(p.claimant);
    // one statement's claimants side by side, within ~40 px however many they are
    const cx = x(p.t) + (p.j - (p.k - 1) / 2) * Math.min(9, 40 / Math.max(1, p.k - 1));
    const v = p.a.value;
    const hasBest = v.best !== undefined && v.best !== null;
    const g = s(
      "g",
      { class: "point" },
      s("title", {}, `${nameOf(p.claimant)}: ${range(v.low, v.high)}${hasBest ? `, best ${num(v.best)}` : ""}, stated ${p.a.stated_at}`),
      s("line", { x1: cx, x2: cx, y1: y(v.high), y2: y(v.low), stroke: style.color, "stroke-width": 2 }),
      s("line", { x1: cx - 3, x2: cx + 3, y1: y(v.high), y2: y(v.high), stroke: style.color, "stroke-width": 2 }),
      s("line", { x1: cx - 3, x2: cx + 3, y1: y(v.low), y2: y(v.low), stroke: style.color, "stroke-width": 2 }),
      marker(hasBest ? style.shape : `${style.shape}-open`, style.color, cx, y(hasBest ? v.best : (v.low + v.high) / 2)),
    );
    plotted.append(g);
  }

  const claimants = [...new Set(totals.map((p) => p.claimant))];
  const legend = h(
    "ul",
    { class: "legend", "aria-label": "Key" },
    h("li", {}, s("svg", { viewBox: "0 0 14 14", width: 14, height: 14, class: "marker", "aria-hidden": "true" }, s("rect", { class: "band", x: 1, y: 3, width: 12, height: 8 })), "estimate (low–high)"),
    claimants.map((c) => h("li", {}, legendMarker(styles.of(c)), nameOf(c))),
    increments.length
      ? h("li", {}, s("svg", { viewBox: "0 0 14 14", width: 14, height: 14, class: "marker", "aria-hidden": "true" }, s("polygon", { class: "increment", points: "7,2 13,12 1,12" })), "increment")
      : null,
  );
  return h(
    "figure",
    { class: "chart", id, "aria-labelledby": titleId, "data-width": W }, // its own name, not the shared caption
    svg,
    legend,
    h("figcaption", {}, "Solid marks are a claimant's best figure, hollow ones the middle of a range given without one; the bar spans low to high. The same figures are in the tables."),
  );
}
