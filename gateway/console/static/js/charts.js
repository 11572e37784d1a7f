// Small SVG charts drawn here (no chart library): bars over time, horizontal bars, a stacked
// share bar. Colours come from the style sheet (classes), sizes from the viewBox.

import { svg } from "./dom.js";

/** A "nice" axis maximum at or above `n` (1, 2, 5 x 10^k). */
export function niceMax(n) {
  if (n <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 5, 10]) if (step * power >= n) return step * power;
  return 10 * power;
}

/**
 * Vertical bars: one per entry of `points` ({label, value, title, tick}); `label` is drawn
 * under the bars whose `tick` is true.
 * @param {object} o
 * @param {Array} o.points
 * @param {number} [o.reference]     a dashed line at this value (e.g. a target rate)
 * @param {string} [o.referenceLabel]
 * @param {string} o.title           for screen readers
 */
export function barChart({ points, reference = null, referenceLabel = "", title }) {
  const W = 1600; const H = 300; const left = 48; const right = 12; const top = 16;
  const bottom = 36;
  const plotW = W - left - right; const plotH = H - top - bottom;
  const max = niceMax(Math.max(1, ...points.map((p) => p.value),
    reference !== null ? reference * 1.2 : 0));
  const y = (v) => top + plotH - (v / max) * plotH;
  const n = Math.max(points.length, 1);
  const slot = plotW / n;
  const barW = Math.max(1, slot * (n > 200 ? 0.9 : 0.7));
  const children = [svg("title", {}, title)];
  for (const v of [0, max / 2, max]) {
    children.push(svg("line", { class: "grid-line", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
    children.push(svg("text", { class: "axis-label", x: left - 6, y: y(v) + 5,
      "text-anchor": "end" }, formatTick(v)));
  }
  points.forEach((p, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    const h = Math.max(0, y(0) - y(p.value));
    children.push(svg("rect", { class: ["bar", p.value > (reference ?? Infinity) && "bar-high"],
      x: x.toFixed(2), y: y(p.value).toFixed(2), width: barW.toFixed(2), height: h.toFixed(2),
      "data-value": p.value }, svg("title", {}, p.title || `${p.label}: ${p.value}`)));
  });
  points.forEach((p, i) => {
    if (!p.tick) return;
    const x = left + i * slot + slot / 2;
    children.push(svg("line", { class: "grid-line", x1: x.toFixed(2), x2: x.toFixed(2),
      y1: y(0), y2: y(0) + 6 }));
    children.push(svg("text", { class: "axis-label", x: x.toFixed(2), y: H - bottom + 24,
      "text-anchor": "middle" }, p.label));
  });
  if (reference !== null) {
    children.push(svg("line", { class: "ref-line", x1: left, x2: W - right, y1: y(reference),
      y2: y(reference) }));
    children.push(svg("text", { class: "ref-label", x: W - right - 4, y: y(reference) - 6,
      "text-anchor": "end" }, referenceLabel));
  }
  return svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": title, preserveAspectRatio: "xMidYMid meet" }, children);
}

function formatTick(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** Horizontal bars: [{label, value, className, text}] with labels left and values right. */
export function hBars({ rows, title }) {
  const W = 1000; const rowH = 34; const labelW = 300; const valueW = 110;
  const H = Math.max(rowH, rows.length * rowH) + 4;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const plotW = W - labelW - valueW;
  const children = [svg("title", {}, title)];
  rows.forEach((r, i) => {
    const y = i * rowH + 2;
    children.push(svg("text", { class: "bar-label", x: labelW - 10, y: y + rowH / 2 + 6,
      "text-anchor": "end" }, r.label));
    children.push(svg("rect", { class: ["bar", r.className], x: labelW, y: y + 5,
      width: Math.max(2, (r.value / max) * plotW).toFixed(2), height: rowH - 10 },
    svg("title", {}, `${r.label}: ${r.text ?? r.value}`)));
    children.push(svg("text", { class: "bar-value", x: labelW + (r.value / max) * plotW + 8,
      y: y + rowH / 2 + 6 }, r.text ?? String(r.value)));
  });
  return svg("svg", { class: "chart chart-h", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": title }, children);
}

/** One bar split into shares: [{label, value, className}]. */
export function shareBar({ parts, title }) {
  const W = 1000; const H = 44;
  const total = parts.reduce((s, p) => s + p.value, 0);
  const children = [svg("title", {}, title)];
  let x = 0;
  for (const p of parts) {
    if (!p.value) continue;
    const w = (p.value / total) * W;
    children.push(svg("rect", { class: ["bar", p.className], x: x.toFixed(2), y: 0,
      width: w.toFixed(2), height: H }, svg("title", {}, `${p.label}: ${p.value}`)));
    if (w > 60) {
      children.push(svg("text", { class: ["share-label", p.className], x: (x + w / 2).toFixed(2),
        y: H / 2 + 7, "text-anchor": "middle" }, `${p.label} ${Math.round((p.value / total) * 100)}%`));
    }
    x += w;
  }
  if (!total) children.push(svg("rect", { class: "bar bar-empty", x: 0, y: 0, width: W, height: H }));
  return svg("svg", { class: "chart chart-share", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": title }, children);
}
