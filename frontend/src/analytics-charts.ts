// Small inline-SVG charts for the analytics page: stacked vertical bars over time and horizontal bars with a label.
// Each chart is an <svg role="img"> with an aria-label summary; the page adds a <table> of the same numbers.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Distinct colours readable on white, one per reviewer (cycled past eight). */
export const PALETTE = ["#2458d6", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#a07400", "#495057"];

function svgEl<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {},
  text = "",
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text) node.textContent = text;
  return node;
}

/** A tooltip for an SVG shape (browsers show <title> on hover; screen readers read it). */
function titled<T extends SVGElement>(node: T, text: string): T {
  node.append(svgEl("title", {}, text));
  return node;
}

/** A round upper bound for an axis: 1, 2 or 5 times a power of ten, at least `value`. */
export function niceMax(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function frame(width: number, height: number, label: string): SVGSVGElement {
  const svg = svgEl("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label, class: "chart-svg",
  });
  svg.append(svgEl("title", {}, label));
  return svg;
}

export interface Series {
  name: string;
  color: string;
  values: number[];
}

export interface StackedBarsOptions {
  label: string; // the accessible summary
  buckets: string[]; // one x label per bar
  series: Series[];
  xTitle: string;
  yTitle: string;
  unit: string; // what a value counts, for the tooltips
  width: number; // in CSS pixels: the chart is drawn at the size it is shown, so its text is never scaled down
}

/** Vertical bars over time, each stacked from the series' values; one <rect class="bar"> per non-zero part. */
export function stackedBars(o: StackedBarsOptions): SVGSVGElement {
  const W = o.width, H = 260, left = 48, right = 12, top = 12, bottom = 56;
  const plotW = W - left - right, plotH = H - top - bottom;
  const svg = frame(W, H, o.label);
  const totals = o.buckets.map((_, i) => o.series.reduce((sum, s) => sum + s.values[i], 0));
  const max = niceMax(Math.max(2, ...totals)); // counts: never a half-decision tick
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const axis = svgEl("g", { class: "axis" });
  for (const tick of [0, max / 2, max]) {
    axis.append(
      svgEl("line", { x1: left, x2: W - right, y1: y(tick), y2: y(tick), class: tick ? "grid" : "baseline" }),
      svgEl("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end" }, String(Math.round(tick * 10) / 10)),
    );
  }
  const slot = plotW / Math.max(1, o.buckets.length);
  const barW = Math.max(1, Math.min(slot * 0.8, 56));
  const every = Math.max(1, Math.ceil(o.buckets.length / 8)); // at most about eight x labels
  o.buckets.forEach((bucket, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    if (i % every === 0) {
      axis.append(svgEl("text", { x: x + barW / 2, y: top + plotH + 16, "text-anchor": "middle" }, bucket));
    }
    let base = 0;
    for (const s of o.series) {
      const v = s.values[i];
      if (!v) continue;
      const rect = svgEl("rect", {
        x, width: barW, y: y(base + v), height: y(base) - y(base + v), fill: s.color, class: "bar",
        "data-series": s.name, "data-bucket": bucket, "data-value": v,
      });
      svg.append(titled(rect, `${s.name}, ${bucket}: ${v} ${o.unit}`));
      base += v;
    }
  });
  axis.append(
    svgEl("text", { x: left + plotW / 2, y: H - 8, "text-anchor": "middle", class: "axis-title" }, o.xTitle),
    svgEl("text", {
      x: 0, y: 0, transform: `translate(14 ${top + plotH / 2}) rotate(-90)`, "text-anchor": "middle",
      class: "axis-title",
    }, o.yTitle),
  );
  svg.prepend(axis);
  return svg;
}

export interface HBarRow {
  label: string;
  value: number | null; // null: nothing to draw (no data), the row still shows its label
  text: string; // the figure written after the bar
  color: string;
  back?: number | null; // a second, lighter bar behind the first (p90 behind the median)
  backColor?: string;
}

export interface HBarOptions {
  label: string;
  rows: HBarRow[];
  max: number;
  xTitle: string;
  ticks: (max: number) => string[]; // labels at 0, max/2 and max
  width: number; // in CSS pixels
}

