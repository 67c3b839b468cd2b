// Review calls: each with a fresh client id and the version it was decided on; applied at once, rolled back on failure.
import { ApiError, ApiFeature, DetectionProps, errorText, postJson } from "../api";
import type { DetectionStore } from "./store";

export interface ReviewEventOut {
  id: number;
  detection: number;
  verb: string;
  status_after: DetectionProps["status"] | null;
  class_after: number | null;
  version_after: number;
  actor_name: string | null;
}

interface DecisionOut {
  events: ReviewEventOut[];
  detection: ApiFeature<DetectionProps> | null;
}

export interface ReviewFeedback {
  saved(text: string): void;
  failed(text: string): void;
}

export class ReviewCommands {
  /** Requests still on their way, so a quick second key on the same detection waits for the first. */
  private readonly pending = new Map<number, Promise<void>>();

  constructor(private readonly sceneId: number, private readonly store: DetectionStore, private readonly say: ReviewFeedback) {}

  review(id: number, verdict: "accept" | "reject"): Promise<void> {
    const status = verdict === "accept" ? "accepted" : "rejected";
    return this.decide(id, { status }, `/api/detections/${id}/review/`, { verdict: status }, verdict === "accept" ? "Accepted" : "Rejected");
  }

  relabel(id: number, classId: number, className: string): Promise<void> {
    return this.decide(id, { object_class: classId }, `/api/detections/${id}/relabel/`, { class: classId }, `Class set to ${className}`);
  }

  /** Undo the caller's last decision in this scene; the detections it touched take their state from the answer. */
  async undo(): Promise<void> {
    await Promise.all(this.pending.values());
    try {
      const out = await postJson<{ events: ReviewEventOut[] }>("/api/review/undo/", {
        client_id: crypto.randomUUID(),
        scene: this.sceneId,
      });
      for (const e of out.events) {
        const patch: Parameters<DetectionStore["set"]>[1] = { version: e.version_after };
        if (e.status_after) patch.status = e.status_after;
        if (e.class_after) patch.object_class = e.class_after;
        this.store.set(e.detection, patch);
      }
      this.say.saved(out.events.length ? "Undone." : "Nothing to undo.");
    } catch (err) {
      this.say.failed(`Undo failed: ${errorText(err)}`);
    }
  }

  private decide(id: number, optimistic: object, url: string, body: object, done: string): Promise<void> {
    const run = async () => {
      const current = this.store.get(id);
      if (!current) return;
      const before = this.store.set(id, optimistic)!;
      try {
        const out = await postJson<DecisionOut>(url, { ...body, expected_version: current.version, client_id: crypto.randomUUID() });
        const p = out.detection?.properties;
        if (p) this.store.set(id, { version: p.version, status: p.status, object_class: p.object_class });
        this.say.saved(`${done}.`);
      } catch (err) {
        // Put back what the server has: on a conflict its current state, else what we had before.
        const now = err instanceof ApiError && err.status === 409 ? (err.detail as { current?: Partial<typeof before> } | null)?.current : null;
        this.store.set(id, now ? { version: now.version, status: now.status, object_class: now.object_class } : before);
        // A conflict's message names who changed it; its detail (the whole current state) is not for reading.
        this.say.failed(`Not saved: ${now ? (err as ApiError).message : errorText(err)}`);
      }
    };
    const chained = (this.pending.get(id) ?? Promise.resolve()).then(run);
    this.pending.set(id, chained);
    void chained.finally(() => this.pending.get(id) === chained && this.pending.delete(id));
    return chained;
  }
}
