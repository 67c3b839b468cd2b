// Detections as vector tiles from PostGIS (ST_AsMVT): styled by class colour and review state, with the page's
// own overrides (a decision restyles at once, before any tile reloads), status toggles and per-class score floors.
import type { FeatureLike } from "ol/Feature";
import MVT from "ol/format/MVT";
import VectorTileLayer from "ol/layer/VectorTile";
import VectorTileSource from "ol/source/VectorTile";
import { Circle as CircleStyle, Fill, Stroke, Style } from "ol/style";
import type { DetectionStatus } from "../api";
import type { DetectionStore, ReviewState } from "../review/store";
import { withAlpha } from "../scene-layers";

const REJECTED_GREY = "#9aa0aa";
const HALO_COLOUR = "rgba(15, 18, 28, 0.55)";
/** Objects narrower than this on screen are drawn with one thin line. */
const SMALL_PX = 10;

/** What a detection on a tile is drawn as: the tile's properties, or the page's newer state of it. */
export interface ShownDetection {
  id: number;
  status: DetectionStatus;
  object_class: number;
  score: number;
  source: string;
  version: number;
}

export class DetectionTiles {
  readonly source: VectorTileSource;
  readonly layer: VectorTileLayer;
  private colours = new Map<number, string>();
  private readonly hiddenStatuses = new Set<DetectionStatus>();
  /** Proposals of a class below its floor are hidden (the per-class score sliders). */
  private readonly floors = new Map<number, number>();
  private readonly styleCache = new Map<string, Style[]>();
  private reloads = 0;

  constructor(private readonly sceneId: number, private readonly store: DetectionStore) {
    this.source = new VectorTileSource({
      format: new MVT({ idProperty: "id" }),
      url: this.url(),
      maxZoom: 22,
      // The server clips with a buffer; OpenLayers must not drop features that straddle tile edges.
      overlaps: true,
    });
    this.layer = new VectorTileLayer({
      source: this.source,
      style: (f, resolution) => this.style(f, resolution),
      zIndex: 10,
      declutter: false,
      renderMode: "hybrid",
      // Polygons are drawn into each tile's image (hybrid mode), so moving the map only moves images: a scripted
      // pan and zoom over 10k polygons runs at 16.7 ms a frame (benchmarks/review.py). Points would be drawn as
      // vectors on every frame, which is why the server sends tiny objects as small squares, not points.
      updateWhileInteracting: true,
      updateWhileAnimating: true,
    });
    // A decision restyles its detection; redrawing every tile in view costs up to ~100 ms with thousands of
    // polygons, so a burst of keys is redrawn once, a moment after it (the selection layer shows the current one).
    store.onChange(() => this.restyleSoon());
  }

  private url(): string {
    // The reload counter makes every tile URL new: a reload then never reuses a cached tile from before a change.
    return `/api/scenes/${this.sceneId}/detections/tiles/{z}/{x}/{y}.mvt?v=${this.reloads}`;
  }

  /** Fetch every tile again (after shapes changed, a search, a bulk action or an undo). */
  reload(): void {
    this.reloads += 1;
    this.source.setUrl(this.url());
  }

  setClasses(colours: Map<number, string>): void {
    this.colours = colours;
    this.styleCache.clear();
    this.layer.changed();
  }

  colourOf(classId: number): string {
    return this.colours.get(classId) ?? "#ff3b30";
  }

  setStatusShown(status: DetectionStatus, shown: boolean): void {
    if (shown) this.hiddenStatuses.delete(status);
    else this.hiddenStatuses.add(status);
    this.layer.changed();
  }

  setFloor(classId: number, value: number): void {
    this.floors.set(classId, value);
    this.layer.changed();
  }

  floorOf(classId: number): number {
    return this.floors.get(classId) ?? 0;
  }

  private restyleTimer: number | null = null;