/** Horizontal bars, one row each: a label, the bar (<rect class="bar">), and the figure. */
export function horizontalBars(o: HBarOptions): SVGSVGElement {
  const W = o.width, rowH = 26, labelW = Math.min(150, W * 0.3), textW = 130, top = 8, bottom = 40;
  const plotW = W - labelW - textW;
  const H = top + bottom + rowH * Math.max(1, o.rows.length);
  const svg = frame(W, H, o.label);
  const x = (v: number) => labelW + (Math.min(v, o.max) / o.max) * plotW;
  const axis = svgEl("g", { class: "axis" });
  const tickLabels = o.ticks(o.max);
  [0, o.max / 2, o.max].forEach((tick, i) => {
    axis.append(
      svgEl("line", { x1: x(tick), x2: x(tick), y1: top, y2: H - bottom, class: i ? "grid" : "baseline" }),
      svgEl("text", { x: x(tick), y: H - bottom + 14, "text-anchor": "middle" }, tickLabels[i]),
    );
  });
  axis.append(
    svgEl("text", { x: labelW + plotW / 2, y: H - 6, "text-anchor": "middle", class: "axis-title" }, o.xTitle),
  );
  svg.append(axis);
  o.rows.forEach((row, i) => {
    const y = top + i * rowH;
    svg.append(svgEl("text", { x: labelW - 8, y: y + rowH / 2 + 4, "text-anchor": "end", class: "row-label" }, row.label));
    if (row.back != null) {
      svg.append(titled(svgEl("rect", {
        x: labelW, y: y + 4, width: Math.max(1, x(row.back) - labelW), height: rowH - 8,
        fill: row.backColor ?? "#ccd", class: "bar-back",
      }), `${row.label}: ${row.text}`));
    }
    if (row.value != null) {
      svg.append(titled(svgEl("rect", {
        x: labelW, y: y + (row.back != null ? 9 : 4), width: Math.max(1, x(row.value) - labelW),
        height: row.back != null ? rowH - 18 : rowH - 8, fill: row.color, class: "bar", "data-label": row.label,
      }), `${row.label}: ${row.text}`));
    }
    svg.append(svgEl("text", { x: labelW + plotW + 8, y: y + rowH / 2 + 4, class: "row-figure" }, row.text));
  });
  return svg;
}

export interface CurveOptions {
  label: string; // the accessible summary
  recall: number[];
  precision: number[];
  color: string;
  width: number;
}

/** A precision-recall curve: recall on x, precision on y, both 0..1, one <polyline class="pr-line">. */
export function prCurve(o: CurveOptions): SVGSVGElement {
  const W = o.width, H = Math.round(o.width * 0.75), left = 40, right = 10, top = 10, bottom = 34;
  const svg = frame(W, H, o.label);
  const x = (v: number) => left + v * (W - left - right);
  const y = (v: number) => H - bottom - v * (H - top - bottom);
  for (const tick of [0, 0.5, 1]) {
    svg.append(svgEl("line", { x1: x(0), x2: x(1), y1: y(tick), y2: y(tick), class: "grid" }));
    svg.append(svgEl("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end", class: "tick" }, tick.toFixed(1)));
    svg.append(svgEl("text", { x: x(tick), y: H - bottom + 14, "text-anchor": "middle", class: "tick" }, tick.toFixed(1)));
  }
  svg.append(svgEl("text", { x: x(0.5), y: H - 4, "text-anchor": "middle", class: "axis-title" }, "recall"));
  svg.append(svgEl("text", { x: 10, y: y(0.5), transform: `rotate(-90 10 ${y(0.5)})`, "text-anchor": "middle",
                             class: "axis-title" }, "precision"));
  // The curve starts at recall 0 with the first proposal's precision, so a one-point curve is a line too.
  const recall = o.recall.length ? [0, ...o.recall] : [];
  const precision = o.precision.length ? [o.precision[0], ...o.precision] : [];
  const points = recall.map((r, i) => `${x(r).toFixed(1)},${y(precision[i]).toFixed(1)}`).join(" ");
  if (points) svg.append(svgEl("polyline", { points, fill: "none", stroke: o.color, "stroke-width": 2, class: "pr-line" }));
  return svg;
}
