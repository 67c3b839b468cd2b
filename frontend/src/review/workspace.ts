// Keyboard-first review on the scene page: one selection (a detection or an example), the queue, and every
// command of the keymap, each run the same way from a key or a button.
import type Feature from "ol/Feature";
import type { FeatureLike } from "ol/Feature";
import type OlMap from "ol/Map";
import { getArea, getCenter, getHeight, getWidth } from "ol/extent";
import type { Extent } from "ol/extent";
import { errorText, FINISHED_JOB_STATUSES, getJson, Job, ObjectClass, postJson } from "../api";
import { el } from "../dom";
import type { DetectionTiles } from "../workspace/detection-tiles";
import type { Examples } from "../workspace/examples";
import type { Messages } from "../workspace/messages";
import { Sketch } from "../workspace/sketch";
import { geometryToLonLat } from "../scene-layers";
import { DetectionFeature, getDetection, QueueOrder } from "./api";
import { DetectionCard } from "./card";
import { ReviewCommands, ReviewFix } from "./commands";
import { bindingFor, KEYMAP, keyLabel, ReviewCommand } from "./keymap";
import type { LiveEvent } from "./live";
import { ReviewQueue } from "./queue";
import { SelectionLayer } from "./selection";
import { DetectionStore, stateOf } from "./store";
import "./review.css";

export interface WorkspaceHost {
  classes(): ObjectClass[];
  activeClass(): ObjectClass | undefined;
  colourOf(classId: number): string;
  canReview: boolean;
  /** May draw and edit examples. */
  canAnnotate: boolean;
  canRefine: boolean;
  /** "v2 name" for a YOLO model version id, when the page knows it (the card says which model proposed). */
  modelLabel?(id: number): string | undefined;
  zoomScene(): void;
  updateProposals(): void;
  /** Decisions changed the counts (progress, sliders). */
  countsStale(): void;
  /** The selection changed (tests and the page's data attributes follow it). */
  selectionChanged(id: number | null): void;
}

const NO_MORE = "No more proposals in this order: all reviewed (or hidden by the sliders).";

/** How many screen pixels a click may move and still cycle through the objects under the first one. */
const SAME_CLICK_PX = 4;

export class ReviewWorkspace {
  readonly queue: ReviewQueue;
  private readonly commands: ReviewCommands;
  private readonly selection: SelectionLayer;
  private readonly card: DetectionCard;
  private readonly sketch: Sketch;
  private sketchMode: "example" | "missed" | null = null;
  private selectedId: number | null = null;
  /** The class a detection being edited will get when saved (1-9 while editing). */
  private pendingClass: number | null = null;
  private lastClick: { pixel: number[]; hits: FeatureLike[]; index: number } | null = null;
  private readonly refineStatus = new Map<number, { running: boolean; text: string; failed: boolean }>();
  private selectSeq = 0;

  constructor(
    private readonly map: OlMap,
    sceneId: number,
    readonly store: DetectionStore,
    private readonly tiles: DetectionTiles,
    private readonly examples: Examples,
    private readonly say: Messages,
    private readonly host: WorkspaceHost,
    private readonly cardBox: HTMLElement,
    private readonly help: HTMLElement | null,
  ) {
    this.queue = new ReviewQueue(sceneId, (f) => this.queueable(f));
    this.commands = new ReviewCommands(sceneId, this.store, {
      saved: (t) => this.say.notice(t),
      failed: (t) => {
        this.say.error(t);
        // A refused change (409) may mean someone else decided: the card's history must show who.
        const id = this.selectedId;
        if (id !== null) void this.card.loadHistory(id, () => this.renderCard());
      },
      recorded: (events) => {
        this.card.recorded(events);
        const id = this.selectedId;
        // The history may have been read before this change landed: read it again.
        if (id !== null && events.some((e) => e.detection === id)) void this.card.loadHistory(id, () => this.renderCard());
        this.host.countsStale();
      },
      shapesChanged: () => this.tiles.reload(),
      recovered: () => this.say.clearError(),
    });
    this.selection = new SelectionLayer(map, (c) => host.colourOf(c), (id) => this.store.get(id)?.status);
    this.card = new DetectionCard(cardBox, {
      classes: () => host.classes(),
      run: (c) => this.run(c),
      close: () => this.select(null),
      colourOf: (c) => host.colourOf(c),
      canRefine: host.canRefine,
      canReview: host.canReview,
      refineText: (id) => this.refineStatus.get(id),
      editing: () => this.selection.editing,
      modelLabel: (id) => host.modelLabel?.(id),
    });
    this.store.onChange((s) => {
      if (s.id === this.selectedId) {
        this.selection.refresh(s.object_class);
        this.renderCard();
      }
    });
    this.sketch = new Sketch(map, {
      finished: (f) => this.sketchFinished(f),
      problem: (t) => this.say.error(t),
    });
    this.fillHelp();
  }

