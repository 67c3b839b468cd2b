// The selected detection: its full geometry (from the API) highlighted above the tiles, and vertex editing (E).
import Feature from "ol/Feature";
import type OlMap from "ol/Map";
import type Geometry from "ol/geom/Geometry";
import Modify from "ol/interaction/Modify";
import VectorLayer from "ol/layer/Vector";
import VectorSource from "ol/source/Vector";
import type { DetectionStatus } from "../api";
import { geometryToLonLat, readFeatures } from "../scene-layers";
import { detectionStyle } from "../workspace/detection-tiles";
import { VERTEX_STYLE } from "../workspace/vertices";
import type { DetectionFeature } from "./api";


export class SelectionLayer {
  readonly source = new VectorSource();
  readonly layer: VectorLayer;
  private feature: Feature | null = null;
  private original: Geometry | null = null;
  private modify: Modify | null = null;

  constructor(private readonly map: OlMap, private readonly colourOf: (classId: number) => string, private readonly statusOf: (id: number) => DetectionStatus | undefined) {
    this.layer = new VectorLayer({
      source: this.source,
      zIndex: 20,
      updateWhileInteracting: true,
      updateWhileAnimating: true,
      style: (f) => {
        const id = Number(f.getId());
        const status = this.statusOf(id) ?? (f.get("status") as DetectionStatus);
        const colour = status === "rejected" ? "#9aa0aa" : this.colourOf(Number(f.get("object_class")));
        return this.modify ? [...detectionStyle(status, colour, true), VERTEX_STYLE] : detectionStyle(status, colour, true);
      },
    });
    map.addLayer(this.layer);
  }

  /** Show one detection (null: none). */
  show(detection: DetectionFeature | null): Feature | null {
    this.cancelEdit();
    this.source.clear();
    this.feature = detection ? readFeatures([detection])[0] : null;
    if (this.feature) this.source.addFeature(this.feature);
    return this.feature;
  }

  current(): Feature | null {
    return this.feature;
  }

  /** Restyle after the detection's state changed. */
  refresh(classId?: number): void {
    if (this.feature && classId !== undefined) this.feature.set("object_class", classId);
    this.layer.changed();
  }

  get editing(): boolean {
    return this.modify !== null;
  }

  /** Vertex editing: drag a vertex, drag an edge to add one, Alt+click a vertex to remove it. */
  startEdit(): boolean {
    if (!this.feature || this.modify) return false;
    this.original = this.feature.getGeometry()!.clone();
    this.modify = new Modify({ source: this.source, pixelTolerance: 8 });
    this.map.addInteraction(this.modify);
    this.map.getTargetElement()?.classList.add("editing");
    this.layer.changed();
    return true;
  }

  /** Stop editing and put the shape back as it was. */
  cancelEdit(): void {
    if (!this.modify) return;
    if (this.feature && this.original) this.feature.setGeometry(this.original);
    this.endEdit();
  }

  /** Stop editing, keeping the shape; answers it in lon/lat for the API (null when unchanged). */
  finishEdit(): { type: string; coordinates: unknown } | null {
    if (!this.modify || !this.feature) return null;
    const before = JSON.stringify(this.original ? geometryToLonLat(new Feature(this.original)) : null);
    const after = geometryToLonLat(this.feature);
    this.endEdit();
    return JSON.stringify(after) === before ? null : after;
  }

  /** The shape as it is now (while editing, with the moves so far) in lon/lat. */
  geometryNow(): { type: string; coordinates: unknown } | null {
    return this.feature ? geometryToLonLat(this.feature) : null;
  }

  private endEdit(): void {
    if (this.modify) this.map.removeInteraction(this.modify);
    this.modify = null;
    this.original = null;
    this.map.getTargetElement()?.classList.remove("editing");
    this.layer.changed();
  }
}
