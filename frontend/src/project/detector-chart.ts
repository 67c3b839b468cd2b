// A training's per-epoch chart: validation mAP50 and mAP50-95 (0..1) and, beside it, the training losses.
// Inline SVG like analytics-charts.ts: each chart is an <svg role="img"> with a summary; a legend names the lines.
import { PALETTE } from "../analytics-charts";
import { el } from "../dom";

const SVG_NS = "http://www.w3.org/2000/svg";

export interface EpochReport {
  epoch: number;
  losses?: Record<string, number | null | undefined>;
  metrics?: Record<string, number | null | undefined>;
}

interface Line {
  name: string;
  color: string;
  points: [number, number][]; // (epoch, value)
}

export const METRIC_LINES: [string, string][] = [["map50", "mAP50"], ["map50_95", "mAP50-95"]];
const LOSS_LINES: [string, string][] = [["box_loss", "box loss"], ["cls_loss", "class loss"], ["dfl_loss", "DFL loss"]];

function svgEl<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {},
                                                     text = ""): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text) node.textContent = text;
  return node;
}

function finite(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** Lines over epochs 1..lastEpoch, y from 0 to yMax; one <polyline class="epoch-line"> per line with points. */
function lineChart(label: string, lines: Line[], lastEpoch: number, yMax: number, yTitle: string,
                   width: number): SVGSVGElement {
  const W = width, H = 150, left = 40, right = 10, top = 10, bottom = 32;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": label,
                             class: "chart-svg epoch-chart" });
  svg.append(svgEl("title", {}, label));
  const span = Math.max(1, lastEpoch - 1);
  const x = (e: number) => left + ((e - 1) / span) * (W - left - right);
  const y = (v: number) => H - bottom - (Math.min(v, yMax) / yMax) * (H - top - bottom);
  for (const tick of [0, yMax / 2, yMax]) {
    svg.append(svgEl("line", { x1: x(1), x2: W - right, y1: y(tick), y2: y(tick), class: "grid" }),
               svgEl("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end", class: "tick" },
                     yMax >= 10 ? String(Math.round(tick)) : tick.toFixed(yMax >= 2 ? 1 : 2)));
  }
  const every = Math.max(1, Math.ceil(lastEpoch / 6));
  for (let e = 1; e <= lastEpoch; e += every) {
    svg.append(svgEl("text", { x: x(e), y: H - bottom + 14, "text-anchor": "middle", class: "tick" }, String(e)));
  }
  svg.append(svgEl("text", { x: left + (W - left - right) / 2, y: H - 3, "text-anchor": "middle",
                             class: "axis-title" }, "epoch"),
             svgEl("text", { x: 10, y: y(yMax / 2), transform: `rotate(-90 10 ${y(yMax / 2)})`,
                             "text-anchor": "middle", class: "axis-title" }, yTitle));
  for (const line of lines) {
    if (!line.points.length) continue;
    const attrs = { fill: "none", stroke: line.color, "stroke-width": 2, class: "epoch-line",
                    "data-series": line.name, "data-points": line.points.length };
    // One epoch is a dot: a polyline of one point draws nothing.
    if (line.points.length === 1) {
      const [e, v] = line.points[0];
      svg.append(svgEl("circle", { cx: x(e), cy: y(v), r: 3, fill: line.color, class: "epoch-dot",
                                   "data-series": line.name }));
    }
    const polyline = svgEl("polyline", { ...attrs,
                                         points: line.points.map(([e, v]) => `${x(e).toFixed(1)},${y(v).toFixed(1)}`)
                                           .join(" ") });
    polyline.append(svgEl("title", {}, `${line.name}: ${line.points.map(([e, v]) => `${e}: ${v.toFixed(3)}`)
      .join(", ")}`));
    svg.append(polyline);
  }
  return svg;
}

function legend(lines: Line[]): HTMLElement {
  const list = el("ul", "chart-legend");
  for (const line of lines) {
    const item = el("li");
    const swatch = el("span", "swatch");
    swatch.style.background = line.color;
    item.append(swatch, line.name);
    list.append(item);
  }
  return list;
}

function linesOf(history: EpochReport[], keys: [string, string][], part: "metrics" | "losses"): Line[] {
  return keys.map(([key, name], i) => ({
    name, color: PALETTE[(part === "metrics" ? 0 : 2) + i],
    points: history.flatMap((h) => {
      const v = h[part]?.[key];
      return finite(v) ? [[h.epoch, v] as [number, number]] : [];
    }),
  }));
}

/** The two charts of a training (validation metrics, losses) for `epochs` planned epochs, with their legends. */
export function epochCharts(history: EpochReport[], epochs: number, title: string): HTMLElement {
  const box = el("div", "epoch-charts");
  const last = Math.max(2, epochs, ...history.map((h) => h.epoch));
  const metrics = linesOf(history, METRIC_LINES, "metrics");
  const losses = linesOf(history, LOSS_LINES, "losses").filter((l) => l.points.length);
  const latest = history[history.length - 1];
  const said = latest
    ? `after epoch ${latest.epoch} of ${epochs}: ` + METRIC_LINES.map(([k, n]) => {
      const v = latest.metrics?.[k];
      return `${n} ${finite(v) ? v.toFixed(3) : "–"}`;
    }).join(", ")
    : "no epoch finished yet";
  const metricFigure = el("figure", "epoch-chart-box epoch-metrics");
  metricFigure.append(lineChart(`Validation of ${title} per epoch, ${said}`, metrics, last, 1, "mAP", 300),
                      legend(metrics));
  box.append(metricFigure);
  if (losses.length) {
    const top = Math.max(...losses.flatMap((l) => l.points.map(([, v]) => v)));
    const yMax = top <= 1 ? 1 : top <= 2 ? 2 : Math.ceil(top);
    const lossFigure = el("figure", "epoch-chart-box epoch-losses");
    lossFigure.append(lineChart(`Training losses of ${title} per epoch`, losses, last, yMax, "loss", 300),
                      legend(losses));
    box.append(lossFigure);
  }
  box.dataset.epochs = String(history.length);
  return box;
}
