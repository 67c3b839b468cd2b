// The corners of a polygon being edited, drawn as handles (Modify only marks the one under the pointer).
import type { FeatureLike } from "ol/Feature";
import MultiPoint from "ol/geom/MultiPoint";
import type Polygon from "ol/geom/Polygon";
import type MultiPolygon from "ol/geom/MultiPolygon";
import { Circle as CircleStyle, Fill, Stroke, Style } from "ol/style";

export const VERTEX_STYLE = new Style({
  image: new CircleStyle({ radius: 5, fill: new Fill({ color: "#ffd60a" }), stroke: new Stroke({ color: "#111", width: 1.5 }) }),
  geometry: (f: FeatureLike) => {
    const g = f.getGeometry() as Polygon | MultiPolygon | undefined;
    if (!g) return undefined;
    const rings = g.getType() === "Polygon" ? (g as Polygon).getCoordinates() : (g as MultiPolygon).getCoordinates().flat();
    return new MultiPoint(rings.flat());
  },
});