  // ------------------------------------------------------------------ selection
  /** Select a detection by id or feature (null: none); `fly` brings it into view with its neighbours. */
  async select(target: number | DetectionFeature | null, fly = false): Promise<void> {
    const seq = ++this.selectSeq;
    this.examples.select(null);
    this.selection.cancelEdit();
    this.pendingClass = null;
    if (target === null) {
      this.selectedId = null;
      this.selection.show(null);
      this.card.forget();
      this.renderCard();
      this.host.selectionChanged(null);
      return;
    }
    let feature: DetectionFeature;
    try {
      feature = typeof target === "number" ? await getDetection(target) : target;
    } catch (e) {
      this.say.error(`That detection could not be loaded: ${errorText(e)}`);
      return;
    }
    if (seq !== this.selectSeq) return; // a later selection won
    const id = Number(feature.id);
    this.store.put(stateOf(feature));
    this.selectedId = id;
    const f = this.selection.show(feature);
    this.card.forget();
    this.renderCard();
    this.host.selectionChanged(id);
    if (fly && f) this.flyTo(f.getGeometry()!.getExtent());
    void this.card.loadHistory(id, () => seq === this.selectSeq && this.renderCard());
  }

  /** Centre the object at a zoom where it fills about a quarter of the view's width, neighbours around it. */
  private flyTo(extent: Extent): void {
    const view = this.map.getView();
    const size = this.map.getSize() ?? [800, 600];
    const span = Math.max(getWidth(extent), getHeight(extent), 1e-6);
    const target = Math.max(span * 4, 1);
    const resolution = Math.max(target / Math.min(size[0], size[1]), view.getMinResolution());
    const current = view.getResolution() ?? resolution;
    view.cancelAnimations();
    // Small moves keep the zoom the reviewer chose when the object already fits well.
    const keepZoom = current <= resolution * 1.6 && current >= resolution / 2.5;
    view.animate({ center: getCenter(extent), resolution: keepZoom ? current : resolution, duration: 180 });
  }

  private renderCard(): void {
    const ex = this.examples.current();
    if (ex) return this.renderExampleCard(ex);
    const state = this.selectedId === null ? null : this.store.get(this.selectedId) ?? null;
    this.card.render(state && this.pendingClass ? { ...state, object_class: this.pendingClass } : state);
  }

