// "Proposer accuracy": accuracy areas per scene (managers mark done work cells as exhaustively labelled) and, for a
// chosen proposer (prototype search, the probe, a YOLO version, or a stored source), a per-class table of precision,
// recall, F1 and AP with a precision-recall curve per class.
import { PALETTE, prCurve } from "../analytics-charts";
import { errorText, getJson, Page, postJson, Scene } from "../api";
import type { components } from "../api-schema";
import { el } from "../dom";

type Schemas = components["schemas"];
type Report = Schemas["AccuracyReport"];
type Area = Schemas["AccuracyArea"];

type ModelVersion = Schemas["ModelVersion"];

// Stored sources, measured as before (a refined proposal's source is `refine`, whichever proposer found it).
const SOURCES: Schemas["SourcesEnum"][] = ["search", "refine", "yolo", "probe", "manual", "import"];
// Proposers: what found a detection, kept when refinement reshapes it (the query string each option sends).
const PROPOSERS: [string, string][] = [["proposer=search", "Prototype search"], ["proposer=probe", "Probe"]];

interface CellCollection {
  features: { id: number; properties: { status: string; label: string } }[];
}

function figure(value: number | null | undefined, digits = 2): string {
  return value === null || value === undefined ? "–" : value.toFixed(digits);
}

export class AccuracyPanel {
  private readonly areas = el("ul", "manage-list");
  private readonly table = el("div", "accuracy-table");
  private readonly curves = el("div", "accuracy-curves");
  private readonly error = el("p", "error");
  private readonly source = el("select");

  constructor(private readonly projectId: number, section: HTMLElement, private readonly manager: boolean) {
    this.error.setAttribute("role", "alert");
    this.error.hidden = true;
    this.error.id = "accuracy-error";
    this.areas.id = "accuracy-areas";
    this.source.id = "accuracy-source";
    this.setVersions([]);
    const measure = el("button", "btn", "Measure");
    measure.type = "button";
    measure.id = "accuracy-measure";
    measure.addEventListener("click", () => void this.measure());
    const label = el("label", "", "Proposer ");
    label.append(this.source);
    const title = el("h2", "", "Proposer accuracy");
    title.id = "accuracy-title";
    section.append(
      title,
      el("p", "muted small", "Measured in accuracy areas: reviewed ground where every object of the area's classes " +
        "was accepted or drawn. A proposal no reviewed object matches (IoU ≥ 0.5) is a false positive; a reviewed " +
        "object no proposal matches is a miss."),
      el("h3", "", "Accuracy areas"), this.areas,
    );
    const controls = el("div", "inline-form");
    controls.append(label, measure);
    section.append(controls, this.error, this.table, this.curves);
  }

  /** The proposer choices: prototype search, the probe, each YOLO version, and the stored sources; the choice is
   * kept when the versions change. */
  setVersions(versions: ModelVersion[]): void {
    const keep = this.source.value;
    const proposers = el("optgroup");
    proposers.label = "Proposer";
    proposers.append(...PROPOSERS.map(([value, text]) => new Option(text, value)));
    for (const v of versions) {
      proposers.append(new Option(`YOLO ${v.label}${v.is_current ? " (current)" : ""}`,
                                  `proposer=yolo&model_version=${v.id}`));
    }
    const sources = el("optgroup");
    sources.label = "Detection source (as stored)";
    sources.append(...SOURCES.map((s) => new Option(s, `source=${s}`)));
    this.source.replaceChildren(proposers, sources);
    if ([...this.source.options].some((o) => o.value === keep)) this.source.value = keep;
  }

  private chosenLabel(): string {
    const option = this.source.selectedOptions[0];
    if (!option) return "";
    return option.value.startsWith("source=") ? `source ${option.text}` : option.text;
  }

