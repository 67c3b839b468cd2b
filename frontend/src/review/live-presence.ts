// Who else is working on this scene: a "Working now" list in the panel (name, cell) and a labelled marker on the map
// at each one's map centre, with a layer toggle; and the quiet line that says when live updates are paused.
import Feature from "ol/Feature";
import type OlMap from "ol/Map";
import Point from "ol/geom/Point";
import VectorLayer from "ol/layer/Vector";
import { fromLonLat } from "ol/proj";
import VectorSource from "ol/source/Vector";
import { Circle as CircleStyle, Fill, Stroke, Style, Text } from "ol/style";
import type { components } from "../api-schema";
import { el } from "../dom";

type Presence = components["schemas"]["Presence"];

/** One colour per person, the same in every page (from their user id). */
const PALETTE = ["#d9480f", "#1971c2", "#2f9e44", "#ae3ec9", "#e8590c", "#0c8599", "#c2255c", "#5f3dc4"];

export function personColour(userId: number): string {
  return PALETTE[userId % PALETTE.length];
}

export class LivePresence {
  readonly layer: VectorLayer<VectorSource<Feature<Point>>>;
  private readonly source = new VectorSource<Feature<Point>>();
  private readonly list: HTMLElement;
  private readonly line: HTMLElement;
  private readonly styles = new Map<string, Style[]>();

  constructor(private readonly map: OlMap, panelBlock: HTMLElement | null) {
    this.layer = new VectorLayer({ source: this.source, zIndex: 40, style: (f) => this.style(f as Feature<Point>) });
    map.addLayer(this.layer);
    const block = el("div", "panel-block live-block");
    block.id = "live-block";
    const head = el("div", "block-head");
    head.append(el("h4", "", "Working now"));
    this.list = el("ul", "live-people");
    this.list.id = "live-people";
    this.list.setAttribute("aria-live", "polite");
    this.line = el("p", "live-status muted small");
    this.line.id = "live-status";
    this.line.setAttribute("role", "status");
    this.line.hidden = true;
    block.append(head, this.list, this.line);
    panelBlock?.after(block);
    this.addToggle();
    this.show([]);
  }

  /** A checkbox beside the other layers' (not data-layer: those are the detection statuses). */
  private addToggle(): void {
    const toggles = document.querySelector(".layer-toggles");
    if (!toggles) return;
    const label = el("label");
    const box = el("input");
    box.type = "checkbox";
    box.checked = true;
    box.id = "live-layer-toggle";
    box.addEventListener("change", () => this.layer.setVisible(box.checked));
    const key = el("span", "key key-live");
    label.append(box, key, document.createTextNode("other reviewers"));
    toggles.append(label);
  }

  /** The others seen in the last seconds, in the list and on the map. */
  show(people: Presence[]): void {
    const items = people.map((p) => {
      const li = el("li", "live-person");
      li.dataset.user = String(p.user);
      const dot = el("span", "live-dot");
      dot.style.background = personColour(p.user);
      li.append(dot, el("span", "live-name", p.name), el("span", "muted small", p.cell ? ` · cell ${p.cell}` : ""));
      return li;
    });
    if (!items.length) items.push(el("li", "muted small live-alone", "Only you on this scene."));
    this.list.replaceChildren(...items);
    this.list.dataset.names = people.map((p) => p.name).join(",");
    const projection = this.map.getView().getProjection();
    const features = people
      .filter((p) => p.x !== null && p.y !== null)
      .map((p) => {
        const f = new Feature(new Point(fromLonLat([p.x!, p.y!], projection)));
        f.setId(`person-${p.user}`);
        f.set("name", p.cell ? `${p.name} · ${p.cell}` : p.name);
        f.set("user", p.user);
        return f;
      });
    this.source.clear(true);
    this.source.addFeatures(features);
  }

  /** The quiet line under the list ("" hides it). */
  status(text: string): void {
    this.line.textContent = text;
    this.line.hidden = !text;
  }

  private style(f: Feature<Point>): Style[] {
    const name = String(f.get("name"));
    const colour = personColour(Number(f.get("user")));
    let style = this.styles.get(`${colour}|${name}`);
    if (!style) {
      // A dark ring under a white one under the person's colour: readable on any imagery.
      const ring = new Style({ image: new CircleStyle({ radius: 10, fill: new Fill({ color: "rgba(15, 18, 28, 0.75)" }) }) });
      style = [ring, new Style({
        image: new CircleStyle({ radius: 8, fill: new Fill({ color: colour }), stroke: new Stroke({ color: "#fff", width: 2 }) }),
        text: new Text({
          text: name, offsetY: -16, font: "600 12px system-ui, sans-serif",
          fill: new Fill({ color: "#111" }), stroke: new Stroke({ color: "rgba(255,255,255,0.95)", width: 4 }),
        }),
      })];
      this.styles.set(`${colour}|${name}`, style);
    }
    return style;
  }
}
