// Per-class score sliders: proposals below a class's floor are hidden at once, with counts of what is shown and
// hidden; "accept all shown" and "reject all hidden" act on them in one bulk action after a confirmation stating
// the number (undoable as a group with U).
import { confirmInDialog } from "./confirm";
import { errorText, ObjectClass, postJson } from "../api";
import { el } from "../dom";
import { clientId, HistogramOut, scoreHistogram } from "./api";

export interface BulkHost {
  classes(): ObjectClass[];
  floorOf(classId: number): number;
  setFloor(classId: number, value: number): void;
  canReview: boolean;
  /** Whether the role may accept or reject in bulk (managers): others get the sliders without the bulk buttons. */
  canBulk: boolean;
  /** A bulk action finished (count done): tiles, counts and the queue change. */
  done(text: string): void;
  failed(text: string): void;
  /** Shown detections per class changed (the class rows show them). */
  countsChanged(shown: Map<number, number>): void;
}

type Histogram = HistogramOut["classes"][number];

export class ScoreFilters {
  private histogram = new Map<number, Histogram>();
  private bins = 20;

  constructor(
    private readonly sceneId: number,
    private readonly box: HTMLElement,
    private readonly dialog: HTMLDialogElement | null,
    private readonly host: BulkHost,
  ) {}

  async load(): Promise<void> {
    try {
      const out = await scoreHistogram(this.sceneId);
      this.bins = out.bins;
      this.histogram = new Map(out.classes.map((c) => [c.object_class, c]));
      this.render();
    } catch (e) {
      this.box.replaceChildren(el("p", "error small", `Score counts could not be loaded: ${errorText(e)}`));
    }
  }

  /** Proposals of a class at or above `floor` (the sliders move in whole bins, so the counts are exact). */
  private above(classId: number, floor: number): number {
    const h = this.histogram.get(classId);
    if (!h) return 0;
    const first = Math.round(floor * this.bins);
    return h.proposed.slice(first).reduce((a, b) => a + b, 0);
  }

  private proposed(classId: number): number {
    return (this.histogram.get(classId)?.proposed ?? []).reduce((a, b) => a + b, 0);
  }

  private render(): void {
    const rows = this.host.classes().map((c) => this.row(c)).filter((r): r is HTMLElement => r !== null);
    this.box.replaceChildren(...(rows.length ? rows : [el("p", "muted small", "No detections yet: run a search.")]));
    this.reportCounts();
  }

  private row(c: ObjectClass): HTMLElement | null {
    const h = this.histogram.get(c.id);
    if (!h || this.proposed(c.id) + h.accepted + h.rejected === 0) return null;
    const row = el("div", "score-row");
    row.dataset.classId = String(c.id);
    const swatch = el("span", "swatch");
    swatch.style.background = c.color ?? "";
    const name = el("span", "score-class");
    name.append(swatch, document.createTextNode(c.name));
    const slider = el("input");
    slider.type = "range";
    slider.min = "0";
    slider.max = "1";
    slider.step = String(1 / this.bins);
    slider.value = String(this.host.floorOf(c.id));
    slider.setAttribute("aria-label", `Minimum score for ${c.name}`);
    const value = el("output", "score-value");
    const counts = el("span", "score-counts small");
    const accept = el("button", "btn btn-small bulk-accept");
    accept.type = "button";
    const reject = el("button", "btn btn-small bulk-reject");
    reject.type = "button";
    const update = () => {
      const floor = Number(slider.value);
      const shown = this.above(c.id, floor);
      const hidden = this.proposed(c.id) - shown;
      value.value = floor.toFixed(2);
      counts.textContent = `${shown} shown · ${hidden} hidden · ${h.accepted} accepted · ${h.rejected} rejected`;
      counts.dataset.shown = String(shown);
      counts.dataset.hidden = String(hidden);
      accept.textContent = `Accept ${shown} shown`;
      accept.disabled = shown === 0;
      reject.textContent = `Reject ${hidden} below ${floor.toFixed(2)}`;
      reject.disabled = hidden === 0;
    };
    slider.addEventListener("input", () => {
      this.host.setFloor(c.id, Number(slider.value));
      update();
      this.reportCounts();
    });
    accept.addEventListener("click", () => void this.bulk(c, "accepted", Number(slider.value)));
    reject.addEventListener("click", () => void this.bulk(c, "rejected", Number(slider.value)));
    update();
    const head = el("div", "score-head");
    head.append(name, value);
    row.append(head, slider, counts);
    if (this.host.canBulk) {
      const actions = el("div", "btn-row");
      actions.append(accept, reject);
      row.append(actions);
    }
    return row;
  }

  private reportCounts(): void {
    const shown = new Map<number, number>();
    for (const [id, h] of this.histogram) shown.set(id, this.above(id, this.host.floorOf(id)) + h.accepted);
    this.host.countsChanged(shown);
  }

  /** Ask first, stating the number; then one bulk request (one event per detection, one batch). */
  private async bulk(c: ObjectClass, verdict: "accepted" | "rejected", floor: number): Promise<void> {
    const n = verdict === "accepted" ? this.above(c.id, floor) : this.proposed(c.id) - this.above(c.id, floor);
    const what =
      verdict === "accepted"
        ? `Accept ${n} proposed ${c.name} detection${n === 1 ? "" : "s"} with a score of ${floor.toFixed(2)} or more?`
        : `Reject ${n} proposed ${c.name} detection${n === 1 ? "" : "s"} with a score below ${floor.toFixed(2)}?`;
    if (!(await confirmInDialog(this.dialog, what))) return;
    const body: Record<string, unknown> = { verdict, object_class: c.id, client_id: clientId() };
    if (verdict === "accepted") body.score_min = floor;
    else body.score_max = floor;
    try {
      const out = await postJson<{ count: number }>(`/api/scenes/${this.sceneId}/detections/bulk-review/`, body);
      this.host.done(`${verdict === "accepted" ? "Accepted" : "Rejected"} ${out.count} ${c.name} detection${out.count === 1 ? "" : "s"}. U undoes it.`);
    } catch (e) {
      this.host.failed(`The bulk action was not done: ${errorText(e)}`);
    }
  }
}
