// Side-by-side comparison of model versions: one column each, rows for the training parameters, the validation
// metrics (the best of a row in bold) and, per class, the version's figures in the project's accuracy areas.
import { errorText, getJson } from "../api";
import type { components } from "../api-schema";
import { el } from "../dom";
import { epochsText, facts, figure, METRICS, ModelVersion, when } from "./detector-facts";

type Report = components["schemas"]["AccuracyReport"];
type ClassFigures = components["schemas"]["ClassAccuracy"];

interface Measured {
  version: ModelVersion;
  report: Report | null;
  error: string;
}

function row(table: HTMLTableSectionElement, title: string, cells: (string | HTMLElement)[], key = ""): HTMLElement {
  const tr = el("tr");
  if (key) tr.dataset.row = key;
  const th = el("th", "", title);
  th.scope = "row";
  tr.append(th);
  for (const c of cells) {
    const td = el("td");
    td.append(c);
    tr.append(td);
  }
  table.append(tr);
  return tr;
}

function section(table: HTMLTableSectionElement, title: string, columns: number): void {
  const tr = el("tr", "compare-section");
  const th = el("th", "", title);
  th.colSpan = columns + 1;
  th.scope = "colgroup";
  tr.append(th);
  table.append(tr);
}

/** Bold the highest figure of a metrics row (ties all bold, a row of equals none); a missing figure never is. */
function markBest(tr: HTMLElement, values: (number | null)[]): void {
  const present = values.filter((v): v is number => v !== null);
  if (present.length < 2) return;
  const best = Math.max(...present);
  if (present.every((v) => v === best) && present.length === values.length) return;
  values.forEach((v, i) => {
    if (v === best) tr.children[i + 1].classList.add("compare-best");
  });
}

function classCell(c: ClassFigures | undefined): string {
  if (!c) return "–";
  return `AP50 ${figure(c.ap50, 2)} · P ${figure(c.precision, 2)} · R ${figure(c.recall, 2)} (${c.true_positives}/` +
    `${c.truths})`;
}

/** The comparison of `versions` (oldest first), reading each one's accuracy in the areas. */
export async function comparison(projectId: number, versions: ModelVersion[]): Promise<HTMLElement> {
  const measured: Measured[] = await Promise.all(versions.map(async (version) => {
    try {
      const report = await getJson<Report>(
        `/api/projects/${projectId}/accuracy/?proposer=yolo&model_version=${version.id}`);
      return { version, report, error: "" };
    } catch (e) {
      return { version, report: null, error: errorText(e) };
    }
  }));
  const table = el("table", "data-table compare-table");
  table.id = "detector-comparison-table";
  table.tabIndex = -1; // the focus lands on the answer to "Compare"
  const caption = el("caption", "", `${versions.map((v) => `v${v.number}`).join(", ")} side by side`);
  const head = el("tr");
  head.append(el("th", "", ""));
  for (const v of versions) {
    const th = el("th", "", v.label + (v.is_current ? " (current)" : ""));
    th.scope = "col";
    th.dataset.versionId = String(v.id);
    head.append(th);
  }
  const thead = el("thead");
  thead.append(head);
  const body = el("tbody");
  table.append(caption, thead, body);
  const all = versions.map(facts);
  const n = versions.length;
  section(body, "Training", n);
  row(body, "Created", versions.map((v) => `${v.created_by ?? "–"}, ${when(v.created_at)}`));
  row(body, "Dataset", all.map((f) => `${f.datasetName} · ${f.objects ?? "?"} objects`), "dataset");
  row(body, "Base model", all.map((f) => f.params.base_model ?? "–"), "base_model");
  row(body, "Epochs run", versions.map(epochsText), "epochs");
  row(body, "Image size", versions.map((v) => `${v.imgsz} px`), "imgsz");
  row(body, "Batch", all.map((f) => String(f.params.batch ?? "–")), "batch");
  row(body, "Patience", all.map((f) => String(f.params.patience ?? "–")), "patience");
  row(body, "Ground resolution", versions.map((v) => `${v.gsd_m.toFixed(2)} m/px`), "gsd");
  section(body, "Validation (best weights)", n);
  for (const [key, title] of METRICS) {
    const values = all.map((f) => (typeof f.metrics[key] === "number" ? (f.metrics[key] as number) : null));
    markBest(row(body, title, values.map((v) => figure(v)), key), values);
  }
  const areas = Math.max(0, ...measured.map((m) => m.report?.areas ?? 0));
  section(body, areas ? `In the accuracy areas (${areas})` : "In the accuracy areas", n);
  const failed = measured.filter((m) => m.error);
  if (failed.length) row(body, "Error", measured.map((m) => m.error || "–"), "accuracy-error");
  if (!areas) {
    row(body, "Per class", measured.map(() => "No accuracy area yet (a manager marks them under Proposer accuracy)"),
        "no-areas");
  } else {
    const names = new Map<number, string>();
    for (const m of measured) for (const c of m.report?.classes ?? []) names.set(c.class_id, c.class_name);
    if (!names.size) row(body, "Per class", measured.map(() => "Nothing proposed or reviewed there"), "no-classes");
    for (const [id, name] of [...names].sort((a, b) => a[1].localeCompare(b[1]))) {
      const figures = measured.map((m) => m.report?.classes.find((c) => c.class_id === id));
      const tr = row(body, name, figures.map(classCell), `class-${id}`);
      tr.dataset.className = name;
      markBest(tr, figures.map((c) => (typeof c?.ap50 === "number" ? c.ap50 : null)));
    }
  }
  const box = el("div", "compare-box");
  box.append(table, el("p", "muted small", "Per class: AP50, precision and recall of each version's proposals " +
    "(matched / reviewed objects) where reviewers labelled everything; a version that never proposed on those " +
    "scenes has nothing to match. The best figure of a row is bold."));
  return box;
}

/** Show a renamed version's new label at the head of its column, if the comparison has one. */
export function relabelColumn(box: HTMLElement, v: ModelVersion): void {
  const th = box.querySelector<HTMLElement>(`thead th[data-version-id="${v.id}"]`);
  if (th) th.textContent = v.label + (v.is_current ? " (current)" : "");
}