  /** Map click: the smallest object under the cursor; clicking again at the same place cycles through them. */
  pick(pixel: number[]): void {
    const hits: FeatureLike[] = [];
    this.map.forEachFeatureAtPixel(
      pixel,
      (f) => {
        hits.push(f);
      },
      {
        layerFilter: (l) => l === this.tiles.layer || l === this.examples.layer || l === this.selection.layer,
        hitTolerance: 3,
      },
    );
    const area = (f: FeatureLike) => {
      const ext = f.getGeometry()?.getExtent();
      return ext ? getArea(ext) : Infinity;
    };
    const key = (f: FeatureLike) => (this.examples.isExample(f) ? `ex${f.getId()}` : `det${f.getId() ?? f.get("id")}`);
    const unique = [...new Map(hits.map((f) => [key(f), f])).values()].sort((a, b) => area(a) - area(b));
    let index = 0;
    const last = this.lastClick;
    if (last && Math.hypot(pixel[0] - last.pixel[0], pixel[1] - last.pixel[1]) <= SAME_CLICK_PX && unique.length > 1) {
      const before = last.hits[last.index];
      const at = unique.findIndex((f) => key(f) === (before ? key(before) : ""));
      index = at >= 0 ? (at + 1) % unique.length : 0;
    }
    this.lastClick = { pixel, hits: unique, index };
    const hit = unique[index];
    if (!hit) return void this.select(null);
    if (this.examples.isExample(hit)) return this.selectExample(hit as Feature);
    const id = Number(hit.getId() ?? hit.get("id"));
    if (unique.length > 1) this.say.notice(`${unique.length} objects here: click again to select the next larger one.`);
    if (id !== this.selectedId) void this.select(id);
  }

  private selectExample(f: Feature): void {
    void this.select(null);
    this.examples.select(f);
    this.renderCard();
    this.host.selectionChanged(null);
    this.cardBox.dataset.exampleId = String(f.getId());
  }

  // ------------------------------------------------------------------ keys
  /** A key press on the page; true when it was ours. */
  handle(e: KeyboardEvent): boolean {
    if (this.sketch.handleKey(e)) return true;
    if (e.key === "Escape") return this.escape(e);
    if (e.key === "Enter" && (this.selection.editing || this.examples.editing)) {
      if ((e.target as HTMLElement | null)?.tagName === "BUTTON") return false;
      e.preventDefault();
      void this.saveEdit();
      return true;
    }
    const binding = bindingFor(e);
    if (!binding) return false;
    if (this.sketch.active && binding.command.kind !== "help") return false;
    const onExample = this.examples.current() !== null;
    if (binding.onSelected && this.selectedId === null && !onExample) return false;
    e.preventDefault();
    this.run(binding.command);
    return true;
  }

  private escape(e: KeyboardEvent): boolean {
    if (this.help && !this.help.hidden) this.help.hidden = true;
    else if (this.sketch.active) this.stopSketch();
    else if (this.selection.editing) {
      this.selection.cancelEdit();
      this.pendingClass = null;
      this.say.notice("Edit cancelled.");
      this.renderCard();
    } else if (this.examples.editing) {
      this.examples.cancelEdit();
      this.renderCard();
    } else if (this.examples.current()) {
      this.examples.select(null);
      this.renderCard();
    } else if (this.selectedId !== null) void this.select(null);
    else return false;
    e.preventDefault();
    return true;
  }

  run(command: ReviewCommand): void {
    if (this.examples.current()) return this.runOnExample(command);
    const id = this.selectedId;
    switch (command.kind) {
      case "help":
        if (this.help) this.help.hidden = !this.help.hidden;
        return;
      case "next":
      case "previous":
        void this.step(command.kind === "next" ? 1 : -1);
        return;
      case "undo":
        if (this.host.canReview) void this.commands.undo(); // only reviewers have decisions to undo
        return;
      case "zoomScene":
        this.host.zoomScene();
        return;
      case "updateProposals":
        if (this.host.canReview) this.host.updateProposals(); // as its button, only for reviewers
        return;
      case "drawMissed":
        this.startSketch("missed");
        return;
    }
    if (id !== null && command.kind === "refine") return void this.refine(id);
    if (id === null || !this.host.canReview) return;
    const state = this.store.get(id);
    if (!state) return;
    switch (command.kind) {
      case "accept":
        if (this.selection.editing || this.pendingClass) return void this.saveEdit(true);
        return void this.decideAndMove(id, "accept");
      case "reject":
        return void this.decideAndMove(id, "reject");
      case "rejectWithComment": {
        const comment = window.prompt("Why is this not an object? (saved with the rejection)", "");
        if (comment === null) return;
        return void this.decideAndMove(id, "reject", comment);
      }
      case "relabel": {
        const cls = this.host.classes()[command.classIndex];
        if (!cls) return this.say.error(`There is no class ${command.classIndex + 1} in this project.`);
        if (this.selection.editing) {
          this.pendingClass = cls.id; // part of the fix, saved with the shape
          this.selection.refresh(cls.id);
          this.renderCard();
          return;
        }
        if (cls.id !== state.object_class) void this.commands.relabel(id, cls.id, cls.name);
        return;
      }
      case "edit":
        if (this.selection.editing) return void this.saveEdit();
        if (this.selection.startEdit()) this.renderCard();
        return;
      case "refine":
        return void this.refine(id);
      case "deleteManual":
        if (state.source !== "manual") return this.say.error("Only drawn detections can be deleted; reject a proposal instead (R).");
        void this.commands.deleteManual(id).then((ok) => {
          if (ok) void this.select(null);
        });
        return;
    }
  }

