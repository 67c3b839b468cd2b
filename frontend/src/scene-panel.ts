// The scene page's workspace: puts together the class list, examples, detection tiles, review (keys, queue, card),
// score filters with bulk actions, progress and jobs. Each piece lives in its own module; this one wires them.
import type OlMap from "ol/Map";
import type { Extent } from "ol/extent";
import { errorText, Scene } from "./api";
import { byId } from "./dom";
import { ScoreFilters } from "./review/bulk";
import { WorkCells } from "./review/cells";
import { LiveUpdates } from "./review/live";
import type { QueueOrder } from "./review/api";
import { ProgressBox } from "./review/progress";
import { DetectionStore } from "./review/store";
import { ReviewWorkspace } from "./review/workspace";
import { ClassList } from "./workspace/class-list";
import { DetectionTiles } from "./workspace/detection-tiles";
import { Examples } from "./workspace/examples";
import { Messages } from "./workspace/messages";
import { ProposerChoice } from "./scene-proposers";
import { SearchJobs } from "./workspace/search-jobs";
import type { DetectionStatus } from "./api";

export function setupSearchPanel(map: OlMap, scene: Scene, panel: HTMLElement, sceneExtent?: Extent): void {
  const canAnnotate = panel.dataset.canAnnotate === "1";
  const canReview = panel.dataset.canReview === "1";
  const canRunJobs = panel.dataset.canRunJobs === "1";
  const projectId = Number(panel.dataset.projectId);
  const remembered = panel.dataset.lastClass ? Number(panel.dataset.lastClass) : null;
  const say = new Messages();

  let review: ReviewWorkspace | null = null;
  let cells: WorkCells | null = null;
  const classes = new ClassList(projectId, byId("class-list")!, { canAnnotate, canRunJobs, rememberedClassId: remembered }, {
    activeChanged: () => {
      renderDrawButton();
      review?.restartSketch();
    },
    searchScopeChanged: () => renderSearchScope(),
    failed: (t) => say.error(t),
  });
  const colourOf = (id: number) => classes.byId(id)?.color ?? "#ff3b30";
  const examples = new Examples(map, scene.id, {
    colourOf,
    saved: (t) => say.notice(t),
    failed: (t) => say.error(t),
    countsChanged: (counts) => {
      classes.setCounts(counts, null);
      panel.dataset.examples = String([...counts.values()].reduce((a, b) => a + b, 0));
    },
  });
  // The review store: what the keys changed, read by the tiles (overrides) and the workspace alike.
  const store = new DetectionStore();
  const tiles = new DetectionTiles(scene.id, store);
  const progress = new ProgressBox(scene.id, byId("review-progress")!);
  const filters = new ScoreFilters(scene.id, byId("score-filters")!, byId<HTMLDialogElement>("confirm-dialog"), {
    classes: () => classes.classes,
    floorOf: (id) => tiles.floorOf(id),
    setFloor: (id, v) => {
      tiles.setFloor(id, v);
      review?.queue.reset(); // what the queue may show changed: its look-ahead is read again
    },
    canReview,
    canBulk: panel.dataset.canBulk === "1",
    done: (t) => {
      say.notice(t);
      countsStale();
      review?.proposalsChanged();
    },
    failed: (t) => say.error(t),
    countsChanged: (shown) => {
      classes.setCounts(null, shown);
      const total = [...shown.values()].reduce((a, b) => a + b, 0);
      panel.dataset.detections = String(total);
    },
  });
  let countsTimer: number | null = null;
  /** Counts are re-read a moment after decisions settle (a burst of keys asks once). */
  const countsStale = () => {
    if (countsTimer !== null) window.clearTimeout(countsTimer);
    countsTimer = window.setTimeout(() => {
      countsTimer = null;
      void progress.load();
      void filters.load();
      void cells?.load();
    }, 400);
  };
  // A job that cannot start is refused beside the button at the panel's foot: bring the panel's error into view.
  const jobFailed = (text: string) => {
    say.error(text);
    byId("panel-error")?.scrollIntoView({ block: "nearest" });
  };
  const proposers = new ProposerChoice(scene.id, projectId, jobFailed);
  const jobs = new SearchJobs(scene.id, panel, canRunJobs, {
    searchClassIds: () => [...classes.searchClassIds],
    proposerRequest: (threshold, classIds) => proposers.request(threshold, classIds),
    proposalsChanged: () => {
      review?.proposalsChanged();
      countsStale();
      panel.dataset.detectionsLoaded = String(Number(panel.dataset.detectionsLoaded ?? 0) + 1);
    },
    failed: jobFailed,
    clearError: () => say.clearError(),
  });

  const ws = new ReviewWorkspace(
    map, scene.id, store, tiles, examples, say,
    {
      classes: () => classes.classes,
      activeClass: () => classes.active(),
      colourOf,
      canReview,
      canAnnotate,
      canRefine: panel.dataset.canRefine === "1",
      modelLabel: (id) => proposers.modelLabel(id),
      zoomScene: () => sceneExtent && map.getView().fit(sceneExtent, { padding: [24, 24, 24, 24], duration: 250 }),
      updateProposals: () => void jobs.updateProposals(),
      countsStale,
      selectionChanged: (id) => {
        if (id === null) delete panel.dataset.selected;
        else panel.dataset.selected = String(id);
        const state = id === null ? undefined : store.get(id);
        panel.dataset.selectedStatus = state?.status ?? "";
        void cells?.selectionChanged(id);
      },
    },
    byId("detection-card")!,
    byId("review-help"),
  );
  review = ws;
  map.addLayer(tiles.layer);
  // Others' decisions and whereabouts, polled (review/live.ts); the "Working now" list goes under the review block.
  const live = new LiveUpdates(scene.id, map, store, {
    shapesChanged: () => tiles.reload(),
    countsStale,
    changedElsewhere: (e) => ws.changedElsewhere(e),
    selected: () => (panel.dataset.selected ? Number(panel.dataset.selected) : null),
  }, byId("review-block"));
  live.start();
  // Work cells (review/cells.ts): their layer, its toggle and the "Work cells" section under the review block.
  cells = new WorkCells(map, scene.id, {
    projectId,
    selected: () => (panel.dataset.selected ? Number(panel.dataset.selected) : null),
    notice: (t) => say.notice(t),
    failed: (t) => say.error(t),
    cellsChanged: () => ws.queue.reset(),
    sceneSizeM: Math.max(scene.width ?? 0, scene.height ?? 0) * (scene.gsd_m ?? 0),
  }, byId("review-block"), byId("detection-card"));
  void cells.start();
  store.onChange((s) => {
    if (String(s.id) === panel.dataset.selected) panel.dataset.selectedStatus = s.status;
  });

  // ------------------------------------------------------------------ drawing examples
  const drawToggle = byId<HTMLButtonElement>("draw-toggle");
  const drawLabel = byId("draw-label");
  const drawSwatch = byId("draw-swatch");
  const drawHint = byId("draw-hint");
  function renderDrawButton(): void {
    const cls = classes.active();
    const drawing = ws.sketching === "example";
    drawToggle?.setAttribute("aria-pressed", String(drawing));
    drawToggle?.classList.toggle("drawing", drawing);
    if (drawLabel) drawLabel.textContent = drawing ? `Drawing ${cls?.name ?? ""} – Esc to stop` : `Draw example${cls ? ` of ${cls.name}` : ""}`;
    if (drawSwatch) drawSwatch.style.background = cls?.color ?? "transparent";
    if (drawHint) drawHint.hidden = ws.sketching === null;
  }
  ws.sketchChanged = () => renderDrawButton();
  drawToggle?.addEventListener("click", () => (ws.sketching === "example" ? ws.stopSketch() : ws.startSketch("example")));
  byId("draw-missed")?.addEventListener("click", () => ws.startSketch("missed"));

  const searchScope = byId("search-scope");
  function renderSearchScope(): void {
    if (!searchScope) return;
    const chosen = classes.classes.filter((c) => classes.searchClassIds.has(c.id));
    searchScope.textContent = chosen.length ? `Only ${chosen.map((c) => c.name).join(", ")}.` : "Every class with examples (tick classes to narrow).";
  }

  // ------------------------------------------------------------------ layer toggles, queue order, keys, clicks
  for (const box of document.querySelectorAll<HTMLInputElement>("input[data-layer]")) {
    box.addEventListener("change", () => {
      const layer = box.dataset.layer!;
      if (layer === "examples") examples.setShown(box.checked);
      else {
        tiles.setStatusShown(layer as DetectionStatus, box.checked);
        ws.queue.reset();
      }
    });
  }
  const order = byId<HTMLSelectElement>("queue-order");
  order?.addEventListener("change", () => ws.setOrder(order.value as QueueOrder));
  byId("queue-next")?.addEventListener("click", () => ws.run({ kind: "next" }));
  byId("queue-prev")?.addEventListener("click", () => ws.run({ kind: "previous" }));
  byId("review-undo")?.addEventListener("click", () => ws.run({ kind: "undo" }));
  byId("zoom-scene")?.addEventListener("click", () => ws.run({ kind: "zoomScene" }));
  byId("help-toggle")?.addEventListener("click", () => ws.run({ kind: "help" }));
  map.on("singleclick", (e) => {
    if (!ws.sketching) ws.pick(e.pixel);
  });
  document.addEventListener("keydown", (e) => {
    if (document.querySelector("dialog[open]")) return; // the confirmation has the keys
    ws.handle(e);
  });

  // ------------------------------------------------------------------ first load
  void (async () => {
    try {
      await classes.load();
    } catch (e) {
      byId("class-list")!.replaceChildren(Object.assign(document.createElement("p"), { className: "error small", textContent: `Classes could not be loaded: ${errorText(e)}` }));
      return;
    }
    tiles.setClasses(classes.colours());
    if (drawToggle) drawToggle.disabled = !classes.classes.length;
    const draw = byId<HTMLButtonElement>("draw-missed");
    if (draw) draw.disabled = !classes.classes.length;
    ws.fillHelp();
    renderDrawButton();
    renderSearchScope();
    await Promise.all([
      examples.load().catch((e) => say.error(`Examples could not be loaded: ${errorText(e)}`)),
      filters.load(),
      progress.load(),
      jobs.load(),
      proposers.load(),
    ]);
    panel.dataset.ready = "1";
    // A link from elsewhere (the analytics page's disagreements) names a detection: select it and fly to it.
    const linked = Number(new URLSearchParams(location.search).get("detection"));
    if (Number.isInteger(linked) && linked > 0) void ws.select(linked, true);
  })();

}
