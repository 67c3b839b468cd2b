// "Examples & search" panel of the scene page: classes, drawing examples, detections, search / refine jobs.
import type Feature from "ol/Feature";
import type OlMap from "ol/Map";
import Draw from "ol/interaction/Draw";
import { Circle as CircleStyle, Fill, Stroke, Style } from "ol/style";
import {
  AnnotationProps,
  ApiFeature,
  DetectionProps,
  errorText,
  FeaturePage,
  FINISHED_JOB_STATUSES,
  getJson,
  Job,
  ObjectClass,
  Page,
  postJson,
  Scene,
} from "./api";
import { byId, el } from "./dom";
import { isActive, JobBox } from "./job-box";
import { loadModelStatus, ModelStatus, renderModelNotice, searchBlockedText } from "./model-notice";
import { geometryToLonLat, readFeatures, SceneLayers, withAlpha } from "./scene-layers";
import { getCenter } from "ol/extent";
import { ReviewKeys } from "./review/controller";

const SCENE_JOB_KINDS = new Set(["search", "refine", "embed"]);
const DETECTION_PAGE_SIZE = 5000;

export function setupSearchPanel(map: OlMap, scene: Scene, panel: HTMLElement): void {
  new SearchPanel(map, scene, panel).start();
}

class SearchPanel {
  private readonly layers = new SceneLayers();
  private readonly canAnnotate: boolean;
  private readonly canRunJobs: boolean;
  private readonly projectId: number;
  private classes: ObjectClass[] = [];
  private activeClassId: number | null = null;
  private readonly searchClassIds = new Set<number>();
  private draw: Draw | null = null;
  private detectionsTotal = 0;
  private jobBox: JobBox;

  private readonly classList = byId("class-list")!;
  private readonly drawToggle = byId<HTMLButtonElement>("draw-toggle");
  private readonly drawLabel = byId("draw-label");
  private readonly drawSwatch = byId("draw-swatch");
  private readonly drawHint = byId("draw-hint");
  private readonly notice = byId("panel-notice")!;
  private readonly errorBox = byId("panel-error")!;
  private readonly detectionsTotalEl = byId("detections-total")!;
  private readonly scoreFilter = byId<HTMLInputElement>("score-filter")!;
  private readonly scoreFilterValue = byId<HTMLOutputElement>("score-filter-value")!;
  private readonly threshold = byId<HTMLInputElement>("search-threshold");
  private readonly thresholdValue = byId<HTMLOutputElement>("search-threshold-value");
  private readonly scale = byId<HTMLSelectElement>("search-scale");
  private readonly searchScope = byId("search-scope");
  private readonly searchButton = byId<HTMLButtonElement>("search-button");
  private readonly refineButton = byId<HTMLButtonElement>("refine-button");
  private readonly card = byId("detection-card");
  private selected: Feature | null = null;
  /** "Refine this" jobs by detection id: what the card says about them (they run beside the job box's job). */
  private readonly refineStatus = new Map<string, { running: boolean; text: string; failed: boolean }>();
  private noticeTimer: number | null = null;
  /** Which models the server has (GET /api/models/); null until known or when it could not be read. */
  private models: ModelStatus | null = null;
  private readonly modelNotice = byId("models-notice");
  /** Keyboard review of the selected detection (those who may annotate). */
  private review: ReviewKeys | null = null;

  constructor(private map: OlMap, private scene: Scene, private panel: HTMLElement) {
    this.canAnnotate = panel.dataset.canAnnotate === "1";
    this.canRunJobs = panel.dataset.canRunJobs === "1";
    this.projectId = Number(panel.dataset.projectId);
    this.jobBox = new JobBox(byId("job-box")!, {
      canControl: this.canRunJobs,
      onActiveChange: (active) => this.setJobRunning(active),
      onFinished: (job) => this.jobFinished(job),
    });
    map.addLayer(this.layers.detectionLayer);
    map.addLayer(this.layers.exampleLayer);
    if (this.canAnnotate) this.review = this.reviewKeys();
  }