  private runOnExample(command: ReviewCommand): void {
    const editKinds = ["relabel", "edit", "deleteManual"];
    if (editKinds.includes(command.kind) && !this.host.canAnnotate) return this.say.error("Your role cannot change examples.");
    switch (command.kind) {
      case "relabel": {
        const cls = this.host.classes()[command.classIndex];
        if (cls) void this.examples.setClass(cls).then(() => this.renderCard());
        return;
      }
      case "edit":
        if (this.examples.editing) void this.saveEdit();
        else {
          this.examples.startEdit();
          this.renderCard();
        }
        return;
      case "deleteManual":
        void this.examples.remove().then(() => this.renderCard());
        return;
      case "help":
        if (this.help) this.help.hidden = !this.help.hidden;
        return;
      default:
        this.examples.select(null);
        this.renderCard();
        this.run(command);
    }
  }

  /** Decide and show the next proposal at once; the decision saves behind it. */
  private async decideAndMove(id: number, verdict: "accept" | "reject", comment = "", fix: ReviewFix = {}): Promise<void> {
    const saving = this.commands.review(id, verdict, comment ? { ...fix, comment } : fix);
    const moved = await this.step(1, id, true);
    await saving;
    // Said after the decision's own "Accepted." so that it is the message left on screen.
    if (!moved) this.say.notice(NO_MORE);
  }

  /** Save an edit: a proposal's fix is accepted with it (one decision); an example's shape is PATCHed. */
  private async saveEdit(accept = false): Promise<void> {
    if (this.examples.editing) {
      await this.examples.saveEdit();
      this.renderCard();
      return;
    }
    const id = this.selectedId;
    const state = id === null ? undefined : this.store.get(id);
    if (id === null || !state) return;
    const geometry = this.selection.editing ? this.selection.finishEdit() : null;
    const objectClass = this.pendingClass && this.pendingClass !== state.object_class ? this.pendingClass : undefined;
    this.pendingClass = null;
    this.renderCard();
    if (state.status === "proposed" || accept) {
      // "Fix and accept": the new shape and class go with the acceptance (one decision, one event).
      const fix: ReviewFix = {};
      if (geometry) fix.geometry = geometry;
      if (objectClass) fix.object_class = objectClass;
      await this.decideAndMove(id, "accept", "", fix);
      return;
    }
    if (geometry) await this.commands.reshape(id, geometry);
    if (objectClass) {
      const cls = this.host.classes().find((c) => c.id === objectClass)!;
      await this.commands.relabel(id, cls.id, cls.name);
    }
    if (!geometry && !objectClass) this.say.notice("Nothing changed.");
    void this.card.loadHistory(id, () => this.renderCard());
  }

  /** The next (1) or previous (-1) proposal in the queue's order. */
  private async step(direction: 1 | -1, from: number | null = this.selectedId, quiet = false): Promise<boolean> {
    try {
      const f = direction === 1 ? await this.queue.next(from) : await this.queue.previous(from);
      if (f) await this.select(f, true);
      else if (!quiet) this.say.notice(direction === 1 ? NO_MORE : "This is the first proposal.");
      return Boolean(f);
    } catch (e) {
      this.say.error(`The review queue could not be read: ${errorText(e)}`);
      return true;
    }
  }

