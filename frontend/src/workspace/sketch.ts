// Drawing one polygon on the map (an example or a missed object): Backspace takes back the last corner, and a
// polygon that closed by accident or is invalid goes back to the sketch for correction instead of being lost.
import type Feature from "ol/Feature";
import type OlMap from "ol/Map";
import type { Coordinate } from "ol/coordinate";
import type Polygon from "ol/geom/Polygon";
import Draw from "ol/interaction/Draw";
import { Circle as CircleStyle, Fill, Stroke, Style } from "ol/style";
import { withAlpha } from "../scene-layers";

/** Corners closer than this many screen pixels count as one (a double click, a click on the last corner). */
const SAME_CORNER_PX = 4;

export interface SketchHost {
  /** A finished, valid polygon; answer false to keep the sketch open for correction (e.g. the server refused it). */
  finished(feature: Feature): Promise<boolean>;
  problem(text: string): void;
}

export class Sketch {
  private draw: Draw | null = null;

  constructor(private readonly map: OlMap, private readonly host: SketchHost) {}

  get active(): boolean {
    return this.draw !== null;
  }

  start(colour: string, restore?: Coordinate[]): void {
    this.stop();
    const draw = new Draw({ type: "Polygon", style: sketchStyle(colour), stopClick: true });
    draw.on("drawend", (e) => this.ended(e.feature as Feature, colour));
    this.draw = draw;
    this.map.addInteraction(draw);
    this.map.getTargetElement()?.classList.add("drawing");
    if (restore?.length) {
      draw.appendCoordinates(restore);
    }
  }

  stop(): void {
    if (!this.draw) return;
    this.draw.abortDrawing();
    this.map.removeInteraction(this.draw);
    this.draw = null;
    this.map.getTargetElement()?.classList.remove("drawing");
  }

  /** Backspace while drawing: remove the last corner. True when the key was used. */
  handleKey(e: KeyboardEvent): boolean {
    if (!this.draw || e.key !== "Backspace") return false;
    e.preventDefault();
    this.draw.removeLastPoint();
    return true;
  }

  private ended(feature: Feature, colour: string): void {
    const ring = ((feature.getGeometry() as Polygon).getCoordinates()[0] ?? []).slice(0, -1);
    const corners = this.distinctCorners(ring);
    const problem =
      corners.length < 3
        ? "A polygon needs at least three corners: keep clicking corners (Backspace takes one back)."
        : selfIntersects(corners)
          ? "The outline crosses itself: Backspace takes back corners; then finish it again."
          : null;
    if (problem) {
      this.host.problem(problem);
      this.reopen(colour, corners);
      return;
    }
    void this.host.finished(feature).then((ok) => {
      if (!ok) this.reopen(colour, corners);
    });
  }

  /** Start again from the corners drawn so far (after the current drawend has been handled). */
  private reopen(colour: string, corners: Coordinate[]): void {
    window.setTimeout(() => {
      if (this.draw) this.start(colour, corners);
    }, 0);
  }

  /** The ring without corners that fall on the previous one on screen. */
  private distinctCorners(ring: Coordinate[]): Coordinate[] {
    const res = this.map.getView().getResolution() ?? 1;
    const out: Coordinate[] = [];
    for (const c of ring) {
      const last = out[out.length - 1];
      if (!last || Math.hypot(c[0] - last[0], c[1] - last[1]) / res > SAME_CORNER_PX) out.push(c);
    }
    if (out.length > 1) {
      const [first, last] = [out[0], out[out.length - 1]];
      if (Math.hypot(first[0] - last[0], first[1] - last[1]) / res <= SAME_CORNER_PX) out.pop();
    }
    return out;
  }
}

/** Whether a closed ring (given without its closing corner) has two edges that cross. */
export function selfIntersects(ring: Coordinate[]): boolean {
  const n = ring.length;
  const edge = (i: number): [Coordinate, Coordinate] => [ring[i], ring[(i + 1) % n]];
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (j === i + 1 || (i === 0 && j === n - 1)) continue; // neighbours share a corner
      if (segmentsCross(...edge(i), ...edge(j))) return true;
    }
  }
  return false;
}

function segmentsCross(a: Coordinate, b: Coordinate, c: Coordinate, d: Coordinate): boolean {
  const orient = (p: Coordinate, q: Coordinate, r: Coordinate) => Math.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]));
  const o1 = orient(a, b, c), o2 = orient(a, b, d), o3 = orient(c, d, a), o4 = orient(c, d, b);
  return o1 !== o2 && o3 !== o4 && o1 !== 0 && o2 !== 0 && o3 !== 0 && o4 !== 0;
}

function sketchStyle(colour: string): Style[] {
  return [
    new Style({ stroke: new Stroke({ color: "rgba(15, 18, 28, 0.6)", width: 4.5 }) }),
    new Style({
      stroke: new Stroke({ color: colour, width: 2.5 }),
      fill: new Fill({ color: withAlpha(colour, 0.22) }),
      image: new CircleStyle({ radius: 5, fill: new Fill({ color: colour }), stroke: new Stroke({ color: "#fff", width: 1.5 }) }),
    }),
  ];
}