  /** The review keys' hold on this page: selection, classes, the map's features and the panel's messages. */
  private reviewKeys(): ReviewKeys {
    return new ReviewKeys(this.scene.id, {
      selectedId: () => (this.selected ? Number(this.selected.getId()) : null),
      select: (id) => this.select(id === null ? null : (this.layers.detections.getFeatureById(id) as Feature | null), true),
      classes: () => this.classes,
      changed: (s) => {
        const f = this.layers.detections.getFeatureById(s.id) as Feature | null;
        const cls = this.classes.find((c) => c.id === s.object_class);
        f?.setProperties({ status: s.status, version: s.version, object_class: s.object_class, class_name: cls?.name });
        if (f && f === this.selected) this.renderCard();
        this.updateCounts();
      },
      saved: (text) => this.showNotice(text),
      failed: (text) => this.showError(text),
    }, byId("review-help"));
  }

  start(): void {
    this.wireControls();
    void this.loadAll();
  }

  private async loadAll(): Promise<void> {
    try {
      await this.loadClasses();
    } catch (e) {
      this.classList.replaceChildren(el("p", "error small", `Classes could not be loaded: ${errorText(e)}`));
      return;
    }
    await Promise.all([this.loadExamples(), this.loadDetections(), this.loadLatestJob(), this.loadModels()]);
    this.panel.dataset.ready = "1";
  }

  // ------------------------------------------------------------------ classes
  private async loadClasses(): Promise<void> {
    const data = await getJson<ObjectClass[] | Page<ObjectClass>>(`/api/projects/${this.projectId}/classes/`);
    this.classes = (Array.isArray(data) ? data : data.results).slice().sort((a, b) => a.index - b.index);
    this.layers.setClasses(this.classes);
    if (this.activeClassId === null && this.classes.length) this.activeClassId = this.classes[0].id;
    this.renderClasses();
    if (this.drawToggle) this.drawToggle.disabled = !this.classes.length;
  }