  /** A proposal the queue may show now: still proposed here, not deleted, and passing the sliders. */
  private queueable(f: DetectionFeature): boolean {
    const s = this.store.get(Number(f.id));
    const state = s && s.version >= f.properties.version ? s : stateOf(f);
    return state.status === "proposed" && !state.deleted && this.tiles.isShown(state);
  }

  /** Someone else changed a detection (live updates): the card says who and re-reads its history and shape. */
  changedElsewhere(e: LiveEvent): void {
    if (e.detection !== this.selectedId) return;
    if (e.status_after === "") {
      this.say.notice(`${e.actor_name ?? "Someone"} deleted the object you had selected.`);
      return void this.select(null);
    }
    const note = () => {
      this.card.changedBy(e.detection, e.actor_name ?? "someone");
      this.renderCard();
    };
    if (e.geometry_changed && !this.selection.editing) return void this.select(e.detection).then(note); // new outline
    note();
    void this.card.loadHistory(e.detection, () => this.renderCard());
  }

  setOrder(order: QueueOrder): void {
    this.queue.setOrder(order);
  }

  /** The proposals changed (search, Update proposals, bulk): the tiles, the queue and the selection are re-read. */
  proposalsChanged(): void {
    this.tiles.reload();
    this.queue.reset();
    const id = this.selectedId;
    if (id !== null) {
      getDetection(id).then(
        (f) => this.store.put(stateOf(f)),
        () => this.select(null), // replaced by the new proposals
      );
    }
  }

  // ------------------------------------------------------------------ drawing
  startSketch(mode: "example" | "missed"): void {
    const cls = this.host.activeClass();
    if (!cls) return this.say.error("Choose a class first.");
    if (mode === "missed" && !this.host.canReview) return;
    void this.select(null);
    this.sketchMode = mode;
    this.sketch.start(cls.color ?? "#ff3b30");
    this.say.notice(mode === "missed" ? `Draw the missed ${cls.name}: click its corners; Backspace takes one back; Esc stops.` : `Drawing examples of ${cls.name}.`);
    this.map.getTargetElement()?.setAttribute("data-sketch", mode);
    this.sketchChanged?.(mode);
  }

  stopSketch(): void {
    this.sketch.stop();
    this.sketchMode = null;
    this.map.getTargetElement()?.removeAttribute("data-sketch");
    this.sketchChanged?.(null);
  }

  get sketching(): "example" | "missed" | null {
    return this.sketchMode;
  }

  /** Told when drawing starts or stops (the draw button follows it). */
  sketchChanged: ((mode: "example" | "missed" | null) => void) | null = null;

  /** The class changed while drawing: the sketch takes the new colour. */
  restartSketch(): void {
    if (this.sketchMode) this.startSketch(this.sketchMode);
  }

  private async sketchFinished(f: Feature): Promise<boolean> {
    const cls = this.host.activeClass();
    if (!cls) return false;
    this.say.clearError(); // a complaint about an earlier try of this sketch no longer holds
    if (this.sketchMode === "example") return this.examples.create(f, cls);
    const id = await this.commands.createManual(cls.id, geometryToLonLat(f));
    if (id === null) return false; // keep the sketch: the error says what to fix
    this.stopSketch();
    await this.select(id);
    return true;
  }

