// GeoJSON between the API (EPSG:4326) and the map (EPSG:3857), and colour helpers for the scene page's layers.
import type Feature from "ol/Feature";
import GeoJSON from "ol/format/GeoJSON";
import type { ApiFeature, FeaturePage } from "./api";

const geojson = new GeoJSON({ dataProjection: "EPSG:4326", featureProjection: "EPSG:3857" });

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