  private say(text: string): void {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  /** Each ready scene with its number of areas; managers get "Mark done cells". */
  async load(): Promise<void> {
    try {
      const scenes = (await getJson<Page<Scene>>(`/api/projects/${this.projectId}/scenes/?page_size=200`)).results
        .filter((s) => s.status === "ready");
      const rows = await Promise.all(scenes.map(async (scene) => {
        const areas = await getJson<Area[]>(`/api/scenes/${scene.id}/accuracy-areas/`);
        const li = el("li");
        li.dataset.accuracyScene = String(scene.id);
        li.dataset.areas = String(areas.length);
        li.append(el("span", "", `${scene.name}: ${areas.length} area${areas.length === 1 ? "" : "s"}`));
        if (this.manager) {
          const mark = el("button", "btn", "Mark done cells");
          mark.type = "button";
          mark.title = "Mark this scene's done work cells as exhaustively labelled (every class)";
          mark.setAttribute("aria-label", `Mark the done work cells of ${scene.name} as accuracy areas`);
          mark.addEventListener("click", () => void this.markDone(scene, areas));
          li.append(mark);
        }
        return li;
      }));
      this.areas.replaceChildren(...(rows.length ? rows : [el("li", "muted", "No ready scene yet.")]));
    } catch (e) {
      this.say(`Could not read the accuracy areas: ${errorText(e)}`);
    }
  }

  private async markDone(scene: Scene, existing: Area[]): Promise<void> {
    this.say("");
    try {
      const cells = await getJson<CellCollection>(`/api/scenes/${scene.id}/cells/`);
      const marked = new Set(existing.map((a) => a.cell));
      const done = cells.features.filter((f) => f.properties.status === "done" && !marked.has(f.id)).map((f) => f.id);
      if (!done.length) {
        this.say(`${scene.name} has no done work cell that is not an accuracy area yet; reviewers mark their cells ` +
          "done on the scene page.");
        return;
      }
      await postJson(`/api/scenes/${scene.id}/accuracy-areas/`, { cell_ids: done });
      await this.load();
    } catch (e) {
      this.say(errorText(e));
    }
  }

  private async measure(): Promise<void> {
    this.say("");
    try {
      const report = await getJson<Report>(`/api/projects/${this.projectId}/accuracy/?${this.source.value}`);
      this.render(report, this.chosenLabel());
    } catch (e) {
      this.say(errorText(e));
    }
  }

  private render(report: Report, proposer: string): void {
    this.table.dataset.proposer = proposer;
    if (!report.areas) {
      this.table.replaceChildren(el("p", "muted", "No accuracy area yet: mark reviewed ground first."));
      this.curves.replaceChildren();
      return;
    }
    if (!report.classes.length) {
      this.table.replaceChildren(el("p", "muted", `Nothing of ${proposer} or reviewed in the ${report.areas} ` +
        `area${report.areas === 1 ? "" : "s"}.`));
      this.curves.replaceChildren();
      return;
    }
    const table = el("table", "data-table");
    table.id = "accuracy-results";
    const head = el("tr");
    for (const h of ["Class", "Reviewed", "Proposals", "Matched", "Precision", "Recall", "F1", "AP50", "AP50:95",
                     "Best F1 (score ≥)"]) head.append(el("th", "", h));
    table.append(el("thead"), el("tbody"));
    table.tHead!.append(head);
    for (const c of report.classes) {
      const tr = el("tr");
      tr.dataset.className = c.class_name;
      const best = c.best_f1 === null || c.best_f1 === undefined ? "–" : `${figure(c.best_f1)} (${figure(c.best_f1_score)})`;
      for (const v of [c.class_name, String(c.truths), String(c.proposals), String(c.true_positives), figure(c.precision),
                       figure(c.recall), figure(c.f1), figure(c.ap50), figure(c.ap50_95), best]) tr.append(el("td", "", v));
      table.tBodies[0].append(tr);
    }
    this.table.replaceChildren(el("p", "muted small",
      `${report.areas} accuracy area${report.areas === 1 ? "" : "s"}; proposer: ${proposer}.`),
                               table);
    this.curves.replaceChildren(...report.classes.filter((c) => c.curve?.recall?.length).map((c, i) => {
      const box = el("figure", "accuracy-curve");
      box.append(prCurve({
        label: `Precision-recall curve of ${c.class_name}: AP50 ${figure(c.ap50)}`,
        recall: c.curve.recall, precision: c.curve.precision, color: PALETTE[i % PALETTE.length], width: 240,
      }), el("figcaption", "small", `${c.class_name} · AP50 ${figure(c.ap50)}`));
      return box;
    }));
  }
}