  // ------------------------------------------------------------------ SAM2 on one box
  private async refine(id: number): Promise<void> {
    if (!this.host.canRefine) return this.say.error("Your role cannot run SAM2 refinement.");
    const say = (text: string, running: boolean, failed = false) => {
      this.refineStatus.set(id, { running, text, failed });
      if (this.selectedId === id) this.renderCard();
    };
    if (this.refineStatus.get(id)?.running) return;
    say("Refining with SAM2…", true);
    try {
      let job = await postJson<Job>(`/api/detections/${id}/refine/`, {});
      while (!FINISHED_JOB_STATUSES.includes(job.status)) {
        await new Promise((resolve) => window.setTimeout(resolve, 1000));
        job = await getJson<Job>(`/api/jobs/${job.id}/`);
        if (job.stalled) return say("The worker running this refinement stopped reporting; press S again.", false, true);
      }
      if (job.status !== "succeeded") return say(job.error || job.message || `The refinement ${job.status}.`, false, true);
      const r = job.result ?? {};
      let text = job.message;
      if (Number(r.refined)) text = "Outlined by SAM2.";
      else if (Number(r.skipped_stale)) text = "Not changed: a reviewer edited it meanwhile.";
      else if (Number(r.kept_box)) text = "SAM2 found no outline; the box stays.";
      say(text, false);
      this.tiles.reload();
      if (this.selectedId === id) void this.select(id);
    } catch (e) {
      say(`Refinement could not start: ${errorText(e)}`, false, true);
    }
  }

  // ------------------------------------------------------------------ examples' card and the help
  private renderExampleCard(f: Feature): void {
    const classes = this.host.classes();
    const cls = classes.find((c) => c.id === Number(f.get("object_class")));
    const box = this.cardBox;
    box.hidden = false;
    delete box.dataset.detectionId;
    box.dataset.exampleId = String(f.getId());
    const head = el("div", "card-head");
    const swatch = el("span", "swatch");
    swatch.style.background = this.host.colourOf(Number(f.get("object_class")));
    const close = el("button", "card-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", "Close");
    close.addEventListener("click", () => {
      this.examples.select(null);
      this.renderCard();
    });
    head.append(swatch, el("span", "card-class", `Example · ${cls?.name ?? ""}`), close);
    const facts = el("p", "card-facts small", `By ${String(f.get("author_name") ?? "someone")}. Examples teach the search what to look for.`);
    box.replaceChildren(head, facts);
    if (this.examples.editing) box.append(el("p", "hint edit-hint", "Drag corners, drag an edge to add one, Alt+click removes one. Enter saves, Esc cancels."));
    if (!this.host.canAnnotate) return;
    const row = el("div", "review-actions");
    const button = (label: string, key: string, command: ReviewCommand, extra = "") => {
      const b = el("button", `btn btn-small review-cmd ${extra}`);
      b.type = "button";
      b.dataset.command = command.kind === "relabel" ? `class-${command.classIndex + 1}` : command.kind;
      b.append(el("kbd", "", key), document.createTextNode(label));
      b.addEventListener("click", () => this.run(command));
      row.append(b);
      return b;
    };
    classes.slice(0, 9).forEach((c, i) => {
      const b = button(c.name, String(i + 1), { kind: "relabel", classIndex: i });
      if (c.id === cls?.id) b.setAttribute("aria-pressed", "true");
    });
    button(this.examples.editing ? "Save shape" : "Edit shape", "E", { kind: "edit" });
    button("Delete example", "X", { kind: "deleteManual" }, "review-cmd-reject");
    box.append(row);
  }

  /** The help overlay lists the keys this project has (class keys only for its classes). */
  fillHelp(): void {
    const list = this.help?.querySelector("dl");
    if (!this.help || !list) return;
    const classes = this.host.classes();
    list.replaceChildren(
      ...KEYMAP.flatMap((b) => {
        let label = b.label;
        if (b.command.kind === "relabel") {
          const cls = classes[b.command.classIndex];
          if (!cls) return [];
          label = `Set class: ${cls.name}`;
        }
        const keys = el("dt");
        keys.append(...b.keys.map((k) => el("kbd", "", keyLabel(k))));
        return [keys, el("dd", "", label)];
      }),
      el("dt", "", "Enter / Esc"),
      el("dd", "", "Save / cancel an edit; Esc also stops drawing and closes the card"),
      el("dt", "", "Backspace"),
      el("dd", "", "Take back the last corner while drawing"),
    );
    const close = this.help.querySelector("button");
    if (close && !close.dataset.wired) {
      close.dataset.wired = "1";
      close.addEventListener("click", () => (this.help!.hidden = true));
    }
  }
}

