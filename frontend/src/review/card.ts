// The side panel of the selected detection: its facts, the review buttons (one per key), and its history.
import type { ObjectClass } from "../api";
import { errorText } from "../api";
import { el } from "../dom";
import { detectionEvents, ReviewEventOut } from "./api";
import { KEYMAP, keyLabel, ReviewCommand } from "./keymap";
import type { ReviewState } from "./store";

export interface CardHost {
  classes(): ObjectClass[];
  run(command: ReviewCommand): void;
  close(): void;
  colourOf(classId: number): string;
  canRefine: boolean;
  canReview: boolean;
  /** Text about a refinement of this detection running or done, if any. */
  refineText(id: number): { text: string; failed: boolean } | undefined;
  editing(): boolean;
  /** "v2 name" for a YOLO model version id, when known. */
  modelLabel?(id: number): string | undefined;
}

function score(value: unknown): string | null {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(2) : null;
}

/** What proposed a detection and what each stage scored: "YOLO v2 0.83 · verified 0.71", "Probe (kNN) 0.91". */
export function proposerText(state: ReviewState, modelLabel: (id: number) => string | undefined,
                             className: (id: number) => string): string {
  const s = state.proposer_scores ?? {};
  if (state.proposer === "search") return "Prototype search";
  if (state.proposer === "probe") {
    const kind = s.probe === "knn" ? "kNN" : "logistic";
    return `Probe (${kind})${score(s.probe_score) ? ` ${score(s.probe_score)}` : ""}`;
  }
  if (state.proposer !== "yolo") return "";
  const id = state.model_version;
  const model = id ? modelLabel(id) ?? `model ${id}` : "model (deleted)";
  let text = `YOLO ${model}${score(s.yolo_score) ? ` ${score(s.yolo_score)}` : ""}`;
  if (!("relabelled" in s)) return `${text} · not verified`;
  if (s.relabelled === true) {
    const from = typeof s.yolo_class_id === "number" ? className(s.yolo_class_id) : "another class";
    text += ` · verified ${score(s.verify_score) ?? "–"}, relabelled from ${from}`;
    if (score(s.verify_score_yolo_class)) text += ` (${score(s.verify_score_yolo_class)})`;
    return text;
  }
  const own = score(s.verify_score_yolo_class);
  return own ? `${text} · verified ${own}` : `${text} · not verified (no examples of its class)`;
}

const VERB_TEXT: Record<string, string> = {
  accept: "accepted",
  reject: "rejected",
  relabel: "changed the class",
  reshape: "changed the shape",
  create_manual: "drew it",
  delete_manual: "deleted it",
  undo: "undid a decision",
};

export class DetectionCard {
  private history: ReviewEventOut[] | null = null;
  private historyFor: number | null = null;
  private historyError = "";
  /** Someone else changed the shown detection (live updates): who, shown until another detection is. */
  private liveNote: { id: number; text: string } | null = null;

  constructor(private readonly box: HTMLElement, private readonly host: CardHost) {}

  /** Show one detection (null hides the card). */
  render(state: ReviewState | null): void {
    this.box.hidden = !state;
    delete this.box.dataset.exampleId; // an example's card sets it again after this
    if (!state) {
      this.box.replaceChildren();
      delete this.box.dataset.detectionId;
      return;
    }
    this.box.dataset.detectionId = String(state.id);
    this.box.dataset.status = state.status;
    this.box.dataset.version = String(state.version);
    const cls = this.host.classes().find((c) => c.id === state.object_class);
    const head = el("div", "card-head");
    const swatch = el("span", "swatch");
    swatch.style.background = this.host.colourOf(state.object_class);
    const close = el("button", "card-close", "×");
    close.type = "button";
    close.title = "Close (Esc)";
    close.setAttribute("aria-label", "Close");
    close.addEventListener("click", () => this.host.close());
    head.append(swatch, el("span", "card-class", cls?.name ?? `class ${state.object_class}`), el("span", `status-chip status-${state.status}`, state.status), close);
    const last = this.history?.length ? this.history[this.history.length - 1] : null;
    const facts = el("dl", "card-facts");
    const fact = (k: string, v: string) => facts.append(el("dt", "", k), el("dd", "", v));
    fact("Score", state.score === null ? "none" : state.score.toFixed(2));
    fact("Source", state.source);
    const proposed = proposerText(state, (id) => this.host.modelLabel?.(id),
                                  (id) => this.host.classes().find((c) => c.id === id)?.name ?? `class ${id}`);
    if (proposed) {
      fact("Proposed by", proposed);
      (facts.lastElementChild as HTMLElement).classList.add("card-proposer");
    }
    fact("Version", String(state.version));
    fact("Last change", last ? `${last.actor_name ?? "someone"}, ${when(last.created_at)}` : this.historyFor === state.id ? "none (as proposed)" : "…");
    this.box.replaceChildren(head, facts);
    if (this.liveNote?.id === state.id) this.box.append(el("p", "card-live-note small", this.liveNote.text));
    if (this.host.editing()) {
      this.box.append(el("p", "hint edit-hint", "Editing: drag corners, drag an edge to add one, Alt+click removes one. 1-9 change the class. Enter saves (a proposal is accepted with the fix), Esc cancels."));
    }
    if (this.host.canReview || this.host.canRefine) this.box.append(this.buttons(state));
    const refine = this.host.refineText(state.id);
    if (refine) this.box.append(el("p", refine.failed ? "card-status error small" : "card-status small", refine.text));
    this.box.append(this.historyBlock(state.id));
  }

