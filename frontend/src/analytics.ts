// Review analytics page: filters (scene, UTC dates) -> GET /api/projects/{id}/analytics/ -> four small SVG charts,
// each with its numbers as a table, and the disagreements; managers get the same filters on the CSV link.
import "./style.css";
import "./analytics.css";
import type { components } from "./api-schema";
import { errorText, getJson } from "./api";
import { horizontalBars, PALETTE, stackedBars } from "./analytics-charts";
import { byId, el } from "./dom";

type Schemas = components["schemas"];
type Analytics = Schemas["Analytics"];

const root = byId("analytics-page") as HTMLElement;
const projectId = Number(root.dataset.projectId);
const form = byId<HTMLFormElement>("analytics-filters") as HTMLFormElement;
const sceneInput = byId<HTMLSelectElement>("filter-scene") as HTMLSelectElement;
const sinceInput = byId<HTMLInputElement>("filter-since") as HTMLInputElement;
const untilInput = byId<HTMLInputElement>("filter-until") as HTMLInputElement;
const csvLink = byId<HTMLAnchorElement>("events-csv");
const errorEl = byId("analytics-error") as HTMLElement;
const totalsEl = byId("analytics-totals") as HTMLElement;

const DAY_MS = 86_400_000;
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
/** How the disagreements table words a status-changing verb. */
const VERB_TEXT: Record<string, string> = {
  accept: "accepted", reject: "rejected", create_manual: "drew it", delete_manual: "deleted it",
};

/** The API's query for the form: the "To" date is inclusive on the page, so the API gets the next midnight. */
function apiQuery(): URLSearchParams {
  const q = new URLSearchParams();
  if (sceneInput.value) q.set("scene", sceneInput.value);
  if (sinceInput.value) q.set("since", sinceInput.value);
  if (untilInput.value) q.set("until", new Date(Date.parse(untilInput.value) + DAY_MS).toISOString().slice(0, 10));
  return q;
}

/** The page's own query (what a shared link restores): the form as the user filled it in. */
function pageQuery(): URLSearchParams {
  const q = new URLSearchParams();
  if (sceneInput.value) q.set("scene", sceneInput.value);
  if (sinceInput.value) q.set("since", sinceInput.value);
  if (untilInput.value) q.set("until", untilInput.value);
  return q;
}

function restoreForm(): void {
  const q = new URLSearchParams(location.search);
  const scene = q.get("scene") ?? "";
  if ([...sceneInput.options].some((o) => o.value === scene)) sceneInput.value = scene;
  const since = q.get("since") ?? "", until = q.get("until") ?? "";
  if (DATE_RE.test(since)) sinceInput.value = since;
  if (DATE_RE.test(until)) untilInput.value = until;
}

