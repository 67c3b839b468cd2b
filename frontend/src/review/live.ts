// Live updates: the scene's review events since our cursor, and who else is working on it, by conditional polling
// (docs/ARCHITECTURE.md, "Decisions"): every second while the page is visible, every 5 s while hidden, at once on
// focus; never two polls in flight; errors back off exponentially with a quiet line saying so.
import type OlMap from "ol/Map";
import { toLonLat } from "ol/proj";
import { ApiError, getJson } from "../api";
import type { components } from "../api-schema";
import { LivePresence } from "./live-presence";
import type { DetectionStore, ReviewState } from "./store";
import "./live.css";

type LiveOutput = components["schemas"]["LiveOutput"];
export type LiveEvent = components["schemas"]["LiveEvent"];

const VISIBLE_MS = 1000;
const HIDDEN_MS = 5000;
const MAX_BACKOFF_MS = 30000;
/** Others' decisions re-read the counts (progress, score histogram) at most this often: with 20 reviewers deciding,
 * every page asking on every poll would be 20 histogram queries a second for a number nobody reads that fast. */
const COUNTS_EVERY_MS = 10000;

export interface LiveHost {
  /** Shapes or the set of detections changed (someone reshaped, drew or deleted): the tiles reload. */
  shapesChanged(): void;
  /** Others' decisions changed the counts (progress, sliders). */
  countsStale(): void;
  /** Someone else changed this detection (the card says who when it is the one shown). */
  changedElsewhere(event: LiveEvent): void;
  /** The detection in hand, sent along so that others can see what we look at. */
  selected(): number | null;
}

export class LiveUpdates {
  private cursor: number | null = null;
  private me: number | null = null;
  private cellsRevision: string | null = null;
  private timer: number | null = null;
  private inFlight = false;
  private failures = 0;
  private countsAt = 0;
  private countsTimer: number | null = null;
  readonly presence: LivePresence;

  constructor(
    private readonly sceneId: number,
    private readonly map: OlMap,
    private readonly store: DetectionStore,
    private readonly host: LiveHost,
    panelBlock: HTMLElement | null,
  ) {
    this.presence = new LivePresence(map, panelBlock);
    document.addEventListener("visibilitychange", () => this.wake());
    window.addEventListener("focus", () => this.wake());
  }

  start(): void {
    void this.poll();
  }

  /** Poll now (the page came back into view), unless one is on its way or we are backing off from errors. */
  private wake(): void {
    if (document.visibilityState !== "visible" || this.inFlight || this.failures > 0) return;
    this.clearTimer();
    void this.poll();
  }

  private clearTimer(): void {
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(ms: number): void {
    this.clearTimer();
    this.timer = window.setTimeout(() => void this.poll(), ms);
  }

  private query(): string {
    const q = new URLSearchParams();
    if (this.cursor !== null) q.set("since", String(this.cursor));
    const view = this.map.getView();
    const centre = view.getCenter();
    if (centre) {
      const [x, y] = toLonLat(centre, view.getProjection());
      // 6 decimals (~0.1 m): the server's cell lookup is skipped while the numbers stay the same.
      if (Number.isFinite(x) && Number.isFinite(y) && Math.abs(x) <= 180 && Math.abs(y) <= 90) {
        q.set("x", x.toFixed(6));
        q.set("y", y.toFixed(6));
      }
    }
    const selected = this.host.selected();
    if (selected !== null) q.set("detection", String(selected));
    return q.toString();
  }

  private async poll(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    this.clearTimer();
    let again = VISIBLE_MS;
    try {
      const out = await getJson<LiveOutput>(`/api/scenes/${this.sceneId}/live/?${this.query()}`);
      this.receive(out);
      if (this.failures) this.presence.status("");
      this.failures = 0;
      again = out.more ? 0 : document.visibilityState === "visible" ? VISIBLE_MS : HIDDEN_MS;
    } catch (e) {
      this.failures += 1;
      again = Math.min(MAX_BACKOFF_MS, VISIBLE_MS * 2 ** this.failures);
      const why = e instanceof ApiError && e.status ? ` (${e.status})` : "";
      this.presence.status(`Live updates paused${why}: retrying in ${Math.round(again / 1000)} s.`);
    } finally {
      this.inFlight = false;
    }
    this.schedule(again);
  }

  private receive(out: LiveOutput): void {
    this.me = out.you;
    const first = this.cursor === null;
    this.cursor = out.cursor;
    const target = this.map.getTargetElement();
    if (target) target.dataset.liveCursor = String(out.cursor);
    this.apply(out.events);
    this.presence.show(out.presence);
    if (this.cellsRevision !== out.cells_revision) {
      // The cells' layer (review/cells.ts) listens for this and reloads; the first answer only sets the baseline.
      if (!first) window.dispatchEvent(new CustomEvent("cells-changed", { detail: { sceneId: this.sceneId, revision: out.cells_revision } }));
      this.cellsRevision = out.cells_revision;
    }
  }

  /** Put each event's state into the store when newer than what the page holds; others' changes are announced. */
  private apply(events: LiveEvent[]): void {
    let reshaped = false;
    let others = 0;
    for (const e of events) {
      const known = this.store.get(e.detection);
      const newer = !known || known.version < e.version_after;
      if (newer) this.store.put(stateFrom(e, known));
      if (e.actor === this.me) continue; // ours: the page already has it (the version above, if it was behind)
      others += 1;
      if (e.geometry_changed) reshaped = true;
      if (newer) this.host.changedElsewhere(e);
    }
    if (reshaped) this.host.shapesChanged();
    if (others) this.countsSoon();
    const last = events[events.length - 1];
    const target = this.map.getTargetElement();
    if (last && target) {
      // For tests and for anyone reading the page: what the last event brought and when it was applied.
      target.dataset.liveLast = `${last.detection}:${last.version_after}:${last.status_after}`;
      target.dataset.liveAppliedAt = String(Date.now());
    }
  }

  /** Re-read the counts now if they were not re-read in the last COUNTS_EVERY_MS, else once when that is up. */
  private countsSoon(): void {
    if (this.countsTimer !== null) return;
    const wait = Math.max(0, this.countsAt + COUNTS_EVERY_MS - Date.now());
    this.countsTimer = window.setTimeout(() => {
      this.countsTimer = null;
      this.countsAt = Date.now();
      this.host.countsStale();
    }, wait);
  }
}

/** The review state an event leaves a detection in (score and source are not in events: kept from what we had). */
function stateFrom(e: LiveEvent, known: ReviewState | undefined): ReviewState {
  const base: ReviewState = known ?? {
    id: e.detection, version: 0, status: "proposed", object_class: e.class_after ?? 0, score: null,
    source: e.verb === "create_manual" ? "manual" : "",
  };
  if (e.status_after === "") return { ...base, version: e.version_after, deleted: true };
  return {
    ...base,
    version: e.version_after,
    status: e.status_after,
    object_class: e.class_after ?? base.object_class,
    deleted: false,
  };
}
