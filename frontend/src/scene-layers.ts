// Vector layers of the scene page: examples (solid, class colour) and detections (outlines by review state).
import type Feature from "ol/Feature";
import type { FeatureLike } from "ol/Feature";
import GeoJSON from "ol/format/GeoJSON";
import VectorLayer from "ol/layer/Vector";
import VectorSource from "ol/source/Vector";
import { Fill, Stroke, Style } from "ol/style";
import type { ApiFeature, FeaturePage, ObjectClass } from "./api";

const geojson = new GeoJSON({ dataProjection: "EPSG:4326", featureProjection: "EPSG:3857" });
const REJECTED_GREY = "#9aa0aa";
const HALO_COLOUR = "rgba(15, 18, 28, 0.55)";
const HALO = new Stroke({ color: HALO_COLOUR, width: 4.5 });
const SELECTED_HALO = "rgba(255, 214, 10, 0.95)";

/** API features (EPSG:4326) as OpenLayers features in the map's EPSG:3857. */
export function readFeatures<P>(page: FeaturePage<P> | ApiFeature<P>[]): Feature[] {
  const features = Array.isArray(page) ? page : page.features;
  return geojson.readFeatures({ type: "FeatureCollection", features }) as Feature[];
}

/** One feature's geometry as a GeoJSON geometry in EPSG:4326 (what the API accepts). */
export function geometryToLonLat(feature: Feature): { type: string; coordinates: unknown } {
  const written = geojson.writeFeatureObject(feature, { decimals: 8 });
  return written.geometry as { type: string; coordinates: unknown };
}

/** `#rrggbb` with an alpha, as an rgba() string. */
export function withAlpha(hex: string, alpha: number): string {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) return `rgba(255, 0, 0, ${alpha})`;
  return `rgba(${parseInt(m[1], 16)}, ${parseInt(m[2], 16)}, ${parseInt(m[3], 16)}, ${alpha})`;
}

export class SceneLayers {
  readonly examples = new VectorSource();
  readonly detections = new VectorSource();
  readonly exampleLayer: VectorLayer;
  readonly detectionLayer: VectorLayer;
  private colours = new Map<number, string>();
  private minScore = 0;
  private styleCache = new Map<string, Style[]>();

  constructor() {
    this.detectionLayer = new VectorLayer({
      source: this.detections,
      style: (f) => this.detectionStyle(f),
      zIndex: 10,
      updateWhileInteracting: true,
    });
    this.exampleLayer = new VectorLayer({
      source: this.examples,
      style: (f) => this.exampleStyle(f),
      zIndex: 11,
      updateWhileInteracting: true,
    });
  }

  setClasses(classes: ObjectClass[]): void {
    this.colours = new Map(classes.map((c) => [c.id, c.color]));
    this.styleCache.clear();
    this.exampleLayer.changed();
    this.detectionLayer.changed();
  }

  colourOf(classId: number): string {
    return this.colours.get(classId) ?? "#ff3b30";
  }

  setMinScore(value: number): void {
    this.minScore = value;
    this.detectionLayer.changed();
  }

  /** Whether a detection passes the score filter (and is therefore drawn and counted). */
  isShown(feature: FeatureLike): boolean {
    return Number(feature.get("score") ?? 0) >= this.minScore;
  }

  private exampleStyle(feature: FeatureLike): Style[] {
    const colour = this.colourOf(Number(feature.get("object_class")));
    const key = `ex|${colour}`;
    let styles = this.styleCache.get(key);
    if (!styles) {
      styles = [
        new Style({ stroke: HALO }),
        new Style({ stroke: new Stroke({ color: colour, width: 2.5 }), fill: new Fill({ color: withAlpha(colour, 0.28) }) }),
      ];
      this.styleCache.set(key, styles);
    }
    return styles;
  }

  private detectionStyle(feature: FeatureLike): Style[] | undefined {
    if (!this.isShown(feature)) return undefined;
    const status = String(feature.get("status") ?? "proposed");
    const colour = status === "rejected" ? REJECTED_GREY : this.colourOf(Number(feature.get("object_class")));
    const selected = Boolean(feature.get("selected"));
    const key = `det|${status}|${colour}|${selected}`;
    let styles = this.styleCache.get(key);
    if (!styles) {
      const line =
        status === "proposed"
          ? new Stroke({ color: colour, width: 2.5, lineDash: [8, 5] })
          : new Stroke({ color: colour, width: status === "accepted" ? 2.5 : 1.5 });
      // Proposals: a light underlay shows through the dash gaps, so they read on any imagery (even their own colour).
      const under = status === "proposed" ? "rgba(255, 255, 255, 0.9)" : HALO_COLOUR;
      styles = [
        new Style({ stroke: new Stroke({ color: under, width: status === "rejected" ? 3.5 : 4.5 }) }),
        new Style({ stroke: line, fill: new Fill({ color: "rgba(0, 0, 0, 0.001)" }) }),
      ];
      // The selected detection: a bright wide halo under its own outline, and a light fill.
      if (selected) {
        styles = [
          new Style({ stroke: new Stroke({ color: SELECTED_HALO, width: 8 }), fill: new Fill({ color: withAlpha(colour, 0.18) }) }),
          ...styles,
        ];
      }
      this.styleCache.set(key, styles);
    }
    return styles;
  }
}