function seconds(value: number): string {
  if (value < 60) return `${value < 10 ? value.toFixed(1) : Math.round(value)} s`;
  return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

function percent(rate: number): string {
  return `${Math.round(rate * 100)}%`;
}

/** A bucket's start as the x axis writes it: "13:00" for hours (with the date at midnight or the first), "Dec 1" for days. */
function bucketLabel(iso: string, bucket: string, first: boolean): string {
  const d = new Date(iso);
  const day = d.toLocaleDateString("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
  if (bucket === "day") return day;
  const hour = `${String(d.getUTCHours()).padStart(2, "0")}:00`;
  return first || d.getUTCHours() === 0 ? `${day} ${hour}` : hour;
}

/** A table of the chart's numbers, folded under the chart (the accessible, copyable version). */
function dataTable(caption: string, headers: string[], rows: (string | number)[][]): HTMLElement {
  const details = el("details", "chart-table");
  details.append(el("summary", "", "Show the numbers as a table"));
  const table = el("table");
  table.append(el("caption", "", caption));
  const head = el("tr");
  headers.forEach((h) => {
    const th = el("th", "", h);
    th.scope = "col";
    head.append(th);
  });
  table.append(el("thead"), el("tbody"));
  table.tHead!.append(head);
  for (const row of rows) {
    const tr = el("tr");
    row.forEach((cell) => tr.append(el("td", "", String(cell))));
    table.tBodies[0].append(tr);
  }
  details.append(table);
  return details;
}

/** The width a chart has inside its card, so SVG text shows at its CSS size. */
function chartWidth(figure: HTMLElement): number {
  const style = getComputedStyle(figure);
  const inner = figure.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return Math.max(300, Math.floor(inner));
}

function heading(figure: HTMLElement, title: string, note: string): void {
  const caption = el("figcaption");
  caption.append(el("h2", "", title));
  if (note) caption.append(el("p", "muted", note));
  figure.replaceChildren(caption);
}

function empty(figure: HTMLElement, text: string): void {
  figure.append(el("p", "muted empty", text));
}

function renderActivity(data: Analytics): void {
  const figure = byId("chart-activity") as HTMLElement;
  const a = data.activity;
  const per = a.bucket === "hour" ? "hour" : "day";
  heading(figure, `Decisions per reviewer per ${per}`,
    `Counted per ${per} in UTC. Undone decisions are left out; undos are counted apart (in the legend and table).`);
  if (!a.series.length) return empty(figure, "No review events in this selection.");
  const labels = a.starts.map((s, i) => bucketLabel(s, a.bucket, i === 0));
  const series = a.series.map((s, i) => ({ name: s.username, color: PALETTE[i % PALETTE.length], values: s.decisions }));
  const summary = a.series.map((s) => `${s.username} ${s.total_decisions}`).join(", ");
  figure.append(stackedBars({
    width: chartWidth(figure),
    label: `Stacked bars of decisions per ${per} over ${a.starts.length} ${per}s: ${summary}.`,
    buckets: labels, series, xTitle: `${per === "hour" ? "Hour" : "Day"} (UTC)`, yTitle: "Decisions", unit: "decisions",
  }));
  const legend = el("ul", "chart-legend");
  a.series.forEach((s, i) => {
    const item = el("li");
    const swatch = el("span", "swatch");
    swatch.style.background = PALETTE[i % PALETTE.length];
    const undos = s.total_undos ? `, ${s.total_undos} undo${s.total_undos === 1 ? "" : "s"}` : "";
    item.append(swatch, `${s.username}: ${s.total_decisions} decision${s.total_decisions === 1 ? "" : "s"}${undos}`);
    legend.append(item);
  });
  figure.append(legend);
  const rows: (string | number)[][] = [];
  a.starts.forEach((start, i) => {
    for (const s of a.series) {
      if (s.decisions[i] || s.undos[i]) rows.push([start.replace("T", " ").slice(0, 16), s.username, s.decisions[i], s.undos[i]]);
    }
  });
  figure.append(dataTable(`Decisions per reviewer per ${per}`, [`${per === "hour" ? "Hour" : "Day"} (UTC)`, "Reviewer", "Decisions", "Undos"], rows));
}

function renderPace(data: Analytics): void {
  const figure = byId("chart-pace") as HTMLElement;
  const minutes = Math.round(data.pace.break_seconds / 60);
  heading(figure, "Time per decision",
    `Median (dark) and 90th percentile (light) of the time since the same reviewer's previous action in the same scene. ` +
    `Gaps over ${minutes} minutes are breaks and are left out; a bulk action counts once.`);
  const timed = data.pace.reviewers.filter((r) => r.median_seconds != null);
  if (!timed.length) return empty(figure, "Not enough consecutive decisions to time.");
  const max = Math.max(...timed.map((r) => r.p90_seconds ?? 0));
  figure.append(horizontalBars({
    width: chartWidth(figure),
    label: `Seconds per decision by reviewer: ${timed.map((r) => `${r.username} median ${seconds(r.median_seconds!)}, p90 ${seconds(r.p90_seconds!)}`).join("; ")}.`,
    rows: timed.map((r) => ({
      label: r.username, value: r.median_seconds!, back: r.p90_seconds, color: "#2458d6", backColor: "#b7c8f2",
      text: `${seconds(r.median_seconds!)} · p90 ${seconds(r.p90_seconds!)}`,
    })),
    max: Math.max(1, max), xTitle: "Seconds per decision", ticks: (m) => ["0", seconds(m / 2), seconds(m)],
  }));
  figure.append(dataTable("Time per decision", ["Reviewer", "Median", "90th percentile", "Timed decisions", "Breaks left out"],
    data.pace.reviewers.map((r) => [r.username, r.median_seconds != null ? seconds(r.median_seconds) : "–",
      r.p90_seconds != null ? seconds(r.p90_seconds) : "–", r.timed_decisions, r.breaks])));
}

interface RateRow {
  label: string;
  accepted: number;
  rejected: number;
  rate: number | null;
  color: string;
}

function renderRates(figure: HTMLElement, title: string, what: string, rows: RateRow[]): void {
  heading(figure, title,
    "Each detection counts once, by its latest decision in the selection: accepted / (accepted + rejected).");
  if (!rows.some((r) => r.rate != null)) return empty(figure, "No accepted or rejected detections in this selection.");
  const figureText = (r: RateRow) =>
    r.rate == null ? "no decisions" : `${percent(r.rate)} · ${r.accepted} of ${r.accepted + r.rejected}`;
  figure.append(horizontalBars({
    width: chartWidth(figure),
    label: `Accept rate per ${what}: ${rows.map((r) => `${r.label} ${figureText(r)}`).join("; ")}.`,
    rows: rows.map((r) => ({ label: r.label, value: r.rate, color: r.color, text: figureText(r) })),
    max: 1, xTitle: "Accept rate", ticks: () => ["0%", "50%", "100%"],
  }));
  figure.append(dataTable(title, [what[0].toUpperCase() + what.slice(1), "Accepted", "Rejected", "Accept rate"],
    rows.map((r) => [r.label, r.accepted, r.rejected, r.rate == null ? "–" : percent(r.rate)])));
}

function cellLink(href: string, text: string): HTMLTableCellElement {
  const td = el("td");
  const a = el("a", "", text);
  a.href = href;
  td.append(a);
  return td;
}

function renderDisagreements(data: Analytics): void {
  const section = byId("disagreements") as HTMLElement;
  const d = data.disagreements;
  const title = el("h2", "", "Disagreements");
  title.id = "disagreements-title";
  section.replaceChildren(title, el("p", "muted",
    "A decision that changed a status another reviewer had set (for example, one accepted and another rejected). " +
    "Undone decisions are left out."));
  if (!d.total) return void section.append(el("p", "muted empty", "No disagreements in this selection."));
  const pairs = el("table", "pairs");
  pairs.append(el("caption", "", `${d.total} disagreement${d.total === 1 ? "" : "s"} per pair of reviewers`));
  const head = el("tr");
  ["First decided", "Reversed by", "Times"].forEach((h) => head.append(Object.assign(el("th", "", h), { scope: "col" })));
  pairs.append(el("thead"), el("tbody"));
  pairs.tHead!.append(head);
  for (const p of d.pairs) {
    const tr = el("tr");
    tr.append(el("td", "", p.first_name), el("td", "", p.second_name), el("td", "num", String(p.count)));
    pairs.tBodies[0].append(tr);
  }
  const latest = el("table", "latest");
  latest.append(el("caption", "", `Latest ${d.latest.length}`));
  const head2 = el("tr");
  ["When (UTC)", "Scene", "Detection", "Before", "Then"].forEach((h) =>
    head2.append(Object.assign(el("th", "", h), { scope: "col" })));
  latest.append(el("thead"), el("tbody"));
  latest.tHead!.append(head2);
  for (const r of d.latest) {
    const tr = el("tr");
    tr.dataset.event = String(r.event);
    tr.append(
      el("td", "", r.at.replace("T", " ").slice(0, 19)),
      cellLink(`/scenes/${r.scene}/`, r.scene_name || `Scene ${r.scene}`),
      cellLink(r.url, `#${r.detection}`),
      el("td", "", `${r.previous_reviewer_name} ${VERB_TEXT[r.previous_verb] ?? r.previous_verb}`),
      el("td", "", `${r.reviewer_name} ${VERB_TEXT[r.verb] ?? r.verb} (${r.status_before || "none"} → ${r.status_after || "deleted"})`),
    );
    latest.tBodies[0].append(tr);
  }
  section.append(pairs, latest);
}

function render(data: Analytics): void {
  const t = data.totals;
  totalsEl.textContent =
    `${t.decisions} decision${t.decisions === 1 ? "" : "s"} by ${t.reviewers} reviewer${t.reviewers === 1 ? "" : "s"}` +
    ` · ${t.undos} undo${t.undos === 1 ? "" : "s"} (${t.undone_decisions} decision${t.undone_decisions === 1 ? "" : "s"} undone, not counted)`;
  renderActivity(data);
  renderPace(data);
  renderRates(byId("chart-class-rate") as HTMLElement, "Accept rate per class", "class",
    data.accept_rate.by_class.map((c) => ({ ...c, label: c.name, color: c.color })));
  renderRates(byId("chart-source-rate") as HTMLElement, "Accept rate per source", "source",
    data.accept_rate.by_source.map((s) => ({ ...s, color: "#2458d6" })));
  renderDisagreements(data);
}

let loading = 0;
let shown: Analytics | null = null;

async function load(): Promise<void> {
  const query = apiQuery();
  const suffix = query.toString() ? `?${query}` : "";
  const page = pageQuery().toString();
  history.replaceState(null, "", page ? `?${page}` : location.pathname);
  if (csvLink) csvLink.href = `/api/projects/${projectId}/events.csv${suffix}`;
  const mine = ++loading;
  root.dataset.ready = "0";
  errorEl.hidden = true;
  try {
    const data = await getJson<Analytics>(`/api/projects/${projectId}/analytics/${suffix}`);
    if (mine !== loading) return; // a newer filter's answer is on its way
    shown = data;
    render(data);
  } catch (e) {
    if (mine !== loading) return;
    errorEl.textContent = `Could not load the analytics: ${errorText(e)}`;
    errorEl.hidden = false;
    totalsEl.textContent = "";
  }
  root.dataset.ready = "1";
  root.dataset.query = query.toString();
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  void load();
});
sceneInput.addEventListener("change", () => void load());
byId("filter-clear")?.addEventListener("click", () => {
  form.reset();
  void load();
});

// Charts are drawn at their on-screen width: draw them again when the cards change size.
let resizeTimer = 0;
let drawnWidth = window.innerWidth;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = window.setTimeout(() => {
    if (!shown || window.innerWidth === drawnWidth) return;
    drawnWidth = window.innerWidth;
    render(shown);
  }, 150);
});

restoreForm();
void load();
