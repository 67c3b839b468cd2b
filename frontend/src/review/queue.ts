// The review queue: the server orders the proposed detections (by score, by uncertainty, or along a short spatial
// path); the page keeps the next few in hand so that N (or a decision) shows the next one without a round trip.
import { DetectionFeature, queuePage, QueueOrder } from "./api";

const AHEAD = 8;

export class ReviewQueue {
  order: QueueOrder = "score";
  /** Detections after `anchor` in queue order, as fetched (some may have been decided since). */
  private ahead: DetectionFeature[] = [];
  private anchor: number | null | undefined = undefined;
  /** The last id fetched: the next page starts after it. */
  private tail: number | null = null;
  private exhausted = false;
  private filling: Promise<void> | null = null;

  /** `keep` says whether a proposal may be shown now (decided ones and those the sliders hide are skipped). */
  constructor(private readonly sceneId: number, private readonly keep: (f: DetectionFeature) => boolean) {}

  setOrder(order: QueueOrder): void {
    this.order = order;
    this.reset();
  }

  /** Forget the look-ahead (the proposals changed: a search, Update proposals, a bulk action). */
  reset(): void {
    this.ahead = [];
    this.anchor = undefined;
  }

  /** The proposed detection after `current` (the head when null); null when none is left. */
  async next(current: number | null): Promise<DetectionFeature | null> {
    const at = current === null ? -1 : this.ahead.findIndex((f) => Number(f.id) === current);
    if (at >= 0) {
      this.ahead = this.ahead.slice(at + 1);
    } else if (this.anchor !== current) {
      // Somewhere new (a click on the map, a new order): continue from there.
      this.ahead = [];
      this.anchor = current;
      this.tail = current;
      this.exhausted = false;
    }
    for (let guard = 0; guard < 100; guard++) {
      this.ahead = this.ahead.filter((f) => Number(f.id) !== current && this.keep(f));
      if (this.ahead.length) {
        if (this.ahead.length <= AHEAD / 2) void this.fill();
        return this.ahead[0];
      }
      if (this.exhausted) return null;
      if (this.filling) await this.filling;
      else await this.fill();
    }
    return null;
  }

  /** Fetch the page after the tail (while the reviewer looks at the current one, when called without await). */
  private fill(): Promise<void> {
    if (this.filling) return this.filling;
    if (this.exhausted) return Promise.resolve();
    const from = this.tail;
    this.filling = queuePage(this.sceneId, this.order, from, "next", AHEAD * 2)
      .then((page) => {
        if (this.tail !== from) return; // reset meanwhile
        const known = new Set(this.ahead.map((f) => Number(f.id)));
        this.ahead.push(...page.filter((f) => !known.has(Number(f.id))));
        if (page.length) this.tail = Number(page[page.length - 1].id);
        if (page.length < AHEAD * 2) this.exhausted = true;
      })
      .finally(() => (this.filling = null));
    return this.filling;
  }

  /** The proposed detection before `current` (asked afresh: going back is rare). */
  async previous(current: number | null): Promise<DetectionFeature | null> {
    let from = current;
    for (let guard = 0; guard < 100; guard++) {
      const page = await queuePage(this.sceneId, this.order, from, "previous", AHEAD);
      const hit = page.find((f) => this.keep(f));
      if (hit) return hit;
      if (page.length < AHEAD) return null;
      from = Number(page[page.length - 1].id);
    }
    return null;
  }
}
