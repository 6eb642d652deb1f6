// Line charts as SVG, drawn from /api/metrics/series points; no charting library (the console
// is offline and needs one chart type only).

import { formatNumber } from "./dom.js";
import { currentLanguage, t } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 420;
const HEIGHT = 170;
const PAD = { left: 44, right: 10, top: 10, bottom: 24 };

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 2.5, 5, 10].find((s) => s * magnitude >= value);
  return step * magnitude;
}

// Labels for the time axis at `ticks` (seconds): the shortest format in which no two read the
// same. Hours and minutes alone repeat across a day ("01:06 AM · 01:06 PM · 01:06 AM" for 24 hours),
// so the date is added then, and seconds when the ticks are less than a minute apart.
export function timeLabels(ticks, span) {
  const formats = span > 2 * 86400
    ? [{ month: "short", day: "numeric" }, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }]
    : [{ hour: "2-digit", minute: "2-digit" }, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" },
      { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" }];
  let labels = [];
  for (const options of formats) {
    const format = new Intl.DateTimeFormat(currentLanguage(), options);
    labels = ticks.map((ts) => format.format(new Date(ts * 1000)));
    if (new Set(labels).size === labels.length) break;
  }
  return labels;
}

// `points` = [{ts, value}], `since`/`until` in seconds; `scale` multiplies values for display.
export function lineChart(points, { since, until, scale = 1, digits = 1, label = "" }) {
  const values = points.filter((p) => p.value !== null && p.value !== undefined)
    .map((p) => ({ x: p.ts, y: p.value * scale }));
  const svg = el("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": label,
  });
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const top = niceMax(Math.max(...values.map((v) => v.y), 0));
  const x = (ts) => PAD.left + ((ts - since) / Math.max(until - since, 1)) * innerW;
  const y = (v) => PAD.top + innerH - (v / top) * innerH;

  // As many decimals as the grid step has (0.25 needs two), so no two labels read the same.
  let labelDigits = 0;
  while (labelDigits < 3 && Math.abs((top / 4) * 10 ** labelDigits - Math.round((top / 4) * 10 ** labelDigits)) > 1e-6) labelDigits += 1;
  for (let i = 0; i <= 4; i += 1) {
    const value = (top * i) / 4;
    svg.append(el("line", { class: i ? "grid" : "axis", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value) }));
    svg.append(el("text", { x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end" }, formatNumber(value, labelDigits)));
  }
  const ticks = [since, (since + until) / 2, until]; // three time labels fit a phone-sized chart
  timeLabels(ticks, until - since).forEach((text, i) => {
    svg.append(el("text", { class: "time", x: x(ticks[i]), y: HEIGHT - 6, "text-anchor": ["start", "middle", "end"][i] }, text));
  });
  if (!values.length) {
    svg.append(el("text", { x: PAD.left + innerW / 2, y: PAD.top + innerH / 2, "text-anchor": "middle" }, t("monitoring.noData")));
    return svg;
  }
  const line = values.map((v, i) => `${i ? "L" : "M"}${x(v.x).toFixed(1)},${y(v.y).toFixed(1)}`).join(" ");
  const area = `${line} L${x(values.at(-1).x).toFixed(1)},${y(0)} L${x(values[0].x).toFixed(1)},${y(0)} Z`;
  svg.append(el("path", { class: "area", d: area }), el("path", { class: "line", d: line }));
  if (values.length < 40) {
    for (const v of values) {
      const dot = el("circle", { class: "dot", cx: x(v.x).toFixed(1), cy: y(v.y).toFixed(1), r: 2.6 });
      dot.append(el("title", {}, `${new Date(v.x * 1000).toLocaleString(currentLanguage())}: ${formatNumber(v.y, digits)}`));
      svg.append(dot);
    }
  }
  return svg;
}
