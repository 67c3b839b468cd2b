// Review calls: each carries the version it was decided on and a fresh client id; applied to the store at once,
// replaced by the server's answer, rolled back (or set to the server's current state on a 409) on failure.
import { ApiError, deleteJson, errorText, postJson } from "../api";
import { clientId, DecisionOut, ReviewEventOut } from "./api";
import { DetectionStore, ReviewState, stateOf } from "./store";

type Geometry = { type: string; coordinates: unknown };

export interface ReviewFeedback {
  saved(text: string): void;
  failed(text: string): void;
  /** The server answered a change: the events it recorded (the side panel shows them). */
  recorded(events: ReviewEventOut[]): void;
  /** Shapes or the set of detections changed: the map's tiles should reload. */
  shapesChanged(): void;
  /** A save that had no answer went through on a retry: its "not saved yet" no longer holds. */
  recovered(): void;
}

export interface ReviewFix {
  comment?: string;
  object_class?: number;
  geometry?: Geometry;
}

export class ReviewCommands {
  /** Requests still on their way, so a quick second key on the same detection waits for the first. */
  private readonly pending = new Map<number, Promise<unknown>>();
  /** Saves that failed for want of a connection, retried in order when it returns. */
  private readonly retries: (() => Promise<unknown>)[] = [];
  private retryTimer: number | null = null;

  constructor(private readonly sceneId: number, private readonly store: DetectionStore, private readonly say: ReviewFeedback) {}

  /** Accept or reject; with a class and/or shape it is "fix and accept" (one decision, one event). */
  review(id: number, verdict: "accept" | "reject", fix: ReviewFix = {}): Promise<boolean> {
    const status = verdict === "accept" ? "accepted" : "rejected";
    const optimistic: Partial<ReviewState> = { status };
    if (fix.object_class) optimistic.object_class = fix.object_class;
    const body: Record<string, unknown> = { verdict: status };
    if (fix.comment) body.comment = fix.comment;
    if (fix.object_class) body.object_class = fix.object_class;
    if (fix.geometry) body.geometry = fix.geometry;
    const what = fix.geometry || fix.object_class ? "Fixed and accepted" : verdict === "accept" ? "Accepted" : "Rejected";
    return this.change(id, optimistic, `/api/detections/${id}/review/`, body, what, Boolean(fix.geometry));
  }

  relabel(id: number, classId: number, className: string): Promise<boolean> {
    return this.change(id, { object_class: classId }, `/api/detections/${id}/relabel/`, { object_class: classId }, `Class set to ${className}`, false);
  }

  reshape(id: number, geometry: Geometry): Promise<boolean> {
    return this.change(id, {}, `/api/detections/${id}/reshape/`, { geometry }, "Shape saved", true);
  }

  /** Draw a missed object: saved as an accepted manual detection. Answers its id (null when not saved). */
  async createManual(classId: number, geometry: Geometry): Promise<number | null> {
    const requestId = clientId(); // one id for every try: a retry after a lost answer creates nothing twice
    const send = () => postJson<DecisionOut>(`/api/scenes/${this.sceneId}/detections/manual/`, { object_class: classId, geometry, client_id: requestId });
    try {
      const out = await send();
      if (out.detection) this.store.put(stateOf(out.detection));
      this.say.recorded(out.events);
      this.say.saved("Missed object saved (accepted).");
      this.say.shapesChanged();
      return out.detection ? Number(out.detection.id) : null;
    } catch (err) {
      this.say.failed(`The missed object was not saved: ${errorText(err)}`);
      return null;
    }
  }

  async deleteManual(id: number): Promise<boolean> {
    const current = this.store.get(id);
    if (!current) return false;
    try {
      const q = new URLSearchParams({ expected_version: String(current.version), client_id: clientId() });
      const out = await deleteJson<DecisionOut>(`/api/detections/${id}/manual/?${q}`);
      this.store.set(id, { deleted: true });
      this.say.recorded(out?.events ?? []);
      this.say.saved("Drawn detection deleted.");
      this.say.shapesChanged();
      return true;
    } catch (err) {
      this.conflict(err, current);
      return false;
    }
  }

  /** Undo the caller's last decision in this scene (a bulk action as a group). */
  async undo(): Promise<ReviewEventOut[]> {
    await Promise.all(this.pending.values());
    try {
      const out = await postJson<{ events: ReviewEventOut[] }>("/api/review/undo/", { client_id: clientId(), scene: this.sceneId });
      for (const e of out.events) {
        if (e.detection === null) continue;
        const patch: Partial<ReviewState> = { version: e.version_after };
        if (e.status_after) patch.status = e.status_after;
        if (e.class_after) patch.object_class = e.class_after;
        this.store.set(e.detection, patch);
      }
      this.say.recorded(out.events);
      this.say.saved(out.events.length ? `Undone (${out.events.length} detection${out.events.length === 1 ? "" : "s"}).` : "Nothing to undo.");
      if (out.events.length) this.say.shapesChanged(); // an undone reshape, drawing or bulk action changes the map
      return out.events;
    } catch (err) {
      this.say.failed(`Undo failed: ${errorText(err)}`);
      return [];
    }
  }

  private change(id: number, optimistic: Partial<ReviewState>, url: string, body: object, done: string, reshaped: boolean): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      const current = this.store.get(id);
      if (!current) return false;
      const before = this.store.set(id, optimistic)!;
      const payload = { ...body, expected_version: current.version };
      const requestId = clientId();
      let retried = false;
      const attempt = async (): Promise<boolean> => {
        try {
          const out = await postJson<DecisionOut>(url, { ...payload, client_id: requestId });
          if (retried) this.say.recovered();
          if (out.detection) this.store.put(stateOf(out.detection));
          this.say.recorded(out.events);
          this.say.saved(`${done}.`);
          if (reshaped) this.say.shapesChanged();
          return true;
        } catch (err) {
          if (err instanceof ApiError && (err.status === 0 || err.status >= 502)) {
            // No answer: keep the change on screen and send the same request again (same client id: no duplicate).
            this.say.failed(`Not saved yet (${err.message}); retrying…`);
            retried = true;
            this.retryLater(attempt);
            return false;
          }
          this.conflict(err, before);
          return false;
        }
      };
      return attempt();
    };
    const chained = (this.pending.get(id) ?? Promise.resolve()).then(run);
    this.pending.set(id, chained);
    void chained.finally(() => this.pending.get(id) === chained && this.pending.delete(id));
    return chained;
  }

  /** A refused change: on a conflict show the server's current state and who made it; else put back what was. */
  private conflict(err: unknown, before: ReviewState): void {
    const now = err instanceof ApiError && err.status === 409 ? (err.detail as { current?: Record<string, unknown> } | null)?.current : null;
    if (now && typeof now.version === "number") {
      this.store.put({
        ...before,
        version: now.version as number,
        status: (now.status as ReviewState["status"]) ?? before.status,
        object_class: (now.object_class as number) ?? before.object_class,
      });
      this.say.shapesChanged();
    } else {
      this.store.restore(before);
    }
    this.say.failed(`Not saved: ${now ? (err as ApiError).message : errorText(err)}`);
  }

  private retryLater(attempt: () => Promise<boolean>): void {
    this.retries.push(attempt);
    if (this.retryTimer !== null) return;
    this.retryTimer = window.setTimeout(async () => {
      this.retryTimer = null;
      const queued = this.retries.splice(0);
      for (const a of queued) await a(); // a still-failing one queues itself again
    }, 3000);
  }
}