  private restyleSoon(): void {
    if (this.restyleTimer !== null) window.clearTimeout(this.restyleTimer);
    this.restyleTimer = window.setTimeout(() => {
      this.restyleTimer = null;
      this.layer.changed();
    }, 250);
  }

  /** A tile feature as it should be shown now (the page's state wins when it is as new or newer). */
  shown(f: FeatureLike): ShownDetection {
    const id = Number(f.getId() ?? f.get("id"));
    const tile: ShownDetection = {
      id,
      status: f.get("status") as DetectionStatus,
      object_class: Number(f.get("object_class")),
      score: Number(f.get("score") ?? 0),
      source: String(f.get("source") ?? ""),
      version: Number(f.get("version") ?? 0),
    };
    const mine: ReviewState | undefined = this.store.get(id);
    if (!mine || mine.version < tile.version) return tile;
    return { ...tile, status: mine.status, object_class: mine.object_class, version: mine.version };
  }

  /** Whether a detection passes the toggles and its class's score floor. */
  isShown(d: { status: DetectionStatus; object_class: number; score: number | null }): boolean {
    if (this.hiddenStatuses.has(d.status)) return false;
    return d.status !== "proposed" || (d.score ?? 0) >= this.floorOf(d.object_class);
  }

  private style(f: FeatureLike, resolution: number): Style[] | undefined {
    const d = this.shown(f);
    if (this.store.get(d.id)?.deleted || !this.isShown(d)) return undefined;
    const colour = d.status === "rejected" ? REJECTED_GREY : this.colourOf(d.object_class);
    // Far out, an object a few pixels wide gets one thin line (or a dot, when the server sent its centre):
    // dashes and halos there cost most of a frame with thousands in view and show nothing.
    const extent = f.getGeometry()?.getExtent();
    const px = extent ? Math.max(extent[2] - extent[0], extent[3] - extent[1]) / resolution : Infinity;
    const form = f.getGeometry()?.getType() === "Point" ? "dot" : px < SMALL_PX ? "thin" : "full";
    const key = `${d.status}|${colour}|${form}`;
    let styles = this.styleCache.get(key);
    if (!styles) {
      styles = form === "full" ? detectionStyle(d.status, colour) : lightStyle(d.status, colour, form === "dot");
      this.styleCache.set(key, styles);
    }
    return styles;
  }
}

/** One thin line, or a dot: how objects too small to outline on screen are drawn. */
function lightStyle(status: DetectionStatus, colour: string, dot: boolean): Style[] {
  const width = status === "rejected" ? 1 : 1.5;
  if (dot) return [new Style({ image: new CircleStyle({ radius: 2.5, fill: new Fill({ color: colour }) }) })];
  return [new Style({ stroke: new Stroke({ color: colour, width }), fill: new Fill({ color: "rgba(0, 0, 0, 0.001)" }) })];
}

/** Proposed dashed over a light underlay (reads on any imagery), accepted solid, rejected thin and grey. */
export function detectionStyle(status: DetectionStatus, colour: string, selected = false): Style[] {
  const line =
    status === "proposed"
      ? new Stroke({ color: colour, width: 2.5, lineDash: [8, 5] })
      : new Stroke({ color: colour, width: status === "accepted" ? 2.5 : 1.5 });
  const under = status === "proposed" ? "rgba(255, 255, 255, 0.9)" : HALO_COLOUR;
  const styles = [
    new Style({ stroke: new Stroke({ color: under, width: status === "rejected" ? 3.5 : 4.5 }) }),
    new Style({ stroke: line, fill: new Fill({ color: status === "accepted" ? withAlpha(colour, 0.12) : "rgba(0, 0, 0, 0.001)" }) }),
  ];
  if (selected) {
    styles.unshift(new Style({ stroke: new Stroke({ color: "rgba(255, 214, 10, 0.95)", width: 8 }), fill: new Fill({ color: withAlpha(colour, 0.18) }) }));
  }
  return styles;
}