  private countsBy(features: Feature[], keep: (f: Feature) => boolean = () => true): Map<number, number> {
    const counts = new Map<number, number>();
    for (const f of features) {
      if (!keep(f)) continue;
      const id = Number(f.get("object_class"));
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    return counts;
  }

  /** Build the class rows (once the classes are known); counts and the active class update in place. */
  private renderClasses(): void {
    this.classList.setAttribute("role", this.canAnnotate ? "radiogroup" : "list");
    if (!this.classes.length) {
      this.classList.replaceChildren(el("p", "muted small", "This project has no classes yet; a manager can add them."));
      return;
    }
    const rows = this.classes.map((c) => {
      const row = el("div", "class-row");
      row.dataset.classId = String(c.id);
      row.dataset.className = c.name;
      row.style.setProperty("--class-colour", c.color);
      if (this.canAnnotate) {
        row.setAttribute("role", "radio");
        row.setAttribute("aria-label", c.name);
        row.title = `Draw examples of ${c.name}`;
        row.addEventListener("click", () => this.setActiveClass(c.id));
        row.addEventListener("keydown", (e) => this.classKeydown(e, c.id));
      } else {
        row.setAttribute("role", "listitem");
      }
      const check = el("span", "class-check");
      if (this.canRunJobs) {
        const box = el("input");
        box.type = "checkbox";
        box.checked = this.searchClassIds.has(c.id);
        box.title = `Search for ${c.name}`;
        box.setAttribute("aria-label", `Search for ${c.name}`);
        box.addEventListener("click", (e) => e.stopPropagation());
        box.addEventListener("keydown", (e) => e.stopPropagation());
        box.addEventListener("change", () => {
          if (box.checked) this.searchClassIds.add(c.id);
          else this.searchClassIds.delete(c.id);
          this.renderSearchScope();
        });
        check.append(box);
      }
      const name = el("span", "class-name");
      const swatch = el("span", "swatch");
      swatch.style.background = c.color;
      name.append(swatch, el("span", "class-label", c.name));
      row.append(check, name, el("span", "class-count ex", "0"), el("span", "class-count det", "0"));
      return row;
    });
    this.classList.replaceChildren(...rows);
    this.refreshClassRows();
    this.renderSearchScope();
  }

  /** Counts per class (examples; detections passing the score filter) and the active class, in place. */
  private refreshClassRows(): void {
    const examples = this.countsBy(this.layers.examples.getFeatures(), (f) => !f.get("pending"));
    const detections = this.countsBy(this.layers.detections.getFeatures(), (f) => this.layers.isShown(f));
    for (const row of this.classList.querySelectorAll<HTMLElement>(".class-row")) {
      const id = Number(row.dataset.classId);
      const active = this.canAnnotate && id === this.activeClassId;
      row.classList.toggle("active", active);
      if (this.canAnnotate) {
        row.setAttribute("aria-checked", String(active));
        row.tabIndex = active ? 0 : -1;
      }
      const setCount = (selector: string, key: string, value: number) => {
        const cell = row.querySelector<HTMLElement>(selector)!;
        cell.textContent = String(value);
        cell.dataset[key] = String(value);
        cell.classList.toggle("zero", value === 0);
      };
      setCount(".class-count.ex", "examples", examples.get(id) ?? 0);
      setCount(".class-count.det", "detections", detections.get(id) ?? 0);
    }
    this.renderDrawButton();
  }

  private classKeydown(e: KeyboardEvent, classId: number): void {
    const i = this.classes.findIndex((c) => c.id === classId);
    const step = e.key === "ArrowDown" || e.key === "ArrowRight" ? 1 : e.key === "ArrowUp" || e.key === "ArrowLeft" ? -1 : 0;
    if (step) {
      e.preventDefault();
      const next = this.classes[(i + step + this.classes.length) % this.classes.length];
      this.setActiveClass(next.id);
      this.classList.querySelector<HTMLElement>(`[data-class-id="${next.id}"]`)?.focus();
    } else if (e.key === " " || e.key === "Enter") {
      e.preventDefault();
      this.setActiveClass(classId);
    }
  }

  private setActiveClass(classId: number): void {
    if (classId === this.activeClassId) return;
    this.activeClassId = classId;
    this.refreshClassRows();
    if (this.draw) this.startDrawing(); // the sketch takes the new class colour (an unfinished one is dropped)
  }

  private activeClass(): ObjectClass | undefined {
    return this.classes.find((c) => c.id === this.activeClassId);
  }

  private renderSearchScope(): void {
    if (!this.searchScope) return;
    const chosen = this.classes.filter((c) => this.searchClassIds.has(c.id));
    this.searchScope.textContent = chosen.length
      ? `Only ${chosen.map((c) => c.name).join(", ")}.`
      : "Every class with examples (tick classes to narrow).";
  }

  // ------------------------------------------------------------------ examples
  private async loadExamples(): Promise<void> {
    try {
      const page = await getJson<FeaturePage<AnnotationProps>>(
        `/api/annotations/?scene=${this.scene.id}&page_size=${DETECTION_PAGE_SIZE}`,
      );
      this.layers.examples.clear();
      this.layers.examples.addFeatures(readFeatures(page));
      this.updateCounts();
    } catch (e) {
      this.showError(`Examples could not be loaded: ${errorText(e)}`);
    }
  }

  private renderDrawButton(): void {
    if (!this.drawToggle || !this.drawLabel) return;
    const cls = this.activeClass();
    const drawing = this.draw !== null;
    this.drawToggle.setAttribute("aria-pressed", String(drawing));
    this.drawToggle.classList.toggle("drawing", drawing);
    this.drawLabel.textContent = drawing
      ? `Drawing ${cls?.name ?? ""} – Esc to stop`
      : `Draw example${cls ? ` of ${cls.name}` : ""}`;
    if (this.drawSwatch) this.drawSwatch.style.background = cls?.color ?? "transparent";
    if (this.drawHint) this.drawHint.hidden = !drawing;
  }

  private sketchStyle(colour: string): Style[] {
    return [
      new Style({
        stroke: new Stroke({ color: "rgba(15, 18, 28, 0.6)", width: 4.5 }),
      }),
      new Style({
        stroke: new Stroke({ color: colour, width: 2.5 }),
        fill: new Fill({ color: withAlpha(colour, 0.22) }),
        image: new CircleStyle({ radius: 5, fill: new Fill({ color: colour }), stroke: new Stroke({ color: "#fff", width: 1.5 }) }),
      }),
    ];
  }

  private startDrawing(): void {
    const cls = this.activeClass();
    if (!cls || !this.canAnnotate) return;
    this.stopDrawing(false);
    const draw = new Draw({ type: "Polygon", style: this.sketchStyle(cls.color), stopClick: true });
    draw.on("drawend", (e) => void this.saveExample(e.feature as Feature, cls));
    this.draw = draw;
    this.map.addInteraction(draw);
    this.map.getTargetElement()?.classList.add("drawing");
    this.renderDrawButton();
  }

  private stopDrawing(render = true): void {
    if (!this.draw) return;
    this.draw.abortDrawing();
    this.map.removeInteraction(this.draw);
    this.draw = null;
    this.map.getTargetElement()?.classList.remove("drawing");
    if (render) this.renderDrawButton();
  }

  private async saveExample(feature: Feature, cls: ObjectClass): Promise<void> {
    this.clearError();
    feature.set("object_class", cls.id);
    feature.set("pending", true);
    this.layers.examples.addFeature(feature);
    const body = {
      type: "Feature",
      geometry: geometryToLonLat(feature),
      properties: { scene: this.scene.id, object_class: cls.id },
    };
    try {
      const saved = await postJson<ApiFeature<AnnotationProps>>("/api/annotations/", body);
      this.layers.examples.removeFeature(feature);
      this.layers.examples.addFeatures(readFeatures([saved]));
      this.showNotice(`Example of ${cls.name} saved.`);
    } catch (e) {
      this.layers.examples.removeFeature(feature);
      this.showError(`The example was not saved: ${errorText(e)}`);
    }
    this.updateCounts();
  }

  // ------------------------------------------------------------------ detections
  private async loadDetections(): Promise<void> {
    try {
      const page = await getJson<FeaturePage<DetectionProps>>(
        `/api/detections/?scene=${this.scene.id}&page_size=${DETECTION_PAGE_SIZE}`,
      );
      this.detectionsTotal = page.count;
      const selectedId = this.selected?.getId();
      this.layers.detections.clear();
      this.layers.detections.addFeatures(readFeatures(page));
      this.review?.load(page.features.map((f) => ({ id: Number(f.id), ...f.properties })));
      // Keep the selection across a reload (a refined detection comes back with its new outline).
      this.select(selectedId === undefined ? null : (this.layers.detections.getFeatureById(selectedId) as Feature | null));
      this.panel.dataset.detectionsLoaded = String(Number(this.panel.dataset.detectionsLoaded ?? 0) + 1);
      this.updateCounts();
    } catch (e) {
      this.showError(`Detections could not be loaded: ${errorText(e)}`);
    }
  }

  private updateCounts(): void {
    const features = this.layers.detections.getFeatures();
    const shown = features.filter((f) => this.layers.isShown(f)).length;
    const examples = this.layers.examples.getFeatures().filter((f) => !f.get("pending")).length;
    this.panel.dataset.detections = String(shown);
    this.panel.dataset.examples = String(examples);
    this.detectionsTotalEl.dataset.count = String(shown);
    const loaded = features.length;
    let text = shown === loaded ? `${shown} shown` : `${shown} of ${loaded} shown`;
    if (this.detectionsTotal > loaded) text += ` (first ${loaded} of ${this.detectionsTotal})`;
    this.detectionsTotalEl.textContent = text;
    this.refreshClassRows();
  }

  // ------------------------------------------------------------------ jobs
  private async loadLatestJob(): Promise<void> {
    try {
      const page = await getJson<Page<Job>>(`/api/jobs/?scene=${this.scene.id}&page_size=5`);
      const latest = page.results.find((j) => SCENE_JOB_KINDS.has(j.kind));
      if (latest && isActive(latest)) this.jobBox.follow(latest); // a stalled job is running too
    } catch (e) {
      this.showError(`Jobs could not be loaded: ${errorText(e)}`);
    }
  }

  /** Warn before Search when the backbone (or SAM2) is not installed, instead of queueing a job that fails. */
  private async loadModels(): Promise<void> {
    if (!this.modelNotice) return; // only those who may run jobs see the search controls
    try {
      this.models = await loadModelStatus();
    } catch {
      return; // not knowing is no reason to block Search: a job without its model fails at once, saying why
    }
    renderModelNotice(this.modelNotice, this.models);
    this.searchButton?.classList.toggle("needs-models", !this.models.search_ready);
  }

  private async startJob(kind: "search" | "refine"): Promise<void> {
    this.clearError();
    if (kind === "search" && this.models && !this.models.search_ready) {
      this.showError(searchBlockedText(this.models));
      return;
    }
    const body =
      kind === "search"
        ? {
            classes: [...this.searchClassIds],
            default_threshold: Number(this.threshold?.value ?? 0.5),
            scale: Number(this.scale?.value ?? 1),
          }
        : {};
    this.setJobRunning(true);
    try {
      const job = await postJson<Job>(`/api/scenes/${this.scene.id}/${kind}/`, body);
      this.jobBox.follow(job);
    } catch (e) {
      this.setJobRunning(false);
      this.showError(`${kind === "search" ? "Search" : "Refinement"} could not start: ${errorText(e)}`);
    }
  }

  private setJobRunning(running: boolean): void {
    if (this.searchButton) this.searchButton.disabled = running;
    if (this.refineButton) this.refineButton.disabled = running;
    this.panel.dataset.jobRunning = running ? "1" : "0";
  }

  private async jobFinished(job: Job): Promise<void> {
    if (job.status === "succeeded" && (job.kind === "search" || job.kind === "refine")) await this.loadDetections();
  }

  // ------------------------------------------------------------------ one selected detection
  private pick(pixel: number[]): void {
    const hit = this.map.forEachFeatureAtPixel(pixel, (f) => f as Feature, {
      layerFilter: (layer) => layer === this.layers.detectionLayer,
      hitTolerance: 4,
    });
    this.select(hit ?? null);
  }

  private select(feature: Feature | null, fly = false): void {
    if (this.selected && this.selected !== feature) this.selected.set("selected", false);
    this.selected = feature;
    feature?.set("selected", true);
    this.renderCard();
    const extent = feature?.getGeometry()?.getExtent();
    if (fly && extent) this.map.getView().animate({ center: getCenter(extent), duration: 250 });
  }

  /** The selected detection's facts, and "Refine this" for those who may run jobs. */
  private renderCard(): void {
    if (!this.card) return;
    const f = this.selected;
    this.card.hidden = !f;
    if (!f) {
      this.card.replaceChildren();
      delete this.panel.dataset.selected;
      return;
    }
    this.panel.dataset.selected = String(f.getId());
    const head = el("div", "card-head");
    const swatch = el("span", "swatch");
    swatch.style.background = this.layers.colourOf(Number(f.get("object_class")));
    const close = el("button", "card-close", "×");
    close.type = "button";
    close.title = "Close (Esc)";
    close.setAttribute("aria-label", "Close");
    close.addEventListener("click", () => this.select(null));
    head.append(swatch, el("span", "", String(f.get("class_name") ?? "")), close);
    const score = f.get("score");
    const facts = [
      score === null || score === undefined ? "no score" : `score ${Number(score).toFixed(2)}`,
      String(f.get("status") ?? ""),
      `from ${String(f.get("source") ?? "")}`,
      `version ${String(f.get("version") ?? "")}`,
    ];
    this.card.replaceChildren(head, el("div", "card-facts", facts.join(" · ")));
    this.panel.dataset.selectedStatus = String(f.get("status") ?? "");
    if (this.review) this.card.append(this.review.buttons());
    if (this.canRunJobs) {
      const status = this.refineStatus.get(String(f.getId()));
      const refine = el("button", "btn btn-small card-refine", "Refine this (SAM2)");
      refine.type = "button";
      refine.disabled = Boolean(status?.running);
      refine.title = "Outline this detection with SAM2; it replaces the box unless a reviewer edits it meanwhile";
      refine.addEventListener("click", () => void this.refineSelected());
      this.card.append(refine);
      if (status) this.card.append(el("p", status.failed ? "card-status error small" : "card-status small", status.text));
    }
  }

  /** Refine the selected detection alone: its own queue and worker, so it never waits for a search. */
  private async refineSelected(): Promise<void> {
    const id = this.selected?.getId();
    if (id === undefined) return;
    const key = String(id);
    const say = (text: string, running: boolean, failed = false) => {
      this.refineStatus.set(key, { running, text, failed });
      if (String(this.selected?.getId()) === key) this.renderCard();
    };
    say("Refining with SAM2…", true);
    try {
      let job = await postJson<Job>(`/api/detections/${id}/refine/`, {});
      while (!FINISHED_JOB_STATUSES.includes(job.status)) {
        await new Promise((resolve) => window.setTimeout(resolve, 1000));
        job = await getJson<Job>(`/api/jobs/${job.id}/`);
        if (job.stalled) {
          say("The worker running this refinement stopped reporting; click Refine this again.", false, true);
          return;
        }
      }
      if (job.status === "succeeded") {
        const r = job.result ?? {};
        let text = job.message;
        if (Number(r.refined)) text = "Outlined by SAM2.";
        else if (Number(r.skipped_stale)) text = "Not changed: a reviewer edited it meanwhile.";
        else if (Number(r.kept_box)) text = "SAM2 found no outline; the box stays.";
        say(text, false);
        await this.loadDetections();
      } else {
        say(job.error || job.message || `The refinement ${job.status}.`, false, true);
      }
    } catch (e) {
      say(`Refinement could not start: ${errorText(e)}`, false, true);
    }
  }

  // ------------------------------------------------------------------ controls and messages
  private wireControls(): void {
    this.map.on("singleclick", (e) => {
      if (!this.draw) this.pick(e.pixel);
    });
    this.drawToggle?.addEventListener("click", () => (this.draw ? this.stopDrawing() : this.startDrawing()));
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.draw) {
        e.preventDefault();
        this.stopDrawing();
      } else if (e.key === "Escape" && this.selected) {
        this.select(null);
      } else if (!this.draw) {
        this.review?.handle(e);
      }
    });
    this.scoreFilter.addEventListener("input", () => {
      const value = Number(this.scoreFilter.value);
      this.scoreFilterValue.value = value.toFixed(2);
      this.layers.setMinScore(value);
      if (this.selected && !this.layers.isShown(this.selected)) this.select(null); // hidden: not selectable
      this.updateCounts();
    });
    this.threshold?.addEventListener("input", () => {
      if (this.thresholdValue) this.thresholdValue.value = Number(this.threshold!.value).toFixed(2);
    });
    this.searchButton?.addEventListener("click", () => void this.startJob("search"));
    this.refineButton?.addEventListener("click", () => void this.startJob("refine"));
  }

  private showError(message: string): void {
    this.errorBox.textContent = message;
    this.errorBox.hidden = false;
  }

  private clearError(): void {
    this.errorBox.hidden = true;
    this.errorBox.textContent = "";
  }

  private showNotice(message: string): void {
    this.notice.textContent = message;
    this.notice.hidden = false;
    if (this.noticeTimer !== null) window.clearTimeout(this.noticeTimer);
    this.noticeTimer = window.setTimeout(() => (this.notice.hidden = true), 4000);
  }
}
