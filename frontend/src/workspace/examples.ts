// Examples (the search's input) on the scene page: drawn, selected, reshaped, reclassed and deleted in place.
import type Feature from "ol/Feature";
import type { FeatureLike } from "ol/Feature";
import type OlMap from "ol/Map";
import type Geometry from "ol/geom/Geometry";
import Modify from "ol/interaction/Modify";
import VectorLayer from "ol/layer/Vector";
import VectorSource from "ol/source/Vector";
import { Fill, Stroke, Style } from "ol/style";
import { VERTEX_STYLE } from "./vertices";
import { AnnotationProps, ApiFeature, deleteJson, errorText, FeaturePage, getJson, ObjectClass, patchJson, postJson } from "../api";
import { geometryToLonLat, readFeatures, withAlpha } from "../scene-layers";

const HALO = new Stroke({ color: "rgba(15, 18, 28, 0.55)", width: 4.5 });
const PAGE_SIZE = 5000;

export interface ExamplesHost {
  colourOf(classId: number): string;
  saved(text: string): void;
  failed(text: string): void;
  countsChanged(counts: Map<number, number>): void;
}

export class Examples {
  readonly source = new VectorSource();
  readonly layer: VectorLayer;
  private selected: Feature | null = null;
  private modify: Modify | null = null;
  private original: Geometry | null = null;
  private shown = true;

  constructor(private readonly map: OlMap, private readonly sceneId: number, private readonly host: ExamplesHost) {
    this.layer = new VectorLayer({ source: this.source, style: (f) => this.style(f), zIndex: 11, updateWhileInteracting: true });
    map.addLayer(this.layer);
  }

  async load(): Promise<void> {
    const page = await getJson<FeaturePage<AnnotationProps>>(`/api/annotations/?scene=${this.sceneId}&page_size=${PAGE_SIZE}`);
    this.source.clear();
    this.source.addFeatures(readFeatures(page));
    this.countsChanged();
  }

  setShown(shown: boolean): void {
    this.shown = shown;
    this.layer.setVisible(shown);
    if (!shown) this.select(null);
  }

  /** Save a drawn polygon as an example of `cls`; false keeps the sketch open (the server refused it). */
  async create(feature: Feature, cls: ObjectClass): Promise<boolean> {
    feature.set("object_class", cls.id);
    feature.set("pending", true);
    this.source.addFeature(feature);
    const body = { type: "Feature", geometry: geometryToLonLat(feature), properties: { scene: this.sceneId, object_class: cls.id } };
    try {
      const saved = await postJson<ApiFeature<AnnotationProps>>("/api/annotations/", body);
      this.source.removeFeature(feature);
      this.source.addFeatures(readFeatures([saved]));
      this.host.saved(`Example of ${cls.name} saved.`);
      this.countsChanged();
      return true;
    } catch (e) {
      this.source.removeFeature(feature);
      this.host.failed(`The example was not saved: ${errorText(e)} Correct the outline and finish it again, or press Esc.`);
      return false;
    }
  }

  /** The example under a map hit, if the hit is one. */
  isExample(f: FeatureLike): boolean {
    return this.shown && this.source.hasFeature(f as Feature);
  }

  current(): Feature | null {
    return this.selected;
  }

  select(f: Feature | null): void {
    this.cancelEdit();
    this.selected = f;
    this.layer.changed();
  }

  get editing(): boolean {
    return this.modify !== null;
  }

  startEdit(): void {
    if (!this.selected || this.modify) return;
    this.original = this.selected.getGeometry()!.clone();
    const only = new VectorSource({ features: [this.selected] });
    this.modify = new Modify({ source: only, pixelTolerance: 8 });
    this.map.addInteraction(this.modify);
    this.map.getTargetElement()?.classList.add("editing");
    this.layer.changed();
  }

  cancelEdit(): void {
    if (!this.modify) return;
    if (this.selected && this.original) this.selected.setGeometry(this.original);
    this.endEdit();
  }

  /** Save the edited shape (PATCH); on refusal the edit stays open for correction. */
  async saveEdit(): Promise<boolean> {
    const f = this.selected;
    if (!f || !this.modify) return false;
    try {
      const saved = await patchJson<ApiFeature<AnnotationProps>>(`/api/annotations/${f.getId()}/`, { geometry: geometryToLonLat(f) });
      this.endEdit();
      this.replace(f, saved);
      this.host.saved("Example shape saved.");
      return true;
    } catch (e) {
      this.host.failed(`The example's shape was not saved: ${errorText(e)} Move the corners and press Enter again, or Esc to undo the edit.`);
      return false;
    }
  }

  async setClass(cls: ObjectClass): Promise<void> {
    const f = this.selected;
    if (!f || Number(f.get("object_class")) === cls.id) return;
    try {
      const saved = await patchJson<ApiFeature<AnnotationProps>>(`/api/annotations/${f.getId()}/`, { object_class: cls.id });
      this.replace(f, saved);
      this.host.saved(`Example is now ${cls.name}.`);
      this.countsChanged();
    } catch (e) {
      this.host.failed(`The example's class was not changed: ${errorText(e)}`);
    }
  }

  async remove(): Promise<void> {
    const f = this.selected;
    if (!f) return;
    try {
      await deleteJson(`/api/annotations/${f.getId()}/`);
      this.select(null);
      this.source.removeFeature(f);
      this.host.saved("Example deleted.");
      this.countsChanged();
    } catch (e) {
      this.host.failed(`The example was not deleted: ${errorText(e)}`);
    }
  }

  private replace(old: Feature, saved: ApiFeature<AnnotationProps>): void {
    const [fresh] = readFeatures([saved]);
    const wasSelected = this.selected === old;
    this.source.removeFeature(old);
    this.source.addFeature(fresh);
    if (wasSelected) this.selected = fresh;
    this.layer.changed();
  }

  private endEdit(): void {
    if (this.modify) this.map.removeInteraction(this.modify);
    this.modify = null;
    this.original = null;
    this.map.getTargetElement()?.classList.remove("editing");
    this.layer.changed();
  }

  private countsChanged(): void {
    const counts = new Map<number, number>();
    for (const f of this.source.getFeatures()) {
      if (f.get("pending")) continue;
      const id = Number(f.get("object_class"));
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    this.host.countsChanged(counts);
  }

  private style(f: FeatureLike): Style[] {
    const colour = this.host.colourOf(Number(f.get("object_class")));
    const styles = [new Style({ stroke: HALO }), new Style({ stroke: new Stroke({ color: colour, width: 2.5 }), fill: new Fill({ color: withAlpha(colour, 0.28) }) })];
    if (f === this.selected) {
      styles.unshift(new Style({ stroke: new Stroke({ color: "rgba(255, 214, 10, 0.95)", width: 8 }) }));
      if (this.modify) styles.push(VERTEX_STYLE);
    }
    return styles;
  }
}