  /** Load (again) the history of a detection; the card re-renders through `rerender`. */
  async loadHistory(id: number, rerender: () => void): Promise<void> {
    try {
      const out = await detectionEvents(id);
      this.history = out.events;
      this.historyFor = id;
      this.historyError = "";
    } catch (e) {
      this.historyError = `History could not be loaded: ${errorText(e)}`;
    }
    rerender();
  }

  /** A change just recorded for the shown detection: add it without asking the server again. */
  recorded(events: ReviewEventOut[]): void {
    if (this.historyFor === null || !this.history) return;
    const known = new Set(this.history.map((e) => e.id));
    this.history.push(...events.filter((e) => e.detection === this.historyFor && !known.has(e.id)));
  }

  forget(): void {
    this.history = null;
    this.historyFor = null;
    this.liveNote = null;
  }

  /** Say on the card that `who` just changed detection `id` (the history is read again by the caller). */
  changedBy(id: number, who: string): void {
    this.liveNote = { id, text: `Changed by ${who} just now (${new Date().toLocaleTimeString()}).` };
  }

  private buttons(state: ReviewState): HTMLElement {
    const row = el("div", "review-actions");
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", "Review");
    const classes = this.host.classes();
    for (const binding of KEYMAP) {
      const { command } = binding;
      if (!binding.onSelected) continue;
      if (!this.host.canReview && command.kind !== "refine") continue;
      if (command.kind === "refine" && !this.host.canRefine) continue;
      if (command.kind === "deleteManual" && state.source !== "manual") continue;
      let label = binding.label;
      if (command.kind === "relabel") {
        const cls = classes[command.classIndex];
        if (!cls) continue;
        label = cls.name;
      }
      if (command.kind === "edit") label = this.host.editing() ? "Save shape" : "Edit shape";
      const button = el("button", `btn btn-small review-cmd review-cmd-${command.kind}`);
      button.type = "button";
      button.dataset.command = command.kind === "relabel" ? `class-${command.classIndex + 1}` : command.kind;
      button.title = `${binding.label} (${binding.keys.map(keyLabel).join(" / ")})`;
      button.append(el("kbd", "", keyLabel(binding.keys[0])), document.createTextNode(label));
      if (command.kind === "relabel" && classes[command.classIndex]?.id === state.object_class) button.setAttribute("aria-pressed", "true");
      button.addEventListener("click", () => this.host.run(command));
      row.append(button);
    }
    return row;
  }

  private historyBlock(id: number): HTMLElement {
    const block = el("details", "card-history");
    block.open = true;
    const list = el("ol", "history");
    block.append(el("summary", "", "History"), list);
    if (this.historyError) {
      list.append(el("li", "error small", this.historyError));
    } else if (this.historyFor !== id || !this.history) {
      list.append(el("li", "muted small", "Loading…"));
    } else if (!this.history.length) {
      list.append(el("li", "muted small", "No decisions yet."));
    } else {
      const classes = this.host.classes();
      const name = (cid: number | null) => classes.find((c) => c.id === cid)?.name ?? String(cid);
      for (const e of [...this.history].reverse()) {
        let text = `${e.actor_name ?? "someone"} ${VERB_TEXT[e.verb] ?? e.verb}`;
        if (e.class_before !== e.class_after && e.class_after !== null && e.class_before !== null) text += ` (${name(e.class_before)} → ${name(e.class_after)})`;
        if (e.verb === "undo" && e.status_after) text += ` (now ${e.status_after})`;
        if (e.batch_id && e.verb !== "undo") text += " in a bulk action";
        const li = el("li", "", text);
        li.append(el("span", "muted small", ` · v${e.version_after} · ${when(e.created_at)}`));
        if (e.comment) li.append(el("q", "history-comment", e.comment));
        list.append(li);
      }
    }
    return block;
  }
}

/** A short local time ("14:03:21", or the date when not today). */
function when(iso: string): string {
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}
